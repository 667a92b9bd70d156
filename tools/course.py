"""Release and autograde the chapters' exercises with nbgrader (the course guide's workflow).

Usage (from the repository root)::

    .venv/bin/python tools/course.py release                      # make student
    .venv/bin/python tools/course.py autograde SUBMISSIONS         # make autograde SUBMISSIONS=...
    .venv/bin/python tools/course.py plan                         # the course guide's time table

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
import re
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


# ------------------------------------------------------------------ the two-week plan
#: the notebooks of the sequence, in teaching order (a missing one is reported as such)
SEQUENCE = [
    "01_task", "02_bayes_risk", "03_optimal_transformer", "04_training", "05_generalization",
    "06_reproduction", "07_open_questions", "08_standard_transformer", "r1_lsa",
    "r2_classification", "explorer",
]
#: reading speed assumed for careful reading of technical text with equations (an
#: assumption, not a measurement: ordinary prose is read at 200-250 words per minute)
WORDS_PER_MINUTE = 60
#: estimated minutes per exercise, by the kind its title names (estimates, not measured)
EXERCISE_MINUTES = {"warm-up": 10, "code": 25, "derivation": 30, "experiment": 25,
                    "other": 25}
KINDS = [  # (kind, words of the title that name it), first match wins
    ("warm-up", ("warm-up", "warm up")),
    ("derivation", ("derivation", "prove", "optimisation", "limit")),
    ("experiment", ("experiment", "predict", "run", "measure")),
    ("code", ("code",)),
]
RUN_TABLE = ROOT / "book" / "course_guide.md"
_TITLE = re.compile(r"^```\{exercise\}(.*)$", re.M)
_ROW = re.compile(r"^\| \{doc\}`\.\./notebooks/(\w+)` \| ([^|]+) \| ([^|]+) \|", re.M)


def exercise_kind(title: str) -> str:
    """The kind of an exercise from its title (``"Warm-up: …"`` → ``"warm-up"``)."""
    low = title.lower()
    for kind, words in KINDS:
        if any(w in low for w in words):
            return kind
    return "other"


def _seconds(text: str) -> float | None:
    """The first ``N s`` or ``N min`` of a table cell, in seconds (``None`` if there is none)."""
    m = re.search(r"(\d+(?:\.\d+)?)\s*(s|min)\b", text)
    if not m:
        return None
    return float(m.group(1)) * (60.0 if m.group(2) == "min" else 1.0)


def measured_run_times(table: Path = RUN_TABLE) -> dict[str, tuple[float | None, float | None]]:
    """``{chapter: (full-size seconds, test-mode seconds)}`` from the course guide's table
    "Time each chapter needs" (measured on the reference machine; see that page)."""
    text = table.read_text(encoding="utf-8")
    section = text.split("## Time each chapter needs", 1)[-1]
    return {m.group(1): (_seconds(m.group(2)), _seconds(m.group(3)))
            for m in _ROW.finditer(section)}


def chapter_plan(path: Path) -> dict:
    """Words of the markdown a student reads, and the exercises by kind, of one notebook.

    The written-answer cells (the model solutions, absent from the student edition) are
    not counted as reading.
    """
    nb = nbformat.read(path, as_version=4)
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown"
                and not c.get("metadata", {}).get("nbgrader", {}).get("solution")
                and not c.source.lstrip().startswith("```{solution}"))
    kinds: dict[str, int] = {}
    for c in nb.cells:
        if c.cell_type == "markdown":
            for title in _TITLE.findall(c.source):
                k = exercise_kind(title)
                kinds[k] = kinds.get(k, 0) + 1
    return {"words": words, "exercises": kinds}


def plan(notebooks: Path = ROOT / "notebooks", wpm: int = WORDS_PER_MINUTE) -> list[dict]:
    """One row per notebook of :data:`SEQUENCE`: reading, running and exercise minutes."""
    runs = measured_run_times()
    rows = []
    for name in SEQUENCE:
        path = notebooks / f"{name}.ipynb"
        if not path.exists():
            rows.append({"name": name, "missing": True})
            continue
        p = chapter_plan(path)
        full, test = runs.get(name, (None, None))
        ex_min = sum(EXERCISE_MINUTES[k] * n for k, n in p["exercises"].items())
        rows.append({"name": name, "missing": False, "words": p["words"],
                     "read_min": p["words"] / wpm, "full_s": full, "test_s": test,
                     "exercises": p["exercises"], "exercise_min": ex_min})
    return rows


def print_plan(rows: list[dict], wpm: int = WORDS_PER_MINUTE) -> None:
    """The table of :func:`plan`, as Markdown (pasted into the course guide)."""
    def secs(v: float | None) -> str:
        return "not measured" if v is None else f"{v:.0f} s"

    print(f"| notebook | words | reading (at {wpm} words/min) | run, test mode | "
          "run, full size | exercises (estimated min) | total, estimated |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["missing"]:
            print(f"| {r['name']} | not in this tree | | | | | |")
            continue
        ex = ", ".join(f"{n} {k}" for k, n in sorted(r["exercises"].items())) or "none"
        run_min = (r["full_s"] or 0) / 60
        total = r["read_min"] + r["exercise_min"] + run_min
        print(f"| {r['name']} | {r['words']:,} | {r['read_min']:.0f} min | "
              f"{secs(r['test_s'])} | {secs(r['full_s'])} | {ex} ({r['exercise_min']} min) | "
              f"{total / 60:.1f} h |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", type=Path, default=COURSE, help="the course directory")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("release", help="write the student edition (nbgrader generate_assignment)")
    grade = sub.add_parser("autograde", help="autograde SUBMISSIONS/<student>/<chapter>.ipynb")
    grade.add_argument("submissions", type=Path)
    table = sub.add_parser("plan", help="print the two-week plan's time table (Markdown)")
    table.add_argument("--wpm", type=int, default=WORDS_PER_MINUTE,
                       help="reading speed, words per minute")
    args = parser.parse_args(argv)
    if args.command == "plan":
        print_plan(plan(wpm=args.wpm), wpm=args.wpm)
    elif args.command == "release":
        release(args.course.resolve())
    else:
        autograde(args.submissions.resolve(), args.course.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
