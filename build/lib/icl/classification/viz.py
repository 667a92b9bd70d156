"""Figures of the in-context classification chapter (drawn with :mod:`icl.viz.style`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from icl.validate import check_finite_array, check_int
from icl.viz.style import BAYES_STYLE, THEORY_STYLE, band, finish_axes

__all__ = ["plot_calibration", "plot_errors", "plot_rate", "plot_scales", "reliability"]

_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00")


def plot_rate(runs: Mapping[str, tuple[np.ndarray, np.ndarray, float]]) -> Figure:
    """``‖W_t - Ŵ‖_F`` against ``t`` (log scale) for each run, with ``ρ^t`` dashed.

    ``runs`` maps a label to ``(steps, distances, predicted ρ)``.
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for (label, (t, dist, rho)), color in zip(runs.items(), _COLORS, strict=False):
        t, dist = np.asarray(t), np.asarray(dist)
        keep = dist > 0
        ax.semilogy(t[keep], dist[keep], color=color, label=f"{label}: measured")
        anchor = np.flatnonzero(dist > 1e-10)[-1]  # the line ∝ ρ^t through a late point
        ax.semilogy(t, dist[anchor] * rho ** (t - t[anchor]), color=color, ls="--", lw=1,
                    label=rf"$\propto\rho^t$, $\rho = 1 - \eta\lambda_{{\min}}(\hat H)$"
                          rf" $= {rho:.5f}$")
    ax.set_ylim(1e-11, None)
    finish_axes(ax, xlabel="GD step $t$", ylabel=r"$\|W_t - \hat W\|_F$",
                title="Full-batch GD from $W_0 = 0$, $\\eta = 1/\\hat\\ell$")
    fig.tight_layout()
    return fig


def plot_scales(
    lengths: Sequence[int],
    quadrature: Sequence[float],
    fit_lengths: Sequence[int],
    fitted: Sequence[float],
    fitted_se: Sequence[float],
    coefficient: float,
    limit: float = 2.0,
) -> Figure:
    """Left: ``α_N`` by quadrature at ``lengths``, the fitted scales of trained ``W`` at
    ``fit_lengths`` (±2 s.e.) and ``limit + a/N``. Right: ``N(α_N/limit - 1)`` tending to
    ``a/limit``."""
    n = np.asarray(lengths, dtype=float)
    q = np.asarray(quadrature)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.4))
    a0.semilogx(n, q, "o-", color=_COLORS[0], label=r"$\alpha_N$ (quadrature)")
    a0.errorbar(fit_lengths, fitted, yerr=2 * np.asarray(fitted_se), fmt="s", ms=4,
                color=_COLORS[1],
                label=r"$\mathrm{tr}(\hat W\Lambda)/d$ of the fitted $\hat W$ ($\pm 2$ s.e.)")
    nn = np.geomspace(max(n.min(), -coefficient / limit), n.max(), 100)
    a0.semilogx(nn, limit + coefficient / nn, label=rf"${limit:g} + a/N$", **THEORY_STYLE)
    a0.axhline(limit, **BAYES_STYLE)
    a0.set_ylim(0, limit * 1.1)
    finish_axes(a0, xlabel="$N$", ylabel=r"$\alpha_N$", title=r"$W^*(N) = \alpha_N\Lambda^{-1}$")
    a1.semilogx(n, n * (q / limit - 1), "o-", color=_COLORS[0],
                label=rf"$N(\alpha_N/{limit:g} - 1)$")
    a1.axhline(coefficient / limit, label=rf"$a/{limit:g}$", **THEORY_STYLE)
    finish_axes(a1, xlabel="$N$", title="the $1/N$ correction")
    fig.tight_layout()
    return fig


