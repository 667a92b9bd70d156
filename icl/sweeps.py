"""Optimiser variants and sweeps for chapter 7 (the open questions; the book's own protocol, [D]).

:func:`icl.train` is the authors' optimiser (the model page §5.1), with two options the
reviewers' questions need (weight decay and Adam). :func:`train_with` names the four
update rules of this chapter and passes them to :func:`icl.train` (one training loop;
``g`` the mini-batch gradient of one parameter tensor, ``η`` the step size, ``ω`` the
weight decay):

* ``"normalized"``: ``θ ← (1 - ηω) θ - η g/‖g‖_F`` (per tensor; the paper's rule when ``ω = 0``);
* ``"plain"``: ``θ ← (1 - ηω) θ - η g``;
* ``"coordinate"``: ``θ ← (1 - ηω) θ - η sign(g)``: every scalar entry normalised on its own;
* ``"adam"``: Adam with decoupled weight decay (AdamW): ``m ← β₁m + (1-β₁)g``,
  ``v ← β₂v + (1-β₂)g²``, ``θ ← (1 - ηω)θ - η m̂/(√v̂ + ε)`` with the bias corrections
  ``m̂ = m/(1-β₁^t)``, ``v̂ = v/(1-β₂^t)``, ``β = (0.9, 0.999)``, ``ε = 10⁻⁸`` (PyTorch's
  defaults, written out).

Weight decay is *decoupled* (applied to the parameters, not added to the gradient), so
``ω`` means the same thing for all four rules.

The sweep helpers (:class:`RunConfig`, :func:`run`, :func:`one_factor_sweep`) train one
:class:`icl.families.LadderTransformer` per setting and summarise it by its final losses
and by the weights that decide out-of-distribution behaviour (:func:`copy_summary`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .families import INIT_SCALES, LADDER, LadderTransformer
from .model import OneLayerTransformer
from .roles import copy_scores
from .task import RecallTask, check_task
from .training import ADAM_BETAS, History, train
from .validate import PrecisionWarning, check_choice, check_int, check_real, check_seed

__all__ = [
    "ADAM_BETAS",
    "OPTIMIZERS",
    "RunConfig",
    "RunResult",
    "chance_loss",
    "copy_summary",
    "one_factor_sweep",
    "run",
    "train_in_segments",
    "train_with",
]

#: the update rules of :func:`train_with`
OPTIMIZERS = ("normalized", "plain", "coordinate", "adam")
#: the value of :func:`icl.train`'s ``normalized`` for each rule (Adam: ``adam=True``)
_RULES = {"normalized": True, "plain": False, "coordinate": "per_coordinate", "adam": True}


def train_with(
    model: OneLayerTransformer,
    task: RecallTask,
    steps: int,
    lr: float,
    *,
    optimizer: str = "normalized",
    weight_decay: float = 0.0,
    batch_size: int = 512,
    seed: int = 0,
    eval_every: int | None = None,
    eval_size: int = 1024,
    ood: bool = True,
) -> History:
    """Train ``model`` in place with one of :data:`OPTIMIZERS`; return its :class:`icl.History`.

    A thin wrapper of :func:`icl.train` (the same loop, data stream and evaluation sets):
    ``optimizer`` chooses its update rule (``"normalized"``: ``normalized=True``;
    ``"plain"``: ``False``; ``"coordinate"``: ``"per_coordinate"``; ``"adam"``:
    ``adam=True``), ``weight_decay`` is passed on, evaluations are at step 0, every
    ``eval_every`` steps (default ``max(1, steps // 50)``) and the last step, and no
    progress bar is shown. ``History.normalized`` is ``True`` for ``"normalized"`` only.
    :func:`icl.train`'s ``PrecisionWarning`` for a run that reached float32's resolution is
    not raised: chapter 7 trains to that resolution on purpose, and its rate fits stop
    above it (§7.1).
    """
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    steps = check_int("steps", steps, minimum=1)
    eval_every = max(1, steps // 50) if eval_every is None else eval_every
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PrecisionWarning)
        hist = train(
            model,
            task,
            steps,
            lr,
            batch_size=batch_size,
            normalized=_RULES[optimizer],
            adam=optimizer == "adam",
            weight_decay=weight_decay,
            seed=seed,
            eval_every=eval_every,
            eval_size=eval_size,
            ood=ood,
            progress=False,
        )
    hist.normalized = optimizer == "normalized"
    return hist


def train_in_segments(
    model: OneLayerTransformer,
    task: RecallTask,
    steps: int,
    lr: float,
    *,
    segments: int,
    seed: int = 0,
    **kwargs,
) -> tuple[History, list[dict[str, torch.Tensor]]]:
    """:func:`train_with` in ``segments`` equal parts, keeping the parameters after each.

    Segment ``k`` (``k = 0, …, segments - 1``) trains ``steps // segments`` steps on its
    own fresh stream (``seed + k``; its evaluation sets are those of that seed), so the
    whole is one run of population training whose parameters are also snapshot at the
    end of every segment. Returns the merged :class:`icl.History` (steps counted from the
    start; each segment's step-0 evaluation, which repeats the previous segment's last,
    is dropped) and the snapshots, one dict ``{name: tensor}`` of the trainable
    parameters (detached copies) per segment. ``kwargs`` go to :func:`train_with`.
    """
    steps = check_int("steps", steps, minimum=1)
    segments = check_int("segments", segments, minimum=1)
    seed = check_seed("seed", seed)
    if steps % segments:
        raise ValueError(
            f"steps must be a multiple of segments ({segments}), got steps={steps}"
        )
    per = steps // segments
    merged: History | None = None
    snapshots: list[dict[str, torch.Tensor]] = []
    for k in range(segments):
        h = train_with(model, task, per, lr, seed=seed + k, **kwargs)
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()
                          if p.requires_grad})
        if merged is None:
            merged = h
            continue
        merged.train_loss.extend(h.train_loss)
        merged.steps.extend(k * per + t for t in h.steps[1:])
        for mine, theirs in ((merged.pop, h.pop), (merged.ood, h.ood), (merged.params, h.params)):
            for name, values in theirs.items():
                mine[name].extend(values[1:])
    assert merged is not None
    return merged, snapshots


@torch.no_grad()
def copy_summary(model: OneLayerTransformer) -> dict[str, float]:
    """Mean *copy coefficient* of the training outputs ``O`` and of the unseen outputs.

    Attention that lands on a position holding token ``k`` adds ``a_h (E(k) + Ẽ(z_{h-1}))``
    to ``A``; the logit of ``k`` gains ``a_h M[k, k]`` from the first term, with
    ``M = V + κF`` (the value and the attention-fed feed-forward maps). ``M[k, k]`` is the
    model's ability to *copy* an attended ``k`` to the output (cf.
    :func:`icl.roles.copy_scores`). Returns ``{"copy_O", "copy_OOD", "copy_gap"}`` (the gap
    is ``copy_O - copy_OOD``).
    """
    if not isinstance(model, OneLayerTransformer):
        raise TypeError(f"model must be an icl.OneLayerTransformer, got {type(model).__name__}")
    W, V, F = model.matrices()
    M = V + model.kappa * F
    scores = copy_scores(M, model.task)
    o, u = float(np.mean(scores["O"])), float(np.mean(scores["OOD"]))
    return {"copy_O": o, "copy_OOD": u, "copy_gap": o - u}


@dataclass(frozen=True)
class RunConfig:
    """One training run of chapter 7's sweeps (every field a knob of the questions).

    ``n_outputs`` is ``|O|``; ``init`` a key of :data:`icl.families.INIT_SCALES`; ``rung``
    one of :data:`icl.families.LADDER`; the rest as in :func:`train_with` and
    :class:`icl.RecallTask` (noiseless unless ``alpha > 0``).
    """

    rung: str = "origin"
    attention: str = "linear"
    n_outputs: int = 4
    init: str = "zero"
    optimizer: str = "normalized"
    weight_decay: float = 0.0
    steps: int = 500
    lr: float = 0.05
    vocab_size: int = 60
    seq_len: int = 64
    alpha: float = 0.0
    batch_size: int = 128
    eval_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("rung", self.rung, LADDER)
        check_choice("init", self.init, tuple(INIT_SCALES))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_int("steps", self.steps, minimum=1)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_real("weight_decay", self.weight_decay, low=0.0)
        check_seed("seed", self.seed)

    def replace(self, **changes) -> RunConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def task(self) -> RecallTask:
        """The :class:`icl.RecallTask` of this run."""
        return RecallTask(
            vocab_size=self.vocab_size,
            n_outputs=self.n_outputs,
            seq_len=self.seq_len,
            alpha=self.alpha,
        )


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` keeps: the setting, the final metrics, the copy coefficients."""

    config: RunConfig
    pop_loss: float
    ood_loss: float
    pop_p_y: float
    ood_p_y: float
    copy_O: float
    copy_OOD: float
    history: History
    model: OneLayerTransformer

    def row(self) -> dict[str, object]:
        """A flat dict (for a table): the config's fields and the final numbers."""
        out: dict[str, object] = dict(asdict(self.config))
        out.update(
            pop_loss=self.pop_loss,
            ood_loss=self.ood_loss,
            pop_p_y=self.pop_p_y,
            ood_p_y=self.ood_p_y,
            copy_O=self.copy_O,
            copy_OOD=self.copy_OOD,
        )
        return out


def run(config: RunConfig, *, eval_every: int | None = None) -> RunResult:
    """Build the :class:`~icl.families.LadderTransformer` of ``config``, train it, summarise it."""
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be an icl.sweeps.RunConfig, got {type(config).__name__}")
    task = config.task()
    model = LadderTransformer(
        task,
        config.rung,
        config.attention,
        init_scale=INIT_SCALES[config.init],
        seed=config.seed,
    )
    hist = train_with(
        model,
        task,
        config.steps,
        config.lr,
        optimizer=config.optimizer,
        weight_decay=config.weight_decay,
        batch_size=config.batch_size,
        seed=config.seed,
        eval_every=eval_every,
        eval_size=config.eval_size,
    )
    copy = copy_summary(model)
    return RunResult(
        config=config,
        pop_loss=hist.pop["loss"][-1],
        ood_loss=hist.ood["loss"][-1],
        pop_p_y=hist.pop["p_y"][-1],
        ood_p_y=hist.ood["p_y"][-1],
        copy_O=copy["copy_O"],
        copy_OOD=copy["copy_OOD"],
        history=hist,
        model=model,
    )


def one_factor_sweep(base: RunConfig, factor: str, values, **kwargs) -> list[RunResult]:
    """Vary one field of ``base`` over ``values`` (the others held), one run each."""
    if not isinstance(base, RunConfig):
        raise TypeError(f"base must be an icl.sweeps.RunConfig, got {type(base).__name__}")
    fields = RunConfig.__dataclass_fields__
    if factor not in fields:
        raise ValueError(f"factor must be a field of RunConfig {tuple(fields)}, got {factor!r}")
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one setting, got an empty sequence")
    return [run(replace(base, **{factor: v}), **kwargs) for v in values]


def chance_loss(task: RecallTask) -> float:
    """``log N``: the loss of the uniform prediction (every trainable weight at zero)."""
    return math.log(check_task(task).vocab_size)
