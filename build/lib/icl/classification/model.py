"""The single linear-attention layer on Gaussian-mixture prompts (the book's reconstruction).

The embedding stacks inputs over labels, with an empty label slot for the query,

``Z = [[x_1 … x_N x_q], [y_1 … y_N 0]]``  (``(d + c') × (N + 1)``, ``c' = 1`` for ``±1``
labels, ``c' = c`` for one-hot labels),

and the layer is ``f(Z) = Z + (1/N) W^{PV} Z M (Z^⊤ W^{KQ} Z)`` with ``M = diag(I_N, 0)``,
``W^{PV} = diag(0_d, I_{c'})`` and ``W^{KQ} = diag(W, 0)``. Only ``W ∈ R^{d×d}`` is trained.
The prediction is the label slot of the query column,

``ŷ = f(Z)_{d+1, N+1} = b_N^⊤ W x_q``  (binary) or ``ŷ = B_N W x_q ∈ R^c``,

read as ``P̂(y_q = +1) = σ(ŷ)`` or ``P̂ = softmax(ŷ)``. :func:`attention_logits` runs the
layer on the explicit matrix ``Z``; :func:`logits` is the closed form.
"""

from __future__ import annotations

import torch

from icl.validate import InvalidTypeError, check_int, check_tensor

from .data import DTYPE, Prompts, label_rows

__all__ = [
    "attention_layer",
    "attention_logits",
    "embed",
    "logits",
    "probabilities",
]


def _check_w(w: torch.Tensor, d: int) -> torch.Tensor:
    return check_tensor("W", w, shape=(d, d), kind="float", finite=True).to(DTYPE)


def embed(prompts: Prompts) -> torch.Tensor:
    """The embedding ``Z``, shape ``(B, d + c', N + 1)``."""
    if not isinstance(prompts, Prompts):
        raise InvalidTypeError(f"prompts must be Prompts, got {type(prompts).__name__}")
    c = prompts.n_classes
    y = label_rows(prompts.labels, c)
    if c == 2:
        y = y.unsqueeze(-1)
    top = torch.cat([prompts.x, prompts.xq.unsqueeze(1)], dim=1)  # (B, N+1, d)
    bottom = torch.cat([y, torch.zeros_like(y[:, :1])], dim=1)  # (B, N+1, c')
    return torch.cat([top, bottom], dim=2).transpose(1, 2)


def attention_layer(z: torch.Tensor, w: torch.Tensor, n_labels: int) -> torch.Tensor:
    """``f(Z) = Z + (1/N) W^{PV} Z M (Z^⊤ W^{KQ} Z)`` for a batch ``Z`` (B, d + c', N + 1).

    ``n_labels`` is ``c'``, the number of label rows. The matrices ``W^{PV}``, ``W^{KQ}``
    and ``M`` are built explicitly (this is the reference path, not the fast one).
    """
    cp = check_int("n_labels", n_labels, minimum=1)
    z = check_tensor("Z", z, ndim=3, kind="float", finite=True).to(DTYPE)
    rows, cols = z.shape[1], z.shape[2]
    d = rows - cp
    if d < 1 or cols < 2:
        raise ValueError(f"Z must have more than n_labels = {cp} rows and >= 2 columns, "
                         f"got shape {tuple(z.shape)}")
    w = _check_w(w, d)
    n = cols - 1
    w_pv = torch.zeros(rows, rows, dtype=DTYPE)
    w_pv[d:, d:] = torch.eye(cp, dtype=DTYPE)
    w_kq = torch.zeros(rows, rows, dtype=DTYPE)
    w_kq[:d, :d] = w
    mask = torch.diag(torch.cat([torch.ones(n, dtype=DTYPE), torch.zeros(1, dtype=DTYPE)]))
    scores = z.transpose(1, 2) @ w_kq @ z
    return z + (w_pv @ z @ mask @ scores) / n


def attention_logits(prompts: Prompts, w: torch.Tensor) -> torch.Tensor:
    """``ŷ`` read off ``f(Z)`` (label slot of the query column): (B,) or (B, c)."""
    z = embed(prompts)
    cp = 1 if prompts.n_classes == 2 else prompts.n_classes
    out = attention_layer(z, w, cp)[:, -cp:, -1]
    return out[:, 0] if prompts.n_classes == 2 else out


def logits(b: torch.Tensor, w: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    """The closed form ``ŷ = b^⊤ W x_q`` (``b`` (B, d)) or ``B W x_q`` (``b`` (B, c, d))."""
    xq = check_tensor("xq", xq, ndim=2, kind="float", finite=True)
    d = xq.shape[1]
    w = _check_w(w, d)
    b = check_tensor("b", b, kind="float", finite=True)
    if b.dim() == 2 and b.shape == xq.shape:
        return torch.einsum("bi,ij,bj->b", b.to(DTYPE), w, xq.to(DTYPE))
    if b.dim() == 3 and b.shape[0] == xq.shape[0] and b.shape[2] == d:
        return torch.einsum("bki,ij,bj->bk", b.to(DTYPE), w, xq.to(DTYPE))
    raise ValueError(
        f"b must have shape (B, d) = {tuple(xq.shape)} or (B, c, {d}), got {tuple(b.shape)}"
    )


def probabilities(y_hat: torch.Tensor) -> torch.Tensor:
    """``σ(ŷ)`` = P̂(class 1) for (B,) logits; ``softmax(ŷ)`` for (B, c) logits."""
    y_hat = check_tensor("y_hat", y_hat, kind="float")
    if y_hat.dim() == 1:
        return torch.sigmoid(y_hat)
    if y_hat.dim() == 2:
        return torch.softmax(y_hat, dim=1)
    raise ValueError(f"y_hat must have 1 or 2 dimensions, got shape {tuple(y_hat.shape)}")
