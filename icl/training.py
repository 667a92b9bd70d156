"""Training by (normalised) gradient descent (the model page §5.1, the authors' protocol [E]).

The optimiser of the experiments is plain SGD without momentum or weight decay,
normalised per parameter tensor: every gradient tensor is divided by its own Frobenius
norm (the step is skipped for a tensor whose gradient is 0),

    θ ← θ - η ∇_θ L / ‖∇_θ L‖_F.

``normalized=False`` gives plain gradient descent ``θ ← θ - η ∇_θ L`` for comparison;
``normalized="per_coordinate"`` divides every coordinate by its own absolute value
(``θ ← θ - η sign(∇_θ L)``, each scalar its own "tensor"), the other natural reading of
"normalised per parameter" (chapter 4 compares the two). Two options serve the book's
own questions (chapter 7): ``weight_decay = ω`` shrinks the parameters before every
update, ``θ ← (1 - ηω) θ`` (decoupled), and ``adam=True`` replaces the update by Adam's
(with that decay: AdamW, PyTorch's defaults written out: ``β = (0.9, 0.999)``,
``ε = 10⁻⁸``, bias-corrected moments).
Two data modes: *population* (a fresh batch at every step) and *finite sample* (a fixed
data set of ``m`` sequences, visited in shuffled mini-batches, epoch after epoch).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from . import fastpath, kernels, roles
from .bayes import bayes_risk
from .model import OneLayerTransformer
from .task import RecallBatch, RecallTask, _sample_default, check_batch, check_task, make_generator
from .validate import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_STEPS,
    PrecisionWarning,
    check_bool,
    check_budget,
    check_choice,
    check_instance,
    check_int,
    check_optional_bool,
    check_real,
    check_seed,
)

__all__ = ["ADAM_BETAS", "History", "normalized_step", "train"]

#: Adam's ``(β₁, β₂)`` (PyTorch's defaults) and its ``ε``
ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


@torch.no_grad()
def normalized_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    lr: float,
    normalized: bool | str = True,
) -> None:
    """One in-place update ``θ ← θ - η g/‖g‖`` (or ``θ - η g`` when ``normalized=False``;
    ``θ - η sign(g)`` when ``normalized="per_coordinate"``).

    The arguments are checked here; the training loop calls the unchecked
    ``_apply_update`` on gradients it made itself.
    """
    lr = check_real("lr", lr, low=0.0, low_open=True)
    _check_normalized(normalized)
    if len(params) != len(grads):
        raise ValueError(
            f"grads must hold one gradient per parameter: {len(params)} params, got "
            f"{len(grads)} grads"
        )
    for p, g in zip(params, grads, strict=True):
        if tuple(p.shape) != tuple(g.shape):
            raise ValueError(
                f"grads: a gradient of shape {tuple(g.shape)} for a parameter of shape "
                f"{tuple(p.shape)}"
            )
    _apply_update(params, grads, lr, normalized)


@torch.no_grad()
def _apply_update(
    params: list[torch.Tensor], grads: list[torch.Tensor], lr: float, normalized: bool | str
) -> None:
    """The update of :func:`normalized_step`, unchecked. The norms of all tensors are read
    back in one transfer (one synchronisation on a GPU)."""
    if normalized == "per_coordinate":
        for p, g in zip(params, grads, strict=True):
            p.sub_(torch.sign(g), alpha=lr)
    elif normalized:
        norms = torch.stack([torch.linalg.vector_norm(g) for g in grads]).tolist()
        for p, g, n in zip(params, grads, norms, strict=True):
            if n > 0:
                p.sub_(g, alpha=lr / n)
    else:
        for p, g in zip(params, grads, strict=True):
            p.sub_(g, alpha=lr)


@dataclass
class History:
    """What :func:`train` records.

    ``train_loss`` has one entry per step (the loss of the mini-batch the step used).
    The evaluation metrics are recorded at ``steps`` (0, every ``eval_every`` and the last
    step): ``pop`` on held-out fresh sequences, ``ood`` on sequences whose ``y`` is an OOD
    output (each a dict of lists, keys as in :func:`icl.roles.evaluate`). ``params`` holds the
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
        check_choice("split", split, ("pop", "ood", "params"))
        source = {"pop": self.pop, "ood": self.ood, "params": self.params}[split]
        if name not in source:
            raise ValueError(
                f"name must be one of the {split!r} series {tuple(source)}, got {name!r}"
            )
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
    device: torch.device | str | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_bytes: float = DEFAULT_MAX_BYTES,
    weight_decay: float = 0.0,
    adam: bool = False,
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
        Evaluate every that many steps. Default: about 50 evaluations in all, but at
        least ``⌈12.5 n_eval / B⌉`` steps apart (``n_eval`` = ``eval_size``, doubled with
        ``ood``): with the paper's sizes (``B = 512``, two sets of 1024) every 50 steps,
        so that a 50-step run evaluates only at its start and end. (Evaluating a
        sequence, forward pass and float64 metrics, costs about 1.4 times training on
        one with the compiled step, measured on the performance page: evaluations then
        cost about a tenth of a long run and about a quarter of a 50-step one. So that
        they do not page-fault, ``train`` first asks the C library to keep freed memory
        in the process: :func:`icl.fastpath.keep_freed_memory`.)
    eval_size
        Size of the held-out population and OOD evaluation sets (fixed for the run).
    ood
        Also evaluate on unseen-output sequences.
    data
        A fixed training set (finite-sample mode); ``None`` draws a fresh batch each step.
    progress
        Show a tqdm bar (default: on, except in test mode, under pytest or with
        ``ICL_PROGRESS=0``).
    device
        Where the batches are drawn and the steps run (default: the model's device);
        the model must already be there (``model.to(device)``).
    max_steps, max_bytes
        Refuse more steps, or batches and evaluation sets needing more memory, than these
        (defaults ``10**7`` steps and 2 GiB).
    weight_decay
        ``ω ≥ 0``: before every update ``θ ← (1 - ηω) θ`` (decoupled; default 0, none).
    adam
        Use Adam's update (AdamW with ``weight_decay``) instead of gradient descent;
        ``normalized`` must then stay ``True`` (its default). ``History.normalized`` is
        then ``False``.

    A ``PrecisionWarning`` says when the parameters stopped moving before the end because
    the gradient rounds to zero in the model's dtype (float32 near ``Λ ≈ 19.5``); it
    compares the last three evaluations, so a run needs at least three.
    """
    _check_train_arguments(
        model, task, steps, lr, batch_size=batch_size, normalized=normalized, seed=seed,
        eval_every=eval_every, eval_size=eval_size, ood=ood, data=data, progress=progress,
        max_steps=max_steps, max_bytes=max_bytes,
    )
    weight_decay = check_real("weight_decay", weight_decay, low=0.0)
    adam = check_bool("adam", adam)
    if adam and normalized is not True:
        raise ValueError(
            f"normalized: with adam=True the update is Adam's; leave normalized at True, "
            f"got {normalized!r}"
        )
    if eval_every is None:
        n_eval = eval_size * (2 if ood else 1)
        eval_every = max(1, steps // 50, math.ceil(12.5 * n_eval / batch_size))
    if data is not None:
        batch_size = min(batch_size, data.batch_size)
    dev = model.device if device is None else torch.device(device)
    if dev != model.device:
        raise ValueError(f"device={str(dev)!r}, but the model is on {model.device}")
    if data is not None:
        data = _to_device(data, dev)

    fastpath.keep_freed_memory()  # evaluations reuse freed memory (no page faults)
    # the evaluation sets are drawn on the CPU (the same sets on every device), then moved
    pop_set = _to_device(task.sample(eval_size, seed=seed + 1_000_003), dev)
    ood_set = None
    if ood:
        ood_set = _to_device(task.sample(eval_size, seed=seed + 2_000_003, ood=True), dev)
    if dev.type == "cpu":
        g_train = make_generator(seed)
    else:
        g_train = torch.Generator(device=dev)
        g_train.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    hist = History(lr=float(lr), normalized=False if adam else normalized,
                   bayes_risk=bayes_risk(task.alpha))
    rule: bool | str | _Decoupled = normalized
    if adam or weight_decay:
        rule = _Decoupled(params, lr, normalized, weight_decay, adam)

    # both evaluation sets in one forward pass (icl.roles.evaluate's metrics, per set)
    sets = [pop_set] if ood_set is None else [pop_set, ood_set]
    eval_tokens = torch.cat([b.tokens for b in sets])
    eval_outputs = torch.cat([b.outputs for b in sets])
    eval_targets = torch.cat([b.targets for b in sets])

    def record(step: int) -> None:
        hist.steps.append(step)
        values = roles._metrics(model, eval_tokens, eval_outputs, eval_targets, task.alpha,
                                groups=len(sets))
        for split, row in zip((hist.pop, hist.ood)[: len(sets)], values, strict=True):
            for name, value in zip(roles._METRIC_NAMES, row, strict=True):
                split.setdefault(name, []).append(value)
        _record_params(model, hist.params)

    order = torch.empty(0, dtype=torch.long, device=dev)
    cursor = 0
    seq_len = task.seq_len if data is None else data.seq_len
    token_buffer = _token_buffer(model, params, task.vocab_size, batch_size, seq_len, dev)
    data_tokens = None if data is None else data.tokens.to(token_buffer.dtype)
    losses = torch.empty(steps, dtype=torch.float64, device=dev)
    bar = None
    if _show_progress(progress):
        from tqdm.auto import tqdm

        bar = tqdm(
            total=steps, desc=f"{model.family}/{model.attention}", file=sys.stderr, leave=False
        )
    record(0)
    for step in range(1, steps + 1):
        if data is None:  # task.sample's default draw; its arguments were checked above
            tokens, targets = _fresh_batch(task, token_buffer, g_train)
        else:
            if cursor + batch_size > len(order):
                order = torch.randperm(data.batch_size, generator=g_train, device=dev)
                cursor = 0
            idx = order[cursor : cursor + batch_size]
            tokens = torch.index_select(data_tokens, 0, idx, out=token_buffer)
            targets = data.targets.index_select(0, idx)
            cursor += batch_size
        losses[step - 1] = _train_step(model, params, tokens, targets, lr, rule)
        if step % eval_every == 0 or step == steps:
            record(step)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    hist.train_loss = losses.tolist()
    _warn_if_stalled(model, hist)
    return hist


def _token_buffer(model: OneLayerTransformer, params: list[torch.Tensor], vocab_size: int,
                  batch_size: int, seq_len: int, device: torch.device) -> torch.Tensor:
    """The ``[batch_size, seq_len]`` buffer that every step's tokens go into (used within
    the step only: a fresh megabyte per step would cost page faults at every step); in the
    narrowest dtype that holds them (:func:`icl.kernels.token_dtype`) when the compiled
    CPU step reads them, else int64."""
    compiled = kernels.runs_on(device) and _FusedStep.of(model, params) is not None
    dtype = kernels.token_dtype(vocab_size) if compiled else torch.long
    return torch.empty(batch_size, seq_len, dtype=dtype, device=device)


def _fresh_batch(task: RecallTask, tokens: torch.Tensor, g: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens, targets)`` of a fresh batch of ``task.sample``'s default law, the tokens
    written into the buffer ``tokens`` (of :func:`_token_buffer`), from ``g``."""
    B, H = tokens.shape
    batch = _sample_default(task, B, H, task.alpha, False, g, tokens.device, tokens=tokens)
    return batch.tokens, batch.targets


