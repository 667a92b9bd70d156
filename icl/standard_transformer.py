"""An ordinary causal transformer for the recall task, and its Adam training (the book's, [D]).

The paper's network (the model page §3) is stylised: fixed one-hot embeddings of the
token *and its predecessor*, one attention layer with a merged key–query matrix, no
positional encoding, normalised gradient descent. This module builds the transformer a
practitioner would use instead, from ``torch.nn`` blocks only:

    x⁰_h = Emb(z_h) + Pos(h)                                  (learned, h = 1 … H_max)
    xˡ   = xˡ⁻¹ + MHA_l(LN(xˡ⁻¹))      causal softmax attention, n_heads heads
    xˡ  ← xˡ + MLP_l(LN(xˡ))           Linear → GELU → Linear
    ξ_h  = Unemb(LN(x^L_h))                                   logits over {0 … N-1}

(pre-layer-norm residual stream, ``L`` layers). Nothing tells it which token precedes
which: it must build the predecessor ``Ẽ(z_{h-1})`` itself, with attention. It is trained
with Adam on the cross-entropy of the **last position** against ``z_{H+1}``, exactly the
loss of the paper's model, on fresh batches of :meth:`icl.RecallTask.sample`.

Ablations (the chapter's §4): ``forward(..., ablate_mlp=(l,), ablate_attention=(l,))``
replaces the output of that block of layer ``l`` (0-based) by zero, so the residual
stream carries only the other blocks' contributions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .bayes import bayes_risk
from .losses import expected_loss
from .task import RecallTask, check_task, make_generator
from .validate import (
    InvalidTypeError,
    check_bool,
    check_budget,
    check_int,
    check_real,
    check_seed,
)

__all__ = [
    "AdamHistory",
    "StandardTransformer",
    "TransformerOutput",
    "last_position_loss",
    "replica_last_logits",
    "train_adam",
    "train_adam_replicas",
]


@dataclass(frozen=True)
class TransformerOutput:
    """What :meth:`StandardTransformer.forward` returns.

    Attributes
    ----------
    logits : FloatTensor ``[B, H, N]``
        ``ξ_h`` at every position (only ``ξ_H``, the last row, is trained).
    attention : tuple of FloatTensor ``[B, n_heads, H, H]``
        One per layer (empty unless ``return_attention=True``): the softmax weights,
        row ``h`` = query position, column = key position (zero above the diagonal).
    """

    logits: torch.Tensor
    attention: tuple[torch.Tensor, ...] = ()

    @property
    def last(self) -> torch.Tensor:
        """``ξ_H``, the logits of the last position, ``[B, N]``."""
        return self.logits[:, -1, :]


class _Block(nn.Module):
    """One pre-layer-norm block: causal multi-head attention, then an MLP, both residual."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, mlp: bool) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.has_mlp = mlp
        if mlp:
            self.ln_mlp = nn.LayerNorm(d_model)
            self.mlp = nn.Sequential(
                nn.Linear(d_model, d_mlp), nn.GELU(), nn.Linear(d_mlp, d_model)
            )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, need_weights: bool, drop_attn: bool,
        drop_mlp: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.ln_attn(x)
        out, weights = self.attn(
            h, h, h, attn_mask=mask, need_weights=need_weights, average_attn_weights=False
        )
        if not drop_attn:
            x = x + out
        if self.has_mlp and not drop_mlp:
            x = x + self.mlp(self.ln_mlp(x))
        return x, weights


