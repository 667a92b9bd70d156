"""The Bayes-optimal construction (spec section 4: [E] for its form, [D] for its analysis).

Noiseless, triggers ``Q``:   ``W = Σ_k λ_k E(k) Ẽ(k)^T``,  ``V = I``,  ``ξ = ξ_A`` (``F = 0``).

Noisy, trigger ``q = 0``, noise token ``τ``, ``γ = log(α/(1-α))``:

    W = Λ E(q) (Ẽ(q) - E(τ))^T,   V = I,   F = E(τ) (γ E(q) + Ẽ(q))^T,   κ = 1.

With linear or ReLU attention and ``Λ ≥ 0`` the logits are ``ξ_y = Λ``, ``ξ_τ = γ + Λ``
and 0 elsewhere, so ``L(Λ) = H_b(α) + log(1 + (N-2)(1-α) e^{-Λ})`` (the book's
derivation, verified in chapter 3).

Two variants are the book's own:

* ``κ = 0``: the feed-forward path reads ``x_H`` only, so it cannot pick up ``Λ`` from the
  attention output; ``F = (γ + Λ) E(τ) E(q)^T`` gives the same logits.
* softmax attention: the weights sum to one, so the value scale must grow with the
  attention scale: ``V = Λ I`` and ``F = E(τ)(γ E(q) + Λ Ẽ(q))^T`` (noiseless:
  ``V = λ̄ I``, ``λ̄`` the mean of ``λ``). With ``scaled=False`` the paper's ``V = I`` is
  kept, and the loss stalls above the Bayes risk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .bayes import bayes_risk
from .model import (
    OneLayerTransformer,
    check_attention,
    check_d_model,
    check_kappa,
    resolve_gamma,
)
from .task import RecallBatch, RecallTask

__all__ = [
    "Construction",
    "closed_form_excess",
    "closed_form_logits",
    "closed_form_loss",
    "construct",
    "construction_matrices",
    "softmax_unscaled_floor",
]


def construction_matrices(
    task: RecallTask,
    scale: torch.Tensor,
    *,
    attention: str = "linear",
    kappa: int = 1,
    gamma: float = 0.0,
    d_model: int = 128,
    scaled: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(W, V, F)`` of the construction, differentiable in ``scale``.

    ``scale`` is ``Λ`` (a 0-d tensor) for the noisy task, ``λ`` (``[|Q|]``) for the
    noiseless one. ``scaled`` (default: ``True`` for softmax, ``False`` otherwise) puts
    the scale into ``V`` and ``F`` too (the book's softmax construction).
    """
    check_attention(attention)
    kappa = check_kappa(kappa)
    d = check_d_model(task, d_model)
    N = task.vocab_size
    scale = torch.as_tensor(scale)
    if not scale.is_floating_point():
        scale = scale.to(torch.get_default_dtype())
    dtype = scale.dtype
    if scaled is None:
        scaled = attention == "softmax"
    eye = torch.eye(d, dtype=dtype)
    if task.noisy:
        if scale.dim() != 0:
            raise ValueError(
                f"the noisy task takes a scalar Lambda, got shape {tuple(scale.shape)}"
            )
        q, tau = 0, task.noise_token
        Lam = scale
        W = Lam * torch.outer(eye[q], eye[N + q] - eye[tau])
        c = Lam if scaled else torch.ones((), dtype=dtype)
        V = c * eye
        if kappa:
            F = torch.outer(eye[tau], gamma * eye[q] + c * eye[N + q])
        else:
            F = (gamma + Lam) * torch.outer(eye[tau], eye[q])
        return W, V, F
    if scale.shape != (task.n_triggers,):
        raise ValueError(
            f"the noiseless task takes lambdas of shape ({task.n_triggers},), "
            f"got {tuple(scale.shape)}"
        )
    k = torch.arange(task.n_triggers)
    W = torch.zeros(d, d, dtype=dtype).index_put((k, k + N), scale)
    c = scale.mean() if scaled else torch.ones((), dtype=dtype)
    return W, c * eye, torch.zeros(d, d, dtype=dtype)


@dataclass(frozen=True)
class Construction:
    """The construction's matrices and settings; :meth:`model` loads them into a network."""

    task: RecallTask
    attention: str
    kappa: int
    gamma: float
    scale: torch.Tensor
    W: torch.Tensor
    V: torch.Tensor
    F: torch.Tensor

    def model(self) -> OneLayerTransformer:
        """An ``origin``-family network whose ``W, V, F`` are the construction's."""
        net = OneLayerTransformer(
            self.task,
            attention=self.attention,
            family="origin",
            kappa=self.kappa,
            d_model=self.W.shape[0],
            dtype=self.W.dtype,
        )
        with torch.no_grad():
            net.W.copy_(self.W)
            net.V.copy_(self.V)
            net.F.copy_(self.F)
        return net


