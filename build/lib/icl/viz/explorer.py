"""An interactive explorer of the construction, with a static fallback.

:func:`construction_state` computes what the construction does on one sampled sequence
at a given ``Λ``; :func:`draw_construction_state` draws it (the figure the book shows);
:func:`construction_explorer` wraps that same drawing function in ipywidgets sliders for
readers who run the notebook. The widget only re-calls the static function, so the book
never depends on a live kernel.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..architecture import ATTENTIONS, check_attention
from ..bayes import bayes_risk
from ..losses import expected_loss
from ..model import construct_model
from ..task import RecallTask, check_task
from ..validate import check_real, check_seed

__all__ = ["construction_explorer", "construction_state", "draw_construction_state"]


def construction_state(
    task: RecallTask, Lambda: float, attention: str = "linear", *, seed: int = 0
) -> dict[str, object]:
    """The construction at scale ``Λ`` on one sequence drawn with ``seed``.

    Returns the tokens, the attention weights ``a_h``, the next-token probabilities and,
    as floats, ``p_y``, ``p_tau``, the weight on the position of ``y`` (``a_y``), this
    sequence's expected loss and the Bayes risk ``H_b(α)``.
    """
    check_task(task)
    Lambda = check_real("Lambda", Lambda)
    if Lambda < 0:
        raise ValueError(f"Lambda must be a finite number >= 0, got {Lambda}")
    check_attention(attention)
    check_seed("seed", seed)
    batch = task.sample(1, seed=seed)
    net = construct_model(task, Lambda, attention=attention)
    with torch.no_grad():
        _, a = net.scores(batch.tokens)
        xi = net(batch.tokens).xi
    prob = torch.softmax(xi, -1)[0]
    y, pos = int(batch.outputs[0]), int(batch.pair_pos[0]) + 1
    return {
        "tokens": batch.tokens[0].numpy(),
        "weights": a[0].numpy(),
        "probs": prob.numpy(),
        "y": y,
        "y_pos": pos,
        "noise_pos": int(batch.noise_pos[0]) + 1 if task.noisy else -1,
        "p_y": float(prob[y]),
        "p_tau": float(prob[task.noise_token]),
        "a_y": float(a[0, pos]),
        "loss": float(expected_loss(xi, batch, task.alpha, task.noise_token)[0]),
        "bayes": bayes_risk(task.alpha),
    }


def draw_construction_state(
    task: RecallTask, Lambda: float, attention: str = "linear", *, seed: int = 0
) -> Figure:
    """Attention weights along the sequence (left) and the predicted law (right)."""
    st = construction_state(task, Lambda, attention, seed=seed)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    w = np.asarray(st["weights"])
    h = np.arange(1, len(w) + 1)
    ax1.plot(h, w, color="0.5", lw=0.8)
    ax1.plot(st["y_pos"] + 1, w[st["y_pos"]], "o", color="#009e73", label="position of y")
    if st["noise_pos"] >= 0:
        ax1.plot(
            st["noise_pos"] + 1, w[st["noise_pos"]], "s", color="#d55e00", label="position of τ"
        )
    ax1.set_xlabel("position h (1-based)")
    ax1.set_ylabel("attention weight a_h")
    ax1.set_title(f"{attention} attention, Λ = {Lambda:g}")
    ax1.legend(fontsize=8)
    p = np.asarray(st["probs"])
    colours = ["0.75"] * len(p)
    colours[st["y"]] = "#009e73"
    colours[task.noise_token] = "#d55e00"
    ax2.bar(np.arange(len(p)), p, color=colours)
    ax2.axhline(1 - task.alpha, color="#009e73", ls="--", lw=1, label="1 − α (Bayes, y)")
    if task.noisy:
        ax2.axhline(task.alpha, color="#d55e00", ls=":", lw=1, label="α (Bayes, τ)")
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("next token")
    ax2.set_ylabel("probability")
    ax2.set_title(f"loss {st['loss']:.4f}  vs  H_b(α) = {st['bayes']:.4f}")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def construction_explorer(task: RecallTask | None = None, *, seed: int = 0):
    """Sliders for ``Λ``, ``α`` and the attention, redrawing :func:`draw_construction_state`.

    Returns an ``ipywidgets`` object (display it as the last expression of a cell). The
    task's other sizes are kept; ``α`` is replaced by the slider's value.
    """
    import ipywidgets as widgets

    base = task or RecallTask(alpha=0.5)

    def show(Lambda: float, alpha: float, attention: str) -> None:
        fig = draw_construction_state(base.replace(alpha=alpha), Lambda, attention, seed=seed)
        plt.show(fig)

    return widgets.interactive(
        show,
        Lambda=widgets.FloatSlider(value=4.0, min=0.0, max=20.0, step=0.5, description="Λ"),
        alpha=widgets.FloatSlider(value=base.alpha, min=0.0, max=0.9, step=0.1, description="α"),
        attention=widgets.Dropdown(options=list(ATTENTIONS), value="linear"),
    )
