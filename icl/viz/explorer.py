"""Interactive explorers, each a plain figure function wrapped in ipywidgets.

Chapter 3's construction explorer: :func:`construction_state` computes what the
construction does on one sampled sequence at a given ``Λ``; :func:`draw_construction_state`
draws it (the figure the book shows); :func:`construction_explorer` wraps that same drawing
function in sliders.

The book's explorer page: :func:`explorer_state` computes, for one setting of
``α, N, H, η``, the attention and the family, the Bayes risk ``H_b(α)``, the construction's
loss curve ``L(Λ)`` and a short normalised-GD training run; :func:`draw_explorer_state`
draws the three views (:func:`bayes_panel`, :func:`construction_panel`,
:func:`training_panel`); :class:`ParameterExplorer` is the panel of controls that only
re-calls those two functions. The book shows the default view as an ordinary figure, so
no page depends on a live kernel.
"""

from __future__ import annotations

import io
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..architecture import ATTENTIONS, FAMILIES, check_attention, check_family
from ..bayes import bayes_risk
from ..closed_forms import closed_form_loss
from ..dynamics import normalized_gd_trajectory
from ..losses import expected_loss
from ..model import OneLayerTransformer, construct_model
from ..softmax_construction import softmax_loss
from ..task import RecallTask, check_task
from ..training import train
from ..validate import check_instance, check_int, check_real, check_seed
from .style import BAYES_STYLE, THEORY_STYLE, bayes_line, finish_axes

__all__ = [
    "ExplorerSizes",
    "ParameterExplorer",
    "bayes_panel",
    "construction_explorer",
    "construction_panel",
    "construction_state",
    "draw_construction_state",
    "draw_explorer_state",
    "explorer_state",
    "parameter_explorer",
    "training_panel",
]


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


# ---------------------------------------------------------------- the book's explorer page


class ExplorerSizes:
    """The sizes of one view of :func:`explorer_state` (what decides its run time).

    ``steps`` normalised-GD steps on ``batch_size`` fresh sequences each, evaluated on
    ``eval_size`` held-out sequences; the construction's loss on ``n_lambda`` values of
    ``Λ`` in ``[0, lambda_max]`` (softmax attention: a Monte-Carlo average over
    ``n_samples`` sequences, the model page §4); ``seed`` seeds the run and the samples.
    """

    def __init__(
        self,
        steps: int = 100,
        batch_size: int = 64,
        eval_size: int = 256,
        n_lambda: int = 61,
        lambda_max: float = 15.0,
        n_samples: int = 256,
        seed: int = 0,
    ) -> None:
        self.steps = check_int("steps", steps, minimum=1, maximum=10_000)
        self.batch_size = check_int("batch_size", batch_size, minimum=1, maximum=4096)
        self.eval_size = check_int("eval_size", eval_size, minimum=1, maximum=8192)
        self.n_lambda = check_int("n_lambda", n_lambda, minimum=2, maximum=1000)
        self.lambda_max = check_real("lambda_max", lambda_max, low=0.0, low_open=True)
        self.n_samples = check_int("n_samples", n_samples, minimum=1, maximum=8192)
        self.seed = check_seed("seed", seed)

    def __repr__(self) -> str:
        fields = ("steps", "batch_size", "eval_size", "n_lambda", "lambda_max", "n_samples",
                  "seed")
        return "ExplorerSizes(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"


def _construction_losses(
    task: RecallTask, Lambda: np.ndarray, attention: str, sizes: ExplorerSizes
) -> np.ndarray:
    """The construction's population loss at each ``Λ`` (noiseless: shared ``λ_k = Λ``)."""
    if attention == "softmax":
        return np.asarray(
            softmax_loss(task, Lambda, n_samples=sizes.n_samples, seed=sizes.seed),
            dtype=np.float64,
        )
    grid = Lambda if task.noisy else Lambda[:, None]
    return np.asarray(closed_form_loss(task, grid), dtype=np.float64)


