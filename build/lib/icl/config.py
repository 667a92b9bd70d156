"""Run-time configuration: the book's *test mode*.

Setting the environment variable ``ICL_TEST_MODE=1`` (``make test`` does it for every
notebook) shrinks sizes and step counts so that each chapter executes in seconds while
its assertions keep their meaning. The variable is read at call time, never cached, so
a kernel started with it set sees it.
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

ENV_VAR = "ICL_TEST_MODE"
PAPER_ENV_VAR = "ICL_PAPER_SCALE"

_TRUE = {"1", "true", "yes", "on"}


def test_mode() -> bool:
    """Return ``True`` when ``ICL_TEST_MODE`` is set to a true value (``1``, ``true``, ``yes``)."""
    return os.environ.get(ENV_VAR, "").strip().lower() in _TRUE


# pytest would otherwise try to collect the function above when it is imported in a test.
test_mode.__test__ = False  # type: ignore[attr-defined]


def pick(full: T, test: T) -> T:
    """Return ``test`` in test mode and ``full`` otherwise.

    Notebooks use it for every size that decides their run time, e.g.
    ``steps = icl.pick(2000, 200)``.
    """
    return test if test_mode() else full


def paper_scale() -> bool:
    """Return ``True`` when ``ICL_PAPER_SCALE`` is set to a true value and test mode is off.

    The training chapters start with ``PAPER_SCALE = icl.config.paper_scale()``: set the
    variable (``ICL_PAPER_SCALE=1 make book``) or edit that line to run the authors'
    sizes (2000 steps). Test mode wins: a test run never goes to paper scale.
    """
    return not test_mode() and os.environ.get(PAPER_ENV_VAR, "").strip().lower() in _TRUE


def mode_banner() -> str:
    """One line saying which mode this process runs in; every chapter prints it."""
    if test_mode():
        return f"icl: TEST MODE ({ENV_VAR}=1): reduced sizes, same assertions"
    if paper_scale():
        return f"icl: paper scale ({PAPER_ENV_VAR}=1): the authors' sizes in the training chapters"
    return f"icl: full mode ({ENV_VAR} unset): the book's default sizes"
