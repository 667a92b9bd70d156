"""The student edition: solutions removed, checks stubbed, nothing else touched."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools.make_student import STUB, main, strip_solutions

ALL_NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
# the chapters (numbered); the Reference notebooks (e.g. performance) have no exercises
NOTEBOOKS = [p for p in ALL_NOTEBOOKS if p.name[0].isdigit()]


def _toy() -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        code("import icl"),
        md(
            "```{exercise}\n:label: e1\nDo it.\n```\n\n"
            "```{solution} e1\n:class: dropdown\n\nSECRET\n```"
        ),
        code("assert 1 + 1 == 2  # the check"),
        md("Prose, not a solution."),
        code("print('kept')"),
        md("````{solution} e2\nSECRET TWO with ```code``` inside\n````\nafter"),
        md("A markdown cell in between"),
        code("print('also kept')"),
    ]
    return nb


def test_toy_notebook():
    nb = _toy()
    student, removed, stubbed = strip_solutions(nb)
    text = "\n".join(c.source for c in student.cells)
    assert removed == 2 and stubbed == 1
    assert "SECRET" not in text and "{solution}" not in text
    assert "{exercise}" in text and "Do it." in text and "after" in text
    assert student.cells[2].source == STUB
    assert [c.source for c in student.cells[3:5]] == ["Prose, not a solution.", "print('kept')"]
    assert student.cells[7].source == "print('also kept')"
    assert "SECRET" in nb.cells[1].source  # the instructor's notebook is untouched


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters(path):
    nb = nbformat.read(path, as_version=4)
    student, removed, stubbed = strip_solutions(nb)
    n_solutions = sum(c.source.count("{solution}") for c in nb.cells if c.cell_type == "markdown")
    assert removed == n_solutions > 0, "every chapter has exercises with solutions"
    assert not any("{solution}" in c.source for c in student.cells)
    assert sum(c.source == STUB for c in student.cells) == stubbed
    assert student.cells[0].source == nb.cells[0].source  # title kept
    assert len(student.cells) == len(nb.cells)


def test_command_writes_every_chapter(tmp_path):
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == [p.name for p in ALL_NOTEBOOKS]
