"""Figures of the reproduction chapter: the paper's Figures 1–12, redrawn with seed bands.

Every function takes *series*: a mapping from a label to ``(steps, runs)`` with ``runs``
an array ``[seeds, len(steps)]``, and returns a :class:`matplotlib.figure.Figure`. Several
seeds draw a band (mean and min–max spread, :func:`icl.viz.style.band`), one seed a line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..bayes import bayes_risk
from .style import BAYES_STYLE, THEORY_STYLE, band, finish_axes

__all__ = ["COLORS", "finite_losses", "model_alone", "loss_panels", "role_split"]

Series = Mapping[str, tuple[Sequence[float], np.ndarray]]

#: one colour per model key (Okabe–Ito), the same in every figure of the chapter
COLORS: dict[str, str] = {
    "reparam-linear": "#0072B2",
    "reparam-relu": "#56B4E9",
    "reparam-softmax": "#009E73",
    "reparam-softmax-scaled": "#999999",
    "reparam_w-linear": "#E69F00",
    "reparam_w-relu": "#F0E442",
    "origin-linear": "#D55E00",
    "origin-relu": "#CC79A7",
    "origin-softmax": "#000000",
}
ALPHA_COLORS = ("#0072B2", "#009E73", "#E69F00", "#D55E00", "#CC79A7")


def _draw(ax, series: Series, colors: Mapping[str, str], labels: Mapping[str, str], log: bool):
    for key, (steps, runs) in series.items():
        runs = np.atleast_2d(np.asarray(runs, dtype=np.float64))
        if log:
            runs = np.where(runs > 0, runs, np.nan)
        band(ax, steps, runs, color=colors.get(key), label=labels.get(key, key), log=log, lw=1.3)


def loss_panels(
    panels: Sequence[Mapping[str, Series]],
    *,
    row_titles: Sequence[str],
    panel_titles: Sequence[str],
    labels: Mapping[str, str],
    bayes: Sequence[float],
    log_panels: Sequence[bool],
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Figure:
    """A grid: one row per entry of ``panels`` (e.g. a noise level), one column per panel.

    ``panels[r][name]`` is the series of panel ``name`` in row ``r`` (keys of
    ``panel_titles`` order); a panel whose title mentions "loss" gets the Bayes-risk line
    ``bayes[r]``.
    """
    colors = COLORS if colors is None else colors
    n_rows, n_cols = len(panels), len(panel_titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 2.9 * n_rows), squeeze=False)
    for r, row in enumerate(panels):
        for c, name in enumerate(panel_titles):
            ax = axes[r, c]
            _draw(ax, row[name], colors, labels, log_panels[c])
            if "loss" in name and (bayes[r] > 0 or not log_panels[c]):
                ax.axhline(bayes[r], label=r"$H_b(\alpha)$", **BAYES_STYLE)
            finish_axes(
                ax,
                xlabel="step" if r == n_rows - 1 else None,
                title=f"{name}\n{row_titles[r]}",
                legend=(r == 0 and c == n_cols - 1),
                fontsize=6,
            )
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def model_alone(
    label: str,
    by_alpha: Mapping[float, tuple[Series, Series]],
    *,
    floor: Mapping[float, float] | None = None,
) -> Figure:
    """One model, several noise levels: in-distribution and unseen-output loss.

    ``by_alpha[α] = (loss_series, ood_series)``, each a one-entry series; the Bayes risk
    ``H_b(α)`` is drawn in the colour of its ``α``, and ``floor[α]`` (if given, e.g. the
    ``V = I`` softmax floor) as a theory line.
    """
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0))
    for i, (alpha, (loss, ood)) in enumerate(sorted(by_alpha.items())):
        color = ALPHA_COLORS[i % len(ALPHA_COLORS)]
        for ax, series in zip(axes, (loss, ood), strict=True):
            for steps, runs in series.values():
                band(ax, steps, runs, color=color, label=f"α = {alpha:g}", lw=1.3)
            ax.axhline(bayes_risk(alpha), color=color, ls=":", lw=1.0)
            if floor is not None and alpha in floor:
                ax.axhline(floor[alpha], **{**THEORY_STYLE, "color": color})
    finish_axes(axes[0], xlabel="step", ylabel="loss (nats)", title="population loss", fontsize=6)
    finish_axes(axes[1], xlabel="step", title="unseen-output loss", legend=False)
    fig.suptitle(f"{label}: dotted lines H_b(α)", fontsize=9)
    fig.tight_layout()
    return fig


def finite_losses(
    loss: Series,
    ood: Series,
    *,
    labels: Mapping[str, str],
    bayes: float,
    kl_limit: float | None = None,
    title: str | None = None,
) -> Figure:
    """Finite-sample training: population and unseen-output loss against the step."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0))
    names = ("population loss", "unseen-output loss")
    for ax, series, name in zip(axes, (loss, ood), names, strict=True):
        _draw(ax, series, COLORS, labels, log=False)
        ax.axhline(bayes, label=r"$H_b(\alpha)$", **BAYES_STYLE)
        if kl_limit is not None:
            ax.axhline(kl_limit, label=r"$H_b + \mathrm{KL}(\alpha\|\hat\alpha)$", **THEORY_STYLE)
        finish_axes(ax, xlabel="step", ylabel="loss (nats)", title=name, fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def role_split(
    label: str,
    steps: Sequence[float],
    curves: Mapping[str, np.ndarray],
) -> Figure:
    """Which path carries what: ``ξ_{A,y}`` against ``max_{j≠y} ξ_{A,j}`` (attention) and
    ``ξ_{F,τ}`` against ``max_{j≠τ} ξ_{F,j}`` (feed-forward), each ``[seeds, steps]``."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0))
    band(axes[0], steps, curves["xiA_y"], color="#009E73", label=r"$\xi_{A,y}$")
    band(axes[0], steps, curves["xiA_other"], color="#999999", label=r"$\max_{j\neq y}\xi_{A,j}$")
    band(axes[1], steps, curves["xiF_tau"], color="#D55E00", label=r"$\xi_{F,\tau}$")
    band(axes[1], steps, curves["xiF_other"], color="#999999", label=r"$\max_{j\neq\tau}\xi_{F,j}$")
    finish_axes(axes[0], xlabel="step", ylabel="logit", title="attention path", fontsize=7)
    finish_axes(axes[1], xlabel="step", title="feed-forward path", fontsize=7)
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    return fig
