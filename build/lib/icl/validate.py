"""Input checks shared by every module of :mod:`icl` (the bottom layer: it imports no ``icl``).

Each checker takes the parameter's *name* and its *value*, returns the value in a
canonical type, and otherwise raises an error that names the parameter, shows the value
received and says what is allowed:

* :class:`InvalidTypeError` for a value of the wrong type (a string for a number, a bool
  for an integer). It is both a ``TypeError`` and a ``ValueError``, so callers may catch
  either;
* ``ValueError`` for a value of the right type outside the allowed set (NaN, ``α = 1``,
  a negative size, an unknown choice).

Size guards (:func:`check_budget`) refuse work that cannot finish on a laptop *before*
anything is allocated; every guarded function takes a keyword to raise the limit.
The related-results subpackages (``icl.lsa``, ``icl.classification``) use the same
checkers, so a reader meets one style of message across the book.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_MAX_STEPS",
    "InvalidTypeError",
    "PrecisionWarning",
    "check_bool",
    "check_budget",
    "check_choice",
    "check_finite_array",
    "check_float_dtype",
    "check_generator",
    "check_instance",
    "check_int",
    "check_int_array",
    "check_optional_bool",
    "check_probability",
    "check_real",
    "check_seed",
    "check_tensor",
    "check_window",
    "describe_call",
]

#: memory a single call may ask for unless the caller raises it (2 GiB)
DEFAULT_MAX_BYTES = 2 * 1024**3
#: loop length (steps, samples) a single call may ask for unless the caller raises it
DEFAULT_MAX_STEPS = 10_000_000


class InvalidTypeError(TypeError, ValueError):
    """A parameter of the wrong type. Both a ``TypeError`` and a ``ValueError``."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer (Python or NumPy; never a bool) in ``[minimum, maximum]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be an integer, got {_show(value)}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float:
    """A real number (int, float, NumPy scalar or 0-d tensor; never a bool or a string).

    ``low``/``high`` bound it (open ends with ``low_open``/``high_open``); NaN is always
    refused, infinities unless ``finite=False``.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dim() != 0:
            raise InvalidTypeError(
                f"{name} must be a number, got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidTypeError(f"{name} must be a real number, got {_show(value)}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got NaN")
    if finite and math.isinf(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        raise ValueError(f"{name} must {_range_text(low, high, low_open, high_open)}, got {v:g}")
    return v


def _range_text(
    low: float | None, high: float | None, low_open: bool, high_open: bool
) -> str:
    """``lie in [0, 1)``, ``be positive``, ``be >= 1``, …: what a range allows, in words."""
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"lie in {left}{low:g}, {high:g}{right}"
    if low is not None:
        if low == 0:
            return "be positive" if low_open else "be non-negative"
        return f"be {'>' if low_open else '>='} {low:g}"
    return f"be {'<' if high_open else '<='} {high:g}"


def check_probability(
    name: str, value: Any, *, allow_zero: bool = True, allow_one: bool = False
) -> float:
    """A probability: in ``[0, 1)`` by default; ``allow_zero``/``allow_one`` close the ends."""
    return check_real(
        name, value, low=0.0, high=1.0, low_open=not allow_zero, high_open=not allow_one
    )


def check_bool(name: str, value: Any) -> bool:
    """A ``bool`` (or NumPy bool): not an int, not a string such as ``"no"``."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidTypeError(f"{name} must be True or False, got {_show(value)}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (compared with ``==``; strings must match exactly)."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return value
    raise ValueError(f"{name} must be one of {tuple(choices)}, got {_show(value)}")


def check_seed(name: str, value: Any) -> int:
    """A seed for ``torch.Generator.manual_seed``: an integer in ``[0, 2**63)``."""
    return check_int(name, value, minimum=0, maximum=2**63 - 1)


def check_generator(name: str, value: Any) -> torch.Generator:
    """A ``torch.Generator``."""
    if not isinstance(value, torch.Generator):
        raise InvalidTypeError(f"{name} must be a torch.Generator, got {type(value).__name__}")
    return value


_KINDS = {
    "int": (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8),
    "float": (torch.float64, torch.float32, torch.float16, torch.bfloat16),
}


def check_tensor(
    name: str,
    value: Any,
    *,
    ndim: int | None = None,
    shape: Sequence[int | None] | None = None,
    kind: str | None = None,
    low: float | None = None,
    high: float | None = None,
    finite: bool = False,
) -> torch.Tensor:
    """A ``torch.Tensor`` with the given number of dimensions, shape (``None`` = any size
    on that axis), dtype kind (``"int"`` or ``"float"``), value range and finiteness."""
    if not isinstance(value, torch.Tensor):
        raise InvalidTypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if shape is not None:
        ndim = len(shape)
    if ndim is not None and value.dim() != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimension(s), got shape {tuple(value.shape)}"
        )
    if shape is not None:
        for axis, (want, got) in enumerate(zip(shape, value.shape, strict=True)):
            if want is not None and want != got:
                expected = tuple("any" if s is None else s for s in shape)
                raise ValueError(
                    f"{name} must have shape {expected}, got {tuple(value.shape)} "
                    f"(axis {axis})"
                )
    if kind is not None and value.dtype not in _KINDS[kind]:
        raise InvalidTypeError(f"{name} must be an {kind} tensor, got dtype {value.dtype}")
    if value.numel():
        if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} must be finite everywhere, got NaN or inf entries")
        if low is not None and float(value.min()) < low:
            raise ValueError(f"{name} must be >= {low:g}, got a minimum of {float(value.min()):g}")
        if high is not None and float(value.max()) > high:
            raise ValueError(f"{name} must be <= {high:g}, got a maximum of {float(value.max()):g}")
    return value