def _to_device(batch: RecallBatch, device: torch.device) -> RecallBatch:
    """``batch`` with its tensors on ``device``."""
    if batch.tokens.device == device:
        return batch
    return RecallBatch(*(t.to(device) for t in (batch.tokens, batch.targets, batch.outputs,
                                                 batch.pair_pos, batch.noise_pos)))


def _train_step(
    model: OneLayerTransformer,
    params: list[torch.Tensor],
    tokens: torch.Tensor,
    targets: torch.Tensor,
    lr: float,
    normalized: bool | str | _Decoupled,
) -> float | torch.Tensor:
    """One step of :func:`train` on a batch; returns the batch's loss (a float on the
    compiled CPU path, else a detached 0-d tensor).

    The batch is valid by construction, so ``forward``'s token check is skipped. On the
    fast path (float32/float64) the whole step runs without autograd (:class:`_FusedStep`);
    other dtypes go through autograd on the dense path.
    """
    plan = _FusedStep.of(model, params)
    if plan is not None:
        return plan.step(tokens, targets, lr, normalized)
    logits = model._forward_fast(tokens, *model.matrices(), parts=False).xi
    loss = torch.nn.functional.cross_entropy(logits, targets)
    grads = torch.autograd.grad(loss, params)
    _update(params, list(grads), lr, normalized)
    return loss.detach()


