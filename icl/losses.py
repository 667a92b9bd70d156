"""Losses of a predictor's logits with the target noise averaged out (one home for each).

Given the context ``z_{1:H}``, the target is ``τ`` with probability ``α`` and the clean
output ``y`` otherwise, so the expected cross-entropy of logits ``ξ`` is

    E[-log softmax(ξ)_{z_{H+1}} | z_{1:H}] = logsumexp(ξ) - (1-α) ξ_y - α ξ_τ,

an unbiased, lower-variance estimate of the population loss (the coin of the target is
averaged analytically instead of sampled). :func:`icl.losses.expected_excess` writes the same
quantity minus ``H_b(α)`` in a form that keeps its relative precision when the excess is
tiny. Notation: the book page *The task and the model, precisely* (``book/model.md``).
"""

from __future__ import annotations

import math

import torch

from .task import RecallBatch, RecallTask, check_task
from .validate import InvalidTypeError, check_int, check_probability, check_tensor

__all__ = ["expected_excess", "expected_loss", "expected_losses"]


def expected_loss(
    logits: torch.Tensor, batch: RecallBatch | torch.Tensor, alpha: float, noise_token: int
) -> torch.Tensor:
    """Per-sequence loss with the target noise integrated out, ``[B]``.

    ``E[-log p(z_{H+1}) | z_{1:H}] = -(1-α) log p(y) - α log p(τ)``: an unbiased,
    lower-variance estimate of the population loss (the draw of the target is averaged
    analytically instead of sampled). ``batch`` is a :class:`~icl.task.RecallBatch` or the clean
    outputs ``y`` themselves (``[B]``). Computed in float64.
    """
    logits = check_tensor("logits", logits, ndim=2, kind="float")
    B, N = logits.shape
    noise_token = check_int("noise_token", noise_token)
    if not 0 <= noise_token < N:
        raise ValueError(
            f"noise_token must be a column of logits, in [0, {N - 1}] for logits of shape "
            f"{tuple(logits.shape)}, got {noise_token}"
        )
    alpha = check_probability("alpha", alpha)
    y = batch.outputs if isinstance(batch, RecallBatch) else batch
    if isinstance(y, torch.Tensor) and y.dim() == 1 and len(y) != B:
        raise ValueError(
            f"logits must have one row per sequence of batch: {B} rows for {len(y)} sequences"
        )
    outputs = _check_outputs(y, B, N, name="batch", allow_float=False)
    return _expected_from_logp(torch.log_softmax(logits.double(), dim=-1), outputs, alpha,
                               noise_token)


def _expected_from_logp(logp: torch.Tensor, outputs: torch.Tensor, alpha: float,
                        noise_token: int) -> torch.Tensor:
    """:func:`expected_loss` from log-probabilities ``[..., N]`` and outputs ``[...]``,
    unchecked (the training loop's metrics reuse the log-probabilities they already have)."""
    ly = logp.gather(-1, outputs.unsqueeze(-1)).squeeze(-1)
    out = -(1.0 - alpha) * ly
    if alpha > 0:
        out = out - alpha * logp[..., noise_token]
    return out



def expected_losses(
    task: RecallTask, xi: torch.Tensor, outputs: torch.Tensor, alpha: float | None = None
) -> torch.Tensor:
    """Per-sequence expected cross-entropy given the context, ``[B]``:

    ``E[-log softmax(ξ)_{z_{H+1}} | z_{1:H}] = logsumexp(ξ) - (1-α) ξ_y - α ξ_τ``.

    It averages the target's coin flip out exactly, so a batch average has Monte-Carlo
    noise only from the contexts (none at all when every context has the same loss, as for
    the linear/ReLU construction).
    """
    task = check_task(task)
    a = task.alpha if alpha is None else check_probability("alpha", alpha)
    xi = check_tensor("xi", xi, shape=(None, task.vocab_size), kind="float")
    outputs = _check_outputs(outputs, xi.shape[0], task.vocab_size)
    return expected_loss(xi, outputs, a, task.noise_token)


