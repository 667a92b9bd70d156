"""The one-layer transformer of the paper's experiments (the model page §3, [E]).

One-hot, fixed embeddings in ``R^d`` (``d ≥ 2N``): ``E(k) = e_k``, ``Ẽ(k) = e_{N+k}``.
The input at position ``h`` carries the token and its predecessor,
``x_h = E(z_h) + Ẽ(z_{h-1})`` (``x_1 = E(z_1)``). Only the last position is read:

    s_h = x_H^T W x_h,      a = σ(s),      A = Σ_h a_h x_h,
    ξ_A = U V A,            ξ_F = U F (x_H + κ A),      ξ = ξ_A + ξ_F,

with ``U = E^T`` (reads coordinates ``0 … N-1``) and ``σ`` linear, ReLU or softmax.

Two forward paths compute the same function:

* the **dense reference** builds the ``[B, H, d]`` inputs and multiplies matrices, as the
  equations read;
* the **structured fast path** (default) uses that every ``x_h`` has at most two
  non-zero coordinates: ``s_h = r[z_h] + r[N + z_{h-1}]`` with ``r = x_H^T W`` (two rows of
  ``W`` gathered), and ``A`` is a scatter-add of ``a_h`` into those two coordinates
  (:mod:`icl.fastpath`, whose backward pass is written out in closed form).
"""

from __future__ import annotations

import torch
from torch import nn

from . import fastpath
from .architecture import (
    Logits,
    activate,
    check_attention,
    check_d_model,
    check_family,
    check_kappa,
    check_model_size,
    embed,
)
from .constants import resolve_gamma
from .construction import Construction, construct, construction_matrices
from .fastpath import interleave
from .task import RecallTask, check_task
from .validate import DEFAULT_MAX_BYTES, InvalidTypeError, check_float_dtype

__all__ = ["OneLayerTransformer", "construct_model"]


