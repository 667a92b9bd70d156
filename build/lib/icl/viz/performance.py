"""Figures of the performance page: step time against the sizes, chapter run times."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..rates import RateFit
from .style import THEORY_STYLE, finish_axes

__all__ = ["plot_chapter_times", "plot_scaling"]

_COLORS = {"H": "#0072B2", "B": "#009E73", "N": "#E69F00", "d": "#D55E00"}


def plot_scaling(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], fits: dict[str, RateFit],
    base: dict[str, int],
):
    """Log-log step time against each size (the others at ``base``), with the fitted lines.

    ``curves[size] = (values, seconds)``; ``fits[size]`` is the fit of
    :func:`icl.perf.fit_exponent`. Each panel marks the base value.
    """
    fig, axes = plt.subplots(1, len(curves), figsize=(3.0 * len(curves), 3.0),
                             sharey=True, squeeze=False)
    for ax, (size, (x, t)) in zip(axes[0], curves.items(), strict=True):
        fit = fits[size]
        ax.loglog(x, 1e3 * np.asarray(t), "o", color=_COLORS.get(size, "k"), label="measured")
        xx = np.geomspace(min(x), max(x), 50)
        ax.loglog(xx, 1e3 * np.exp(fit.intercept) * xx**fit.slope, **THEORY_STYLE,
                  label=f"fit: exponent {fit.slope:.2f} ± {fit.stderr:.2f}")
        ax.axvline(base[size], color="0.6", lw=0.8)
        finish_axes(ax, xlabel=size, ylabel="step time (ms)" if size == next(iter(curves))
                    else None)
    fig.tight_layout()
    return fig


def plot_chapter_times(times: dict):
    """Horizontal bars: the execution time of each chapter (the JSON of book_time.py)."""
    rows = times["notebooks"]
    fig, ax = plt.subplots(figsize=(6.0, 0.4 * len(rows) + 1.0))
    names = [r["notebook"].removesuffix(".ipynb") for r in rows]
    ax.barh(names, [r["seconds"] for r in rows], color="#0072B2")
    ax.invert_yaxis()
    finish_axes(ax, xlabel="seconds", legend=False,
                title=f"{times['mode']} mode, {times['cores']} cores, total "
                      f"{times['total_seconds']:.0f} s")
    fig.tight_layout()
    return fig
