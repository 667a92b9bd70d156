"""Training by (normalised) gradient descent (the model page §5.1, the authors' protocol [E]).

The optimiser of the experiments is plain SGD without momentum or weight decay,
normalised per parameter tensor: every gradient tensor is divided by its own Frobenius
norm (the step is skipped for a tensor whose gradient is 0),

    θ ← θ - η ∇_θ L / ‖∇_θ L‖_F.

``normalized=False`` gives plain gradient descent ``θ ← θ - η ∇_θ L`` for comparison;
``normalized="per_coordinate"`` divides every coordinate by its own absolute value
(``θ ← θ - η sign(∇_θ L)``, each scalar its own "tensor"), the other natural reading of
"normalised per parameter" (chapter 4 compares the two).
Two data modes: *population* (a fresh batch at every step) and *finite sample* (a fixed
data set of ``m`` sequences, visited in shuffled mini-batches, epoch after epoch).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from .bayes import bayes_risk
from .model import OneLayerTransformer
from .roles import evaluate
from .task import RecallBatch, RecallTask, make_generator

__all__ = ["History", "normalized_step", "train"]


@torch.no_grad()
def normalized_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    lr: float,
    normalized: bool | str = True,
) -> None:
    """One in-place update ``θ ← θ - η g/‖g‖`` (or ``θ - η g`` when ``normalized=False``;
    ``θ - η sign(g)`` when ``normalized="per_coordinate"``)."""
    for p, g in zip(params, grads, strict=True):
        if normalized == "per_coordinate":
            p.sub_(torch.sign(g), alpha=lr)
        elif normalized:
            n = torch.linalg.vector_norm(g)
            if n > 0:
                p.sub_(g, alpha=lr / float(n))
        else:
            p.sub_(g, alpha=lr)


@dataclass
class History:
    """What :func:`train` records.

    ``train_loss`` has one entry per step (the loss of the mini-batch the step used).
    The evaluation metrics are recorded at ``steps`` (0, every ``eval_every`` and the last
    step): ``pop`` on held-out fresh sequences, ``ood`` on sequences whose ``y`` is an OOD
    output (each a dict of lists, keys as in :func:`evaluate`). ``params`` holds the
    scalar parameters (``Lambda``; each ``lambda_k``) and the Frobenius norms of the
    matrices (``|W|``, ...) at the same steps.
    """

    lr: float
    normalized: bool | str
    bayes_risk: float
    train_loss: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    pop: dict[str, list[float]] = field(default_factory=dict)
    ood: dict[str, list[float]] = field(default_factory=dict)
    params: dict[str, list[float]] = field(default_factory=dict)

    def array(self, name: str, split: str = "pop") -> np.ndarray:
        """A recorded series as a NumPy array: ``array("loss")``, ``array("p_y", "ood")``."""
        source = {"pop": self.pop, "ood": self.ood, "params": self.params}[split]
        return np.asarray(source[name], dtype=np.float64)

    @property
    def step_array(self) -> np.ndarray:
        return np.asarray(self.steps)

    def excess(self, split: str = "pop") -> np.ndarray:
        """``loss - H_b(α)`` at the evaluation steps."""
        return self.array("loss", split) - self.bayes_risk


@torch.no_grad()
def _record_params(model: OneLayerTransformer, into: dict[str, list[float]]) -> None:
    for name, p in model.named_parameters():
        if p.dim() == 0:
            into.setdefault(name, []).append(float(p))
        elif p.dim() == 1:
            for k, v in enumerate(p.tolist()):
                into.setdefault(f"{name}[{k}]", []).append(float(v))
        else:
            into.setdefault(f"|{name}|", []).append(float(torch.linalg.vector_norm(p)))


def _show_progress(progress: bool | None) -> bool:
    if progress is not None:
        return bool(progress)
    from .config import test_mode

    if test_mode() or "PYTEST_CURRENT_TEST" in os.environ:
        return False
    return os.environ.get("ICL_PROGRESS", "1") != "0"


def train(
    model: OneLayerTransformer,
    task: RecallTask,
    steps: int,
    lr: float,
    *,
    batch_size: int = 512,
    normalized: bool | str = True,
    seed: int = 0,
    eval_every: int | None = None,
    eval_size: int = 1024,
    ood: bool = True,
    data: RecallBatch | None = None,
    progress: bool | None = None,
) -> History:
    """Train ``model`` in place by (normalised) gradient descent and return its :class:`History`.

    Parameters
    ----------
    steps, lr
        Number of gradient steps and the step size ``η`` (both > 0).
    batch_size
        Sequences per step (the paper: 512).
    normalized
        ``True``: normalise each gradient tensor by its Frobenius norm (the paper's
        optimiser); ``"per_coordinate"``: each coordinate by its absolute value (sign
        descent); ``False``: plain gradient descent.
    seed
        Seeds the training stream, the mini-batch order and the evaluation sets.
    eval_every
        Evaluate every that many steps (default: about 50 evaluations in all).
    eval_size
        Size of the held-out population and OOD evaluation sets (fixed for the run).
    ood
        Also evaluate on unseen-output sequences.
    data
        A fixed training set (finite-sample mode); ``None`` draws a fresh batch each step.
    progress
        Show a tqdm bar (default: on, except in test mode, under pytest or with
        ``ICL_PROGRESS=0``).
    """
    if not isinstance(model, OneLayerTransformer):
        raise ValueError(f"model must be an icl.OneLayerTransformer, got {type(model).__name__}")
    if model.task != task:
        raise ValueError(f"model was built for {model.task}, not {task}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(normalized, bool) or normalized == "per_coordinate"):
        raise ValueError(
            f"normalized must be True, False or 'per_coordinate', got {normalized!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if eval_every is None:
        eval_every = max(1, steps // 50)
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every <= 0:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every!r}")
    if data is not None:
        if not isinstance(data, RecallBatch):
            raise ValueError("data must be an icl.RecallBatch (a fixed training set)")
        task.check_tokens(data.tokens)
        batch_size = min(batch_size, data.batch_size)

    g_train = make_generator(seed)
    pop_set = task.sample(eval_size, seed=seed + 1_000_003)
    ood_set = task.sample(eval_size, seed=seed + 2_000_003, ood=True) if ood else None
    params = [p for p in model.parameters() if p.requires_grad]
    hist = History(lr=float(lr), normalized=normalized, bayes_risk=bayes_risk(task.alpha))

    def record(step: int) -> None:
        hist.steps.append(step)
        for name, value in evaluate(model, pop_set).items():
            hist.pop.setdefault(name, []).append(value)
        if ood_set is not None:
            for name, value in evaluate(model, ood_set).items():
                hist.ood.setdefault(name, []).append(value)
        _record_params(model, hist.params)

    order = torch.empty(0, dtype=torch.long)
    cursor = 0
    bar = None
    if _show_progress(progress):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps, desc=f"{model.family}/{model.attention}", file=sys.stderr, leave=False
        )
    record(0)
    for step in range(1, steps + 1):
        if data is None:
            batch = task.sample(batch_size, generator=g_train)
        else:
            if cursor + batch_size > len(order):
                order = torch.randperm(data.batch_size, generator=g_train)
                cursor = 0
            batch = data[order[cursor : cursor + batch_size]]
            cursor += batch_size
        logits = model(batch.tokens).xi
        loss = torch.nn.functional.cross_entropy(logits, batch.targets)
        grads = torch.autograd.grad(loss, params)
        normalized_step(params, list(grads), lr, normalized)
        hist.train_loss.append(float(loss.detach()))
        if step % eval_every == 0 or step == steps:
            record(step)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return hist