def construct(
    task: RecallTask,
    Lambda: float | None = None,
    *,
    lambdas: Sequence[float] | None = None,
    attention: str = "linear",
    kappa: int = 1,
    gamma: float | None = None,
    alpha_hat: float | None = None,
    d_model: int = 128,
    scaled: bool | None = None,
    dtype: torch.dtype = torch.float64,
) -> Construction:
    """The Bayes-optimal parameters of spec section 4 at a given ``Λ`` (or ``λ``).

    Noisy task: pass ``Lambda``. Noiseless task: pass ``lambdas`` (one per trigger) or a
    scalar ``Lambda`` shared by all triggers.
    """
    g = resolve_gamma(task, gamma, alpha_hat)
    if task.noisy:
        if lambdas is not None or Lambda is None:
            raise ValueError("the noisy task takes a scalar Lambda (and no lambdas)")
        scale = torch.tensor(float(Lambda), dtype=dtype)
    else:
        if (Lambda is None) == (lambdas is None):
            raise ValueError("the noiseless task takes either Lambda or lambdas")
        if lambdas is None:
            scale = torch.full((task.n_triggers,), float(Lambda), dtype=dtype)
        else:
            scale = torch.as_tensor(lambdas, dtype=dtype)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError(f"Lambda/lambdas must be finite, got {scale.tolist()}")
    W, V, F = construction_matrices(
        task, scale, attention=attention, kappa=kappa, gamma=g, d_model=d_model, scaled=scaled
    )
    return Construction(task, attention, check_kappa(kappa), g, scale, W, V, F)


def closed_form_loss(
    task: RecallTask,
    Lambda,
    *,
    gamma: float | None = None,
    alpha_hat: float | None = None,
) -> np.ndarray | float:
    """Population loss of the construction with linear/ReLU attention (the book's [D]).

    Noisy: ``L(Λ) = log(1 + e^γ + (N-2) e^{-Λ}) - α γ``, which at ``γ = log(α/(1-α))``
    equals ``H_b(α) + log(1 + (N-2)(1-α) e^{-Λ})``; with a plug-in ``α̂`` it tends to
    ``H_b(α) + KL(Ber(α) ‖ Ber(α̂))``. Noiseless: ``mean_k log(1 + (N-1) e^{-λ_k})``
    (``Lambda`` is then ``λ`` with the triggers on its last axis, or a shared scalar:
    a grid of shared values is passed as ``lam[:, None]``). Vectorised over ``Lambda``.
    """
    lam = np.asarray(Lambda, dtype=np.float64)
    N = task.vocab_size
    if task.noisy:
        g = resolve_gamma(task, gamma, alpha_hat)
        out = np.log1p(math.exp(g) + (N - 2) * np.exp(-lam)) - task.alpha * g
    else:
        per = np.log1p((N - 1) * np.exp(-lam))
        out = per if lam.ndim == 0 else per.mean(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def closed_form_excess(
    task: RecallTask,
    Lambda,
    *,
    gamma: float | None = None,
    alpha_hat: float | None = None,
) -> np.ndarray | float:
    """``L(Λ) - H_b(α)`` (see :func:`closed_form_loss`).

    At the task's own ``γ`` it is evaluated as ``log1p((N-2)(1-α) e^{-Λ})``, which keeps
    full relative precision when the excess is far below the loss (large ``Λ``).
    """
    if task.noisy and gamma is None and alpha_hat is None:
        lam = np.asarray(Lambda, dtype=np.float64)
        out = np.log1p((task.vocab_size - 2) * (1.0 - task.alpha) * np.exp(-lam))
        return float(out) if np.ndim(out) == 0 else out
    if not task.noisy:
        return closed_form_loss(task, Lambda)  # the Bayes risk is 0
    return closed_form_loss(task, Lambda, gamma=gamma, alpha_hat=alpha_hat) - bayes_risk(
        task.alpha
    )


def closed_form_logits(
    task: RecallTask,
    batch: RecallBatch,
    Lambda,
    *,
    gamma: float | None = None,
    alpha_hat: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Logits ``[B, N]`` of the construction with linear/ReLU attention, ``Λ ≥ 0``.

    Noisy: ``ξ_y = Λ``, ``ξ_τ = γ + Λ``, 0 elsewhere. Noiseless: ``ξ_y = λ_q``.
    Built from ``batch.outputs`` and ``batch.triggers`` alone, independently of the network.
    """
    B, N = batch.batch_size, task.vocab_size
    xi = torch.zeros(B, N, dtype=dtype)
    rows = torch.arange(B)
    if task.noisy:
        lam = float(Lambda)
        g = resolve_gamma(task, gamma, alpha_hat)
        xi[rows, batch.outputs] = lam
        xi[:, task.noise_token] = g + lam
    else:
        lam = torch.as_tensor(Lambda, dtype=dtype)
        lam = lam.expand(task.n_triggers) if lam.dim() == 0 else lam
        xi[rows, batch.outputs] = lam[batch.triggers]
    return xi


def softmax_unscaled_floor(task: RecallTask) -> float:
    """Limit ``Λ → ∞`` of the loss of the construction with softmax attention and ``V = I``.

    The weights concentrate on the position of ``y``, so ``A → E(y) + Ẽ(q)`` and the
    logits saturate at ``ξ_y = 1`` (and ``ξ_τ = γ + 1``): the loss tends to the linear
    formula at ``Λ = 1``, strictly above the Bayes risk (the book's [D]).
    """
    return closed_form_loss(task, 1.0)
