"""The settings of the one-layer transformer, shared by the network and the construction.

The model reads one-hot, fixed embeddings in ``R^d`` (``d ≥ 2N``): ``E(k) = e_k`` and
``Ẽ(k) = e_{N+k}``; the input at position ``h`` is ``x_h = E(z_h) + Ẽ(z_{h-1})``
(``x_1 = E(z_1)``). Its attention activation ``σ`` is linear, ReLU or softmax, and its
trainable parameters come in three families. This module holds those choices, their
checks, the embedding and the activation, and the :class:`Logits` triple
``(ξ, ξ_A, ξ_F)``; the network itself is :mod:`icl.model`. Notation: the book page
*The task and the model, precisely*, §3.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .task import RecallTask, check_task
from .validate import (
    DEFAULT_MAX_BYTES,
    check_budget,
    check_choice,
    check_float_dtype,
    check_int,
    check_real,
)

__all__ = [
    "ATTENTIONS",
    "FAMILIES",
    "Logits",
    "activate",
    "check_attention",
    "check_d_model",
    "check_family",
    "check_kappa",
    "check_model_size",
    "embed",
]

#: the attention activations ``σ``
ATTENTIONS = ("linear", "relu", "softmax")
#: the parameter families (all of ``F, V, W``; only ``Λ``/``λ``; only ``W``)
FAMILIES = ("origin", "reparam", "reparam_w")


class Logits(NamedTuple):
    """The three logit tensors of the model, each ``[B, N]``: ``ξ = ξ_A + ξ_F``."""

    xi: torch.Tensor
    xi_A: torch.Tensor
    xi_F: torch.Tensor


def check_attention(attention: str) -> str:
    """``attention`` if it is one of :data:`ATTENTIONS`."""
    return check_choice("attention", attention, ATTENTIONS)


def check_family(family: str) -> str:
    """``family`` if it is one of :data:`FAMILIES`."""
    return check_choice("family", family, FAMILIES)


def check_kappa(kappa: int) -> int:
    """``κ ∈ {0, 1}`` (an integer, not a bool or a float)."""
    k = check_int("kappa", kappa)
    if k not in (0, 1):
        raise ValueError(f"kappa must be 0 or 1, got {kappa!r}")
    return k


def check_d_model(task: RecallTask, d_model: int) -> int:
    """``d ≥ 2N``: room for both embeddings ``E`` and ``Ẽ``."""
    d_model = check_int("d_model", d_model)
    check_task(task)
    if d_model < 2 * task.vocab_size:
        raise ValueError(
            f"d_model must be >= 2 * vocab_size = {2 * task.vocab_size} (room for E and Ẽ), "
            f"got {d_model}"
        )
    return d_model


def embed(
    task: RecallTask, tokens: torch.Tensor, d_model: int, dtype=torch.float32
) -> torch.Tensor:
    """Dense inputs ``X[b, h] = E(z_h) + Ẽ(z_{h-1})``, shape ``[B, H, d]`` (reference path)."""
    N = task.vocab_size
    X = torch.nn.functional.one_hot(tokens, d_model).to(dtype)
    X[:, 1:] += torch.nn.functional.one_hot(tokens[:, :-1] + N, d_model).to(dtype)
    return X


def activate(s: torch.Tensor, attention: str) -> torch.Tensor:
    """``σ(s)`` over the positions (last dimension).

    ReLU is not differentiable at 0, and from the zero initialisation *every* score is
    exactly 0. We take the subgradient ``σ'(0) = 1`` (``clamp``); ``torch.relu`` takes
    ``σ'(0) = 0``, and a ReLU model started at zero would then never move its attention.
    """
    if attention == "linear":
        return s
    if attention == "relu":
        return s.clamp(min=0)
    return torch.softmax(s, dim=-1)



def check_model_size(
    d_model: int, dtype: torch.dtype, max_bytes: float = DEFAULT_MAX_BYTES, n_matrices: int = 3
) -> None:
    """Refuse ``d × d`` matrices (``W``, ``V``, ``F`` and the identity of the construction)
    that would not fit in ``max_bytes``, before any is allocated."""
    dtype = check_float_dtype("dtype", dtype)
    max_bytes = check_real("max_bytes", max_bytes, low=0.0, low_open=True, finite=False)
    itemsize = torch.empty((), dtype=dtype).element_size()
    check_budget("d_model", n_matrices * d_model * d_model * itemsize, max_bytes)
