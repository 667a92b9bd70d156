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

import torch

from .task import RecallBatch, RecallTask

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
    outputs = batch.outputs if isinstance(batch, RecallBatch) else batch
    logp = torch.log_softmax(logits.double(), dim=-1)
    ly = logp.gather(1, outputs[:, None]).squeeze(1)
    out = -(1.0 - alpha) * ly
    if alpha > 0:
        out = out - alpha * logp[:, noise_token]
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
    a = task.alpha if alpha is None else float(alpha)
    if not 0.0 <= a < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    if xi.dim() != 2 or xi.shape[1] != task.vocab_size:
        raise ValueError(f"xi must have shape [B, {task.vocab_size}], got {tuple(xi.shape)}")
    outputs = torch.as_tensor(outputs).long()
    if outputs.shape != (xi.shape[0],):
        raise ValueError(f"outputs must have shape [{xi.shape[0]}], got {tuple(outputs.shape)}")
    return expected_loss(xi, outputs, a, task.noise_token)


def expected_excess(task: RecallTask, xi: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Per-sequence expected excess ``E[loss | z_{1:H}] - H_b(α)``, ``[B]``, computed stably.

    With ``d = ξ_τ - ξ_y``, ``δ = d - log(α/(1-α))`` and ``S = Σ_{j ∉ {y, τ}} e^{ξ_j - ξ_y}``
    the identity ``ℓ - H_b(α) = log1p(α expm1(δ) + (1-α) S) - α δ`` holds for *any* logits
    (noiseless: ``log1p(S)`` with ``S`` over ``j ≠ y``). Unlike
    ``expected_losses(...) - H_b``, it keeps full relative precision when the excess is
    ``1e-12`` or smaller.
    """
    if xi.dim() != 2 or xi.shape[1] != task.vocab_size:
        raise ValueError(f"xi must have shape [B, {task.vocab_size}], got {tuple(xi.shape)}")
    outputs = torch.as_tensor(outputs).long()
    if outputs.shape != (xi.shape[0],):
        raise ValueError(f"outputs must have shape [{xi.shape[0]}], got {tuple(outputs.shape)}")
    B = xi.shape[0]
    rows = torch.arange(B)
    xy = xi.gather(1, outputs[:, None])
    diff = xi - xy
    keep = torch.ones_like(xi, dtype=torch.bool)
    keep[rows, outputs] = False
    a = task.alpha
    if a == 0:
        S = (diff.exp() * keep).sum(1)
        return torch.log1p(S)
    tau = task.noise_token
    if bool((outputs == tau).any()):
        raise ValueError("outputs must not be the noise token")
    keep[:, tau] = False
    S = (diff.exp() * keep).sum(1)
    delta = diff[:, tau] - task.gamma
    return torch.log1p(a * torch.expm1(delta) + (1.0 - a) * S) - a * delta