class StandardTransformer(nn.Module):
    """A standard causal transformer for the recall task (module docstring).

    Parameters
    ----------
    task : RecallTask
        Fixes the vocabulary size ``N`` (the output layer has ``N`` logits).
    n_layers : int
        ``L ≥ 1`` blocks.
    d_model : int
        Width of the residual stream (a multiple of ``n_heads``).
    n_heads : int
        Attention heads per layer.
    d_mlp : int, optional
        Hidden width of each MLP (default ``4 d_model``).
    max_len : int, optional
        Number of learned positions (default ``2 H``): the longest input accepted.
        Positions beyond the training ``H`` are never trained (their embeddings stay at
        their random initial values).
    mlp : bool
        ``False`` gives an attention-only transformer.
    seed : int
        Seeds the initialisation (PyTorch's default initialisation of each block, drawn
        in a forked random state: the global generator is neither read nor changed).
    """

    def __init__(
        self,
        task: RecallTask,
        n_layers: int = 2,
        d_model: int = 64,
        n_heads: int = 2,
        *,
        d_mlp: int | None = None,
        max_len: int | None = None,
        mlp: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.task = check_task(task)
        self.n_layers = check_int("n_layers", n_layers, minimum=1, maximum=64)
        self.d_model = check_int("d_model", d_model, minimum=1, maximum=4096)
        self.n_heads = check_int("n_heads", n_heads, minimum=1, maximum=self.d_model)
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model must be a multiple of n_heads, got d_model={d_model}, "
                f"n_heads={n_heads}"
            )
        self.d_mlp = 4 * self.d_model if d_mlp is None else check_int(
            "d_mlp", d_mlp, minimum=1, maximum=65536
        )
        self.max_len = 2 * task.seq_len if max_len is None else check_int(
            "max_len", max_len, minimum=2, maximum=1_000_000
        )
        self.mlp = check_bool("mlp", mlp)
        self.seed = check_seed("seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.tok_emb = nn.Embedding(task.vocab_size, self.d_model)
            self.pos_emb = nn.Embedding(self.max_len, self.d_model)
            self.blocks = nn.ModuleList(
                _Block(self.d_model, self.n_heads, self.d_mlp, self.mlp)
                for _ in range(self.n_layers)
            )
            self.ln_final = nn.LayerNorm(self.d_model)
            self.unembed = nn.Linear(self.d_model, task.vocab_size)

    def extra_repr(self) -> str:
        return (
            f"N={self.task.vocab_size}, n_layers={self.n_layers}, d_model={self.d_model}, "
            f"n_heads={self.n_heads}, d_mlp={self.d_mlp}, max_len={self.max_len}, "
            f"mlp={self.mlp}"
        )

    @property
    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check_layers(self, name: str, layers: Sequence[int]) -> frozenset[int]:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise InvalidTypeError(
                f"{name} must be a sequence of layer indices, got {layers!r}"
            )
        return frozenset(
            check_int(name, k, minimum=0, maximum=self.n_layers - 1) for k in layers
        )

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        return_attention: bool = False,
        ablate_mlp: Sequence[int] = (),
        ablate_attention: Sequence[int] = (),
    ) -> TransformerOutput:
        """Logits at every position for ``tokens`` (``[B, H]``, ``2 ≤ H ≤ max_len``).

        ``ablate_mlp`` / ``ablate_attention``: 0-based layers whose MLP / attention output
        is replaced by zero. ``return_attention=True`` also returns the attention maps.
        """
        self.task.check_tokens(tokens)
        H = tokens.shape[1]
        if H > self.max_len:
            raise ValueError(f"tokens has H={H} positions, above max_len={self.max_len}")
        check_bool("return_attention", return_attention)
        drop_mlp = self._check_layers("ablate_mlp", ablate_mlp)
        drop_attn = self._check_layers("ablate_attention", ablate_attention)
        tokens = tokens.long()
        x = self.tok_emb(tokens) + self.pos_emb(torch.arange(H))[None]
        mask = torch.ones(H, H, dtype=torch.bool).triu(1)  # True = may not attend
        maps = []
        for k, block in enumerate(self.blocks):
            x, w = block(x, mask, return_attention, k in drop_attn, k in drop_mlp)
            if return_attention:
                maps.append(w)
        return TransformerOutput(self.unembed(self.ln_final(x)), tuple(maps))


