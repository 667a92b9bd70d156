"""Fitting convergence rates: shared by every chapter that measures one.

A linear (geometric) rate means ``L_t - H_b(α) ≈ C e^{-c t}``: a straight line of slope
``-c`` when the excess risk is drawn on a log scale against the step. :func:`fit_rate`
fits that slope by least squares over a window and reports its standard error, so a
notebook can assert that the measured slope agrees with the predicted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .validate import InvalidTypeError, check_finite_array, check_real, check_window

__all__ = ["RateFit", "fit_power", "fit_rate"]


@dataclass(frozen=True)
class RateFit:
    """Least-squares fit ``log(excess) ≈ intercept + slope · t`` over ``n`` points."""

    slope: float
    stderr: float
    intercept: float
    n: int
    t_min: float
    t_max: float

    def z_score(self, predicted: float) -> float:
        """``(slope - predicted) / stderr`` (``inf`` when the fit is exact and differs)."""
        diff = self.slope - check_real("predicted", predicted)
        if self.stderr == 0:
            return 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return diff / self.stderr

    def agrees_with(self, predicted: float, n_sigma: float = 3.0, rel_tol: float = 0.0) -> bool:
        """``|slope - predicted| ≤ n_sigma · stderr + rel_tol · |predicted|``."""
        predicted = check_real("predicted", predicted)
        n_sigma = check_real("n_sigma", n_sigma, low=0.0)
        rel_tol = check_real("rel_tol", rel_tol, low=0.0)
        return abs(self.slope - predicted) <= n_sigma * self.stderr + rel_tol * abs(predicted)

    def line(self, t) -> np.ndarray:
        """The fitted excess ``exp(intercept + slope t)``."""
        return np.exp(self.intercept + self.slope * check_finite_array("t", t))


def fit_rate(
    steps,
    losses,
    bayes: float,
    *,
    window: tuple[float, float] | None = None,
    min_excess: float = 1e-7,
) -> RateFit:
    """Fit the slope of ``log(loss - bayes)`` against the step.

    Parameters
    ----------
    steps, losses
        Matching 1-D sequences (e.g. ``History.steps`` and ``History.array("loss")``).
    bayes
        The Bayes risk ``H_b(α)`` to subtract.
    window
        ``(t_min, t_max)``: only steps in this closed range are used (default: all).
    min_excess
        Points whose excess is below this are dropped: they sit at the floating-point
        resolution of the loss, where the logarithm is noise.
    """
    t = check_finite_array("steps", steps)
    y = _real_array("losses", losses)
    if t.ndim != 1 or t.shape != y.shape:
        raise ValueError(
            f"steps and losses must be 1-D of equal length, got {t.shape} and {y.shape}"
        )
    bayes = check_real("bayes", bayes)
    min_excess = check_real("min_excess", min_excess, low=0.0, low_open=True)
    window = check_window("window", window)
    keep = (y - bayes) > min_excess
    if window is not None:
        lo, hi = window
        keep &= (t >= lo) & (t <= hi)
    if keep.sum() < 3:
        raise ValueError(
            f"need at least 3 points with excess > {min_excess} in the window to fit a rate, "
            f"got {int(keep.sum())}"
        )
    tt, ly = t[keep], np.log(y[keep] - bayes)
    A = np.stack([np.ones_like(tt), tt], axis=1)
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - A @ coef
    n = len(tt)
    sigma2 = float(resid @ resid) / (n - 2)
    cov = sigma2 * np.linalg.inv(A.T @ A)
    return RateFit(
        slope=float(coef[1]),
        stderr=float(math.sqrt(max(cov[1, 1], 0.0))),
        intercept=float(coef[0]),
        n=n,
        t_min=float(tt.min()),
        t_max=float(tt.max()),
    )




def fit_power(
    steps,
    losses,
    bayes: float,
    *,
    window: tuple[float, float] | None = None,
    min_excess: float = 1e-7,
) -> RateFit:
    """Fit the exponent of a *power law* ``loss - bayes ≈ c t^{slope}`` (a sublinear rate).

    The same least squares as :func:`fit_rate`, with ``log t`` in place of ``t``: the
    returned :class:`RateFit` holds the exponent as ``slope`` (``-1`` for an ``O(1/t)``
    excess) and ``intercept = log c``; ``t_min``/``t_max`` are steps. Steps ``≤ 0`` are
    dropped (``log 0``). A geometric rate has no fixed exponent: over a window
    ``[t_0, t_1]`` its fitted exponent is about ``-c (t_1 - t_0)/log(t_1/t_0)``.
    """
    t = np.asarray(steps, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"steps must be 1-D, got shape {t.shape}")
    y = np.asarray(losses, dtype=np.float64)
    if y.shape != t.shape:
        raise ValueError(
            f"steps and losses must be 1-D of equal length, got {t.shape} and {y.shape}"
        )
    keep = t > 0
    if window is not None and not 0 < window[0] < window[1]:
        raise ValueError(f"window must be (t_min, t_max) with 0 < t_min < t_max, got {window}")
    fit = fit_rate(
        np.log(t[keep]),
        y[keep],
        bayes,
        window=None if window is None else (math.log(window[0]), math.log(window[1])),
        min_excess=min_excess,
    )
    return RateFit(
        slope=fit.slope,
        stderr=fit.stderr,
        intercept=fit.intercept,
        n=fit.n,
        t_min=math.exp(fit.t_min),
        t_max=math.exp(fit.t_max),
    )
def _real_array(name: str, value) -> np.ndarray:
    """Real numbers as float64 (NaN and inf allowed: a diverged loss is dropped by the fit);
    strings and bools refused."""
    if isinstance(value, (str, bytes)):
        raise InvalidTypeError(f"{name} must hold real numbers, got {value!r}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        raise InvalidTypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64)
