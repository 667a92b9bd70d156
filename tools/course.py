"""Release and autograde the chapters' exercises with nbgrader (the course guide's workflow).

Usage (from the repository root)::

    .venv/bin/python tools/course.py release                      # make student
    .venv/bin/python tools/course.py autograde SUBMISSIONS         # make autograde SUBMISSIONS=...

The instructor's notebooks in ``notebooks/`` are the only source. ``release`` lays out an
nbgrader course directory (default ``_build/course``): it copies every chapter that holds
nbgrader cells to ``source/<chapter>/<chapter>.ipynb`` and runs nbgrader's own
``nbgrader generate_assignment <chapter>``, which writes the student edition to
``release/<chapter>/<chapter>.ipynb`` (solutions replaced by stubs, hidden tests removed,
test cells locked and checksummed). ``autograde`` copies the submissions, laid out as
``SUBMISSIONS/<student>/<chapter>.ipynb``, to nbgrader's ``submitted/`` folder and runs
``nbgrader autograde <chapter>`` and ``nbgrader export`` (scores in ``grades.csv``).
Everything runs locally, with no server and no container. A teacher can equally run the
``nbgrader`` commands by hand inside the course directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "_build" / "course"
#: the stub nbgrader writes in place of a ``### BEGIN SOLUTION … ### END SOLUTION`` region
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
CONFIG = f'''# nbgrader configuration of the book's course directory (written by tools/course.py)
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "icl-recall"
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# a chapter takes 5-40 s in test mode, a few minutes at full size on 2 cores
c.ExecutePreprocessor.timeout = 1800
c.Execute.timeout = 1800
'''


def graded_chapters(notebooks: Path = ROOT / "notebooks") -> list[Path]:
    """The chapter notebooks that hold at least one nbgrader cell (in the course's format)."""
    return [
        p
        for p in sorted(notebooks.glob("*.ipynb"))
        if any("nbgrader" in c.get("metadata", {}) for c in nbformat.read(p, as_version=4).cells)
    ]


def nbgrader(course: Path, *args: str) -> None:
    """Run one nbgrader command inside the course directory (it fails loudly)."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    print("$ (cd", course, "&&", " ".join(["nbgrader", *args]) + ")", flush=True)
    # nbgrader runs `alembic` (its database migrations) from PATH, and executes notebooks on
    # the kernel named python3: both must be this environment's
    env = dict(os.environ, JUPYTER_PREFER_ENV_PATH="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    subprocess.run(cmd, cwd=course, check=True, env=env)


def setup(course: Path) -> None:
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG, encoding="utf-8")


def release(course: Path = COURSE, chapters: list[Path] | None = None) -> list[Path]:
    """Write the student edition of every graded chapter; returns the released notebooks."""
    setup(course)
    out = []
    for path in chapters if chapters is not None else graded_chapters():
        name = path.stem
        src = course / "source" / name
        src.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, src / path.name)
        nbgrader(course, "generate_assignment", name, "--force")
        out.append(course / "release" / name / path.name)
    print(f"student edition written to {course / 'release'}")
    return out


def autograde(submissions: Path, course: Path = COURSE) -> Path:
    """Autograde ``submissions/<student>/<chapter>.ipynb``; returns the path of grades.csv."""
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS={submissions} is not a directory")
    chapters = set()
    for nb in sorted(submissions.glob("*/*.ipynb")):
        student, name = nb.parent.name, nb.stem
        if not (course / "source" / name).is_dir():
            raise SystemExit(f"{nb}: no released chapter {name!r} (run `make student` first)")
        dest = course / "submitted" / student / name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb, dest / nb.name)
        chapters.add(name)
    if not chapters:
        raise SystemExit(f"no submissions found as {submissions}/<student>/<chapter>.ipynb")
    for name in sorted(chapters):
        nbgrader(course, "autograde", name, "--force")
    nbgrader(course, "export", "--to", "grades.csv")
    grades = course / "grades.csv"
    print(grades.read_text(encoding="utf-8"))
    return grades


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", type=Path, default=COURSE, help="the course directory")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="write the student edition (nbgrader generate_assignment)")
    grade = sub.add_parser("autograde", help="autograde SUBMISSIONS/<student>/<chapter>.ipynb")
    grade.add_argument("submissions", type=Path)
    args = parser.parse_args(argv)
    if args.command == "release":
        release(args.course.resolve())
    else:
        autograde(args.submissions.resolve(), args.course.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
