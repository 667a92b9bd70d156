"""The structured fast path of the one-layer transformer, with a closed-form backward ([D]).

Every input ``x_h = E(z_h) + Ẽ(z_{h-1})`` has two non-zero coordinates, ``z_h`` and
``N + z_{h-1}``, so with ``r = x_H^T W`` (two rows of ``W``)

    s_h = r_{z_h} + r_{N + z_{h-1}},        A_k = Σ_{h: z_h = k} a_h,
    A_{N+k} = Σ_{h: z_{h-1} = k} a_h          (k < N; A is zero beyond 2N).

The two halves of ``r`` (and of ``A``) are stored *interleaved*, ``(r_0, r_N, r_1,
r_{N+1}, …)``, and read as ``N`` complex numbers ``r_k + i r_{N+k}``: one gather at the
tokens then returns both ``r_{z_h}`` and ``r_{N+z_h}`` (the second is the ``Ẽ`` part of
position ``h+1``), and one complex scatter-add at the tokens accumulates both halves of
``A`` (real part ``a_h``, imaginary part ``a_{h+1}``). That halves the number of indexed
memory accesses, which dominate the cost on a CPU.

The backward pass is written out (:class:`Attend`): with ``ḡ = ∂L/∂A`` (interleaved),

    ∂L/∂a_h = ḡ_{z_h} + ḡ_{N+z_{h-1}}                      (the same gather),
    ∂L/∂s_h = σ'(s_h) ∂L/∂a_h  (linear, ReLU with σ'(0) = 1),
    ∂L/∂s   = a ⊙ (∂L/∂a - ⟨a, ∂L/∂a⟩)                      (softmax),
    ∂L/∂r   = the scatter-add of ∂L/∂s                        (as A from a).

``tests/test_fastpath.py`` checks it against autograd through the dense reference.
"""

from __future__ import annotations

import torch

__all__ = ["Attend", "attend", "interleave", "pair_scores", "structured_logits"]

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def interleave(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The column order ``(0, n, 1, n+1, …, n-1, 2n-1)`` of the interleaved layout, ``[2n]``."""
    k = torch.arange(n, device=device)
    return torch.stack([k, k + n], dim=1).reshape(-1)


def supports(dtype: torch.dtype) -> bool:
    """Whether the fast path handles ``dtype`` (float32 and float64)."""
    return dtype in _COMPLEX


def _pair_gather(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``out_h = table_{z_h} + table_{N + z_{h-1}}`` (``out_1 = table_{z_1}``), ``[B, H]``.

    ``table`` is ``[B, 2N]`` interleaved.
    """
    B, H = tokens.shape
    pairs = torch.view_as_complex(table.view(B, -1, 2)).gather(1, tokens)
    pr = torch.view_as_real(pairs)  # [B, H, 2]: (table_{z_h}, table_{N+z_h})
    out = torch.empty(B, H, dtype=table.dtype, device=table.device)
    out[:, 0] = pr[:, 0, 0]
    torch.add(pr[:, 1:, 0], pr[:, :-1, 1], out=out[:, 1:])
    return out


def _pair_scatter(weights: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """``Σ_h w_h x_h`` restricted to its first ``2N`` coordinates, interleaved, ``[B, 2N]``."""
    B, H = tokens.shape
    w = torch.empty(B, H, 2, dtype=weights.dtype, device=weights.device)
    w[:, :, 0] = weights
    w[:, :-1, 1] = weights[:, 1:]
    w[:, -1, 1] = 0
    out = torch.zeros(B, n, dtype=_COMPLEX[weights.dtype], device=weights.device)
    out.scatter_add_(1, tokens, torch.view_as_complex(w))
    return torch.view_as_real(out).view(B, 2 * n)


def _activate(s: torch.Tensor, attention: str) -> torch.Tensor:
    if attention == "linear":
        return s
    if attention == "relu":
        return s.clamp(min=0)
    return torch.softmax(s, dim=-1)


class Attend(torch.autograd.Function):
    """``(tokens, r) ↦ A = Σ_h σ(s)_h x_h`` (interleaved ``[B, 2N]``), closed-form backward."""

    @staticmethod
    def forward(ctx, tokens: torch.Tensor, r: torch.Tensor, attention: str):  # noqa: D102
        s = _pair_gather(r, tokens)
        a = _activate(s, attention)
        A = _pair_scatter(a, tokens, r.shape[1] // 2)
        ctx.attention = attention
        if attention == "linear":
            ctx.save_for_backward(tokens)
        elif attention == "relu":
            ctx.save_for_backward(tokens, s >= 0)
        else:
            ctx.save_for_backward(tokens, a)
        return A

    @staticmethod
    def backward(ctx, grad_A: torch.Tensor):  # noqa: D102
        tokens, *saved = ctx.saved_tensors
        n = grad_A.shape[1] // 2
        g = _pair_gather(grad_A.contiguous(), tokens)  # ∂L/∂a
        if ctx.attention == "relu":
            g = g * saved[0]
        elif ctx.attention == "softmax":
            a = saved[0]
            g = a * (g - (a * g).sum(dim=-1, keepdim=True))
        return None, _pair_scatter(g, tokens, n), None


def attend(tokens: torch.Tensor, r: torch.Tensor, attention: str) -> torch.Tensor:
    """``A`` (interleaved ``[B, 2N]``) from the tokens ``[B, H]`` and ``r`` (interleaved)."""
    return Attend.apply(tokens, r, attention)


def pair_scores(tokens: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The scores ``s_h = r_{z_h} + r_{N + z_{h-1}}``, ``[B, H]`` (``r`` interleaved).

    Differentiable by autograd (used for inspection, not by the training step).
    """
    B = tokens.shape[0]
    pr = torch.view_as_real(torch.view_as_complex(r.view(B, -1, 2)).gather(1, tokens))
    return torch.cat([pr[:, :1, 0], pr[:, 1:, 0] + pr[:, :-1, 1]], dim=1)


def structured_logits(
    tokens: torch.Tensor,
    W: torch.Tensor,
    V: torch.Tensor,
    F: torch.Tensor,
    *,
    n: int,
    attention: str,
    kappa: int,
    perm: torch.Tensor,
    parts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(ξ, ξ_A, ξ_F)`` of the model on ``tokens`` (``[B, H]``, ``H ≥ 2``), each ``[B, N]``.

    ``perm`` is :func:`interleave` ``(N)`` on the tokens' device. With ``parts=False`` only
    ``ξ = A (V + κF)_{:N}^T + U F x_H`` is formed (one matrix product instead of two: what
    a training step needs), and ``ξ_A``, ``ξ_F`` are ``None``.
    """
    last, before = tokens[:, -1], tokens[:, -2] + n
    Wp = W.index_select(1, perm)  # [d, 2N]: the columns that can meet an input
    r = Wp.index_select(0, last) + Wp.index_select(0, before)  # x_H^T W, interleaved
    A = attend(tokens, r, attention)
    FU = F[:n]
    xi_F0 = FU.T.index_select(0, last) + FU.T.index_select(0, before)  # U F x_H
    if not parts:
        M = V[:n] + FU if kappa else V[:n]
        return torch.addmm(xi_F0, A, M.index_select(1, perm).T), None, None
    xi_A = A @ V[:n].index_select(1, perm).T
    xi_F = torch.addmm(xi_F0, A, FU.index_select(1, perm).T) if kappa else xi_F0
    return xi_A + xi_F, xi_A, xi_F
