"""Write the student edition of the chapters: exercises kept, solutions removed.

Usage (from the repository root)::

    .venv/bin/python tools/make_student.py                 # into _build/student/
    .venv/bin/python tools/make_student.py --out DIR

The instructor's notebooks in ``notebooks/`` are the only source. In the student copy

* every ```` ```{solution} ```` block of a markdown cell is replaced by a one-line note;
* the code cell that checks a solution (the code cell right after a markdown cell that
  held a solution, or any code cell tagged ``solution``) becomes a stub that raises
  ``NotImplementedError``, for the student to replace;
* everything else, the set-up cell included, is unchanged.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent

# A solution directive: an opening fence of three or more backticks followed by
# {solution}, up to the matching closing fence alone on its line.
SOLUTION_BLOCK = re.compile(r"^(`{3,})\{solution\}.*?^\1[ \t]*$\n?", re.MULTILINE | re.DOTALL)
REMOVED_NOTE = "*(The solution is in the instructor's edition of this chapter.)*\n"
STUB = (
    "# Exercise: your answer here. The instructor's edition checks it in this cell.\n"
    'raise NotImplementedError("exercise: replace this cell with your solution")'
)


def strip_solutions(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int, int]:
    """Return ``(student notebook, solutions removed, code cells stubbed)``; ``nb`` is untouched."""
    out = nbformat.from_dict(nb)  # a deep copy
    removed = stubbed = 0
    after_solution = False
    for cell in out.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "markdown":
            new, n = SOLUTION_BLOCK.subn(REMOVED_NOTE, cell.source)
            cell.source, removed = new, removed + n
            after_solution = n > 0
        elif cell.cell_type == "code":
            if after_solution or "solution" in tags:
                cell.source = STUB
                cell.outputs, cell.execution_count = [], None
                stubbed += 1
            after_solution = False
    return out, removed, stubbed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        student, removed, stubbed = strip_solutions(nbformat.read(path, as_version=4))
        nbformat.write(student, args.out / path.name)
        print(f"{path.name}: {removed} solution(s) removed, {stubbed} check cell(s) stubbed")
    print(f"student edition written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
