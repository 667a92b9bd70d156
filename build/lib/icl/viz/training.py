"""Figures of chapter 4 (training dynamics). Every function returns a matplotlib Figure.

Measurements are drawn as solid lines or points, the book's theory as dashed lines,
fitted rates as dotted lines over their fitting window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..rates import RateFit
from ..training import History
from ..validate import InvalidTypeError, check_instance, check_probability
from .style import loss_panel, positive

__all__ = [
    "plot_finite_sample",
    "plot_linear_rate",
    "plot_normalized_vs_plain",
    "plot_roles",
    "plot_scale_trajectories",
    "plot_training_curves",
]

Curve = tuple[Sequence[float], Sequence[float]]




def plot_linear_rate(
    panels: Mapping[str, tuple[Mapping[str, Curve], Mapping[str, Curve], Mapping[str, RateFit]]],
    *,
    floor: float | None = None,
) -> Figure:
    """Excess risk ``L_t - H_b(α)`` on a log scale against the step, one panel per setting.

    ``panels`` maps a panel title to ``(measured, theory, fits)``: measured curves
    ``{label: (steps, excess)}``, theory curves ``{label: (t, excess)}`` (dashed) and
    fits ``{label: RateFit}`` (dotted, over their window). ``floor`` draws the level
    below which points were not fitted.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, (title, (measured, theory, fits)) in zip(axes[0], panels.items(), strict=True):
        for label, (t, y) in measured.items():
            ax.semilogy(*positive(t, y), lw=2, alpha=0.8, label=label)
        for k, (label, (t, y)) in enumerate(theory.items()):
            ax.semilogy(*positive(t, y), ls="--", color=f"C{7 + k % 3}", lw=1.5, label=label)
        for label, fit in fits.items():
            tt = np.linspace(fit.t_min, fit.t_max, 50)
            ax.semilogy(tt, fit.line(tt), ls=":", color="k", lw=2.5,
                        label=f"fit {label}: slope {fit.slope:.4f}")
        if floor is not None:
            ax.axhline(floor, color="0.6", lw=0.8)
        ax.set_xlabel("step $t$")
        ax.set_ylabel(r"excess risk $L_t - H_b(\alpha)$ (nats)")
        ax.set_title(title)
        ax.legend(fontsize=7.5)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def plot_scale_trajectories(
    steps: Sequence[float],
    measured: Mapping[str, Sequence[float]],
    predicted: Mapping[str, Curve],
    *,
    ylabel: str = r"trained scale",
    title: str | None = None,
) -> Figure:
    """Trained scales (``Λ_t`` or each ``λ_k(t)``) against the step, beside candidate laws.

    Right panel: the measured scale divided by the first predicted law (a ratio of 1 means
    that law holds).
    """
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(11, 4))
    t = np.asarray(steps, dtype=float)
    for label, v in measured.items():
        ax.plot(t, v, lw=2, alpha=0.7, label=label)
    for k, (label, (tp, vp)) in enumerate(predicted.items()):
        ax.plot(tp, vp, ls="--", color=f"C{7 + k % 3}", lw=1.5, label=label)
    ax.set_xlabel("step $t$")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    first_label, (tp, vp) = next(iter(predicted.items()))
    ref = np.interp(t, np.asarray(tp, dtype=float), np.asarray(vp, dtype=float))
    ok = ref > 0
    for k, (label, (tq, vq)) in enumerate(predicted.items()):
        other = np.interp(t, np.asarray(tq, dtype=float), np.asarray(vq, dtype=float))
        axr.plot(t[ok], other[ok] / ref[ok], ls="--", color=f"C{7 + k % 3}", label=label)
    for label, v in measured.items():
        axr.plot(t[ok], np.asarray(v, dtype=float)[ok] / ref[ok], lw=2, alpha=0.7, label=label)
    axr.set_xlabel("step $t$")
    axr.set_ylabel(f"ratio to {first_label}")
    axr.grid(alpha=0.3)
    axr.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_normalized_vs_plain(
    measured: Mapping[str, Curve],
    theory: Mapping[str, Curve],
) -> Figure:
    """Normalised vs plain GD: excess risk against the step, semi-log (left) and log-log (right).

    On the left a linear rate is a straight line; on the right an ``O(1/t)`` excess is a
    line of slope ``-1``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for ax, loglog in zip(axes, (False, True), strict=True):
        for label, (t, y) in measured.items():
            tt, yy = positive(t, y)
            if loglog:
                keep = tt > 0
                tt, yy = tt[keep], yy[keep]
            ax.plot(tt, yy, lw=2.2, alpha=0.75, label=label)
        for k, (label, (t, y)) in enumerate(theory.items()):
            tt, yy = positive(t, y)
            if loglog:
                keep = tt > 0
                tt, yy = tt[keep], yy[keep]
            ax.plot(tt, yy, ls="--", color=f"C{7 + k % 3}", lw=1.5, label=label)
        ax.set_yscale("log")
        if loglog:
            ax.set_xscale("log")
        ax.set_xlabel("step $t$" + (" (log scale)" if loglog else ""))
        ax.set_ylabel(r"excess risk $L_t - H_b(\alpha)$ (nats)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7.5)
    axes[0].set_title("semi-log: a linear rate is a straight line")
    axes[1].set_title("log-log: $O(1/t)$ is a line of slope $-1$")
    fig.tight_layout()
    return fig


def plot_training_curves(
    histories: Mapping[str, History],
    alpha: float,
    theory: Mapping[str, Curve] | None = None,
) -> Figure:
    """Excess population risk (log scale), and ``P(y)``, ``P(τ)`` against ``1-α``, ``α``.

    ``theory`` adds dashed excess curves to the left panel (e.g. the reparameterised
    model's ``log(1 + (N-2)(1-α) e^{-ηt})``).
    """
    _check_histories(histories)
    alpha = check_probability("alpha", alpha)
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for k, (label, h) in enumerate(histories.items()):
        t = h.step_array
        loss_panel(ax, t, h.array("loss"), bayes=h.bayes_risk, excess=True, color=f"C{k}",
                   lw=2, label=label)
        axp.plot(t, h.array("p_y"), color=f"C{k}", lw=2, label=f"{label}: $P(y)$")
        if alpha > 0:
            axp.plot(t, h.array("p_tau"), color=f"C{k}", lw=2, ls="-.",
                     label=rf"{label}: $P(\tau)$")
    for k, (label, (t, y)) in enumerate((theory or {}).items()):
        ax.semilogy(*positive(t, y), ls="--", color=f"C{7 + k % 3}", lw=1.5, label=label)
    axp.axhline(1 - alpha, color="k", ls="--", lw=1, label=r"$1-\alpha$")
    if alpha > 0:
        axp.axhline(alpha, color="k", ls=":", lw=1, label=r"$\alpha$")
    ax.set_xlabel("step $t$")
    ax.set_ylabel(r"population excess $L_t - H_b(\alpha)$ (nats)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    axp.set_xlabel("step $t$")
    axp.set_ylabel("mean probability (held-out sequences)")
    axp.set_ylim(-0.02, 1.02)
    axp.grid(alpha=0.3)
    axp.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_finite_sample(
    ms: Sequence[int],
    excess: np.ndarray,
    kl: np.ndarray,
    bound: Sequence[float],
    expected: Sequence[float],
    *,
    fit: RateFit | None = None,
    delta: float | None = None,
) -> Figure:
    """Finite-sample excess population risk against ``m`` (log-log), and against its prediction.

    Left: every run (``excess[i, j]``: size ``ms[i]``, seed ``j``), the mean over seeds,
    the predicted ``E[KL] ≈ 1/(2m)`` and the Hoeffding bound. Right: measured excess
    against ``KL(Ber(α) ‖ Ber(α̂))`` per run, with the identity line.
    """
    m = np.asarray(ms, dtype=float)
    exc = np.asarray(excess, dtype=float)
    klv = np.asarray(kl, dtype=float)
    fig, (ax, axk) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    jitter = np.exp(np.linspace(-0.08, 0.08, exc.shape[1]))
    for j in range(exc.shape[1]):
        ax.loglog(m * jitter[j], exc[:, j], "o", ms=3.5, color="C0", alpha=0.45,
                  label="runs (one per seed)" if j == 0 else None)
    ax.loglog(m, exc.mean(1), "s-", color="C3", lw=2, label="mean over seeds")
    ax.loglog(m, expected, "--", color="k", label=r"$E[\mathrm{KL}] \approx 1/(2m)$")
    lab = "Hoeffding bound" + (rf" ($\delta = {delta}$)" if delta is not None else "")
    ax.loglog(m, bound, "-.", color="C2", lw=1.5, label=lab)
    if fit is not None:
        ax.loglog(m, fit.line(np.log(m)), ":", color="C3",
                  label=f"fit: slope {fit.slope:.2f} ± {fit.stderr:.2f}")
    ax.set_xlabel("training sequences $m$")
    ax.set_ylabel(r"population excess $L - H_b(\alpha)$ (nats)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    lo = max(min(exc.min(), klv.min()), 1e-12)
    hi = max(exc.max(), klv.max())
    axk.loglog([lo, hi], [lo, hi], "k--", lw=1, label="identity")
    for i in range(exc.shape[0]):
        axk.loglog(klv[i], exc[i], "o", ms=4, label=f"m = {int(m[i])}")
    axk.set_xlabel(r"predicted $\mathrm{KL}(\mathrm{Ber}(\alpha)\,\|\,\mathrm{Ber}(\hat\alpha))$")
    axk.set_ylabel("measured excess")
    axk.grid(alpha=0.3, which="both")
    axk.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_roles(history: History) -> Figure:
    """Which path carries what: ``ξ_{A,y}`` vs ``max_{j≠y} ξ_{A,j}`` (attention) and
    ``ξ_{F,τ}`` vs ``max_{j≠τ} ξ_{F,j}`` (feed-forward), held-out means over training."""
    t = history.step_array
    fig, (axa, axf) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    axa.plot(t, history.array("xiA_y"), lw=2, label=r"$\xi_{A,y}$")
    axa.plot(t, history.array("xiA_other"), lw=2, ls="--", label=r"$\max_{j\neq y}\xi_{A,j}$")
    axf.plot(t, history.array("xiF_tau"), lw=2, color="C2", label=r"$\xi_{F,\tau}$")
    axf.plot(t, history.array("xiF_other"), lw=2, ls="--", color="C3",
             label=r"$\max_{j\neq \tau}\xi_{F,j}$")
    axa.set_title(r"attention logits $\xi_A$")
    axf.set_title(r"feed-forward logits $\xi_F$")
    for ax in (axa, axf):
        ax.set_xlabel("step $t$")
        ax.grid(alpha=0.3)
        ax.legend()
    axa.set_ylabel("mean logit (held-out sequences)")
    fig.tight_layout()
    return fig


def _check_histories(histories: object) -> None:
    """A non-empty mapping ``{label: History}``."""
    if not isinstance(histories, Mapping) or not histories:
        raise InvalidTypeError(
            f"histories must be a non-empty mapping {{label: icl.History}}, got "
            f"{type(histories).__name__}"
        )
    for label, h in histories.items():
        check_instance(f"histories[{label!r}]", h, History, "an icl.History")
