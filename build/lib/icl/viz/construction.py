"""Figures of chapter 3: the Bayes-optimal construction. Every function returns a Figure.

The functions only draw: the notebook computes (and asserts) every number first, with
:mod:`icl.construction`, :mod:`icl.closed_forms`, :mod:`icl.softmax_construction` and
the network, then passes arrays here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..task import RecallTask
from .style import ROLE_COLORS

__all__ = [
    "plot_attention_scores",
    "plot_construction_loss",
    "plot_kappa0",
    "plot_logit_split",
    "plot_softmax_losses",
]



def _check_same_length(**arrays: Sequence[float]) -> None:
    lengths = {k: len(np.asarray(v)) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have the same length, got {lengths}")


def plot_construction_loss(
    Lambda: Sequence[float],
    losses: Mapping[float, Sequence[float]],
    bayes: Mapping[float, float],
    excess: Mapping[float, Sequence[float]],
    rate_constants: Mapping[float, float],
    measured: Mapping[float, tuple[Sequence[float], Sequence[float]]] | None = None,
    measured_excess: Mapping[float, Sequence[float]] | None = None,
) -> Figure:
    """``L(Λ)`` beside ``H_b(α)`` (left) and the excess on a log scale (right), per ``α``.

    ``losses[α]`` and ``excess[α]`` are the closed forms on ``Lambda``; ``measured[α]``
    optional ``(Λ points, network loss)`` and ``measured_excess[α]`` the network's excess
    at those points; the right panel also draws the bound ``c_α e^{-Λ}``
    (``c_α = rate_constants[α]``).
    """
    lam = np.asarray(Lambda, dtype=float)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.cm.viridis(np.linspace(0.05, 0.85, max(len(losses), 1)))
    for col, (alpha, L) in zip(colours, losses.items(), strict=True):
        _check_same_length(Lambda=lam, losses=L)
        ax1.plot(lam, L, color=col, label=f"α = {alpha:g}: L(Λ)")
        ax1.axhline(bayes[alpha], color=col, ls="--", lw=1)
        ax2.semilogy(lam, excess[alpha], color=col, label=f"α = {alpha:g}: L(Λ) − H_b(α)")
        ax2.semilogy(lam, rate_constants[alpha] * np.exp(-lam), color=col, ls=":", lw=1.5)
        if measured and alpha in measured:
            pts, vals = measured[alpha]
            ax1.plot(pts, vals, "o", color=col, ms=4, mfc="none")
        if measured_excess and measured and alpha in measured_excess:
            ax2.plot(measured[alpha][0], measured_excess[alpha], "o", color=col, ms=4, mfc="none")
    ax1.plot([], [], "k--", lw=1, label="H_b(α) (Bayes risk)")
    ax1.plot([], [], "ko", mfc="none", ms=4, label="network (float64)")
    ax1.set_xlabel("Λ (attention scale)")
    ax1.set_ylabel("expected loss (nats)")
    ax1.set_title("Loss of the construction")
    ax1.legend(fontsize=7)
    ax2.plot([], [], "k:", label="(N−2)(1−α) e^{−Λ}  (noiseless: (N−1) e^{−λ})")
    ax2.set_xlabel("Λ (attention scale)")
    ax2.set_ylabel("excess risk (nats, log scale)")
    ax2.set_title("Excess risk: a straight line of slope −1")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_attention_scores(
    scores: Sequence[float],
    y_pos: int,
    tau_pos: int | None = None,
    weights: Sequence[float] | None = None,
    title: str = "Attention scores along one sequence",
) -> Figure:
    """Scores ``s_h`` along a sequence (0-based positions), marking ``y``'s position, the
    ``τ`` position (score 0) and the last position; optional softmax weights below."""
    s = np.asarray(scores, dtype=float)
    H = len(s)
    if not 0 <= y_pos < H or (tau_pos is not None and not 0 <= tau_pos < H):
        raise ValueError(f"y_pos={y_pos} and tau_pos={tau_pos} must lie in [0, {H - 1}]")
    rows = 2 if weights is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.8 * rows), squeeze=False, sharex=True)
    h = np.arange(1, H + 1)
    ax = axes[0, 0]
    ax.vlines(h, 0, s, color="0.6", lw=1)
    ax.plot(h, s, ".", color="0.4", ms=3, label="s_h (other positions)")
    ax.plot(y_pos + 1, s[y_pos], "*", color="#c44e52", ms=14, label=f"y's position h = {y_pos + 1}")
    if tau_pos is not None:
        ax.plot(
            tau_pos + 1,
            s[tau_pos],
            "D",
            color=ROLE_COLORS["noise_token"],
            ms=8,
            label=f"τ's position h = {tau_pos + 1} (Λ − Λ = 0)",
        )
    ax.plot(H, s[-1], "s", color="k", ms=7, mfc="none", label=f"last position h = H = {H}")
    ax.set_ylabel("score s_h")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center right")
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        axw = axes[1, 0]
        axw.semilogy(h, w, ".", color="0.4", ms=3)
        axw.semilogy(y_pos + 1, w[y_pos], "*", color="#c44e52", ms=14)
        if tau_pos is not None:
            axw.semilogy(tau_pos + 1, w[tau_pos], "D", color=ROLE_COLORS["noise_token"], ms=8)
        axw.set_ylabel("softmax weight a_h")
    axes[-1, 0].set_xlabel("position h")
    fig.tight_layout()
    return fig


def plot_logit_split(
    task: RecallTask,
    xi_A: Sequence[float],
    xi_F: Sequence[float],
    y: int,
    title: str = "Where the logits come from",
) -> Figure:
    """Bars of ``ξ_A`` (attention path) and ``ξ_F`` (feed-forward path) over the vocabulary,
    with the token roles shaded and ``y`` marked."""
    a = np.asarray(xi_A, dtype=float)
    f = np.asarray(xi_F, dtype=float)
    N = task.vocab_size
    if a.shape != (N,) or f.shape != (N,):
        raise ValueError(f"xi_A and xi_F must have shape ({N},), got {a.shape} and {f.shape}")
    if not 0 <= int(y) < N:
        raise ValueError(f"y must lie in [0, {N - 1}], got {y}")
    fig, ax = plt.subplots(figsize=(11, 3.5))
    k = np.arange(N)
    for role, toks in task.roles().items():
        if role == "filler":
            continue
        lo, hi = min(toks), max(toks)
        ax.axvspan(
            lo - 0.5, hi + 0.5, color=ROLE_COLORS[role], alpha=0.18, label=role.replace("_", " ")
        )
    ax.bar(k - 0.2, a, width=0.4, color="#dd8452", label="ξ_A = U V A (attention)")
    ax.bar(k + 0.2, f, width=0.4, color="#4c72b0", label="ξ_F = U F (x_H + κA) (feed-forward)")
    ax.annotate(
        f"y = {int(y)}",
        (int(y), a[int(y)] + f[int(y)]),
        textcoords="offset points",
        xytext=(0, 4),
        ha="center",
        fontsize=8,
    )
    ax.annotate(
        f"τ = {task.noise_token}",
        (task.noise_token, a[-1] + f[-1]),
        textcoords="offset points",
        xytext=(0, 4),
        ha="center",
        fontsize=8,
    )
    ax.set_xlabel("token j")
    ax.set_ylabel("logit")
    ax.set_xlim(-1, N)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3, loc="upper center")
    fig.tight_layout()
    return fig


def plot_softmax_losses(
    Lambda: Sequence[float],
    scaled: Sequence[float],
    unscaled: Sequence[float],
    linear: Sequence[float],
    bayes: float,
    floor: float,
    lower_bound: float,
    scaled_excess: Sequence[float],
    bounds: tuple[Sequence[float], Sequence[float]],
    rate_constant: float,
) -> Figure:
    """Softmax attention: the book's scaled construction vs ``V = I`` (left), and the
    scaled excess on a log scale with its two-sided bounds and ``c e^{-Λ}`` (right)."""
    lam = np.asarray(Lambda, dtype=float)
    _check_same_length(Lambda=lam, scaled=scaled, unscaled=unscaled, linear=linear)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(lam, linear, color="0.5", lw=1, label="linear attention (closed form)")
    ax1.plot(lam, scaled, color="#c44e52", label="softmax, V = ΛI (book's construction)")
    ax1.plot(lam, unscaled, color="#4c72b0", label="softmax, V = I")
    ax1.axhline(floor, color="#4c72b0", ls=":", label="V = I floor (limit Λ → ∞)")
    ax1.axhline(lower_bound, color="#4c72b0", ls="-.", lw=1, label="V = I lower bound (all Λ)")
    ax1.axhline(bayes, color="k", ls="--", lw=1, label="H_b(α) (Bayes risk)")
    ax1.set_xlabel("Λ (attention scale)")
    ax1.set_ylabel("expected loss (nats)")
    ax1.set_title("Softmax attention: scale the values, or stall")
    ax1.legend(fontsize=7)
    lo, up = (np.asarray(b, dtype=float) for b in bounds)
    ax2.fill_between(lam, lo, up, color="#c44e52", alpha=0.15, label="book's two-sided bound")
    ax2.semilogy(lam, scaled_excess, color="#c44e52", label="softmax V = ΛI: L(Λ) − H_b(α)")
    ax2.semilogy(lam, rate_constant * np.exp(-lam), "k:", label=f"{rate_constant:.4g} e^{{−Λ}}")
    ex = np.asarray(scaled_excess, dtype=float)
    ax2.set_ylim(ex[ex > 0].min() / 3, 30 * ex.max())  # the upper bound is loose for small Λ
    ax2.set_xlabel("Λ (attention scale)")
    ax2.set_ylabel("excess risk (nats, log scale)")
    ax2.set_title("The scaled construction's rate")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_kappa0(
    Lambda: Sequence[float],
    kappa1: Sequence[float],
    stalled: Sequence[float],
    bayes: float,
    lambda_star: float,
    loss_min: float,
    stalled_measured: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Figure:
    """The ``κ = 0`` variant: with a growing ``F`` it matches ``κ = 1`` (``kappa1``); with
    the ``κ = 1`` matrix ``F`` it stalls (``stalled``), minimum ``loss_min`` at
    ``lambda_star``, then grows like ``αΛ``."""
    lam = np.asarray(Lambda, dtype=float)
    _check_same_length(Lambda=lam, kappa1=kappa1, stalled=stalled)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(lam, kappa1, color="#c44e52", label="κ = 1, or κ = 0 with F = (γ+Λ)E(τ)E(q)ᵀ")
    ax.plot(lam, stalled, color="#4c72b0", label="κ = 0 with the κ = 1 matrix F")
    if stalled_measured is not None:
        ax.plot(*stalled_measured, "o", color="#4c72b0", mfc="none", ms=4, label="network")
    ax.plot([lambda_star], [loss_min], "v", color="#4c72b0", ms=8, label="its minimum H_b + αΛ*")
    ax.axhline(bayes, color="k", ls="--", lw=1, label="H_b(α)")
    ax.set_xlabel("Λ (attention scale)")
    ax.set_ylabel("expected loss (nats)")
    ax.set_title("κ = 0: the feed-forward path must grow by itself")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
