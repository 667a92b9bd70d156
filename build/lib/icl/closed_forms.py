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
from .task import RecallBatch, RecallTask, check_batch, check_task
from .validate import check_finite_array, check_float_dtype, check_probability, check_real

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
    task = check_task(task)
    lam = check_finite_array("Lambda", Lambda)
    g = resolve_gamma(task.alpha, gamma, alpha_hat)  # refuses gamma/alpha_hat when noiseless
    N = task.vocab_size
    if task.noisy:
        a_test = task.alpha if alpha_test is None else check_probability("alpha_test", alpha_test)
        out = _log1p_exp(math.exp(g), N - 2, lam, math.log1p(math.exp(g)) if g < 700 else g)
        out = out - a_test * g
    else:
        if alpha_test is not None and check_probability("alpha_test", alpha_test) != 0.0:
            raise ValueError(
                f"alpha_test={alpha_test!r} needs a noisy training task (task.alpha > 0)"
            )
        _check_lambdas_axis(task, lam)
        per = _log1p_exp(0.0, N - 1, lam, 0.0)
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
    task = check_task(task)
    if task.noisy and gamma is None and alpha_hat is None:
        lam = check_finite_array("Lambda", Lambda)
        out = _log1p_exp(0.0, task.rate_constant, lam, 0.0)
        return float(out) if np.ndim(out) == 0 else out
    if not task.noisy:
        # the Bayes risk is 0; gamma/alpha_hat are refused there
        return closed_form_loss(task, Lambda, gamma=gamma, alpha_hat=alpha_hat)
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
    task = check_task(task)
    check_batch("batch", batch, task)
    dtype = check_float_dtype("dtype", dtype)
    B, N = batch.batch_size, task.vocab_size
    xi = torch.zeros(B, N, dtype=dtype)
    rows = torch.arange(B)
    if task.noisy:
        lam = check_real("Lambda", Lambda)
        g = resolve_gamma(task.alpha, gamma, alpha_hat)
        xi[rows, batch.outputs] = lam
        xi[:, task.noise_token] = g + lam
    else:
        lam_np = check_finite_array("Lambda", Lambda)
        if lam_np.ndim not in (0, 1) or (lam_np.ndim == 1 and lam_np.shape[0] != task.n_triggers):
            raise ValueError(
                f"Lambda must be a number or lambdas of shape ({task.n_triggers},) for the "
                f"noiseless task, got shape {lam_np.shape}"
            )
        lam = torch.as_tensor(lam_np, dtype=dtype)
        lam = lam.expand(task.n_triggers) if lam.dim() == 0 else lam
        xi[rows, batch.outputs] = lam[batch.triggers]
    return xi



def kappa0_stalled_loss(task: RecallTask, Lambda, gamma: float | None = None):
    """Loss of the κ = 0 model carrying the κ = 1 construction's ``F`` (linear/ReLU).

    Then ``ξ_F = U F x_H = γ e_τ`` no longer grows with ``Λ``: ``ξ_y = Λ``, ``ξ_τ = γ`` and
    ``L(Λ) = log(e^Λ + e^γ + N - 2) - (1-α) Λ - α γ``, which grows like ``α Λ``
    (``P(τ) → 0``). Noisy tasks only. Vectorised over ``Lambda``.
    """
    task = check_task(task)
    if not task.noisy:
        raise ValueError("kappa0_stalled_loss needs a noisy task (alpha > 0): F = 0 otherwise")
    g = resolve_gamma(task.alpha, gamma, None)
    lam = check_finite_array("Lambda", Lambda)
    N, a = task.vocab_size, task.alpha
    m = np.maximum(lam, g)
    out = m + np.log(np.exp(lam - m) + np.exp(g - m) + (N - 2) * np.exp(-m))
    out = out - (1 - a) * lam - a * g
    return float(out) if out.ndim == 0 else out


def kappa0_stalled_minimum(task: RecallTask) -> tuple[float, float]:
    """``(Λ*, min L)`` of :func:`kappa0_stalled_loss` at ``γ = log(α/(1-α))``.

    ``Λ* = log(1 + (N-2)(1-α)/α)`` and ``min L = H_b(α) + α Λ*`` (the book's [D]).
    """
    task = check_task(task)
    if not task.noisy:
        raise ValueError("kappa0_stalled_minimum needs a noisy task (alpha > 0)")
    a, N = task.alpha, task.vocab_size
    lam_star = math.log1p((N - 2) * (1 - a) / a)
    return lam_star, binary_entropy(a) + a * lam_star



def _log1p_exp(c0: float, c: float, lam: np.ndarray, log1p_c0: float) -> np.ndarray:
    """``log(1 + c0 + c e^{-Λ})`` elementwise, finite for every finite ``Λ``.

    For ``Λ ≥ -30`` the direct ``log1p`` (full relative precision when ``c e^{-Λ}`` is
    tiny); below, ``-Λ + log c + log1p((1 + c0) e^{Λ}/c)``, which cannot overflow
    (``Λ = -1000`` gives about ``1000 + log c`` instead of ``inf``).
    """
    lam = np.asarray(lam, dtype=np.float64)
    direct = np.log1p(c0 + c * np.exp(-np.maximum(lam, -30.0)))
    neg = np.minimum(lam, -30.0)
    far = -neg + math.log(c) + np.log1p(math.exp(log1p_c0) * np.exp(neg) / c)
    return np.where(lam >= -30.0, direct, far)


def _check_lambdas_axis(task: RecallTask, lam: np.ndarray) -> None:
    """Noiseless ``λ``: a scalar, or triggers on the last axis (``|Q|`` entries, or 1 for
    a shared value)."""
    if lam.ndim and lam.shape[-1] not in (1, task.n_triggers):
        raise ValueError(
            f"Lambda of the noiseless task holds the lambdas of its {task.n_triggers} triggers "
            f"on its last axis (or 1 shared value; a grid of shared values is lam[:, None]), "
            f"got shape {lam.shape}"
        )
