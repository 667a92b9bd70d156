"""Figures of chapter 1: sampled sequences of the recall task and the sampler's laws.

Every function returns a ``matplotlib.figure.Figure``, except :func:`roles_markdown`
(a Markdown table as a string).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ..laws import LawCheck, TargetCheck, TokenUsage
from ..task import RecallBatch, RecallTask, check_batch, check_task
from .style import ROLE_COLORS, ROLE_LABELS

__all__ = [
    "draw_sequence_panels",
    "draw_sequences",
    "plot_categorical_law",
    "plot_laws",
    "plot_target_law",
    "plot_token_usage",
    "role_codes",
    "roles_markdown",
]

#: the role of each cell code of :func:`role_codes` (0 filler, 1 q, 2 y, 3 τ, 4 other q′)
_ROLE_ORDER = ["filler", "triggers", "outputs", "noise_token", "other_trigger"]
_CMAP = ListedColormap([ROLE_COLORS[r] for r in _ROLE_ORDER])


def role_codes(task: RecallTask, batch: RecallBatch) -> torch.Tensor:
    """Role of every cell, ``[B, H]``: 0 filler, 1 ``q``, 2 ``y``, 3 ``τ``, 4 other trigger.

    ``y`` is the cell right after the planted ``q`` (``pair_pos + 1``); a filler token that
    happens to equal ``y`` elsewhere stays filler.
    """
    check_batch("batch", batch, check_task(task))
    tok = batch.tokens
    q = tok[:, -1:]
    codes = torch.zeros_like(tok)
    codes[(tok < task.n_triggers) & (tok != q)] = 4
    codes[tok == q] = 1
    codes[tok == task.noise_token] = 3
    rows = torch.arange(tok.shape[0])
    has = batch.pair_pos >= 0
    codes[rows[has], batch.pair_pos[has] + 1] = 2
    return codes


def _legend_handles() -> list:
    handles = [
        Patch(facecolor=ROLE_COLORS[r], edgecolor="none", label=ROLE_LABELS[r]) for r in _ROLE_ORDER
    ]
    handles.append(Patch(facecolor="white", edgecolor="black", linewidth=1.5,
                         label="last token $z_H = q$"))
    return handles


def _draw_on(ax_seq, ax_tgt, task: RecallTask, batch: RecallBatch, n: int,
             columns: slice | None, annotate: bool | None, title: str | None) -> None:
    n = min(n, batch.batch_size)
    sub = batch[:n]
    codes = role_codes(task, sub).numpy()
    tok = sub.tokens.numpy()
    H = sub.seq_len
    cols = np.arange(H)[columns] if columns is not None else np.arange(H)
    if cols.size == 0:
        raise ValueError(f"columns={columns!r} selects no position of H={H}")
    if not np.all(np.diff(cols) == 1):
        raise ValueError("columns must select a contiguous range of positions (step 1)")
    lo, hi = int(cols[0]), int(cols[-1])
    ext = (lo + 0.5, hi + 1.5, n - 0.5, -0.5)  # 1-based positions on the x axis
    ax_seq.imshow(codes[:, cols], cmap=_CMAP, vmin=-0.5, vmax=len(_ROLE_ORDER) - 0.5,
                  aspect="auto", interpolation="nearest", extent=ext)
    if annotate is None:
        annotate = cols.size <= 48
    if annotate:
        for i in range(n):
            for h in cols:
                dark = codes[i, h] in (1, 2, 3)
                ax_seq.text(h + 1, i, str(tok[i, h]), ha="center", va="center", fontsize=7,
                            color="white" if dark else "#555555")
    if hi == H - 1:  # mark the last token z_H
        ax_seq.add_patch(Rectangle((H - 0.5, -0.5), 1.0, n, fill=False, edgecolor="black",
                                   linewidth=1.5, clip_on=False))
    for i in range(n + 1):  # thin separators between sequences
        ax_seq.axhline(i - 0.5, color="white", linewidth=1.5)
    ax_seq.set_yticks(range(n))
    ax_seq.set_yticklabels([f"seq {i}" for i in range(n)], fontsize=8)
    ax_seq.set_xlabel("position $h$ (1-based)")
    if title:
        ax_seq.set_title(title, loc="left", fontsize=10)
    # the target z_{H+1}, in its own column
    tgt = sub.targets.numpy()
    tcode = np.where(tgt == task.noise_token, 3, 2)[:, None]
    ax_tgt.imshow(tcode, cmap=_CMAP, vmin=-0.5, vmax=len(_ROLE_ORDER) - 0.5, aspect="auto",
                  interpolation="nearest", extent=(0, 1, n - 0.5, -0.5))
    for i in range(n):
        ax_tgt.text(0.5, i, str(tgt[i]), ha="center", va="center", fontsize=8, color="white")
        ax_tgt.axhline(i - 0.5, color="white", linewidth=1.5)
    ax_tgt.set_xticks([0.5])
    ax_tgt.set_xticklabels(["$z_{H+1}$"])
    ax_tgt.set_yticks([])
    ax_tgt.set_xlim(0, 1)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")


def draw_sequences(task: RecallTask, batch: RecallBatch, n: int = 8, *,
                   columns: slice | None = None, annotate: bool | None = None,
                   title: str | None = None, width: float = 12.0) -> Figure:
    """Draw the first ``n`` sequences of ``batch``: one row each, one coloured cell a token.

    Colours: the trigger ``q`` (blue), the clean output ``y`` after it (green), the noise
    token ``τ`` (vermilion), other triggers of distractor pairs (orange), filler (light
    grey). The last token ``z_H = q`` is outlined in black, and the target ``z_{H+1}`` is
    drawn in a column of its own on the right (green if it is ``y``, vermilion if ``τ``).

    ``columns`` (a slice of 0-based positions) shows a window, e.g. ``slice(-40, None)``;
    by default the whole row is drawn (thin cells for ``H = 256``). Token ids are written
    in the cells when ``annotate`` is true (default: when at most 48 positions are shown).
    """
    check_batch("batch", batch, check_task(task))
    _check_n(n)
    n_rows = min(n, batch.batch_size)
    fig = plt.figure(figsize=(width, 0.32 * n_rows + 1.5), layout="constrained")
    ax_seq, ax_tgt = fig.subplots(1, 2, gridspec_kw={"width_ratios": [40, 1]})
    _draw_on(ax_seq, ax_tgt, task, batch, n, columns, annotate, title)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=6, fontsize=8,
               frameon=False)
    return fig


def draw_sequence_panels(panels: Sequence[tuple[str, RecallTask, RecallBatch]], n: int = 6, *,
                         columns: slice | None = None, annotate: bool | None = None,
                         width: float = 12.0) -> Figure:
    """Several :func:`draw_sequences` panels stacked in one figure with one legend.

    ``panels`` is a list of ``(title, task, batch)``.
    """
    _check_n(n)
    if len(panels) == 0:
        raise ValueError("panels must hold at least one (title, task, batch)")
    rows = [min(n, b.batch_size) for _, _, b in panels]
    fig = plt.figure(figsize=(width, sum(0.32 * r + 0.9 for r in rows) + 0.6),
                     layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False,
                        gridspec_kw={"width_ratios": [40, 1], "height_ratios": rows})
    for (title, task, batch), (ax_seq, ax_tgt) in zip(panels, axes, strict=True):
        _draw_on(ax_seq, ax_tgt, task, batch, n, columns, annotate, title)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=6, fontsize=8,
               frameon=False)
    return fig


def plot_categorical_law(check: LawCheck, ax=None, *, xlabel: str | None = None,
                         n_sigma: float = 3.0) -> Figure:
    """Empirical frequencies (bars) beside the prescribed law (line), with a ±``n_sigma`` band.

    The band (dashed) is ``π_k ± n_sigma √(π_k(1-π_k)/n)``: where a frequency should fall under the
    law. The title carries Pearson's statistic and its p-value.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    else:
        fig = ax.figure
    x = check.support
    pi = check.probs
    sd = np.sqrt(pi * (1 - pi) / max(check.n, 1))
    ax.bar(x, check.frequencies, width=1.0 if len(x) > 100 else 0.8, color="#9ab8d6",
           edgecolor="none", label=f"measured ({check.n:,} draws)")
    for sign, lab in ((1, f"law ± {n_sigma:g} s.d."), (-1, None)):
        ax.step(x, np.clip(pi + sign * n_sigma * sd, 0, None), where="mid", color="#D55E00",
                linewidth=0.8, linestyle="--", label=lab)
    ax.step(x, pi, where="mid", color="#D55E00", linewidth=1.5, label="law (definition)")
    ax.set_xlabel(xlabel or check.name)
    ax.set_ylabel("frequency")
    ax.set_ylim(0, 1.35 * max(check.frequencies.max(), (pi + n_sigma * sd).max()))
    t = check.test
    ax.set_title(f"{check.name}: $\\chi^2_{{{t.dof}}}$ = {t.statistic:.1f}, p = {t.p_value:.3g}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncol=3)
    return fig


def plot_target_law(checks: Sequence[TargetCheck], ax=None, *, n_se: float = 3.0) -> Figure:
    """Measured fraction of ``τ`` targets vs ``α`` (error bars ±``n_se`` s.e.), line ``y = α``."""
    if len(checks) == 0:
        raise ValueError("checks must hold at least one TargetCheck")
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.6, 3.2), layout="constrained")
    else:
        fig = ax.figure
    a = np.array([c.alpha for c in checks])
    r = np.array([c.rate for c in checks])
    se = np.array([c.se for c in checks])
    ax.plot([0, 1], [0, 1], color="#D55E00", linewidth=1.5, label=r"law: $P(z_{H+1}=\tau)=\alpha$")
    ax.errorbar(a, r, yerr=n_se * se, fmt="o", color="#0072B2", capsize=3, markersize=4,
                label=f"measured ± {n_se:g} s.e.")
    ax.set_xlabel(r"noise level $\alpha$")
    ax.set_ylabel(r"fraction of targets equal to $\tau$")
    ax.set_xlim(-0.05, 1.0)
    ax.set_ylim(-0.05, 1.0)
    ax.set_title(f"noise rate ({checks[0].n:,} sequences per $\\alpha$)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def plot_laws(position: LawCheck, filler: LawCheck, targets: Sequence[TargetCheck]) -> Figure:
    """A 1×3 panel: pair position, filler tokens, noise rate (each measured vs its law)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained",
                             gridspec_kw={"width_ratios": [1.4, 1.4, 1]})
    plot_categorical_law(position, axes[0], xlabel="start $p$ of the $(q, y)$ pair (0-based)")
    plot_categorical_law(filler, axes[1], xlabel="filler token id")
    plot_target_law(targets, axes[2])
    return fig


def _span(tokens: list[int]) -> str:
    if len(tokens) == 1:
        return str(tokens[0])
    return f"{tokens[0]} … {tokens[-1]}"


def roles_markdown(task: RecallTask) -> str:
    """The token roles of ``task`` as a Markdown table (computed from ``task.roles()``)."""
    r = check_task(task).roles()
    q_note = "only $q = 0$ occurs (noisy task)" if task.noisy else "$q \\sim$ Unif$(Q)$"
    rows = [
        ("triggers $Q$", r["triggers"], f"$z_H = q$ and the start of each pair; {q_note}"),
        ("training outputs $O$", r["outputs"], "the clean output $y$ in training; also filler"),
        ("OOD outputs", r["ood_outputs"], "$y$ of the OOD test only; filler in training"),
        ("noise token $\\tau$", r["noise_token"],
         "only right after $q$ in the $(q, \\tau)$ pair; the target with probability "
         "$\\alpha$"),
        ("filler", r["filler"], "every other position, i.i.d. uniform"),
    ]
    lines = ["| role | token ids | count | where it occurs |", "|---|---|---|---|"]
    lines += [f"| {name} | {_span(ids)} | {len(ids)} | {where} |" for name, ids, where in rows]
    return "\n".join(lines)


def plot_token_usage(task: RecallTask, usage: TokenUsage) -> Figure:
    """Occurrences of every token id as filler and as clean output ``y`` (log scale).

    The OOD outputs are shaded: many filler occurrences, no bar as an output.
    """
    N = task.vocab_size
    if usage.as_filler.shape != (N,):
        raise ValueError(f"usage must count the N={N} tokens of task")
    fig, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
    x = np.arange(N)
    ood = task.ood_outputs.numpy()
    ax.axvspan(ood[0] - 0.5, ood[-1] + 0.5, color="#f3e6c4", zorder=0,
               label=f"OOD outputs (ids {ood[0]} … {ood[-1]})")
    ax.bar(x - 0.2, usage.as_filler, width=0.4, color="#9a9a9a", label="as filler")
    ax.bar(x + 0.2, usage.as_output, width=0.4, color=ROLE_COLORS["outputs"],
           label="as clean output $y$")
    ax.set_yscale("log")
    ax.set_ylim(0.5, 20 * max(usage.as_filler.max(), usage.as_output.max(), 1))
    ax.set_xlabel("token id")
    ax.set_ylabel("occurrences in the batch")
    ax.set_title("training batch: where each token occurs", fontsize=9)
    ax.legend(fontsize=8, loc="upper right", ncol=3)
    return fig
