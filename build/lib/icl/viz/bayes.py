"""Figures of chapter 2 (the Bayes risk). Every function returns a matplotlib Figure.

Theory is drawn as lines, measurements as points with error bars of ``±k`` standard
errors (``k = 3`` by default: the tolerance the chapter's assertions use).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "plot_bayes_risk_check",
    "plot_planted_variant",
    "plot_plugin_excess",
    "plot_size_invariance",
]


def _z(means: np.ndarray, ses: np.ndarray, theory: np.ndarray) -> np.ndarray:
    """Standardised residuals ``(mean - theory) / se``; where ``se = 0`` (every loss equal),
    0 if the estimate is exact (to 1e-9) and ``±inf`` otherwise."""
    diff = np.asarray(means, dtype=float) - np.asarray(theory, dtype=float)
    ses = np.asarray(ses, dtype=float)
    exact = np.abs(diff) <= 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(ses > 0, diff / np.where(ses > 0, ses, 1.0), np.sign(diff) * np.inf)
    return np.where(exact & (ses == 0), 0.0, z)


def plot_bayes_risk_check(
    alphas: Sequence[float],
    estimates: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    risk_fn: Callable,
    exact: Sequence[float] | None = None,
    *,
    k: float = 3.0,
) -> Figure:
    """Bayes risk ``H_b(α)``: the lambdified formula, exact values and Monte-Carlo estimates.

    Parameters
    ----------
    alphas : the noise levels ``α`` where estimates were taken.
    estimates : ``{label: (means, standard errors)}``, one entry per split (ID, OOD).
    risk_fn : vectorised ``α ↦ H_b(α)`` (e.g. :func:`icl.symbolic.bayes.bayes_risk_function`).
    exact : values of :func:`icl.bayes_risk` at ``alphas`` (drawn as open squares).
    k : half-width of the error bars in standard errors.

    Left: the curve on a fine grid with the points. Right: standardised residuals
    ``(estimate - H_b(α)) / s.e.`` with the ``±k`` band.
    """
    a = np.asarray(alphas, dtype=float)
    grid = np.linspace(0.0, 0.999, 400)
    fig, (ax, axz) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    ax.plot(grid, risk_fn(grid), color="k", lw=1.5, label=r"$H_b(\alpha)$ (SymPy, lambdified)")
    if exact is not None:
        ax.plot(a, exact, "s", mfc="none", mec="tab:gray", ms=10, label="icl.bayes_risk")
    markers = ["o", "D", "^", "v"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n_lab = len(estimates)
    width = 0.012
    for i, (label, (m, s)) in enumerate(estimates.items()):
        m, s = np.asarray(m, dtype=float), np.asarray(s, dtype=float)
        dx = (i - (n_lab - 1) / 2) * width
        c = colors[i % len(colors)]
        ax.errorbar(a + dx, m, yerr=k * s, fmt=markers[i % 4], color=c, ms=4, capsize=3,
                    label=f"Monte Carlo, {label} (±{k:g} s.e.)")
        z = _z(m, s, np.asarray(risk_fn(a), dtype=float))
        axz.plot(a + dx, z, markers[i % 4], color=c, label=label)
    ax.set_xlabel(r"noise level $\alpha$")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title("Bayes risk: formula vs the oracle's loss on samples")
    ax.set_ylim(bottom=-0.02)
    ax.legend(fontsize=8, loc="lower center")
    axz.axhspan(-k, k, color="tab:green", alpha=0.15, label=rf"$\pm{k:g}$ s.e.")
    axz.axhline(0, color="k", lw=0.8)
    axz.set_xlabel(r"noise level $\alpha$")
    axz.set_ylabel(r"(estimate $-$ $H_b(\alpha)$) / s.e.")
    axz.set_title("standardised residuals (0 when exact)")
    axz.set_ylim(-max(4.0, k + 1), max(4.0, k + 1))
    axz.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_size_invariance(
    config_labels: Sequence[str],
    alphas: Sequence[float],
    means: np.ndarray,
    ses: np.ndarray,
    theory: Sequence[float],
    *,
    split_labels: Sequence[str] = ("ID", "OOD"),
    k: float = 3.0,
) -> Figure:
    """Oracle loss over task sizes: estimates beside ``H_b(α)``, and standardised residuals.

    ``means`` and ``ses`` have shape ``[n_configs, n_alphas, n_splits]``; ``theory`` holds
    ``H_b(α)`` for each ``α``.
    """
    means, ses = np.asarray(means, dtype=float), np.asarray(ses, dtype=float)
    n_c, n_a, n_s = means.shape
    x = np.arange(n_c)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = ["o", "D", "^", "v"]
    fig, (ax, axz) = plt.subplots(1, 2, figsize=(11, 4.2))
    for j, alpha in enumerate(alphas):
        c = colors[j % len(colors)]
        ax.axhline(theory[j], color=c, lw=1, ls="--")
        for s in range(n_s):
            dx = (s - (n_s - 1) / 2) * 0.15
            lab = rf"$\alpha={alpha:g}$, {split_labels[s]}"
            ax.errorbar(x + dx, means[:, j, s], yerr=k * ses[:, j, s], fmt=markers[s % 4],
                        color=c, ms=4, capsize=3, label=lab)
            z = _z(means[:, j, s], ses[:, j, s], np.full(n_c, theory[j]))
            axz.plot(x + dx + (j - (n_a - 1) / 2) * 0.05, z, markers[s % 4], color=c, label=lab)
    for a_ in (ax, axz):
        a_.set_xticks(x)
        a_.set_xticklabels(config_labels, fontsize=8)
        a_.set_xlabel(r"task size $(N, H, |Q|, |O|)$")
    ax.set_ylabel("oracle cross-entropy (nats)")
    ax.set_title(rf"estimates ($\pm${k:g} s.e.) and $H_b(\alpha)$ (dashed)")
    ax.legend(fontsize=7, ncol=2)
    axz.axhspan(-k, k, color="tab:green", alpha=0.15)
    axz.axhline(0, color="k", lw=0.8)
    axz.set_ylim(-max(4.0, k + 1), max(4.0, k + 1))
    axz.set_ylabel(r"(estimate $-$ $H_b(\alpha)$) / s.e.")
    axz.set_title("standardised residuals")
    fig.tight_layout()
    return fig


def plot_planted_variant(
    rho_grid: Sequence[float],
    theory: Mapping[str, Sequence[float]],
    rhos: Sequence[float],
    estimates: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    floor: Mapping[str, float] | None = None,
    k: float = 3.0,
) -> Figure:
    """Risk of the planted variant against ``ρ``: formula (lines) and Monte Carlo (points).

    ``theory`` and ``estimates`` share their keys (one curve per setting, e.g. split and
    ``α``); ``floor`` optionally draws ``H_b(α)`` per key as a dotted line.
    """
    grid = np.asarray(rho_grid, dtype=float)
    r = np.asarray(rhos, dtype=float)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (label, curve) in enumerate(theory.items()):
        c = colors[i % len(colors)]
        ax.plot(grid, curve, color=c, lw=1.5, label=f"{label}: formula")
        if label in estimates:
            m, s = estimates[label]
            ax.errorbar(r, m, yerr=k * np.asarray(s), fmt="o", color=c, ms=4, capsize=3,
                        label=f"{label}: Monte Carlo (±{k:g} s.e.)")
        if floor is not None and label in floor:
            ax.axhline(floor[label], color=c, lw=0.8, ls=":")
    ax.set_xlabel(r"probability $\rho$ that the $(q, y)$ pair is planted")
    ax.set_ylabel("Bayes risk (nats)")
    ax.set_title(r"$R^*(\rho) = H_b(\alpha) + (1-\rho)(1-\alpha)\log K$ (dotted: $H_b(\alpha)$)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_plugin_excess(
    alphas: Sequence[float],
    kl_fn: Callable,
    quad_fn: Callable,
    *,
    exact_fn: Callable | None = None,
    n_grid: int = 400,
) -> Figure:
    """Excess risk ``KL(Ber(α) ‖ Ber(α̂))`` of a plug-in ``α̂`` and its quadratic approximation.

    Left: against ``α̂`` for each ``α`` (solid: KL, dashed: ``(α̂-α)²/(2α(1-α))``; crosses:
    ``exact_fn``, e.g. :func:`icl.kl_bernoulli`, on a coarse grid). Right: against
    ``|α̂ - α|`` on log-log axes, where the quadratic regime is a line of slope 2.
    """
    grid = np.linspace(0.005, 0.995, n_grid)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (ax, axl) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, a in enumerate(alphas):
        c = colors[i % len(colors)]
        ax.plot(grid, kl_fn(a, grid), color=c, lw=1.5, label=rf"KL, $\alpha={a:g}$")
        ax.plot(grid, quad_fn(a, grid), color=c, lw=1, ls="--")
        if exact_fn is not None:
            coarse = np.linspace(0.05, 0.95, 10)
            ax.plot(coarse, [exact_fn(a, b) for b in coarse], "x", color=c, ms=5)
        d = np.logspace(-3, np.log10(0.9 * min(a, 1 - a)), 100)
        axl.loglog(d, kl_fn(a, a + d), color=c, lw=1.5,
                   label=rf"$\alpha={a:g}$ ($\hat\alpha>\alpha$; dotted: $<$)")
        axl.loglog(d, kl_fn(a, a - d), color=c, lw=1, ls=":")
        axl.loglog(d, quad_fn(a, a + d), color=c, lw=1, ls="--")
    ax.plot([], [], "k--", lw=1, label=r"$(\hat\alpha-\alpha)^2 / (2\alpha(1-\alpha))$")
    if exact_fn is not None:
        ax.plot([], [], "kx", label="icl.kl_bernoulli")
    ax.set_ylim(0, 1.8)
    ax.set_xlabel(r"plug-in estimate $\hat\alpha$")
    ax.set_ylabel("excess risk (nats)")
    ax.set_title(r"$\mathrm{KL}(\mathrm{Ber}(\alpha)\,\|\,\mathrm{Ber}(\hat\alpha))$")
    ax.legend(fontsize=8, ncol=3, loc="upper center")
    axl.set_xlabel(r"$|\hat\alpha - \alpha|$")
    axl.set_ylabel("excess risk (nats)")
    axl.set_title(r"log-log: slope 2 near $\hat\alpha=\alpha$ (dashed: quadratic)")
    axl.legend(fontsize=8)
    fig.tight_layout()
    return fig
