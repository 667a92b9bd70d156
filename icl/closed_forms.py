"""Closed forms of the construction's loss with linear or ReLU attention (the book's [D]).

With linear or ReLU attention and ``Λ ≥ 0`` the construction's logits are ``ξ_y = Λ``,
``ξ_τ = γ + Λ`` and 0 elsewhere (noiseless: ``ξ_y = λ_q``), so every context has the
same expected loss, in closed form:

    L(Λ) = log(1 + e^γ + (N-2) e^{-Λ}) - α γ = H_b(α) + log(1 + (N-2)(1-α) e^{-Λ}),

derived with SymPy in chapter 3 (:mod:`icl.symbolic.construction`). The ``κ = 0`` model
that keeps the ``κ = 1`` matrix ``F`` has its own closed form (:func:`kappa0_stalled_loss`).
Notation and labels: the book page *The task and the model, precisely*, §4.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .bayes import bayes_risk, binary_entropy
from .constants import resolve_gamma
from .task import RecallBatch, RecallTask
from .validate import check_finite_array, check_probability

__all__ = [
    "closed_form_excess",
    "closed_form_logits",
    "closed_form_loss",
    "kappa0_stalled_loss",
    "kappa0_stalled_minimum",
]


def closed_form_loss(
    task: RecallTask,
    Lambda,
    *,
    gamma: float | None = None,
    alpha_hat: float | None = None,
    alpha_test: float | None = None,
) -> np.ndarray | float:
    """Population loss of the construction with linear/ReLU attention (the book's [D]).

    Noisy: ``L(Λ) = log(1 + e^γ + (N-2) e^{-Λ}) - α γ``, which at ``γ = log(α/(1-α))``
    equals ``H_b(α) + log(1 + (N-2)(1-α) e^{-Λ})``; with a plug-in ``α̂`` it tends to
    ``H_b(α) + KL(Ber(α) ‖ Ber(α̂))``. Noiseless: ``mean_k log(1 + (N-1) e^{-λ_k})``
    (``Lambda`` is then ``λ`` with the triggers on its last axis, or a shared scalar:
    a grid of shared values is passed as ``lam[:, None]``). Vectorised over ``Lambda``.

    ``alpha_test`` evaluates the same model on a task whose noise level is ``α_t`` instead
    of the training ``α`` (chapter 5): ``L(Λ; α_t) = log(1 + e^γ + (N-2) e^{-Λ}) - α_t γ``.
    A noiseless model takes only ``alpha_test`` of ``None`` or 0.
    """
    lam = check_finite_array("Lambda", Lambda)
    N = task.vocab_size
    if task.noisy:
        g = resolve_gamma(task.alpha, gamma, alpha_hat)
        a_test = task.alpha if alpha_test is None else check_probability("alpha_test", alpha_test)
        out = np.log1p(math.exp(g) + (N - 2) * np.exp(-lam)) - a_test * g
    else:
        if alpha_test is not None and check_probability("alpha_test", alpha_test) != 0.0:
            raise ValueError(
                f"alpha_test={alpha_test!r} needs a noisy training task (task.alpha > 0)"
            )
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
        out = np.log1p(task.rate_constant * np.exp(-lam))
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
        g = resolve_gamma(task.alpha, gamma, alpha_hat)
        xi[rows, batch.outputs] = lam
        xi[:, task.noise_token] = g + lam
    else:
        lam = torch.as_tensor(Lambda, dtype=dtype)
        lam = lam.expand(task.n_triggers) if lam.dim() == 0 else lam
        xi[rows, batch.outputs] = lam[batch.triggers]
    return xi



def kappa0_stalled_loss(task: RecallTask, Lambda, gamma: float | None = None):
    """Loss of the κ = 0 model carrying the κ = 1 construction's ``F`` (linear/ReLU).

    Then ``ξ_F = U F x_H = γ e_τ`` no longer grows with ``Λ``: ``ξ_y = Λ``, ``ξ_τ = γ`` and
    ``L(Λ) = log(e^Λ + e^γ + N - 2) - (1-α) Λ - α γ``, which grows like ``α Λ``
    (``P(τ) → 0``). Noisy tasks only. Vectorised over ``Lambda``.
    """
    if not task.noisy:
        raise ValueError("kappa0_stalled_loss needs a noisy task (alpha > 0): F = 0 otherwise")
    g = resolve_gamma(task.alpha, gamma, None)
    lam = np.asarray(Lambda, dtype=np.float64)
    N, a = task.vocab_size, task.alpha
    m = np.maximum(lam, g)
    out = m + np.log(np.exp(lam - m) + np.exp(g - m) + (N - 2) * np.exp(-m))
    out = out - (1 - a) * lam - a * g
    return float(out) if out.ndim == 0 else out


def kappa0_stalled_minimum(task: RecallTask) -> tuple[float, float]:
    """``(Λ*, min L)`` of :func:`kappa0_stalled_loss` at ``γ = log(α/(1-α))``.

    ``Λ* = log(1 + (N-2)(1-α)/α)`` and ``min L = H_b(α) + α Λ*`` (the book's [D]).
    """
    if not task.noisy:
        raise ValueError("kappa0_stalled_minimum needs a noisy task (alpha > 0)")
    a, N = task.alpha, task.vocab_size
    lam_star = math.log1p((N - 2) * (1 - a) / a)
    return lam_star, binary_entropy(a) + a * lam_star

