"""Figures of the chapter *Beyond the stylised model: an ordinary transformer*.

Every function takes computed arrays (the chapter computes and asserts the numbers) and
returns a matplotlib Figure. The Bayes risk ``H_b(α)`` is the black dotted line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..standard_transformer import AdamHistory
from ..validate import check_finite_array
from .style import ROLE_COLORS, band, bayes_line, finish_axes

__all__ = ["plot_ablations", "plot_attention_maps", "plot_head_scores", "plot_layer_curves"]

_LAYER_COLORS = ("#D55E00", "#0072B2", "#009E73", "#CC79A7")


def plot_layer_curves(
    curves: Mapping[str, Mapping[int, Sequence[AdamHistory]]],
    bayes: Mapping[str, float],
    *,
    title: str | None = None,
) -> Figure:
    """Held-out loss over Adam steps, one panel per task (``curves[task][n_layers]`` is a
    list of histories, one per seed: mean line, min–max band), the Bayes risk dotted."""
    if not curves:
        raise ValueError("curves must be a non-empty mapping {task label: {n_layers: [...]}}")
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.3), squeeze=False)
    for ax, (label, by_layer) in zip(axes.flat, curves.items(), strict=True):
        for i, (n_layers, hs) in enumerate(sorted(by_layer.items())):
            runs = np.stack([h.eval_array for h in hs])
            band(ax, hs[0].step_array, runs, color=_LAYER_COLORS[i % len(_LAYER_COLORS)],
                 label=f"{n_layers} layer{'s' if n_layers > 1 else ''} ({len(hs)} seeds)")
        bayes_line(ax, bayes[label])
        finish_axes(ax, xlabel="Adam step", ylabel="held-out loss (nats)", title=label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_attention_maps(
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    tokens: Sequence[int] | None = None,
    marks: Mapping[str, int] | None = None,
) -> Figure:
    """Attention maps ``[H, H]`` side by side (query row, key column). ``marks`` names
    0-based key positions to outline (e.g. ``{"q": p, "y": p + 1}``) on the last row;
    ``tokens`` labels the axes."""
    if len(maps) != len(titles) or not maps:
        raise ValueError("maps and titles must be non-empty and of the same length")
    fig, axes = plt.subplots(1, len(maps), figsize=(3.6 * len(maps), 3.6), squeeze=False)
    for ax, m, t in zip(axes.flat, maps, titles, strict=True):
        a = check_finite_array("maps", m, low=0.0, high=1.0 + 1e-6)
        H = a.shape[0]
        ax.imshow(a, cmap="Greys", vmin=0, vmax=1)
        if tokens is not None:
            ax.set_xticks(range(H), [str(k) for k in tokens], fontsize=6)
            ax.set_yticks(range(H), [str(k) for k in tokens], fontsize=6)
        for (name, pos), color in zip((marks or {}).items(),
                                      (ROLE_COLORS["triggers"], ROLE_COLORS["outputs"],
                                       ROLE_COLORS["noise_token"]), strict=False):
            ax.add_patch(plt.Rectangle((pos - 0.5, H - 1.5), 1, 1, fill=False, lw=2,
                                       ec=color, label=f"key holding {name}"))
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    if marks:
        axes.flat[-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_head_scores(
    previous: np.ndarray,
    recall: np.ndarray,
    chance_previous: float,
    chance_recall: float,
    *,
    title: str | None = None,
) -> Figure:
    """Previous-token and recall scores of every head (arrays ``[seeds, layers, heads]``):
    one bar per (layer, head), mean over seeds, a dot per seed, chance as a dashed line."""
    prev = np.asarray(previous, dtype=np.float64)
    rec = np.asarray(recall, dtype=np.float64)
    if prev.ndim != 3 or prev.shape != rec.shape:
        raise ValueError("previous and recall must be arrays [seeds, layers, heads] of one shape")
    S, L, Hd = prev.shape
    labels = [f"L{i + 1}H{j + 1}" for i in range(L) for j in range(Hd)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.0))
    for ax, arr, chance, name in ((axes[0], prev, chance_previous, "previous-token score"),
                                  (axes[1], rec, chance_recall, "recall score (last → y)")):
        flat = arr.reshape(S, L * Hd)
        colors = [_LAYER_COLORS[i % len(_LAYER_COLORS)] for i in range(L) for _ in range(Hd)]
        ax.bar(range(L * Hd), flat.mean(0), color=colors, alpha=0.7)
        for s in range(S):
            ax.plot(range(L * Hd), flat[s], "k.", ms=4)
        ax.axhline(chance, color="k", ls="--", lw=1.0, label="uniform causal attention")
        ax.set_xticks(range(L * Hd), labels)
        ax.set_ylim(0, 1.05)
        finish_axes(ax, ylabel=name, xlabel="layer / head")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_ablations(
    table: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    alpha: float,
    title: str | None = None,
) -> Figure:
    """``P(y)`` and ``P(τ)`` under each ablation (``table[ablation]["p_y" | "p_tau"]`` a
    list over seeds): grouped bars (mean), a dot per seed, the Bayes-optimal ``1-α`` and
    ``α`` as dashed lines."""
    if not table:
        raise ValueError("table must be a non-empty mapping {ablation: {'p_y': [...], ...}}")
    names = list(table)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    width = 0.38
    for k, (key, color, label) in enumerate((("p_y", ROLE_COLORS["outputs"], "P(y)"),
                                             ("p_tau", ROLE_COLORS["noise_token"], "P(τ)"))):
        x = np.arange(len(names)) + (k - 0.5) * width
        vals = [np.asarray(table[n][key], dtype=np.float64) for n in names]
        ax.bar(x, [v.mean() for v in vals], width, color=color, label=label, alpha=0.8)
        for xi, v in zip(x, vals, strict=True):
            ax.plot(np.full(len(v), xi), v, "k.", ms=4)
    ax.axhline(1 - alpha, color=ROLE_COLORS["outputs"], ls="--", lw=1)
    ax.axhline(alpha, color=ROLE_COLORS["noise_token"], ls=":", lw=1)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.05)
    finish_axes(ax, ylabel="mean probability", title=title)
    fig.tight_layout()
    return fig
