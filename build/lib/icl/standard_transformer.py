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
from collections.abc import Sequence
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
    check_int,
    check_real,
    check_seed,
)

__all__ = [
    "AdamHistory",
    "StandardTransformer",
    "TransformerOutput",
    "last_position_loss",
    "train_adam",
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
        if warmup:
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, step / warmup)
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
