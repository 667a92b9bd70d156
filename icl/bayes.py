"""Bayes-optimal prediction and Bayes risk of the recall task (the model page §2, [D]).

Given the context ``z_{1:H}``, the clean output ``y`` is recoverable (the token after the
``q`` that is not followed by ``τ``), so the Bayes-optimal next-token law is

    p*(· | z_{1:H}) = (1 - α) δ_y + α δ_τ,

and the Bayes risk under cross-entropy (natural log) is the binary entropy
``R* = H_b(α) = -α log α - (1-α) log(1-α)`` (0 when ``α = 0``). The symbolic
derivation lives in :mod:`icl.symbolic.bayes`; this module holds the numeric functions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .task import RecallBatch, RecallTask, check_batch, check_task
from .validate import check_finite_array, check_int, check_probability

__all__ = [
    "bayes_risk",
    "binary_entropy",
    "categorical_entropy",
    "hoeffding_radius",
    "kl_bernoulli",
    "oracle_log_probs",
    "oracle_losses",
    "recover_output",
]


def _check_alpha(alpha: float, name: str = "alpha", open_low: bool = False) -> float:
    return check_probability(name, alpha, allow_zero=not open_low)


def binary_entropy(alpha: float) -> float:
    """``H_b(α) = -α log α - (1-α) log(1-α)`` in nats, with ``0 log 0 = 0``."""
    a = check_probability("alpha", alpha, allow_one=True)
    return -sum(x * math.log(x) for x in (a, 1.0 - a) if x > 0)


def categorical_entropy(probs) -> float:
    """Shannon entropy ``-Σ_k π_k log π_k`` in nats of a law ``π`` (``0 log 0 = 0``).

    The Bayes risk of a task whose target, given the context, has the law ``π`` over tokens
    the context determines (the model page §2): with ``π = (1-α, α)`` it is ``H_b(α)``;
    with several noise tokens (chapter 2's exercise) ``π = (1-α_1-α_2, α_1, α_2)``.
    ``probs`` is a 1-d sequence of non-negative numbers summing to 1 (within ``1e-9``).
    """
    p = check_finite_array("probs", probs, low=0.0, high=1.0)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"probs must be a non-empty 1-d sequence, got shape {p.shape}")
    if abs(p.sum() - 1.0) > 1e-9:
        raise ValueError(f"probs must sum to 1, got a sum of {p.sum():.12g}")
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


def bayes_risk(alpha: float) -> float:
    """Bayes risk ``R* = H_b(α)`` of the recall task with noise level ``α ∈ [0, 1)``.

    It depends on nothing else: not on ``N``, ``H``, ``|Q|``, ``|O|`` nor the OOD split.
    """
    return binary_entropy(_check_alpha(alpha))


def kl_bernoulli(alpha, alpha_hat) -> np.ndarray | float:
    """``KL(Ber(α) ‖ Ber(α̂))`` in nats: the excess risk of a plug-in ``α̂`` (the model page §5.3).

    Vectorised (NumPy broadcasting): a float for scalar inputs, an array otherwise;
    ``inf`` where ``α̂ ∈ {0, 1}`` puts no mass on an outcome that ``α`` can produce.
    """
    a = check_finite_array("alpha", alpha, low=0.0, high=1.0)
    b = check_finite_array("alpha_hat", alpha_hat, low=0.0, high=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
        t2 = np.where(a < 1, (1 - a) * (np.log1p(-a) - np.log1p(-b)), 0.0)
    out = t1 + t2
    return float(out) if out.ndim == 0 else out


def hoeffding_radius(m: int, delta: float) -> float:
    """``√(log(2/δ) / (2m))``: with probability ``1-δ``, ``|α̂ - α|`` is at most this."""
    m = check_int("m", m, minimum=1)
    delta = check_probability("delta", delta, allow_zero=False)
    return math.sqrt(math.log(2.0 / delta) / (2.0 * m))


def recover_output(task: RecallTask, tokens: torch.Tensor) -> torch.Tensor:
    """Read ``y`` off the context: the token after ``q`` (the last token) that is not ``τ``.

    Vectorised over the batch; returns ``-1`` where the context holds no ``(q, y)`` pair.
    """
    check_task(task).check_tokens(tokens)
    q = tokens[:, -1:]
    prev_is_q = tokens[:, :-2] == q  # candidate pair starts 0 … H-3
    nxt = tokens[:, 1:-1]
    hit = prev_is_q & (nxt != task.noise_token)
    found = hit.any(1)
    idx = hit.to(torch.int8).argmax(1)
    y = nxt.gather(1, idx[:, None]).squeeze(1)
    return torch.where(found, y, torch.full_like(y, -1))


def oracle_log_probs(
    task: RecallTask, tokens: torch.Tensor, alpha: float | None = None
) -> torch.Tensor:
    """Log-probabilities ``[B, N]`` of the Bayes-optimal predictor ``(1-α) δ_y + α δ_τ``.

    ``y`` is recovered from the context itself (:func:`recover_output`), so this is a
    genuine predictor, not a peek at the answer. Impossible tokens get ``-inf``.
    """
    check_task(task)
    a = task.alpha if alpha is None else _check_alpha(alpha)
    y = recover_output(task, tokens)
    if bool((y < 0).any()):
        raise ValueError("some sequences hold no (q, y) pair: the oracle needs one")
    B = tokens.shape[0]
    logp = torch.full((B, task.vocab_size), -math.inf, dtype=torch.float64)
    if a > 0:
        logp[:, task.noise_token] = math.log(a)
    logp[torch.arange(B), y] = math.log1p(-a)
    return logp


def oracle_losses(task: RecallTask, batch: RecallBatch) -> torch.Tensor:
    """Per-sequence cross-entropy ``-log p*(z_{H+1} | z_{1:H})`` of the oracle, ``[B]``."""
    check_batch("batch", batch, check_task(task))
    logp = oracle_log_probs(task, batch.tokens)
    return -logp.gather(1, batch.targets[:, None]).squeeze(1)