def _update(
    params: list[torch.Tensor], grads: list[torch.Tensor], lr: float,
    rule: bool | str | _Decoupled,
) -> None:
    """One update with :func:`train`'s rule, on the autograd and the closed-form path alike:
    a :class:`_Decoupled` rule (weight decay, Adam) or :func:`_apply_update`'s step."""
    if isinstance(rule, _Decoupled):
        rule(params, grads)
    else:
        _apply_update(params, grads, lr, rule)


class _FusedStep:
    """The training step of one model in closed form ([D]): forward, backward and update.

    The step works on the *step layout* ``P`` of the effective ``(W, V, F)``
    (:func:`icl.fastpath.step_layout_index`): the ``8N²`` entries that meet a one-hot
    input. ``P`` is affine in the trainable parameters θ of every family:

    * ``origin`` and ``reparam_w``: ``P = P_0 + S θ`` with ``S`` a selection of entries
      (``P_0 = 0`` for ``origin``; the fixed ``V = I`` and ``F`` for ``reparam_w``), so
      ``∂L/∂θ = Sᵀ ∂L/∂P`` is a scatter-add of ``∂L/∂P``;
    * ``reparam``: ``P = P_0 + Σ_i θ_i P_i`` (the construction is affine in ``Λ`` and in
      ``λ``), so ``∂L/∂θ_i = ⟨P_i, ∂L/∂P⟩``; ``P_0`` and ``P_i`` are read off the
      construction once, and the affinity is checked at the current θ.

    ``∂L/∂P`` comes from :func:`icl.fastpath.fused_step_grads` (on the CPU its compiled
    version :func:`icl.fastpath.cpu_step_grads`). The update is :func:`_apply_update`'s
    on the gradient of each parameter, except on the CPU for ``W, V, F`` under
    :func:`train`'s own rules: there :func:`icl.kernels.update_from_layout` moves the
    parameters straight from ``∂L/∂P``.
    """

    def __init__(self, model: OneLayerTransformer, params: list[torch.Tensor]) -> None:
        n, d = model.task.vocab_size, model.d_model
        dtype, dev = params[0].dtype, params[0].device
        self.model, self.params, self.n = model, params, n
        self.key = (dtype, dev, tuple(p.data_ptr() for p in params))
        size = fastpath.step_layout_size(n)
        dst, src = fastpath.step_layout_index(n, d, model.kappa, device=dev)
        self.P = torch.empty(size, dtype=dtype, device=dev)
        self.dP = torch.empty(size, dtype=dtype, device=dev)
        self.views = fastpath.StepViews(self.P, self.dP, n)
        with torch.no_grad():
            W, V, F = (m.detach().to(dtype) for m in model.matrices())
            flat = torch.cat([W.reshape(-1), V.reshape(-1), F.reshape(-1)])
            if model.family == "reparam":
                self.affine = True
                theta = params[0]
                saved = theta.detach().clone()
                basis = []
                theta.zero_()
                base = self._layout(model, dst, src, size)
                for i in range(theta.numel()):
                    theta.view(-1).zero_()
                    theta.view(-1)[i] = 1
                    basis.append(self._layout(model, dst, src, size) - base)
                theta.copy_(saved)
                self.P0, self.basis = base, torch.stack(basis)  # [k, 8N²]
                here = self._layout(model, dst, src, size)
                if not torch.allclose(torch.addmv(base, self.basis.T, saved.view(-1)), here,
                                      rtol=1e-5, atol=1e-6):
                    raise RuntimeError("the construction is not affine in its scale")
            else:
                self.affine = False
                # which of (W, V, F) each parameter is, in the order of ``params``
                mats = [getattr(model, nm, None) for nm in ("W", "V", "F")]
                trainable = [next(k for k, m in enumerate(mats) if m is p) for p in params]
                d2 = d * d
                keep = torch.zeros_like(src, dtype=torch.bool)
                for k in trainable:
                    keep |= (src >= k * d2) & (src < (k + 1) * d2)
                fixed = torch.zeros(size, dtype=dtype, device=dev)
                fixed.index_add_(0, dst[~keep], flat[src[~keep]])
                self.P0 = fixed
                # source positions within cat(params)
                remap = torch.full((3 * d2,), -1, dtype=torch.long, device=dev)
                for pos, k in enumerate(trainable):
                    remap[k * d2 : (k + 1) * d2] = torch.arange(pos * d2, (pos + 1) * d2,
                                                                device=dev)
                self.dst, self.src = dst[keep], remap[src[keep]]
                self.numels = [p.numel() for p in params]
                self.flat_grad = torch.empty(sum(self.numels), dtype=dtype, device=dev)
                # the compiled layout maps (icl.kernels) read (W, V, F) directly: the
                # trainable ones are the parameters, the others fixed copies
                self.trainable = trainable
                self.mats = [params[trainable.index(k)] if k in trainable
                             else (W, V, F)[k].detach().clone().contiguous() for k in range(3)]
                self.grad_bufs = [torch.empty(d, d, dtype=dtype, device=dev)
                                  if k in trainable else None for k in range(3)]
                self.is_trainable = tuple(k in trainable for k in range(3))
                if dev.type == "cpu":  # the memory the kernels read and write
                    self.mats_np = [m.detach().numpy() for m in self.mats]
                    self.P_np = self.P.numpy()

    @staticmethod
    def _layout(model, dst, src, size) -> torch.Tensor:
        W, V, F = (m.detach() for m in model.matrices())
        flat = torch.cat([W.reshape(-1), V.reshape(-1), F.reshape(-1)])
        return torch.zeros(size, dtype=flat.dtype, device=flat.device).index_add_(
            0, dst, flat[src])

    def serves(self, params: list[torch.Tensor]) -> bool:
        """Whether this plan was made for these very tensors, on the same memory."""
        mine = self.params
        return (len(mine) == len(params)
                and all(a is b for a, b in zip(mine, params, strict=True))
                and self.key[2] == tuple(p.data_ptr() for p in params)
                and self.key[0] == params[0].dtype)

    @staticmethod
    def covers(model: OneLayerTransformer, params: list[torch.Tensor]) -> bool:
        """Whether the plan's parameterisation fits ``params``: the scale (``Λ`` or ``λ``)
        alone for ``reparam``; otherwise each parameter one of the matrices ``W, V, F``.
        A model outside both (e.g. chapter 7's ``lambda_v`` rung: ``Λ`` and a free ``V``)
        trains through autograd."""
        if model.family == "reparam":
            return len(params) == 1
        mats = [getattr(model, nm, None) for nm in ("W", "V", "F")]
        return all(any(m is p for m in mats) for p in params)

    @classmethod
    def of(cls, model: OneLayerTransformer, params: list[torch.Tensor]) -> _FusedStep | None:
        """The model's plan (built once and kept on the model), ``None`` off the fast path."""
        plan = model.__dict__.get("_fused_step")
        if plan is not None and plan.serves(params):  # every step after the first
            return plan
        if not params or not fastpath.supports(params[0].dtype):
            return None
        if not cls.covers(model, params):
            return None
        key = (params[0].dtype, params[0].device, tuple(p.data_ptr() for p in params))
        if plan is None or plan.key != key:
            plan = cls(model, params)
            model.__dict__["_fused_step"] = plan
        return plan

    def gradients(self, tokens, targets) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The batch's loss (a 0-d tensor) and ``∂L/∂θ`` for every trainable parameter
        (valid until the next call)."""
        loss, grads = self._gradients(tokens, targets)
        return torch.as_tensor(loss, dtype=self.P.dtype), grads

    def _layout_gradient(self, tokens, targets) -> tuple[float | torch.Tensor, bool]:
        """``P`` from the parameters, the loss and ``∂L/∂P`` (into ``self.dP``); and
        whether the compiled CPU kernels ran. Off that path (and for the affine family)
        it must run under ``torch.no_grad``: ``P`` is written from parameters that need
        a gradient."""
        params = self.params
        cpu = kernels.available(self.P, tokens)
        if self.affine:
            torch.addmv(self.P0, self.basis.T, params[0].view(-1), out=self.P)
        elif cpu:  # compiled (icl.kernels): the same sums, without index tensors
            kernels.to_layout_arrays(*self.mats_np, self.n, bool(self.model.kappa),
                                     self.P_np)
        else:
            flat = params[0].view(-1) if len(params) == 1 else torch.cat(
                [p.view(-1) for p in params])
            self.P.copy_(self.P0).index_add_(0, self.dst, flat.index_select(0, self.src))
        if cpu:
            loss = fastpath.cpu_step_grads(tokens.contiguous(), targets.contiguous(),
                                           self.views, self.model.attention)
        else:
            loss = fastpath.fused_step_grads(tokens, targets, self.P, self.dP, self.n,
                                             self.model.attention, self.views)
        return loss, cpu

    @torch.no_grad()
    def _gradients(self, tokens, targets) -> tuple[float | torch.Tensor, list[torch.Tensor]]:
        """:meth:`gradients`, the loss a float on the compiled CPU path."""
        loss, cpu = self._layout_gradient(tokens, targets)
        return loss, self._param_grads(cpu)

    def _param_grads(self, cpu: bool) -> list[torch.Tensor]:
        """``∂L/∂θ`` of every trainable parameter from ``∂L/∂P`` (``self.dP``)."""
        params = self.params
        if self.affine:
            return [torch.mv(self.basis, self.dP).view(params[0].shape)]
        if cpu:
            kernels.from_layout(self.dP, self.n, self.model.kappa, *self.grad_bufs)
            return [self.grad_bufs[k] for k in self.trainable]
        g = self.flat_grad.zero_().index_add_(0, self.src, self.dP.index_select(0, self.dst))
        return [v.view(p.shape) for v, p in zip(g.split(self.numels), params, strict=True)]

    def step(self, tokens, targets, lr: float, normalized: bool | str | _Decoupled
             ) -> float | torch.Tensor:
        """One step in place; returns the batch's loss (a float, or a 0-d tensor off the
        CPU: reading it would wait for the device). ``normalized`` is :func:`train`'s
        rule: a :class:`_Decoupled` update (weight decay, Adam) is applied as it is on the
        autograd path. On the CPU, :func:`train`'s own rules for ``W, V, F`` update the
        parameters straight from ``∂L/∂P`` (:func:`icl.kernels.update_from_layout`)."""
        if (not self.affine and not isinstance(normalized, _Decoupled)
                and kernels.available(self.P, tokens)):
            # the hot path: compiled kernels (layout, forward, the loss's seed, backward,
            # update) and the step's PyTorch products and cross-entropy, on tensors that
            # need no gradient (so no autograd context either)
            loss, _ = self._layout_gradient(tokens, targets)
            kernels.update_from_layout(self.dP, self.n, self.model.kappa, self.mats_np,
                                       self.is_trainable, lr, normalized)
            return loss
        with torch.no_grad():
            loss, cpu = self._layout_gradient(tokens, targets)
            grads = self._param_grads(cpu)
        _update(self.params, grads, lr, normalized)
        return loss


class _Decoupled:
    """The update with :func:`train`'s options: decoupled weight decay ``θ ← (1 - ηω) θ``,
    then :func:`_apply_update`'s step, or Adam's (its moments kept here, per parameter)."""

    def __init__(self, params, lr: float, normalized, weight_decay: float, adam: bool):
        self.lr, self.normalized, self.weight_decay = lr, normalized, weight_decay
        self.t = 0
        self.moments = None
        if adam:
            self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]

    @torch.no_grad()
    def __call__(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.t += 1
        lr = self.lr
        if self.weight_decay:
            for p in params:
                p.mul_(1.0 - lr * self.weight_decay)
        if self.moments is None:
            _apply_update(params, grads, lr, self.normalized)
            return
        beta1, beta2 = ADAM_BETAS
        for p, g, (m, v) in zip(params, grads, self.moments, strict=True):
            m.mul_(beta1).add_(g, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            v_hat = (v / (1 - beta2**self.t)).sqrt_().add_(_ADAM_EPS)
            p.addcdiv_(m, v_hat, value=-lr / (1 - beta1**self.t))


def _check_normalized(normalized: object) -> bool | str:
    """``True``, ``False`` or ``"per_coordinate"``."""
    if isinstance(normalized, bool) or normalized == "per_coordinate":
        return normalized
    raise ValueError(
        f"normalized must be True, False or 'per_coordinate', got {normalized!r}"
    )


def _check_train_arguments(
    model: OneLayerTransformer,
    task: RecallTask,
    steps: int,
    lr: float,
    *,
    batch_size: int,
    normalized: bool | str,
    seed: int,
    eval_every: int | None,
    eval_size: int,
    ood: bool,
    data: RecallBatch | None,
    progress: bool | None,
    max_steps: int,
    max_bytes: float,
) -> None:
    """Every argument of :func:`train`, checked before anything is drawn or trained."""
    check_instance("model", model, OneLayerTransformer, "an icl.OneLayerTransformer")
    check_task(task)
    if model.task != task:
        raise ValueError(f"task: the model was built for {model.task}, not {task}")
    steps = _positive_int("steps", steps)
    check_budget("steps", steps, check_int("max_steps", max_steps, minimum=1),
                 unit="steps", keyword="max_steps")
    try:
        check_real("lr", lr, low=0.0, low_open=True)
    except ValueError as exc:  # the message the book's tests know
        raise type(exc)(f"lr must be a positive number, got {lr!r}") from None
    batch_size = _positive_int("batch_size", batch_size)
    _check_normalized(normalized)
    check_seed("seed", seed)
    if eval_every is not None:
        _positive_int("eval_every", eval_every)
    eval_size = _positive_int("eval_size", eval_size)
    check_bool("ood", ood)
    check_optional_bool("progress", progress)
    max_bytes = check_real("max_bytes", max_bytes, low=0.0, low_open=True, finite=False)
    # tokens, masks and the [B, H] / [B, d] activations of one forward-backward pass
    per_sequence = 64 * task.seq_len + 32 * model.d_model
    check_budget("batch_size", batch_size * per_sequence, max_bytes)
    check_budget("eval_size", eval_size * per_sequence, max_bytes)
    if data is not None:
        if not isinstance(data, RecallBatch):
            check_instance("data", data, RecallBatch, "an icl.RecallBatch (a fixed training set)")
        check_batch("data", data, task)


def _positive_int(name: str, value: object) -> int:
    """:func:`check_int` with ``minimum=1``, worded "a positive integer"."""
    try:
        return check_int(name, value, minimum=1)
    except ValueError as exc:
        raise type(exc)(f"{name} must be a positive integer, got {value!r}") from None


def _warn_if_stalled(model: OneLayerTransformer, hist: History) -> None:
    """Warn when a normalised run below float64 has reached the resolution of its dtype:
    the excess is within a few rounding units of the Bayes risk and has stopped falling
    over the last three evaluations (the gradient's sign is then rounding noise)."""
    if not hist.normalized or len(hist.steps) < 3 or model.dtype == torch.float64:
        return
    if not hist.pop:
        return
    ex = hist.excess("pop")
    eps = torch.finfo(model.dtype).eps
    if ex[-1] < 16 * eps and not (ex[-1] < ex[-2] < ex[-3]):
        warnings.warn(
            f"the excess loss {ex[-1]:.2g} stopped falling at steps {hist.steps[-3]}-"
            f"{hist.steps[-1]}: it is at the resolution of {model.dtype} (eps = {eps:.2g}), "
            "where the gradient rounds to noise (normalised GD stalls near Lambda = 19.5 in "
            "float32); build the model with dtype=torch.float64 to go further",
            PrecisionWarning,
            stacklevel=3,
        )