class OneLayerTransformer(nn.Module):
    """One-layer transformer ``ξ = U V A + U F (x_H + κ A)`` of the model page §3.

    Parameters
    ----------
    task : RecallTask
        Fixes ``N``, the trigger ``q``, the noise token ``τ`` and ``α``.
    attention : {"linear", "relu", "softmax"}
        The activation ``σ`` of the scores.
    family : {"origin", "reparam", "reparam_w"}
        ``origin``: ``F, V, W`` trainable. ``reparam``: only ``Λ`` (noisy, attribute
        ``Lambda``) or ``λ ∈ R^{|Q|}`` (noiseless, ``lambdas``), the rest as in the
        construction (:func:`icl.construction.construction_matrices`). ``reparam_w``: ``W``
        trainable, ``V = I``, ``F`` of the construction (noisy) or ``0`` (noiseless).
    kappa : {0, 1}
        ``κ``: whether the feed-forward path also reads the attention output.
    d_model : int
        ``d ≥ 2N`` (default 128).
    gamma, alpha_hat : float, optional
        ``γ`` of the noisy construction (default ``log(α/(1-α))``), or a plug-in ``α̂``.
    scaled : bool, optional
        ``reparam`` only: whether the value and feed-forward scale grow with ``Λ``
        (``V = Λ I``, the book's softmax construction [D]) or stay fixed (``V = I``, the
        paper's model [E]). Default: ``True`` for softmax, ``False`` otherwise (the model
        page §4).
    dtype : torch.dtype
        A floating-point type (default float32, the paper's).
    device : optional
        Where the parameters live (default the CPU); ``model.to(device)`` also works.
    max_bytes : float
        Refuse ``d_model`` whose three ``d × d`` matrices need more memory (default 2 GiB).

    All trainable parameters start at zero.
    """

    def __init__(
        self,
        task: RecallTask,
        attention: str = "linear",
        family: str = "origin",
        kappa: int = 1,
        d_model: int = 128,
        *,
        gamma: float | None = None,
        alpha_hat: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        max_bytes: float = DEFAULT_MAX_BYTES,
        scaled: bool | None = None,
    ) -> None:
        super().__init__()
        check_task(task)
        check_d_model(task, d_model)
        check_model_size(d_model, check_float_dtype("dtype", dtype), max_bytes)
        self.task = check_task(task)
        self.attention = check_attention(attention)
        self.family = check_family(family)
        self.kappa = check_kappa(kappa)
        self.d_model = check_d_model(task, d_model)
        self.gamma = resolve_gamma(task.alpha, gamma, alpha_hat)
        if scaled is not None and not isinstance(scaled, bool):
            raise InvalidTypeError(f"scaled must be True, False or None, got {scaled!r}")
        if scaled is not None and family != "reparam":
            raise ValueError(f"scaled applies to the reparam family only, got family={family!r}")
        self.scaled = (attention == "softmax") if scaled is None else scaled
        d = self.d_model
        kw = {"dtype": dtype, "device": device}
        if family == "origin":
            self.F = nn.Parameter(torch.zeros(d, d, **kw))
            self.V = nn.Parameter(torch.zeros(d, d, **kw))
            self.W = nn.Parameter(torch.zeros(d, d, **kw))
        elif family == "reparam":
            if task.noisy:
                self.Lambda = nn.Parameter(torch.zeros((), **kw))
            else:
                self.lambdas = nn.Parameter(torch.zeros(task.n_triggers, **kw))
        else:
            self.W = nn.Parameter(torch.zeros(d, d, **kw))
        # column order of the fast path (icl.fastpath.interleave); moves with model.to()
        self.register_buffer(
            "_perm", interleave(task.vocab_size, device=device), persistent=False
        )

    # ------------------------------------------------------------ parameters
    def matrices(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The effective ``(W, V, F)``, each ``d × d`` (differentiable in the parameters)."""
        if self.family == "origin":
            return self.W, self.V, self.F
        device = self.device
        if self.family == "reparam":
            scale = self.Lambda if self.task.noisy else self.lambdas
            mats = construction_matrices(
                self.task,
                scale.cpu(),  # the construction is built on the CPU (differentiably)
                attention=self.attention,
                kappa=self.kappa,
                gamma=self.gamma,
                d_model=self.d_model,
                scaled=self.scaled,
            )
            return mats if device.type == "cpu" else tuple(m.to(device) for m in mats)
        dtype, d = self.W.dtype, self.d_model
        _, _, F = construction_matrices(
            self.task,
            torch.ones((), dtype=dtype) if self.task.noisy else torch.ones(self.task.n_triggers),
            attention="linear",
            kappa=1,
            gamma=self.gamma,
            d_model=d,
        )
        return self.W, torch.eye(d, dtype=dtype, device=device), F.to(device=device, dtype=dtype)

    @classmethod
    def from_construction(cls, construction: Construction) -> OneLayerTransformer:
        """An ``origin``-family network whose ``W, V, F`` are the construction's
        (:func:`icl.construction.construct`)."""
        if not isinstance(construction, Construction):
            raise TypeError(
                "construction must be an icl.construction.Construction, got "
                f"{type(construction).__name__}"
            )
        c = construction
        net = cls(
            c.task,
            attention=c.attention,
            family="origin",
            kappa=c.kappa,
            d_model=c.W.shape[0],
            dtype=c.W.dtype,
        )
        with torch.no_grad():
            net.W.copy_(c.W)
            net.V.copy_(c.V)
            net.F.copy_(c.F)
        return net

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

    def extra_repr(self) -> str:
        return (
            f"family={self.family!r}, attention={self.attention!r}, kappa={self.kappa}, "
            f"d_model={self.d_model}, N={self.task.vocab_size}"
        )

    # --------------------------------------------------------------- forward
    def forward(self, tokens: torch.Tensor, *, path: str = "fast") -> Logits:
        """Logits ``(ξ, ξ_A, ξ_F)`` at the last position, each ``[B, N]``.

        ``path="fast"`` (default) uses the structured computation; ``path="dense"`` the
        reference one. They agree to rounding.
        """
        self.task.check_tokens(tokens)
        tokens = tokens.long()
        W, V, F = self.matrices()
        if path == "fast":
            return self._forward_fast(tokens, W, V, F)
        if path == "dense":
            return self._forward_dense(tokens, W, V, F)
        raise ValueError(f"path must be 'fast' or 'dense', got {path!r}")

    def scores(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention scores ``s`` and weights ``a = σ(s)``, each ``[B, H]``."""
        self.task.check_tokens(tokens)
        tokens = tokens.long()
        W, _, _ = self.matrices()
        s = self._scores_fast(tokens, W)
        return s, activate(s, self.attention)

    def _scores_fast(self, tokens: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        if not fastpath.supports(W.dtype):
            X = embed(self.task, tokens, self.d_model, dtype=W.dtype)
            return torch.einsum("bd,de,bhe->bh", X[:, -1], W, X)
        N, perm = self.task.vocab_size, self._perm
        Wp = W.index_select(1, perm)  # [d, 2N] interleaved (icl.fastpath)
        r = Wp.index_select(0, tokens[:, -1]) + Wp.index_select(0, tokens[:, -2] + N)
        return fastpath.pair_scores(tokens, r)

    def _forward_fast(self, tokens, W, V, F, parts: bool = True) -> Logits:
        """The structured computation of :mod:`icl.fastpath` (closed-form backward).

        ``parts=False`` (what a training step needs) forms ``ξ`` only; ``ξ_A`` and ``ξ_F``
        are then ``None``. Dtypes other than float32/float64 fall back to the dense path.
        """
        if not fastpath.supports(W.dtype):
            return self._forward_dense(tokens, W, V, F)
        xi, xi_A, xi_F = fastpath.structured_logits(
            tokens, W, V, F, n=self.task.vocab_size, attention=self.attention,
            kappa=self.kappa, perm=self._perm, parts=parts,
        )
        return Logits(xi, xi_A, xi_F)

    def _forward_dense(self, tokens, W, V, F) -> Logits:
        N = self.task.vocab_size
        X = embed(self.task, tokens, self.d_model, dtype=W.dtype)  # [B, H, d]
        xH = X[:, -1]  # [B, d]
        s = torch.einsum("bd,de,bhe->bh", xH, W, X)
        a = activate(s, self.attention)
        A = torch.einsum("bh,bhd->bd", a, X)
        U = torch.eye(self.d_model, dtype=W.dtype, device=W.device)[:N]  # U = E^T
        xi_A = A @ (U @ V).T
        xi_F = (xH + self.kappa * A) @ (U @ F).T
        return Logits(xi_A + xi_F, xi_A, xi_F)


def construct_model(task: RecallTask, Lambda: float | None = None, **kwargs) -> OneLayerTransformer:
    """The network of the construction at ``Λ`` (or ``λ``): shorthand for
    ``OneLayerTransformer.from_construction(construct(task, Lambda, **kwargs))``."""
    return OneLayerTransformer.from_construction(construct(task, Lambda, **kwargs))