def last_position_loss(model: StandardTransformer, tokens: torch.Tensor,
                       targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``softmax(ξ_H)`` against ``z_{H+1}`` (mean over the batch)."""
    if not isinstance(model, StandardTransformer):
        raise InvalidTypeError(
            f"model must be an icl.standard_transformer.StandardTransformer, got "
            f"{type(model).__name__}"
        )
    return nn.functional.cross_entropy(model(tokens).last, targets)


@dataclass
class AdamHistory:
    """What :func:`train_adam` records: the mini-batch loss of every step (sampled
    targets), and the held-out loss with the target noise integrated out at ``steps``."""

    bayes_risk: float
    train_loss: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def step_array(self) -> np.ndarray:
        return np.asarray(self.steps)

    @property
    def eval_array(self) -> np.ndarray:
        return np.asarray(self.eval_loss, dtype=np.float64)


def _warm_up(opt: torch.optim.Optimizer, lr: float, step: int, warmup: int) -> None:
    """Linear warm-up: step ``t`` of the first ``warmup`` runs at ``lr · t / warmup``."""
    if warmup:
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, step / warmup)


def train_adam(
    model: StandardTransformer,
    task: RecallTask,
    steps: int,
    lr: float = 1e-3,
    *,
    batch_size: int = 128,
    seed: int = 0,
    eval_every: int | None = None,
    eval_size: int = 512,
    warmup: int = 0,
    weight_decay: float = 0.0,
) -> AdamHistory:
    """Train ``model`` in place with Adam (AdamW when ``weight_decay > 0``) on fresh batches.

    Each step draws ``batch_size`` sequences of ``task`` from a generator seeded with
    ``seed`` and minimises the last-position cross-entropy against the sampled target
    ``z_{H+1}``. ``warmup`` steps of linear learning-rate warm-up; no other schedule.
    The held-out loss (``eval_size`` sequences drawn with ``seed + 1_000_003``, target
    noise integrated out, :func:`icl.expected_loss`) is recorded every ``eval_every``
    steps (default: 20 evaluations).
    """
    if not isinstance(model, StandardTransformer):
        raise InvalidTypeError(
            f"model must be an icl.standard_transformer.StandardTransformer, got "
            f"{type(model).__name__}"
        )
    task = check_task(task)
    if task.vocab_size != model.task.vocab_size:
        raise ValueError(
            f"task has vocab_size={task.vocab_size}, the model was built for "
            f"{model.task.vocab_size}"
        )
    if task.seq_len > model.max_len:
        raise ValueError(f"task.seq_len={task.seq_len} exceeds the model's max_len={model.max_len}")
    steps = check_int("steps", steps, minimum=1, maximum=1_000_000)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    batch_size = check_int("batch_size", batch_size, minimum=1, maximum=1_000_000)
    seed = check_seed("seed", seed)
    eval_every = max(1, steps // 20) if eval_every is None else check_int(
        "eval_every", eval_every, minimum=1
    )
    eval_size = check_int("eval_size", eval_size, minimum=1, maximum=1_000_000)
    warmup = check_int("warmup", warmup, minimum=0)
    weight_decay = check_real("weight_decay", weight_decay, low=0.0)

    g = make_generator(seed)
    held_out = task.sample(eval_size, seed=seed + 1_000_003)
    opt = (torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
           if weight_decay > 0 else torch.optim.Adam(model.parameters(), lr=lr))
    hist = AdamHistory(bayes_risk=bayes_risk(task.alpha))

    def record(step: int) -> None:
        model.eval()
        with torch.no_grad():
            xi = model(held_out.tokens).last
            loss = expected_loss(xi, held_out, task.alpha, task.noise_token).mean()
        model.train()
        hist.steps.append(step)
        hist.eval_loss.append(float(loss))

    t0 = time.perf_counter()
    record(0)
    for step in range(1, steps + 1):
        _warm_up(opt, lr, step, warmup)
        batch = task.sample(batch_size, generator=g)
        loss = last_position_loss(model, batch.tokens, batch.targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss became {value} at step {step}")
        hist.train_loss.append(value)
        if step % eval_every == 0 or step == steps:
            record(step)
    hist.seconds = time.perf_counter() - t0
    return hist


# --------------------------------------------------------------------- several at once
def _check_replicas(models: object) -> list[StandardTransformer]:
    if isinstance(models, StandardTransformer) or not isinstance(models, Sequence) or not models:
        raise InvalidTypeError(
            f"models must be a non-empty sequence of StandardTransformer, got {models!r}"
        )
    out = []
    for m in models:
        if not isinstance(m, StandardTransformer):
            raise InvalidTypeError(
                f"models must hold StandardTransformer items, got {type(m).__name__}"
            )
        out.append(m)
    first = out[0]
    for m in out[1:]:
        if m.extra_repr() != first.extra_repr():
            raise ValueError(
                "models must share one architecture to be stacked, got "
                f"({first.extra_repr()}) and ({m.extra_repr()})"
            )
    return out


def _stack(models: Sequence[StandardTransformer]) -> dict[str, torch.Tensor]:
    """Parameters of ``models`` stacked along a leading replica dimension ``R`` (copies)."""
    named = [dict(m.named_parameters()) for m in models]
    return {k: torch.stack([p[k].detach() for p in named]) for k in named[0]}


def _replica_logits(P: Mapping[str, torch.Tensor], tokens: torch.Tensor, n_layers: int,
                    n_heads: int, mlp: bool) -> torch.Tensor:
    """``ξ_H`` of ``R`` networks at once: ``P`` holds every parameter of
    :class:`StandardTransformer` with a leading replica dimension, ``tokens`` is
    ``[R, B, H]``; returns ``[R, B, N]``. The same arithmetic as ``forward`` (module
    docstring), written with batched products; the last block computes only the query of
    position ``H`` (the only one read)."""
    R, B, H = tokens.shape
    d = P["tok_emb.weight"].shape[-1]
    dh = d // n_heads

    def linear(x: torch.Tensor, name: str, w: str = ".weight",
               b: str = ".bias") -> torch.Tensor:  # x [R, M, in]
        return torch.baddbmm(P[name + b][:, None, :], x, P[name + w].transpose(1, 2))

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:  # x [R, M, d]
        y = nn.functional.layer_norm(x, (d,), eps=1e-5)
        return y * P[name + ".weight"][:, None, :] + P[name + ".bias"][:, None, :]

    def heads(x: torch.Tensor, n: int) -> torch.Tensor:  # [R, B*n, d] -> [R*B, heads, n, dh]
        return x.reshape(R * B, n, n_heads, dh).transpose(1, 2)

    offset = (torch.arange(R) * P["tok_emb.weight"].shape[1])[:, None, None]
    x = nn.functional.embedding(tokens.long() + offset,
                                P["tok_emb.weight"].reshape(-1, d))  # [R, B, H, d]
    x = (x + P["pos_emb.weight"][:, None, :H, :]).reshape(R, B * H, d)
    for k in range(n_layers):
        pre, last = f"blocks.{k}.", k == n_layers - 1
        qkv = linear(norm(x, pre + "ln_attn"), pre + "attn", ".in_proj_weight",
                     ".in_proj_bias")  # [R, M, 3d]
        q, key, v = qkv.split(d, dim=-1)
        key, v = heads(key, H), heads(v, H)
        if last:  # only the query of the last position is read
            q = heads(q.reshape(R, B, H, d)[:, :, -1], 1)
            x = x.reshape(R, B, H, d)[:, :, -1]  # [R, B, d]
            att = nn.functional.scaled_dot_product_attention(q, key, v)
            att = att.transpose(1, 2).reshape(R, B, d)
        else:
            att = nn.functional.scaled_dot_product_attention(heads(q, H), key, v,
                                                             is_causal=True)
            att = att.transpose(1, 2).reshape(R, B * H, d)
        x = x + linear(att, pre + "attn.out_proj")
        if mlp:
            hid = nn.functional.gelu(linear(norm(x, pre + "ln_mlp"), pre + "mlp.0"))
            x = x + linear(hid, pre + "mlp.2")
    return linear(norm(x, "ln_final"), "unembed")  # [R, B, N]


@torch.no_grad()
def replica_last_logits(models: Sequence[StandardTransformer],
                        tokens: torch.Tensor) -> torch.Tensor:
    """``ξ_H`` of ``R`` networks of one architecture in one batched computation:
    ``tokens`` is ``[R, B, H]`` (replica ``r`` reads ``tokens[r]``), the result
    ``[R, B, N]`` equals ``models[r](tokens[r]).last`` up to float rounding."""
    models = _check_replicas(models)
    m = models[0]
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.shape[0] != len(models):
        raise ValueError(
            f"tokens must have shape [R={len(models)}, B, H], got "
            f"{getattr(tokens, 'shape', type(tokens).__name__)}"
        )
    for r in range(len(models)):
        m.task.check_tokens(tokens[r])
    if tokens.shape[-1] > m.max_len or tokens.shape[-1] < 2:
        raise ValueError(f"tokens has H={tokens.shape[-1]} positions, allowed 2 … {m.max_len}")
    return _replica_logits(_stack(models), tokens, m.n_layers, m.n_heads, m.mlp)


def train_adam_replicas(
    models: Sequence[StandardTransformer],
    tasks: Sequence[RecallTask],
    seeds: Sequence[int],
    steps: int,
    lr: float = 1e-3,
    *,
    batch_size: int = 128,
    eval_every: int | None = None,
    eval_size: int = 512,
    warmup: int = 0,
    weight_decay: float = 0.0,
    max_bytes: float = 2 * 1024**3,
) -> list[AdamHistory]:
    """:func:`train_adam` of ``models[r]`` on ``tasks[r]`` with ``seeds[r]``, for every
    ``r`` at once: the same runs, batched into one computation (several times faster
    for small networks, where each step's cost is mostly overhead).

    The networks must share one architecture (and the tasks one ``N`` and ``H``). Their
    parameters are stacked along a leading replica dimension; the loss minimised is the
    sum over replicas of each replica's mean cross-entropy, so each replica receives its
    own gradient, and Adam (AdamW), acting coordinate by coordinate, then takes the step
    each separate run would take. Replica ``r`` draws its batches and held-out set
    exactly as ``train_adam(..., seed=seeds[r])`` does. The results equal separate runs
    up to float rounding (a unit test checks it); the trained parameters are copied back
    into ``models``. Returns one :class:`AdamHistory` per replica. ``max_bytes`` caps the
    estimated memory one step keeps for its backward pass (default 2 GiB).
    """
    models = _check_replicas(models)
    R = len(models)
    if isinstance(tasks, RecallTask) or not isinstance(tasks, Sequence) or len(tasks) != R:
        raise ValueError(f"tasks must be a sequence of {R} RecallTask (one per model), "
                         f"got {tasks!r}")
    tasks = [check_task(t) for t in tasks]
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) != R:
        raise ValueError(f"seeds must be a sequence of {R} ints (one per model), got {seeds!r}")
    seeds = [check_seed("seeds", s) for s in seeds]
    m0 = models[0]
    for t in tasks:
        if t.vocab_size != m0.task.vocab_size or t.seq_len != tasks[0].seq_len:
            raise ValueError(
                "tasks must share vocab_size and seq_len with each other and the models, "
                f"got {t} for models built for vocab_size={m0.task.vocab_size}"
            )
    H = tasks[0].seq_len
    if H > m0.max_len:
        raise ValueError(f"task.seq_len={H} exceeds the model's max_len={m0.max_len}")
    steps = check_int("steps", steps, minimum=1, maximum=1_000_000)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    batch_size = check_int("batch_size", batch_size, minimum=1, maximum=1_000_000)
    eval_every = max(1, steps // 20) if eval_every is None else check_int(
        "eval_every", eval_every, minimum=1
    )
    eval_size = check_int("eval_size", eval_size, minimum=1, maximum=1_000_000)
    warmup = check_int("warmup", warmup, minimum=0)
    weight_decay = check_real("weight_decay", weight_decay, low=0.0)
    # what one step keeps for the backward pass, float32: about 8 d + 3 d_mlp + 2 n_heads H
    # numbers per position and layer (measured: 1.2 GiB at R = 10, B = 128, H = 64, L = 3,
    # d = 64, where this gives 1.5 GiB)
    per_step = 4.0 * R * batch_size * H * m0.n_layers * (
        8 * m0.d_model + 3 * m0.d_mlp + 2 * m0.n_heads * H)
    check_budget("batch_size", per_step, max_bytes)

    P = {k: v.clone().requires_grad_(True) for k, v in _stack(models).items()}
    params = list(P.values())
    opt = (torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
           if weight_decay > 0 else torch.optim.Adam(params, lr=lr))
    gens = [make_generator(s) for s in seeds]
    held = [t.sample(eval_size, seed=s + 1_000_003) for t, s in zip(tasks, seeds, strict=True)]
    held_tokens = torch.stack([b.tokens for b in held])
    hists = [AdamHistory(bayes_risk=bayes_risk(t.alpha)) for t in tasks]
    arch = (m0.n_layers, m0.n_heads, m0.mlp)

    chunk = max(1, 4096 // R)  # held-out sequences per replica and forward pass

    def record(step: int) -> None:
        with torch.no_grad():
            xi = torch.cat([_replica_logits(P, held_tokens[:, i:i + chunk], *arch)
                            for i in range(0, eval_size, chunk)], dim=1)
        for r, (t, b, h) in enumerate(zip(tasks, held, hists, strict=True)):
            h.steps.append(step)
            h.eval_loss.append(float(expected_loss(xi[r], b, t.alpha, t.noise_token).mean()))

    t0 = time.perf_counter()
    record(0)
    for step in range(1, steps + 1):
        _warm_up(opt, lr, step, warmup)
        batches = [t.sample(batch_size, generator=g) for t, g in zip(tasks, gens, strict=True)]
        tokens = torch.stack([b.tokens for b in batches])
        targets = torch.stack([b.targets for b in batches]).long()
        xi = _replica_logits(P, tokens, *arch)
        losses = nn.functional.cross_entropy(
            xi.reshape(R * batch_size, -1), targets.reshape(-1), reduction="none"
        ).view(R, batch_size).mean(1)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        values = losses.detach().tolist()
        for r, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the training loss of replica {r} became {value} at step {step}"
                )
            hists[r].train_loss.append(value)
        if step % eval_every == 0 or step == steps:
            record(step)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        for r, m in enumerate(models):
            for k, p in m.named_parameters():
                p.copy_(P[k][r])
    for h in hists:
        h.seconds = seconds
    return hists