def plot_errors(
    test_lengths: Sequence[int],
    runs_m: np.ndarray,
    line_m: tuple[float, float],
    train_lengths: Sequence[int],
    runs_n: np.ndarray,
    theory_n: Sequence[float],
    line_n: tuple[float, float],
) -> Figure:
    """Inference error against ``M`` (``N = ∞``) and against ``N`` (``M = ∞``), mean over
    seeds with a min–max band, and the fitted power laws ``(intercept, slope)``."""
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.4))
    m = np.asarray(test_lengths, dtype=float)
    band(a0, m, runs_m, color=_COLORS[0], log=True, marker="o", label="Monte Carlo (seeds)")
    a0.plot(m, np.exp(line_m[0]) * m ** line_m[1],
            label=rf"fit: slope ${line_m[1]:.3f}$", **THEORY_STYLE)
    a0.set_xscale("log")
    finish_axes(a0, xlabel="test length $M$", ylabel=r"$\mathcal{E}_{N,M}$",
                title=r"$N = \infty$ ($W = 2\Lambda^{-1}$)")
    n = np.asarray(train_lengths, dtype=float)
    band(a1, n, runs_n, color=_COLORS[1], log=True, marker="o", label="Monte Carlo (seeds)")
    a1.plot(n, theory_n, "x", color="k", label="quadrature")
    a1.plot(n, np.exp(line_n[0]) * n ** line_n[1],
            label=rf"fit: slope ${line_n[1]:.3f}$", **THEORY_STYLE)
    a1.set_xscale("log")
    finish_axes(a1, xlabel="training length $N$",
                title=r"$M = \infty$ ($W = \alpha_N\Lambda^{-1}$)")
    fig.tight_layout()
    return fig


def reliability(p_model: np.ndarray, p_true: np.ndarray, bins: int = 12):
    """Binned calibration: for each bin of the predicted ``P̂(+1)``, the mean prediction
    and the mean true posterior (what an infinitely long test would measure)."""
    p_model = check_finite_array("p_model", p_model, low=0.0, high=1.0).ravel()
    p_true = check_finite_array("p_true", p_true, low=0.0, high=1.0).ravel()
    if p_model.shape != p_true.shape or p_model.size == 0:
        raise ValueError(f"p_model and p_true must be non-empty and of equal length, got "
                         f"{p_model.size} and {p_true.size}")
    bins = check_int("bins", bins, minimum=1)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p_model, edges) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    keep = count > 0
    mean_pred = np.bincount(idx, p_model, bins)[keep] / count[keep]
    mean_true = np.bincount(idx, p_true, bins)[keep] / count[keep]
    return mean_pred, mean_true


def plot_calibration(
    lengths: Sequence[int],
    accuracy: Sequence[float],
    bayes_accuracy: float,
    ce_excess: Sequence[float],
    curves: Mapping[int, tuple[np.ndarray, np.ndarray, float]],
) -> Figure:
    """Left: accuracy and cross-entropy excess against ``N`` (``M = ∞``). Right: a
    reliability diagram per ``N`` (binned Monte Carlo, and the curve
    ``p = σ(2 logit(p̂)/α_N)``). ``curves`` maps ``N`` to (mean p̂, mean p, α_N)."""
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    n = np.asarray(lengths, dtype=float)
    a0.semilogx(n, accuracy, "o-", color=_COLORS[0], label="accuracy (left axis)")
    a0.axhline(bayes_accuracy, label="Bayes accuracy", **BAYES_STYLE)
    a0.set_ylim(bayes_accuracy - 0.05, bayes_accuracy + 0.05)
    finish_axes(a0, xlabel="training length $N$", ylabel="accuracy", legend=False,
                title=r"$M = \infty$: accuracy is flat, cross-entropy is not")
    ax2 = a0.twinx()
    ax2.loglog(n, ce_excess, "s-", color=_COLORS[1], label="cross-entropy excess (right)")
    ax2.set_ylabel("cross-entropy excess", color=_COLORS[1])
    handles = a0.get_legend_handles_labels()
    extra = ax2.get_legend_handles_labels()
    a0.legend(handles[0] + extra[0], handles[1] + extra[1], loc="upper right", fontsize=8)
    grid = np.linspace(1e-3, 1 - 1e-3, 200)
    for (length, (pred, true, alpha)), color in zip(curves.items(), _COLORS, strict=False):
        a1.plot(pred, true, "o", ms=4, color=color, label=f"$N = {length}$")
        logit = np.log(grid / (1 - grid))
        a1.plot(grid, 1 / (1 + np.exp(-2 * logit / alpha)), color=color, lw=1)
    a1.plot([0, 1], [0, 1], label="calibrated", **BAYES_STYLE)
    finish_axes(a1, xlabel=r"predicted $\hat P(y_q=+1)$", ylabel=r"true $P(y_q=+1\mid x_q)$",
                title="reliability: under-confident at small $N$")
    fig.tight_layout()
    return fig
