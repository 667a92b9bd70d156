"""Figures of chapter 7 (the open questions). Every function returns a matplotlib Figure.

Measurements are coloured, theory curves and floors black (:mod:`icl.viz.style`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .style import BAYES_STYLE, THEORY_STYLE, finish_axes, positive

__all__ = [
    "plot_constants",
    "plot_ladder",
    "plot_optimizer_curves",
    "plot_softmax_limits",
    "plot_sweeps",
]

_OPT_COLORS = {
    "normalized": "#0072B2",
    "plain": "#D55E00",
    "adam": "#009E73",
    "coordinate": "#CC79A7",
}


def plot_optimizer_curves(
    curves: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    theory: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    title: str | None = None,
) -> Figure:
    """Excess risk against the step, one panel per family, one curve per optimiser.

    ``curves[(family, optimizer)] = (steps, excess)``; ``theory`` has the same keys and
    is drawn dashed black.
    """
    families = list(dict.fromkeys(f for f, _ in curves))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, fam in zip(axes, families, strict=True):
        for (f, opt), (t, y) in curves.items():
            if f == fam:
                ax.plot(*positive(t, y), color=_OPT_COLORS.get(opt), label=opt)
        for (f, opt), (t, y) in (theory or {}).items():
            if f == fam:
                ax.plot(*positive(t, y), **THEORY_STYLE, label=f"{opt}: the book's [D]")
        ax.set_yscale("log")
        finish_axes(ax, xlabel="step t", ylabel="excess risk" if ax is axes[0] else None, title=fam)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ladder(
    rungs: Sequence[str],
    pop_loss: Sequence[float],
    ood_loss: Sequence[float],
    copy_O: Sequence[float],
    copy_OOD: Sequence[float],
    *,
    chance: float,
) -> Figure:
    """Left: in-distribution and unseen-output loss per rung (log scale), with ``log N``.
    Right: the copy coefficients ``(V + κF)[k, k]`` of training and unseen outputs."""
    x = np.arange(len(rungs))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    w = 0.38
    a1.bar(x - w / 2, np.maximum(pop_loss, 1e-9), w, label="in distribution", color="#0072B2")
    a1.bar(x + w / 2, np.maximum(ood_loss, 1e-9), w, label="unseen outputs", color="#999999")
    a1.axhline(chance, label=r"$\log N$ (uniform guess)", **BAYES_STYLE)
    a1.set_yscale("log")
    a1.set_xticks(x, rungs)
    finish_axes(a1, ylabel="loss", title="loss after the same budget")
    a2.bar(x - w / 2, copy_O, w, label="training outputs O", color="#009E73")
    a2.bar(x + w / 2, copy_OOD, w, label="unseen outputs", color="#999999")
    a2.axhline(0, color="k", lw=0.8)
    a2.set_xticks(x, rungs)
    finish_axes(a2, ylabel=r"mean $(V+\kappa F)[k,k]$", title="copy coefficients")
    fig.tight_layout()
    return fig


def plot_sweeps(
    panels: Mapping[str, tuple[Sequence, Sequence[float], Sequence[float]]],
    *,
    chance: float,
    ylabel: str = "loss after training",
) -> Figure:
    """One panel per factor: ``panels[factor] = (values, pop_loss, ood_loss)``, log scale,
    with the uniform guess ``log N`` as a dotted line."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (factor, (values, pop, ood)) in zip(axes, panels.items(), strict=True):
        x = np.arange(len(values))
        ax.plot(x, np.maximum(pop, 1e-9), "o-", color="#0072B2", label="in distribution")
        ax.plot(x, ood, "s-", color="#999999", label="unseen outputs")
        ax.axhline(chance, label=r"$\log N$", **BAYES_STYLE)
        ax.set_xticks(x, [str(v) for v in values])
        ax.set_yscale("log")
        finish_axes(ax, xlabel=factor, ylabel=ylabel if ax is axes[0] else None,
                    legend=ax is axes[0])
    fig.tight_layout()
    return fig


def plot_constants(
    n_triggers: Sequence[int],
    measured: Mapping[str, Sequence[float]],
) -> Figure:
    """``mean λ(T)/(ηT)`` against ``|Q|`` for each normalisation, with ``1``, ``1/√|Q|``
    and ``1/|Q|`` drawn as reference curves."""
    q = np.asarray(n_triggers, dtype=np.float64)
    grid = np.linspace(q.min(), q.max(), 100)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, ys in measured.items():
        ax.plot(q, ys, "o", ms=7, color=_OPT_COLORS.get(name), label=f"measured: {name}")
    ax.plot(grid, np.ones_like(grid), color="#CC79A7", ls=":", label=r"$1$")
    ax.plot(grid, 1 / np.sqrt(grid), **THEORY_STYLE, label=r"$1/\sqrt{|Q|}$ (appendix)")
    ax.plot(grid, 1 / grid, color="k", ls="-.", lw=1.2, label=r"$1/|Q|$ (main text)")
    ax.set_yscale("log")
    finish_axes(ax, xlabel="|Q|", ylabel=r"mean $\lambda(T)/(\eta T)$")
    fig.tight_layout()
    return fig


def plot_softmax_limits(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]],
    limits: Mapping[str, float],
    *,
    title: str | None = None,
) -> Figure:
    """Left: each model's loss against the step, with the limits drawn as dotted lines.
    Right: each loss minus the limit it tends to, on a log scale.

    ``curves[name] = (steps, loss, limit)``; ``limits[label] = value`` (the lines of the
    left panel, e.g. the Bayes risk and the ``V = I`` floor).
    """
    colors = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#999999"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for (name, (t, loss, limit)), color in zip(curves.items(), colors, strict=False):
        a1.plot(t, loss, color=color, label=name)
        a2.plot(*positive(t, np.asarray(loss) - limit), color=color, label=name)
    for (label, value), ls in zip(limits.items(), (":", "--", "-."), strict=False):
        a1.axhline(value, color="k", lw=1.0, ls=ls, label=label)
    a1.set_yscale("log")
    a2.set_yscale("log")
    finish_axes(a1, xlabel="step t", ylabel="loss", title="loss and its limits")
    finish_axes(a2, xlabel="step t", ylabel="loss - its own limit", title="approach to the limit",
                legend=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
