"""One layer of linear self-attention (LSA) in the merged parameterisation [D].

Tokens ``z_i = (x_i, y_i) ∈ R^{d+1}``, the query token ``(x_q, 0)``, the token matrix
``Z ∈ R^{(d+1)×(n+1)}`` and the mask ``M = diag(I_n, 0)``:

    f(Z) = Z + (1/n) W^{PV} Z M (Z^T W^{KQ} Z),      ŷ = f(Z)_{d+1, n+1}.

Only the last row ``b^T = (b_x^T, b_y)`` of ``W^{PV}`` and the first ``d`` columns
``A = (A_x; a_y^T)`` of ``W^{KQ}`` reach ``ŷ``:

    ŷ = b^T G A x_q,      G = (1/n) Σ_{i≤n} z_i z_i^T,

which :meth:`LinearSelfAttention.forward` computes; :meth:`~LinearSelfAttention.dense_forward`
is the reference that multiplies the full matrices. With ``Γ = b_y A_x + b_x a_y^T`` and
``v = (1/n) Σ y_i x_i``, the odd part of ``ŷ`` is ``v^T Γ x_q``: one step of gradient
descent from 0, with preconditioner ``Γ^T``, on ``(1/2n) Σ (u^T x_i - y_i)^2``.

Two families:

* ``"full"``: ``W^{PV}`` and ``W^{KQ}`` both trained (``2(d+1)^2`` numbers);
* ``"reduced"``: ``A`` trained (``d^2 + d`` numbers), ``b = e_{d+1}`` fixed.

A module holds ``K`` independent models (``models=K``) in one set of tensors, so that
several seeds or noise levels train in one vectorised loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..validate import (
    InvalidTypeError,
    check_bool,
    check_choice,
    check_int,
    check_real,
    check_seed,
    check_tensor,
)
from .data import Prompts, check_prompts

__all__ = ["FAMILIES", "LinearSelfAttention", "gd_step_prediction"]

FAMILIES = ("full", "reduced")


def _lead(prompts: Prompts, models: int) -> Prompts:
    """Prompts with a leading model axis (``[B, …]`` is broadcast to every model)."""
    if prompts.X.dim() == 3:
        return Prompts(*(t.unsqueeze(0) for t in (prompts.X, prompts.y, prompts.x_q,
                                                  prompts.y_q, prompts.w)))
    if prompts.X.dim() == 4:
        if prompts.X.shape[0] not in (1, models):
            raise ValueError(f"prompts have {prompts.X.shape[0]} models on axis 0, "
                             f"the module has {models}")
        return prompts
    raise ValueError(f"prompts.X must be [B, n, d] or [K, B, n, d], got {tuple(prompts.X.shape)}")


def gd_step_prediction(prompts: Prompts, gamma: Any) -> torch.Tensor:
    """``ŷ = v^T Γ x_q``: one preconditioned GD step from ``u_0 = 0`` on the in-context least
    squares objective, read at the query (``u_1 = Γ^T v``).

    ``gamma``: ``[d, d]`` or ``[K, d, d]`` (then the prompts carry ``K`` on axis 0 or none).
    """
    prompts = check_prompts("prompts", prompts)
    g = torch.as_tensor(gamma, dtype=prompts.X.dtype)
    d = prompts.d
    if g.dim() == 2:
        check_tensor("gamma", g, shape=(d, d), finite=True)
        return torch.einsum("...j,jk,...k->...", prompts.v(), g, prompts.x_q)
    check_tensor("gamma", g, shape=(None, d, d), finite=True)
    p = _lead(prompts, g.shape[0])
    return torch.einsum("mbj,mjk,mbk->mb", p.v(), g, p.x_q)


def _reduced_forward(b: torch.Tensor, A: torch.Tensor, p: Prompts, mask: bool) -> torch.Tensor:
    """``b^T G A x_q = (1/n) Σ_i (b^T z_i)(z_i^T A x_q)`` for ``[K, …]`` weights and prompts."""
    K, B, n, d = p.X.shape
    Ax = torch.bmm(p.x_q.reshape(K, B, d), A.transpose(1, 2)) if p.X.shape[0] == A.shape[0] \
        else p.x_q @ A.transpose(1, 2)                                   # A x_q, [K, B, d+1]
    bz = torch.bmm(p.X.reshape(K, B * n, d), b[:, :-1, None]).reshape(K, B, n) \
        if p.X.shape[0] == b.shape[0] else (p.X * b[:, None, None, :-1]).sum(-1)
    bz = bz + p.y * b[:, None, -1:]                                     # b^T z_i, [K, B, n]
    zA = (p.X * Ax[:, :, None, :-1]).sum(-1) + p.y * Ax[..., -1:]       # z_i^T A x_q
    out = (bz * zA).mean(-1)                                           # [K, B]
    if not mask:
        bxq = (p.x_q * b[:, None, :-1]).sum(-1)
        out = out + bxq * (p.x_q * Ax[..., :-1]).sum(-1) / n
    return out


class LinearSelfAttention(nn.Module):
    """``K`` one-layer LSA models on ``d``-dimensional regression prompts.

    Parameters
    ----------
    d
        Covariate dimension (tokens have ``d + 1`` entries).
    family
        ``"full"`` or ``"reduced"`` (see the module docstring).
    models
        Number ``K`` of independent models held in the tensors.
    init_std
        Standard deviation of the Gaussian initialisation of every trained entry.
    pv_last
        Initial value of ``W^{PV}_{d+1,d+1} = b_y`` (``full`` only); the zero matrix is a
        stationary point, so the default starts it at 1.
    seed
        Seed of the initialisation.
    """

    def __init__(
        self,
        d: int,
        family: str = "full",
        *,
        models: int = 1,
        init_std: float = 0.01,
        pv_last: float | None = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.d = check_int("d", d, minimum=1)
        self.family = check_choice("family", family, FAMILIES)
        self.models = check_int("models", models, minimum=1)
        init_std = check_real("init_std", init_std, low=0.0)
        if pv_last is not None:
            pv_last = check_real("pv_last", pv_last)
        if dtype not in (torch.float32, torch.float64):
            raise InvalidTypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        g = torch.Generator()
        g.manual_seed(check_seed("seed", seed))
        K, D = self.models, self.d + 1
        if self.family == "full":
            pv = torch.randn(K, D, D, generator=g, dtype=dtype) * init_std
            if pv_last is not None:
                pv[:, -1, -1] = pv_last
            self.W_pv = nn.Parameter(pv)
            self.W_kq = nn.Parameter(torch.randn(K, D, D, generator=g, dtype=dtype) * init_std)
        else:
            self.A_param = nn.Parameter(torch.randn(K, D, self.d, generator=g, dtype=dtype)
                                        * init_std)

    # -- the pieces that reach ŷ --------------------------------------------------------

    @property
    def b(self) -> torch.Tensor:
        """Last row of ``W^{PV}``, ``[K, d+1]``."""
        if self.family == "full":
            return self.W_pv[:, -1, :]
        e = torch.zeros(self.models, self.d + 1, dtype=self.A_param.dtype)
        e[:, -1] = 1.0
        return e

    @property
    def A(self) -> torch.Tensor:
        """First ``d`` columns of ``W^{KQ}``, ``[K, d+1, d]``."""
        return self.W_kq[:, :, : self.d] if self.family == "full" else self.A_param

    def weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W^{PV}, W^{KQ})``, each ``[K, d+1, d+1]`` (for ``reduced``, the fixed entries
        and zeros filled in)."""
        if self.family == "full":
            return self.W_pv, self.W_kq
        K, D = self.models, self.d + 1
        pv = torch.zeros(K, D, D, dtype=self.A_param.dtype)
        pv[:, -1, -1] = 1.0
        kq = torch.cat([self.A_param, torch.zeros(K, D, 1, dtype=self.A_param.dtype)], dim=2)
        return pv, kq

    @torch.no_grad()
    def gamma(self) -> torch.Tensor:
        """The preconditioner ``Γ = b_y A_x + b_x a_y^T``, ``[K, d, d]`` (float64)."""
        b, A = self.b.double(), self.A.double()
        return b[:, -1, None, None] * A[:, :-1, :] + b[:, :-1, None] * A[:, -1, None, :]

    @torch.no_grad()
    def eta_hat(self) -> torch.Tensor:
        """``η̂ = tr Γ / d`` per model, ``[K]``."""
        return torch.diagonal(self.gamma(), dim1=1, dim2=2).sum(-1) / self.d

    @torch.no_grad()
    def b_x(self) -> torch.Tensor:
        """``b_x``, ``[K, d]``."""
        return self.b[:, :-1].double()

    @torch.no_grad()
    def a_y(self) -> torch.Tensor:
        """``a_y``, ``[K, d]``."""
        return self.A[:, -1, :].double()

    # -- forward passes -----------------------------------------------------------------

    def forward(self, prompts: Prompts, *, mask: bool = True) -> torch.Tensor:
        """``ŷ = b^T G A x_q`` for every model and prompt, ``[K, B]``.

        ``mask=False`` lets the query token attend to itself, which adds
        ``(1/n)(b_x^T x_q)(x_q^T A_x x_q)``.
        """
        mask = check_bool("mask", mask)
        p = _lead(check_prompts("prompts", prompts), self.models)
        return _reduced_forward(self.b.to(p.X.dtype), self.A.to(p.X.dtype), p, mask)

    @torch.no_grad()
    def decompose(self, prompts: Prompts) -> dict[str, torch.Tensor]:
        """The three terms of the masked ``ŷ`` (each ``[K, B]``, float64):

        ``"gd"``: ``v^T Γ x_q``; ``"even_x"``: ``(1/n) Σ_i (b_x^T x_i)(x_i^T A_x x_q)``;
        ``"even_y"``: ``b_y ((1/n) Σ_i y_i²) a_y^T x_q``. Their sum is :meth:`forward`.
        """
        p = _lead(check_prompts("prompts", prompts), self.models).to(torch.float64)
        b, A = self.b.double(), self.A.double()
        Ax_q = torch.einsum("mjk,mbk->mbj", A[:, :-1, :], p.x_q.expand(self.models, -1, -1))
        bx_x = torch.einsum("mj,mbij->mbi", b[:, :-1], p.X.expand(self.models, -1, -1, -1))
        x_Ax = torch.einsum("mbij,mbj->mbi", p.X.expand(self.models, -1, -1, -1), Ax_q)
        ay_xq = torch.einsum("mj,mbj->mb", A[:, -1, :], p.x_q.expand(self.models, -1, -1))
        return {
            "gd": gd_step_prediction(p, self.gamma()),
            "even_x": (bx_x * x_Ax).mean(-1),
            "even_y": b[:, -1, None] * (p.y**2).mean(-1) * ay_xq,
        }

    def dense_forward(self, prompts: Prompts, *, mask: bool = True) -> torch.Tensor:
        """Reference: ``f(Z) = Z + (1/n) W^{PV} Z M (Z^T W^{KQ} Z)`` with full matrix
        products, read at ``(d+1, n+1)``; ``[K, B]``. Slow; for checks."""
        mask = check_bool("mask", mask)
        p = _lead(check_prompts("prompts", prompts), self.models)
        pv, kq = (w.to(p.X.dtype) for w in self.weights())
        Z = p.tokens()                                                 # [K, B, d+1, n+1]
        M = torch.eye(p.n + 1, dtype=Z.dtype)
        if mask:
            M[-1, -1] = 0.0
        attn = Z.transpose(-1, -2) @ kq.unsqueeze(1) @ Z               # [K, B, n+1, n+1]
        f = Z + pv.unsqueeze(1) @ Z @ M @ attn / p.n
        return f[..., -1, -1]

    @classmethod
    def from_gamma(cls, gamma: Any, *, dtype: torch.dtype = torch.float64) -> LinearSelfAttention:
        """A ``reduced`` model with ``A_x = Γ`` and ``a_y = 0``: it *is* the GD step ``Γ``."""
        g = torch.as_tensor(gamma, dtype=dtype)
        if g.dim() == 2:
            g = g.unsqueeze(0)
        check_tensor("gamma", g, ndim=3, finite=True)
        if g.shape[1] != g.shape[2]:
            raise ValueError(f"gamma must be square, got shape {tuple(g.shape)}")
        model = cls(g.shape[1], "reduced", models=g.shape[0], init_std=0.0, dtype=dtype)
        with torch.no_grad():
            model.A_param[:, :-1, :] = g
        return model