def check_finite_array(
    name: str, value: Any, *, low: float | None = None, high: float | None = None
) -> np.ndarray:
    """Numbers (scalar, list, array or tensor) as a float64 NumPy array, all finite and in
    ``[low, high]``. Strings and bools are refused."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not (isinstance(value, np.ndarray) and value.dtype.kind in "iuf"):
        # lists, scalars, object arrays: look at every item (a numeric array needs no look)
        items: Iterable[Any] = np.ravel(np.asarray(value, dtype=object))
        for x in items:
            if isinstance(x, (bool, np.bool_, str, bytes)) or not isinstance(x, numbers.Real):
                raise InvalidTypeError(f"{name} must hold real numbers, got {_show(value)}")
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {_show(value)}")
    if low is not None and arr.size and arr.min() < low:
        raise ValueError(f"{name} must be >= {low:g}, got a minimum of {arr.min():g}")
    if high is not None and arr.size and arr.max() > high:
        raise ValueError(f"{name} must be <= {high:g}, got a maximum of {arr.max():g}")
    return arr


def check_budget(
    name: str, amount: float, limit: float, *, unit: str = "bytes", keyword: str = "max_bytes"
) -> None:
    """Refuse a call whose size ``amount`` (bytes, steps, samples) exceeds ``limit``.

    The message names the parameter that decided the size and the keyword that raises
    the limit, so an expert with a large machine can go on.
    """
    if amount > limit:
        shown = (
            f"{amount / 1024**3:.1f} GiB" if unit == "bytes" else f"{amount:,.0f} {unit}"
        )
        cap = f"{limit / 1024**3:.1f} GiB" if unit == "bytes" else f"{limit:,.0f} {unit}"
        raise ValueError(
            f"{name} asks for {shown}, above the limit of {cap}; pass {keyword}=... to "
            "raise the limit if your machine can take it"
        )


# ------------------------------------------------------------------ added for issue 11
#: sequences a Monte-Carlo estimate may draw unless the caller raises it
DEFAULT_MAX_SAMPLES = 100_000_000


class PrecisionWarning(UserWarning):
    """A quantity the chosen floating-point type cannot represent (the remedy: float64)."""


def check_instance(name: str, value: Any, cls: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is an instance of ``cls`` (``what`` names the type in the message)."""
    if not isinstance(value, cls):
        raise InvalidTypeError(f"{name} must be {what}, got {_show_type(value)}")
    return value


def _show_type(value: Any) -> str:
    """``'x' (str)``, ``None``, ``a Tensor of shape (8, 16)``: what a wrong value is."""
    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (str, bytes, numbers.Number)):
        return f"{_show(value)} ({type(value).__name__})"
    return f"a {type(value).__name__}"


def check_optional_bool(name: str, value: Any) -> bool | None:
    """``None`` or a ``bool``."""
    return None if value is None else check_bool(name, value)


def check_float_dtype(name: str, value: Any) -> torch.dtype:
    """A floating-point ``torch.dtype`` (``torch.float32``, ``torch.float64``, …)."""
    if not isinstance(value, torch.dtype):
        raise InvalidTypeError(
            f"{name} must be a torch dtype such as torch.float32 or torch.float64, got "
            f"{_show_type(value)}"
        )
    if not value.is_floating_point:
        raise ValueError(f"{name} must be a floating-point dtype, got {value}")
    return value


def check_int_array(name: str, value: Any, *, minimum: int | None = None) -> np.ndarray:
    """Integers (scalar, list, array or tensor; never bools) as an int64 NumPy array, each
    ``>= minimum``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(f"{name} must hold integers, got {_show(value)}")
    arr = np.asarray(value)
    if arr.dtype.kind == "O":
        items = list(np.ravel(arr))
        if not all(
            isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_)) for x in items
        ):
            raise InvalidTypeError(f"{name} must hold integers, got {_show(value)}")
        arr = np.asarray(items, dtype=np.int64).reshape(arr.shape)
    elif arr.dtype.kind not in "iu":
        raise InvalidTypeError(f"{name} must hold integers, got {_show(value)}")
    arr = arr.astype(np.int64)
    if minimum is not None and arr.size and arr.min() < minimum:
        raise ValueError(f"{name} must hold integers >= {minimum}, got a minimum of {arr.min()}")
    return arr


def check_window(name: str, value: Any) -> tuple[float, float] | None:
    """``None`` or a pair ``(low, high)`` of finite reals with ``low < high``."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise InvalidTypeError(f"{name} must be a pair (low, high) or None, got {_show(value)}")
    lo = check_real(f"{name}[0]", value[0])
    hi = check_real(f"{name}[1]", value[1])
    if not lo < hi:
        raise ValueError(f"{name} must be (t_min, t_max) with t_min < t_max, got {_show(value)}")
    return lo, hi


def describe_call(call: Any) -> str:
    """Run ``call()`` and say what happened, for the book's page of common mistakes:
    ``"ValueError: alpha must lie in [0, 1), got 1"``, ``"returned 0.5"``, or
    ``"returned 0.5 with PrecisionWarning: ..."`` when the call warned."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = call()
        except (ValueError, TypeError, IndexError) as exc:
            kind = "InvalidTypeError" if isinstance(exc, InvalidTypeError) else type(exc).__name__
            return f"{kind}: {exc}"
    shown = _show(value) if isinstance(value, (numbers.Number, str, bool)) else type(value).__name__
    if caught:
        w = caught[0]
        return f"returned {shown}, with {w.category.__name__}: {w.message}"
    return f"returned {shown}"
