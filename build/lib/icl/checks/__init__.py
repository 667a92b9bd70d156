"""Self-checks of the exercises: compare a student's answer with the package's reference.

One module per chapter subject (:mod:`icl.checks.task` for chapter 1, …) holds the checks
of that chapter's exercises; this module holds the machinery they share. A check takes the
student's answer (a function, a number, a SymPy expression, a tensor), compares it with the
reference of the package on several random cases drawn from a fixed ``seed``, and

* prints ``correct`` and returns ``True``, or
* prints a specific message (what was expected, what came back, on which input, and a
  hint) and returns ``False``. The message never states the reference answer itself: for a
  wrong number it says *too high* or *too low* and by how much, relatively.

With ``strict=True`` a failed check raises :class:`CheckFailed` (an ``AssertionError``)
with the same message instead of returning ``False``: the autograder's test cells call the
checks that way, so a wrong answer fails the test. Errors raised by the student's own code,
answers of the wrong type or shape and NaNs are caught and explained, never propagated;
the one exception is ``NotImplementedError``, the stub of the student edition, which is
raised again (with a note) so that an exercise not yet done fails as "not implemented".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from icl.validate import check_bool, check_int, check_real

__all__ = [
    "CheckFailed",
    "Mismatch",
    "as_number",
    "call_answer",
    "check_cases",
    "compare_numbers",
    "compare_tensors",
    "finish",
    "relative_gap",
    "run",
]


class CheckFailed(AssertionError):
    """A self-check failed under ``strict=True``; the message says why (never the answer)."""


class Mismatch(Exception):
    """Raised inside a check to stop at the first case that fails; carries the message."""


def finish(name: str, problem: str | None, *, strict: bool) -> bool:
    """Print the verdict of check ``name`` and return it (``strict``: raise on failure)."""
    strict = check_bool("strict", strict)
    if problem is None:
        print(f"{name}: correct")
        return True
    message = f"{name}: not yet. {problem}"
    if strict:
        raise CheckFailed(message)
    print(message)
    return False


def run(name: str, body: Callable[[], None], *, strict: bool) -> bool:
    """Run ``body`` (which raises :class:`Mismatch` at the first failing case) and report."""
    try:
        body()
    except Mismatch as m:
        return finish(name, str(m), strict=strict)
    return finish(name, None, strict=strict)


def call_answer(fn: Any, *args: Any, what: str, on: str) -> Any:
    """Call the student's function ``fn(*args)``; a non-callable or an error becomes a Mismatch.

    ``what`` names the answer (e.g. ``"your function ood_exposure"``), ``on`` the input in
    words; both appear in the message.
    """
    if not callable(fn):
        raise Mismatch(
            f"Expected {what} to be a function, got {_kind(fn)}. Hand in the function itself "
            "(its name, without calling it)."
        )
    try:
        return fn(*args)
    except NotImplementedError:  # the stub of the student edition: the exercise is not done
        raise NotImplementedError(
            f"{what} still raises NotImplementedError: write its body, then run this cell again."
        ) from None
    except Exception as e:  # the student's code: report, never propagate
        raise Mismatch(
            f"{what} raised {type(e).__name__}: {e} (on {on}). Run it on that input yourself "
            "to see where it fails."
        ) from None


def as_number(value: Any, *, what: str, on: str | None = None) -> float:
    """``value`` as a float (int, float, NumPy scalar, 0-d tensor, SymPy number); else Mismatch."""
    where = f" (on {on})" if on else ""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise Mismatch(
                f"Expected {what} to be a single number, got a tensor of shape "
                f"{tuple(value.shape)}{where}."
            )
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or isinstance(value, str):
        raise Mismatch(f"Expected {what} to be a number, got {_kind(value)}{where}.")
    if not isinstance(value, numbers.Real):
        try:  # a SymPy number (or anything with a float value and no free symbol)
            value = float(value)
        except (TypeError, ValueError):
            raise Mismatch(f"Expected {what} to be a number, got {_kind(value)}{where}.") from None
    v = float(value)
    if math.isnan(v):
        raise Mismatch(f"{what} is NaN{where}: look for 0/0, log(0) * 0 or inf - inf.")
    if math.isinf(v):
        raise Mismatch(f"{what} is infinite{where}: look for a division by zero or log(0).")
    return v


def relative_gap(got: float, expected: float) -> float:
    """``(got - expected) / |expected|`` (the absolute gap when ``expected`` is 0)."""
    return (got - expected) / abs(expected) if expected != 0 else got - expected


def compare_numbers(
    got: Any,
    expected: float,
    *,
    what: str,
    on: str,
    rtol: float = 1e-6,
    atol: float = 1e-12,
    hint: str = "",
) -> None:
    """Raise :class:`Mismatch` unless ``got`` is within ``atol + rtol·|expected|`` of ``expected``.

    The message says whether ``got`` is too high or too low and by how much, relatively,
    never ``expected`` itself.
    """
    rtol = check_real("rtol", rtol, low=0)
    atol = check_real("atol", atol, low=0)
    v = as_number(got, what=what, on=on)
    if abs(v - expected) <= atol + rtol * abs(expected):
        return
    gap = relative_gap(v, expected)
    side = "too high" if v > expected else "too low"
    size = f"by {abs(gap):.1%} (relative)" if expected != 0 else f"by {abs(gap):.3g}"
    raise Mismatch(
        f"On {on}, {what} = {v:.6g} is {side} {size}." + (f" Hint: {hint}" if hint else "")
    )


def compare_tensors(
    got: Any,
    expected: torch.Tensor,
    *,
    what: str,
    on: str,
    atol: float = 0.0,
    hint: str = "",
    show_expected: bool = True,
) -> None:
    """Raise :class:`Mismatch` unless ``got`` has the shape of ``expected`` and equals it.

    Entries may differ by ``atol``.
    The message names the first differing entry and the number of differing entries;
    ``show_expected=False`` keeps the reference's entry out of it.
    """
    atol = check_real("atol", atol, low=0)
    if isinstance(got, np.ndarray):
        got = torch.from_numpy(got)
    if not isinstance(got, torch.Tensor):
        raise Mismatch(f"Expected {what} to be a tensor, got {_kind(got)} (on {on}).")
    if tuple(got.shape) != tuple(expected.shape):
        raise Mismatch(
            f"Expected {what} of shape {tuple(expected.shape)}, got shape {tuple(got.shape)} "
            f"(on {on})." + (f" Hint: {hint}" if hint else "")
        )
    g, e = got.detach().cpu().double(), expected.detach().cpu().double()
    if torch.isnan(g).any():
        raise Mismatch(f"{what} holds NaN (on {on}), at index {_first(torch.isnan(g))}.")
    bad = (g - e).abs() > atol
    if not bad.any():
        return
    i = _first(bad)
    shown = f", expected {_entry(expected, i)}" if show_expected else ""
    raise Mismatch(
        f"On {on}, {what} differs in {int(bad.sum())} of {bad.numel()} entries; the first is "
        f"index {i}: got {_entry(got, i)}{shown}." + (f" Hint: {hint}" if hint else "")
    )


def check_cases(name: str, value: Any) -> int:
    """The number of random cases a check runs: an integer in ``[1, 1000]``."""
    return check_int(name, value, minimum=1, maximum=1000)


def _first(mask: torch.Tensor) -> tuple[int, ...] | int:
    idx = tuple(int(i) for i in mask.nonzero()[0])
    return idx[0] if len(idx) == 1 else idx


def _entry(t: torch.Tensor, i: tuple[int, ...] | int) -> str:
    v = t[i].item()
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _kind(value: Any) -> str:
    if value is None:
        return "None (did the function forget to `return`?)"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"a {type(value).__name__} of length {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
