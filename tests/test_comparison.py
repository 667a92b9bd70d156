"""The book's comparison table: one row per result, each kept beside its own code."""

from __future__ import annotations

import pytest

from icl import classification, comparison, lsa
from icl.validate import InvalidTypeError

ROWS = [comparison.RECALL_ROW, lsa.COMPARISON_ROW, classification.COMPARISON_ROW]
KEYS = [k for k, _ in comparison.COLUMNS]


@pytest.mark.parametrize("row", ROWS, ids=["recall", "lsa", "classification"])
def test_every_row_has_exactly_the_columns(row):
    assert list(row) == KEYS
    assert all(isinstance(v, str) and v.strip() and "|" not in v for v in row.values())


def test_table_has_one_column_per_result_and_one_line_per_question():
    table = comparison.comparison_table(ROWS)
    lines = table.splitlines()
    assert len(lines) == 2 + len(KEYS) - 1
    assert all(line.count("|") == len(ROWS) + 2 for line in lines)
    assert lines[0].split("|")[2].strip() == comparison.RECALL_ROW["result"]
    assert lsa.COMPARISON_ROW["optimum"] in lines[1 + KEYS.index("optimum")]


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="rows must hold at least one row"):
        comparison.comparison_table([])
    with pytest.raises(InvalidTypeError, match="rows must be a sequence"):
        comparison.comparison_table(comparison.RECALL_ROW)
    with pytest.raises(InvalidTypeError, match=r"rows\[1\] must be a mapping"):
        comparison.comparison_table([comparison.RECALL_ROW, "lsa"])
    short = {k: v for k, v in comparison.RECALL_ROW.items() if k != "rate"}
    with pytest.raises(ValueError, match=r"rows\[0\] must have exactly the keys.*'rate'"):
        comparison.comparison_table([short])
    with pytest.raises(ValueError, match=r"rows\[0\]\['task'\] must be non-empty text"):
        comparison.comparison_table([dict(comparison.RECALL_ROW, task="a | b")])
    with pytest.raises(InvalidTypeError, match=r"rows\[0\]\['rate'\] must be a str"):
        comparison.comparison_table([dict(comparison.RECALL_ROW, rate=1.0)])
