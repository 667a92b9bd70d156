"""Figures of the LSA chapter, drawn with the book's shared style (:mod:`icl.viz.style`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from ..validate import check_finite_array
from ..viz.style import BAYES_STYLE, THEORY_STYLE, band, finish_axes

__all__ = ["plot_eta_sweeps", "plot_gamma", "plot_training", "plot_shift"]


def _log_x(ax: Axes, ticks: Sequence[float]) -> None:
    """A logarithmic x axis labelled at ``ticks`` with plain numbers."""
    ax.set_xscale("log")
    ax.set_xticks(list(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_eta_sweeps(
    sigma2: Sequence[float],
    eta_sigma: np.ndarray,
    curve_sigma: tuple[np.ndarray, np.ndarray],
    ns: Sequence[int],
    eta_n: np.ndarray,
    curve_n: tuple[np.ndarray, np.ndarray],
) -> Figure:
    """``η̂`` of trained models against ``σ²`` (left) and ``n`` (right), every seed as a
    point and the mean as a line, with the curve ``η*`` (dashed)."""
    s = check_finite_array("sigma2", sigma2)
    n = check_finite_array("ns", ns)
    es = np.atleast_2d(check_finite_array("eta_sigma", eta_sigma))
    en = np.atleast_2d(check_finite_array("eta_n", eta_n))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, x, runs, curve, xlabel in ((axes[0], s, es, curve_sigma, r"noise $\sigma^2$"),
                                       (axes[1], n, en, curve_n, r"examples $n$")):
        ax.plot(*curve, label=r"$\eta^\star$ (the book's derivation)", **THEORY_STYLE)
        line = band(ax, x, runs, marker="o", ls="none", label=r"trained $\hat\eta$ (mean)")
        for row in runs:
            ax.plot(x, row, ".", color=line.get_color(), alpha=0.5, ms=4)
        finish_axes(ax, xlabel=xlabel, ylabel=r"$\hat\eta = \mathrm{tr}\,\Gamma/d$")
    _log_x(axes[1], n)
    fig.tight_layout()
    return fig


def plot_gamma(panels: Mapping[str, np.ndarray], *, vmax: float | None = None) -> Figure:
    """Heat maps of ``d × d`` matrices side by side (e.g. learned ``Γ`` and predicted ``Γ*``)."""
    mats = {k: check_finite_array(k, v) for k, v in panels.items()}
    if not mats:
        raise ValueError("panels must hold at least one matrix")
    vmax = vmax or max(float(np.abs(m).max()) for m in mats.values())
    fig, axes = plt.subplots(1, len(mats), figsize=(2.6 * len(mats), 2.6))
    axes = np.atleast_1d(axes)
    for ax, (title, m) in zip(axes, mats.items(), strict=True):
        im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        for (i, j), val in np.ndenumerate(m):
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes), shrink=0.8)
    return fig


def plot_training(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    floors: Mapping[str, float],
    *,
    title: str | None = None,
) -> Figure:
    """Training losses, one colour per group (each entry: steps and ``[runs, T]``, one
    line per run), with horizontal reference levels (``floors``: label → value)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, (steps, runs)) in enumerate(curves.items()):
        runs = np.atleast_2d(check_finite_array(label, runs))
        for j, row in enumerate(runs):
            ax.plot(steps, row, lw=0.9, alpha=0.8, color=colors[i % len(colors)],
                    label=label if j == 0 else None)
    styles = [BAYES_STYLE, THEORY_STYLE]
    for i, (label, value) in enumerate(floors.items()):
        ax.axhline(value, label=label, **styles[i % 2])
    finish_axes(ax, xlabel="step", ylabel="mini-batch loss", title=title)
    fig.tight_layout()
    return fig


def plot_shift(
    xs: Sequence[float],
    measured: np.ndarray,
    curve: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    xlabel: str,
    log: bool = False,
) -> Figure:
    """Loss of a model trained at one setting, evaluated at others: measured (points),
    and on a grid ``curve = (x, predicted for the trained Γ, optimum at each x)``."""
    x = check_finite_array("xs", xs)
    xc, pred, opt = (check_finite_array(f"curve[{i}]", c) for i, c in enumerate(curve))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xc, pred, label="predicted for its $\\Gamma$", **THEORY_STYLE)
    ax.plot(xc, opt, label="optimum at that setting", **BAYES_STYLE)
    ax.plot(x, check_finite_array("measured", measured), "o", label="measured (trained model)")
    if log:
        _log_x(ax, x)
    finish_axes(ax, xlabel=xlabel, ylabel="test loss")
    fig.tight_layout()
    return fig
