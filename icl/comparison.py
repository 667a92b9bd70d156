"""The book's comparison of its results: the recall row and the table (bottom layer).

Every chapter of the book answers two questions for one task: *what does training
converge to?* and *how fast?* The closing section of chapter R1 puts the answers side by
side in one table. Each result keeps its row beside its own code, in the book's words:

* the recall task (chapters 3–5): :data:`RECALL_ROW`, here;
* linear self-attention (chapter R1): ``icl.lsa.COMPARISON_ROW``;
* in-context classification (chapter R2): ``icl.classification.COMPARISON_ROW``.

The related-results subpackages may not import this module (they are self-contained), so
:func:`comparison_table` checks that every row has exactly the keys of :data:`COLUMNS`.
A row's text is Markdown (it may hold ``$...$`` mathematics) without ``|`` or newlines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .validate import InvalidTypeError

__all__ = ["COLUMNS", "RECALL_ROW", "comparison_table"]

#: the keys of a row and the heading each gets in the table, in order; ``result`` names
#: the result (the table's column heading)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("result", "result"),
    ("task", "task"),
    ("model", "model"),
    ("optimum", "what the optimum is"),
    ("gd_converges_to", "what training converges to"),
    ("rate", "how fast"),
    ("generalises", "what generalises"),
)

#: The recall task's row, what chapters 3–5 establish, in the book's words.
RECALL_ROW: dict[str, str] = {
    "result": "in-context recall (chapters 3–5; Nguyen & Nguyen-Tang)",
    "task": "recall the token $y$ that followed the trigger $q$ in the context; the noise "
            "token $\\tau$ follows instead with probability $\\alpha$",
    "model": "one layer, linear / ReLU / softmax attention and a feed-forward path; "
             "`reparam` (one scale $\\Lambda$), `reparam_w`, `origin`",
    "optimum": "Bayes-optimal: $(1-\\alpha)\\delta_y + \\alpha\\delta_\\tau$, risk "
               "$H_b(\\alpha)$, approached as $\\Lambda \\to \\infty$ (an infimum, not "
               "attained) [P; D]",
    "gd_converges_to": "normalised GD: $\\Lambda_t = \\eta t$ exactly, loss $\\to "
                       "H_b(\\alpha)$; full networks approach it in distribution [P; D; E]",
    "rate": "linear (geometric): excess $\\approx (N-2)(1-\\alpha)e^{-\\eta t}$; plain GD "
            "only $O(1/t)$ [P; D]",
    "generalises": "unseen output tokens exactly (reparameterised models); full-matrix "
                   "models do not; a test-time change of $\\alpha$ does not [P; D]",
}


def _check_row(i: int, row: Any) -> Mapping[str, str]:
    if not isinstance(row, Mapping):
        raise InvalidTypeError(f"rows[{i}] must be a mapping of column to text, "
                               f"got {type(row).__name__}")
    keys = [k for k, _ in COLUMNS]
    missing = [k for k in keys if k not in row]
    extra = [k for k in row if k not in keys]
    if missing or extra:
        raise ValueError(f"rows[{i}] must have exactly the keys {keys}; missing {missing}, "
                         f"unexpected {extra}")
    for k in keys:
        v = row[k]
        if not isinstance(v, str):
            raise InvalidTypeError(f"rows[{i}][{k!r}] must be a str, got {type(v).__name__}")
        if not v.strip() or "|" in v or "\n" in v:
            raise ValueError(f"rows[{i}][{k!r}] must be non-empty text without '|' or "
                             f"newlines, got {v!r}")
    return row


def comparison_table(rows: Sequence[Mapping[str, str]]) -> str:
    """The Markdown table of ``rows``: one column per result (headed by its ``result``),
    one line per other key of :data:`COLUMNS`."""
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise InvalidTypeError(f"rows must be a sequence of rows (mappings), "
                               f"got {type(rows).__name__}")
    if not rows:
        raise ValueError("rows must hold at least one row, got an empty sequence")
    checked = [_check_row(i, r) for i, r in enumerate(rows)]
    lines = ["| | " + " | ".join(r["result"] for r in checked) + " |",
             "|---|" + "---|" * len(checked)]
    for key, heading in COLUMNS[1:]:
        lines.append(f"| {heading} | " + " | ".join(r[key] for r in checked) + " |")
    return "\n".join(lines)
