"""Make every chapter notebook carry the canonical set-up cell and commit-ready metadata.

Usage (from the repository root, in the project's venv)::

    .venv/bin/python tools/sync_setup_cell.py                  # all notebooks/*.ipynb
    .venv/bin/python tools/sync_setup_cell.py notebooks/01_task.ipynb
    .venv/bin/python tools/sync_setup_cell.py --check          # report only, exit 1 if stale

For each notebook it
  * replaces the source and tags of the first code cell by ``tools.setup_cell.SETUP_CELL``
    (a code cell is inserted at the top if the notebook has none);
  * strips every output and execution count (notebooks are committed without outputs:
    the book build produces them);
  * sets the kernelspec to ``python3`` and the Colab name to the file name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.setup_cell import ROOT, SETUP_CELL, SETUP_CELL_TAGS  # noqa: E402

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def normalise(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Apply the set-up cell, strip outputs, fix metadata; returns ``nb`` (modified)."""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    if code_cells:
        first = code_cells[0]
    else:
        first = nbformat.v4.new_code_cell()
        nb.cells.insert(0, first)
    first.source = SETUP_CELL
    tags = [t for t in first.metadata.get("tags", []) if t not in SETUP_CELL_TAGS]
    first.metadata["tags"] = SETUP_CELL_TAGS + tags
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            for key in ("execution", "collapsed", "scrolled"):
                cell.metadata.pop(key, None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.setdefault("language_info", {"name": "python"})
    colab = dict(nb.metadata.get("colab", {}))
    colab["name"] = name
    colab.setdefault("provenance", [])
    nb.metadata["colab"] = colab
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    stale = []
    for path in paths:
        before = path.read_text(encoding="utf-8")
        nb = normalise(nbformat.reads(before, as_version=4), path.name)
        after = nbformat.writes(nb) + "\n"
        if after != before:
            stale.append(path)
            if not args.check:
                path.write_text(after, encoding="utf-8")
    verb = "stale" if args.check else "rewritten"
    for path in stale:
        print(f"{verb}: {path}")
    print(f"{len(paths)} notebook(s), {len(stale)} {verb}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
