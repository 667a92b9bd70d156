"""Figures of chapter 5 (generalisation). Every function returns a matplotlib Figure.

Theory (the Bayes risk ``H_b(α)``, the predicted loss under a shift) is drawn as black
lines, measurements as coloured curves or points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..roles import RoleTable
from ..shifts import ShiftRow
from ..training import History
from .style import bayes_line

__all__ = [
    "plot_alpha_shift",
    "plot_copy_scores",
    "plot_id_ood_curves",
    "plot_role_tables",
    "plot_shift_deviations",
]


def plot_id_ood_curves(
    histories: Mapping[str, History | Sequence[History]],
    bayes: float,
    *,
    ncols: int = 3,
    title: str | None = None,
) -> Figure:
    """In-distribution (solid) and unseen-output (dashed) loss over training, one panel per model.

    ``histories`` maps a label (e.g. ``"origin / linear, κ=1"``) to a
    :class:`~icl.training.History` or a list of them (several seeds: the first is drawn
    bold, the others thin). The Bayes risk ``H_b(α)`` is the black dotted line.
    """
    if not histories:
        raise ValueError("histories must be a non-empty mapping {label: History}")
    n = len(histories)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.1 * nrows), sharex=True, sharey=True, squeeze=False
    )
    for ax, (label, hs) in zip(axes.flat, histories.items(), strict=False):
        hs = [hs] if isinstance(hs, History) else list(hs)
        for i, h in enumerate(hs):
            lw, al = (2.0, 1.0) if i == 0 else (0.8, 0.5)
            steps = h.step_array
            ax.plot(
                steps,
                h.array("loss"),
                color="tab:blue",
                lw=lw,
                alpha=al,
                label="in distribution" if i == 0 else None,
            )
            if h.ood:
                ax.plot(
                    steps,
                    h.array("loss", "ood"),
                    color="tab:red",
                    lw=lw,
                    alpha=al,
                    ls="--",
                    label="unseen outputs" if i == 0 else None,
                )
        bayes_line(ax, bayes, label=rf"$H_b(\alpha)$ = {bayes:.3f}")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step $t$")
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (nats)")
    axes.flat[0].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_role_tables(
    tables: Mapping[str, RoleTable], *, signed: bool = True, title: str | None = None
) -> Figure:
    """Heat maps of role × role tables (one panel per matrix), values written in the cells.

    ``signed=True`` uses a diverging colour map centred at 0 (for ``reduce="mean"``).
    """
    if not tables:
        raise ValueError("tables must be a non-empty mapping {name: RoleTable}")
    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(5.6 * n, 4.6), squeeze=False)
    for ax, (name, t) in zip(axes[0], tables.items(), strict=True):
        v = t.values
        if signed:
            m = float(np.abs(v).max()) or 1.0
            im = ax.imshow(v, cmap="RdBu_r", vmin=-m, vmax=m)
        else:
            im = ax.imshow(v, cmap="viridis")
        ax.set_xticks(range(len(t.cols)), t.cols, rotation=60, fontsize=8)
        ax.set_yticks(range(len(t.rows)), t.rows, fontsize=8)
        ax.set_xlabel("column role (input coordinate)")
        ax.set_ylabel("row role")
        ax.set_title(f"{name}: {t.reduce} per block", fontsize=10)
        big = np.abs(v).max() or 1.0
        for i in range(v.shape[0]):
            for j in range(v.shape[1]):
                if abs(v[i, j]) >= 0.05 * big:
                    dark = signed and abs(v[i, j]) > 0.6 * big
                    ax.text(
                        j,
                        i,
                        f"{v[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if dark else "black",
                    )
        fig.colorbar(im, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_copy_scores(scores: Mapping[str, Mapping[str, np.ndarray]]) -> Figure:
    """The copy scores ``V[k, k]`` by token role, one group of points per model.

    ``scores`` maps a model label to the output of :func:`icl.roles.copy_scores`.
    """
    if not scores:
        raise ValueError("scores must be a non-empty mapping {model: copy_scores(...)}")
    roles = list(next(iter(scores.values())))
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / len(scores)
    for m, (label, sc) in enumerate(scores.items()):
        for r, role in enumerate(roles):
            vals = np.asarray(sc.get(role, []), dtype=float)
            x = r + (m - (len(scores) - 1) / 2) * width
            jitter = np.linspace(-0.3, 0.3, len(vals)) * width if len(vals) > 1 else [0.0]
            ax.plot(
                x + np.asarray(jitter),
                vals,
                "o",
                ms=3,
                color=f"C{m}",
                label=label if r == 0 else None,
            )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(roles)), [f"{r}" for r in roles])
    ax.set_xlabel("token role of $k$")
    ax.set_ylabel(r"copy score $V[k,k]$")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_shift_deviations(rows: Sequence[ShiftRow], *, title: str | None = None) -> Figure:
    """Measured minus predicted loss under every shift, one colour per model, with the
    tolerance ``±tol`` of each cell as an error bar around 0 (a cell passes when its point
    lies inside its bar). The vertical axis is symmetric-log so that exact agreement
    (``1e-6``) and failures of several nats are both visible."""
    if not rows:
        raise ValueError("rows must be a non-empty list of ShiftRow")
    shifts = list(dict.fromkeys(r.shift for r in rows))
    models = list(dict.fromkeys(r.model for r in rows))
    fig, ax = plt.subplots(figsize=(max(9.0, 0.9 * len(shifts)) + 2.5, 4.3))
    width = 0.8 / len(models)
    for m, label in enumerate(models):
        xs, dev, tol = [], [], []
        for r in rows:
            if r.model == label:
                xs.append(shifts.index(r.shift) + (m - (len(models) - 1) / 2) * width)
                dev.append(r.measured - r.predicted)
                tol.append(r.tol)
        ax.errorbar(
            xs, np.zeros(len(xs)), yerr=tol, fmt="none", ecolor=f"C{m}", alpha=0.35, elinewidth=4
        )
        ax.plot(xs, dev, "o", color=f"C{m}", ms=4, label=label)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1e-2)
    ax.set_xticks(range(len(shifts)), shifts, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("measured - predicted loss (nats)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_alpha_shift(
    alpha_test: Sequence[float],
    measured: Mapping[str, Sequence[float]],
    *,
    alpha_train: float,
    bayes_fn: Callable[[float], float],
    limit_fn: Callable[[float], float],
) -> Figure:
    """Loss at a test noise level ``α_t`` of models trained at ``α``.

    Black: the Bayes risk ``H_b(α_t)`` (solid) and the construction's limit
    ``H_b(α_t) + KL(Ber(α_t) ‖ Ber(α))`` (dashed); points: measured losses.
    """
    a = np.asarray(alpha_test, dtype=float)
    grid = np.linspace(0.0, max(0.95, float(a.max())), 200)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    ax.plot(grid, [bayes_fn(x) for x in grid], color="k", lw=1.5, label=r"$H_b(\alpha_t)$")
    ax.plot(
        grid,
        [limit_fn(x) for x in grid],
        color="k",
        ls="--",
        lw=1.2,
        label=rf"$H_b(\alpha_t) + \mathrm{{KL}}(\alpha_t \| {alpha_train})$",
    )
    markers = "os^Dv"
    for m, (label, vals) in enumerate(measured.items()):
        ax.plot(a, vals, markers[m % len(markers)], color=f"C{m}", ms=6, mfc="none", label=label)
    ax.axvline(alpha_train, color="gray", lw=0.8, ls=":")
    ax.set_xlabel(r"test noise level $\alpha_t$")
    ax.set_ylabel("loss (nats)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