def expected_excess(task: RecallTask, xi: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Per-sequence expected excess ``E[loss | z_{1:H}] - H_b(α)``, ``[B]``, computed stably.

    With ``d = ξ_τ - ξ_y``, ``δ = d - log(α/(1-α))`` and ``S = Σ_{j ∉ {y, τ}} e^{ξ_j - ξ_y}``
    the identity ``ℓ - H_b(α) = log1p(α expm1(δ) + (1-α) S) - α δ`` holds for *any* logits
    (noiseless: ``log1p(S)`` with ``S`` over ``j ≠ y``). Unlike
    ``expected_losses(...) - H_b``, it keeps full relative precision when the excess is
    ``1e-12`` or smaller.
    """
    task = check_task(task)
    xi = check_tensor("xi", xi, shape=(None, task.vocab_size), kind="float")
    outputs = _check_outputs(outputs, xi.shape[0], task.vocab_size)
    B = xi.shape[0]
    rows = torch.arange(B)
    xy = xi.gather(1, outputs[:, None])
    diff = xi - xy
    keep = torch.ones_like(xi, dtype=torch.bool)
    keep[rows, outputs] = False
    a = task.alpha
    if a == 0:
        # log1p(S) keeps the precision of a tiny excess; log-sum-exp once a wrong logit
        # comes within _BIG of y's (S would overflow past e^709)
        big = (diff.masked_fill(~keep, -math.inf).max(1).values > _BIG)[:, None]
        S = (diff.clamp(max=_BIG).exp() * keep).sum(1)
        lse = torch.logsumexp(torch.where(keep, diff, diff.new_zeros(())), 1)
        return torch.where(big[:, 0], lse, torch.log1p(S))
    tau = task.noise_token
    if bool((outputs == tau).any()):
        raise ValueError("outputs must not be the noise token")
    keep[:, tau] = False
    delta = diff[:, tau] - task.gamma
    big = (diff.masked_fill(~keep, -math.inf).max(1).values > _BIG) | (delta > _BIG)
    S = (diff.clamp(max=_BIG).exp() * keep).sum(1)
    small = torch.log1p(a * torch.expm1(delta.clamp(max=_BIG)) + (1.0 - a) * S) - a * delta
    # log((1-α) + α e^δ + (1-α) Σ_j e^{d_j}) - αδ as one log-sum-exp
    terms = torch.where(keep, diff + math.log1p(-a), diff.new_full((), -math.inf))
    terms[:, tau] = delta + math.log(a)
    terms[rows, outputs] = math.log1p(-a)
    large = torch.logsumexp(terms, 1) - a * delta
    return torch.where(big, large, small)


#: above this logit gap the excess is evaluated as a log-sum-exp (``e^{_BIG}`` is far
#: from float64 overflow, and the excess is then ``> _BIG - log 2``: no precision to keep)
_BIG = 30.0


def _check_outputs(
    outputs, B: int, N: int, name: str = "outputs", allow_float: bool = True
) -> torch.Tensor:
    """The clean outputs ``y``: an integer tensor ``[B]`` over ``0 … N-1``."""
    if not isinstance(outputs, torch.Tensor):
        if isinstance(outputs, (str, bytes)) or outputs is None:
            raise InvalidTypeError(
                f"{name} must be an icl.RecallBatch or the outputs y as an integer tensor [B], "
                f"got {type(outputs).__name__}"
            )
        try:
            outputs = torch.as_tensor(outputs)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidTypeError(
                f"{name} must be the outputs y as integers [B], got {type(outputs).__name__}"
            ) from None
    if outputs.is_floating_point() and allow_float:  # whole numbers stored as floats
        if not bool((outputs == outputs.round()).all()):
            raise ValueError(f"{name} must hold token ids (whole numbers), got {outputs}")
        outputs = outputs.long()
    check_tensor(name, outputs, shape=(B,), kind="int", low=0, high=N - 1)
    return outputs.long()

