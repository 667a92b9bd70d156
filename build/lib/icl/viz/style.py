"""One style for every figure of the book: the palette, reference lines, seed bands.

Every figure module under ``icl.viz`` (and the related-results subpackages) draws with
these pieces, so a token role, a theory curve or a spread over seeds looks the same in
every chapter. Colours are the colour-blind-safe Okabe–Ito hues.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

__all__ = [
    "BAYES_STYLE",
    "ROLE_COLORS",
    "ROLE_LABELS",
    "THEORY_STYLE",
    "band",
    "bayes_line",
    "finish_axes",
    "loss_panel",
    "positive",
]

#: one colour per token role, keyed as :meth:`icl.RecallTask.roles` names the roles
ROLE_COLORS: dict[str, str] = {
    "triggers": "#0072B2",
    "outputs": "#009E73",
    "ood_outputs": "#999999",
    "noise_token": "#D55E00",
    "filler": "#E4E4E4",
    "other_trigger": "#E69F00",
}

#: the legend text of each role
ROLE_LABELS: dict[str, str] = {
    "triggers": "trigger q",
    "outputs": "clean output y",
    "ood_outputs": "unseen outputs",
    "noise_token": "noise token τ",
    "filler": "filler",
    "other_trigger": "other trigger q′",
}

#: a theory curve drawn beside a measurement
THEORY_STYLE: dict[str, object] = {"color": "k", "ls": "--", "lw": 1.2}
#: the Bayes risk (or any other floor the loss should reach)
BAYES_STYLE: dict[str, object] = {"color": "k", "ls": ":", "lw": 1.2}


def positive(t, y) -> tuple[np.ndarray, np.ndarray]:
    """The points of ``(t, y)`` with ``y > 0`` (what a log axis can show)."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = y > 0
    return t[keep], y[keep]


def bayes_line(ax: Axes, value: float, label: str | None = r"$H_b(\alpha)$") -> None:
    """A horizontal reference line at the Bayes risk (or another floor)."""
    ax.axhline(value, label=label, **BAYES_STYLE)


def band(
    ax: Axes,
    x: Sequence[float],
    runs: np.ndarray,
    *,
    color: str | None = None,
    label: str | None = None,
    log: bool = False,
    spread: str = "minmax",
    **line_kw,
):
    """Mean over runs (rows of ``runs``, e.g. seeds) as a line, their spread as a band.

    ``spread="minmax"`` shades the range over runs; ``"std"`` shades mean ± one standard
    deviation. With ``log=True`` the mean is geometric and the axis logarithmic.
    Returns the line, so a caller can reuse its colour.
    """
    if spread not in ("minmax", "std"):
        raise ValueError(f"spread must be 'minmax' or 'std', got {spread!r}")
    if isinstance(runs, (str, bytes)) or isinstance(x, (str, bytes)):
        raise TypeError(f"x and runs must hold numbers, got x={x!r}, runs={runs!r}")
    y = np.atleast_2d(np.asarray(runs, dtype=np.float64))
    x = np.asarray(x, dtype=np.float64)
    if y.shape[1] != x.shape[0]:
        raise ValueError(
            f"runs must have one column per x value ({x.shape[0]}), got shape {y.shape}"
        )
    if spread not in ("minmax", "std"):
        raise ValueError(f"spread must be 'minmax' or 'std', got {spread!r}")
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            ly = np.log(np.where(y > 0, y, np.nan))
        mid = np.exp(np.nanmean(ly, axis=0))
        lo, hi = (
            (np.nanmin(y, axis=0), np.nanmax(y, axis=0))
            if spread == "minmax"
            else (np.exp(np.nanmean(ly, 0) - np.nanstd(ly, 0)),
                  np.exp(np.nanmean(ly, 0) + np.nanstd(ly, 0)))
        )
        ax.set_yscale("log")
    else:
        mid = y.mean(axis=0)
        lo, hi = (
            (y.min(axis=0), y.max(axis=0))
            if spread == "minmax"
            else (mid - y.std(axis=0), mid + y.std(axis=0))
        )
    (line,) = ax.plot(x, mid, color=color, label=label, **line_kw)
    if y.shape[0] > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return line


def finish_axes(
    ax: Axes,
    *,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    legend: bool = True,
    fontsize: float = 8,
) -> None:
    """Labels, a light grid and a legend: the last lines of every panel."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize)


def loss_panel(
    ax: Axes,
    steps: Sequence[float],
    losses: np.ndarray,
    *,
    bayes: float | None = None,
    excess: bool = False,
    label: str | None = None,
    color: str | None = None,
    **line_kw,
):
    """A loss curve against the training step: the one panel every training figure draws.

    ``losses`` is one run (1-D) or several (rows, e.g. seeds: mean and spread via
    :func:`band`). With ``excess=True`` the curve is ``loss - bayes`` on a log axis (a
    linear rate is then a straight line); otherwise the loss itself, with the Bayes risk
    ``bayes`` as a reference line. Returns the line.
    """
    y = np.asarray(losses, dtype=np.float64)
    if excess:
        if bayes is None:
            raise ValueError("excess=True needs the Bayes risk: pass bayes=...")
        y = y - bayes
    if y.ndim == 1:
        t, v = positive(steps, y) if excess else (np.asarray(steps, dtype=np.float64), y)
        (line,) = ax.plot(t, v, color=color, label=label, **line_kw)
        if excess:
            ax.set_yscale("log")
    else:
        line = band(ax, steps, y, color=color, label=label, log=excess, **line_kw)
    if bayes is not None and not excess:
        bayes_line(ax, bayes, label=None)
    return line