def explorer_state(
    task: RecallTask,
    lr: float,
    attention: str = "linear",
    family: str = "reparam",
    sizes: ExplorerSizes | None = None,
) -> dict[str, object]:
    """The three views of the explorer page for one setting of its controls.

    Parameters
    ----------
    task
        The recall task: its ``α`` (``alpha``), ``N`` (``vocab_size``) and ``H``
        (``seq_len``) are three of the controls.
    lr
        The step size ``η`` of the training run (> 0, at most 10).
    attention, family
        The attention activation ``σ`` and the parameter family of the trained network.
    sizes
        :class:`ExplorerSizes` (default: 100 steps of 64 sequences).

    Returns a dict of plain numbers and NumPy arrays: ``alpha``, ``bayes`` (``H_b(α)``);
    ``Lambda`` and ``construction_loss`` (the construction's ``L(Λ)``, same ``σ``);
    ``steps`` and ``train_loss`` (population loss of the trained network at the evaluation
    steps), ``final_loss``; ``trajectory_loss``, the construction's loss along the book's
    trajectory ``Λ_t = ηt`` (noiseless ``λ_k = ηt/√|Q|``), for the ``reparam`` family with
    linear or ReLU attention (``None`` otherwise); ``seconds``, the wall time it took.
    """
    task = check_task(task)
    lr = check_real("lr", lr, low=0.0, high=10.0, low_open=True)
    attention = check_attention(attention)
    family = check_family(family)
    sizes = ExplorerSizes() if sizes is None else check_instance(
        "sizes", sizes, ExplorerSizes, "an icl.viz.explorer.ExplorerSizes"
    )
    start = time.perf_counter()
    Lambda = np.linspace(0.0, sizes.lambda_max, sizes.n_lambda)
    curve = _construction_losses(task, Lambda, attention, sizes)
    model = OneLayerTransformer(task, attention, family)
    hist = train(
        model, task, sizes.steps, lr, batch_size=sizes.batch_size, eval_size=sizes.eval_size,
        eval_every=max(1, sizes.steps // 50), ood=False, seed=sizes.seed, progress=False,
    )
    steps = hist.step_array.astype(np.float64)
    trajectory = None
    if family == "reparam" and attention != "softmax":
        lam_t = np.asarray(normalized_gd_trajectory(task, lr, steps), dtype=np.float64)
        trajectory = _construction_losses(task, lam_t, attention, sizes)
    loss = hist.array("loss")
    return {
        "alpha": task.alpha,
        "vocab_size": task.vocab_size,
        "seq_len": task.seq_len,
        "lr": lr,
        "attention": attention,
        "family": family,
        "bayes": bayes_risk(task.alpha) + 0.0,  # + 0.0: H_b(0) is -0.0, shown as 0
        "Lambda": Lambda,
        "construction_loss": curve,
        "steps": steps,
        "train_loss": loss,
        "final_loss": float(loss[-1]),
        "trajectory_loss": trajectory,
        "seconds": time.perf_counter() - start,
    }


def _check_state(state: object) -> dict:
    state = check_instance("state", state, dict, "a dict returned by explorer_state")
    missing = [k for k in ("alpha", "vocab_size", "seq_len", "lr", "attention", "family",
                           "bayes", "Lambda", "construction_loss", "steps", "train_loss",
                           "trajectory_loss") if k not in state]
    if missing:
        raise ValueError(f"state must come from explorer_state; it lacks the keys {missing}")
    return state


def bayes_panel(ax: Axes, state: dict) -> None:
    """The Bayes risk ``H_b(α)`` over ``α ∈ [0, 0.95]``, the current ``α`` marked."""
    state = _check_state(state)
    grid = np.linspace(0.0, 0.95, 96)
    ax.plot(grid, [bayes_risk(a) for a in grid], color="0.3", lw=1.2)
    ax.plot([state["alpha"]], [state["bayes"]], "o", color="#D55E00",
            label=f"α = {state['alpha']:g}: H_b = {state['bayes']:.4f}")
    finish_axes(ax, xlabel="noise level α", ylabel=r"Bayes risk $H_b(\alpha)$ (nats)",
                title="Bayes risk")


def construction_panel(ax: Axes, state: dict) -> None:
    """The construction's loss ``L(Λ)`` (same attention) against ``Λ``, above ``H_b(α)``."""
    state = _check_state(state)
    ax.plot(state["Lambda"], state["construction_loss"], color="#0072B2",
            label=f"construction, {state['attention']}")
    bayes_line(ax, state["bayes"])
    finish_axes(ax, xlabel=r"scale $\Lambda$", ylabel="population loss (nats)",
                title="The construction's loss curve")


def training_panel(ax: Axes, state: dict) -> None:
    """Population loss of the trained network against the step; the book's trajectory
    ``L(ηt)`` (dashed) where it applies, and ``H_b(α)`` (dotted)."""
    state = _check_state(state)
    ax.plot(state["steps"], state["train_loss"], color="#009E73",
            label=f"{state['family']}, {state['attention']}, η = {state['lr']:g}")
    if state["trajectory_loss"] is not None:
        ax.plot(state["steps"], state["trajectory_loss"], label=r"construction at $\Lambda_t$",
                **THEORY_STYLE)
    ax.axhline(state["bayes"], label=r"$H_b(\alpha)$", **BAYES_STYLE)
    finish_axes(ax, xlabel="training step t", ylabel="population loss (nats)",
                title="A short training run")


def draw_explorer_state(state: dict) -> Figure:
    """The explorer's three views side by side (:func:`bayes_panel`,
    :func:`construction_panel`, :func:`training_panel`)."""
    state = _check_state(state)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    bayes_panel(axes[0], state)
    construction_panel(axes[1], state)
    training_panel(axes[2], state)
    fig.suptitle(
        f"α = {state['alpha']:g}, N = {state['vocab_size']}, H = {state['seq_len']}, "
        f"η = {state['lr']:g}, {state['attention']} attention, {state['family']} family",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _numbers_html(state: dict) -> str:
    return (
        f"<b>H<sub>b</sub>(α)</b> = {state['bayes']:.6f} &nbsp;·&nbsp; "
        f"<b>construction at Λ = {state['Lambda'][-1]:g}</b>: "
        f"{state['construction_loss'][-1]:.6f} &nbsp;·&nbsp; "
        f"<b>trained, step {int(state['steps'][-1])}</b>: {state['final_loss']:.6f} "
        f"&nbsp;·&nbsp; computed in {state['seconds']:.2f} s"
    )


class ParameterExplorer:
    """Controls for ``α, N, H, η``, the attention and the family, above the figure of
    :func:`draw_explorer_state` and its numbers.

    Every change of a control calls :meth:`update`, which re-calls :func:`explorer_state`
    and :func:`draw_explorer_state` and nothing else. ``controls`` maps ``alpha``,
    ``vocab_size``, ``seq_len``, ``lr``, ``attention`` and ``family`` to their widgets;
    ``state`` is the last state, ``image`` the figure (PNG), ``numbers`` the line of
    numbers, ``panel`` the whole box (displayed by a notebook cell that ends with the
    explorer). The other sizes of the task (``|Q|``, ``|O|``) are those of ``task``.
    """

    def __init__(
        self, task: RecallTask | None = None, lr: float = 0.1, attention: str = "linear",
        family: str = "reparam", sizes: ExplorerSizes | None = None,
    ) -> None:
        import ipywidgets as widgets

        self.task = RecallTask(alpha=0.2, seq_len=64) if task is None else check_task(task)
        self.sizes = ExplorerSizes() if sizes is None else check_instance(
            "sizes", sizes, ExplorerSizes, "an icl.viz.explorer.ExplorerSizes"
        )
        lr = check_real("lr", lr, low=0.01, high=1.0)
        n_min = self.task.n_triggers + self.task.n_outputs + 2
        self.controls = {
            "alpha": widgets.FloatSlider(value=self.task.alpha, min=0.0, max=0.9, step=0.05,
                                         description="α"),
            "vocab_size": widgets.IntSlider(value=self.task.vocab_size, min=n_min,
                                            max=max(120, self.task.vocab_size), description="N"),
            "seq_len": widgets.IntSlider(value=self.task.seq_len, min=8,
                                         max=max(256, self.task.seq_len), step=8,
                                         description="H"),
            "lr": widgets.FloatLogSlider(value=lr, base=10, min=-2, max=0, step=0.1,
                                         description="η"),
            "attention": widgets.Dropdown(options=list(ATTENTIONS),
                                          value=check_attention(attention),
                                          description="attention"),
            "family": widgets.Dropdown(options=list(FAMILIES), value=check_family(family),
                                       description="family"),
        }
        self.image = widgets.Image(format="png")
        self.numbers = widgets.HTML()
        self.panel = widgets.VBox([
            widgets.HBox([self.controls[k] for k in ("alpha", "vocab_size", "seq_len")]),
            widgets.HBox([self.controls[k] for k in ("lr", "attention", "family")]),
            self.numbers,
            self.image,
        ])
        self.state: dict[str, object] = {}
        self.updates = 0
        for control in self.controls.values():
            control.observe(lambda _change: self.update(), names="value")
        self.update()

    def update(self) -> None:
        """Recompute the state for the controls' values and redraw (called on each change)."""
        c = {k: w.value for k, w in self.controls.items()}
        task = self.task.replace(alpha=float(c["alpha"]), vocab_size=int(c["vocab_size"]),
                                 seq_len=int(c["seq_len"]))
        self.state = explorer_state(task, float(c["lr"]), c["attention"], c["family"],
                                    self.sizes)
        fig = draw_explorer_state(self.state)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        plt.close(fig)
        self.image.value = buf.getvalue()
        self.numbers.value = _numbers_html(self.state)
        self.updates += 1

    def _repr_mimebundle_(self, **kwargs):
        return self.panel._repr_mimebundle_(**kwargs)


def parameter_explorer(
    task: RecallTask | None = None, lr: float = 0.1, attention: str = "linear",
    family: str = "reparam", sizes: ExplorerSizes | None = None,
) -> ParameterExplorer:
    """The explorer page's panel (a :class:`ParameterExplorer`), drawn once at the given
    setting; display it as the last expression of a cell."""
    return ParameterExplorer(task, lr, attention, family, sizes)
