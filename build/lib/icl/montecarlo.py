"""Monte-Carlo estimates of Bayes risks on sampled sequences (the book's checks, [D]).

:func:`mc_oracle_risk` estimates the expected cross-entropy of the Bayes-optimal
predictor ``p* = (1-α) δ_y + α δ_τ`` (:func:`icl.bayes.oracle_losses`, which reads ``y`` off
the context) and returns the mean with its standard error; theory says the mean is
``H_b(α)`` whatever ``N``, ``H``, ``|Q|``, ``|O|`` and the split.

:func:`mc_planted_variant_risk` does the same for the book's variant in which the
``(q, y)`` pair is planted only with probability ``ρ`` (sampler knob ``plant_prob``).
Its Bayes predictor (:func:`planted_variant_log_probs`) is ``(1-α) δ_y + α δ_τ`` when the
pair is found in the context and ``α δ_τ + (1-α)/K`` on each of the ``K`` candidate
outputs when it is not; theory (:func:`icl.symbolic.bayes.planted_variant_derivation`):
``R*(ρ) = H_b(α) + (1-ρ)(1-α) log K``.

:func:`mc_bag_of_context_risk` is a check that *can* see the task's size: a predictor that
does not know the rule "the token after ``q``" (:func:`bag_of_context_log_probs`) spreads
``1-α`` over the context's tokens by frequency, and its risk
(:func:`bag_of_context_risk`) depends on ``N``, ``H`` and ``|Q|``.
"""

from __future__ import annotations

import math

import torch

from .bayes import oracle_log_probs, oracle_losses, recover_output
from .task import (
    RecallBatch,
    RecallTask,
    check_batch,
    check_sampler_arguments,
    make_generator,
    sample_sequences,
)
from .task import check_task as _check_task
from .validate import (
    DEFAULT_MAX_SAMPLES,
    check_bool,
    check_budget,
    check_int,
    check_probability,
    check_real,
    check_seed,
)

__all__ = [
    "agrees",
    "bag_of_context_log_probs",
    "bag_of_context_risk",
    "mc_bag_of_context_risk",
    "mc_oracle_risk",
    "mc_planted_variant_risk",
    "n_candidate_outputs",
    "planted_variant_log_probs",
    "planted_variant_losses",
]

#: Default number of sequences sampled at once (bounds memory: ``B·H`` int64 tokens).
DEFAULT_BATCH = 8192


def _check_int(name: str, value: object, minimum: int) -> int:
    return check_int(name, value, minimum=minimum)


def _check_seed(seed: object) -> int:
    return check_seed("seed", seed)


def _check_ood(ood: object) -> bool:
    return check_bool("ood", ood)


def _check_rho(rho: object) -> float:
    return check_probability("rho", rho, allow_one=True)


def _check_size(task: RecallTask, n: int, batch_size: int, max_samples: int) -> None:
    """``n`` within ``max_samples`` sequences; one batch of ``batch_size`` within memory."""
    check_budget("n", n, check_int("max_samples", max_samples, minimum=1),
                 unit="sequences", keyword="max_samples")
    check_sampler_arguments(task, min(batch_size, n), seed=0)


def n_candidate_outputs(task: RecallTask, ood: bool = False) -> int:
    """``K``: ``|O|`` in distribution, ``N - 1 - |Q| - |O|`` (the OOD outputs) for the OOD split."""
    task = _check_task(task)
    return len(task.ood_outputs) if _check_ood(ood) else len(task.outputs)


def agrees(mean: float, se: float, theory: float, *, k: float = 3.0, atol: float = 1e-9) -> bool:
    """``|mean - theory| ≤ k·se + atol``: a Monte-Carlo estimate agrees with theory.

    ``atol`` covers the cases where every loss is the same number (``α = 0``, or
    ``α = 1/2`` where both outcomes cost ``log 2``): then ``se = 0`` and the agreement
    must be exact up to rounding.
    """
    mean = check_real("mean", mean)
    se = check_real("se", se, low=0.0)
    theory = check_real("theory", theory)
    k = check_real("k", k, low=0.0, low_open=True)
    atol = check_real("atol", atol, low=0.0)
    return abs(mean - theory) <= k * se + atol


def _mean_and_se(total: float, total_sq: float, n: int) -> tuple[float, float]:
    mean = total / n
    var = max(total_sq / n - mean * mean, 0.0) * n / (n - 1)
    return mean, math.sqrt(var / n)


def _run(
    n: int, batch_size: int, seed: int, draw, losses_of
) -> tuple[float, float]:
    """Accumulate the sum and sum of squares of per-sequence losses over batches."""
    g = make_generator(seed)
    total = total_sq = 0.0
    done = 0
    while done < n:
        b = min(batch_size, n - done)
        batch = draw(b, g)
        losses = losses_of(batch).to(torch.float64)
        if not bool(torch.isfinite(losses).all()):  # pragma: no cover - would be a bug
            raise RuntimeError("the Bayes predictor gave probability 0 to an observed target")
        total += float(losses.sum())
        total_sq += float((losses * losses).sum())
        done += b
    return _mean_and_se(total, total_sq, n)


def mc_oracle_risk(
    task: RecallTask,
    n: int,
    *,
    seed: int,
    ood: bool = False,
    batch_size: int = DEFAULT_BATCH,
    alpha_hat: float | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[float, float]:
    """Monte-Carlo estimate of the oracle's risk: ``(mean, standard error)`` over ``n`` sequences.

    The oracle is the Bayes-optimal predictor ``(1-α) δ_y + α δ_τ`` with ``y`` recovered
    from the context (:func:`icl.bayes.oracle_losses`); theory says the mean estimates
    ``H_b(α)``. With ``α = 0`` every loss is exactly ``0`` (so is the standard error).
    Sequences are drawn in batches of ``batch_size`` from one generator seeded with
    ``seed``; ``ood=True`` draws ``y`` from the OOD outputs.

    ``alpha_hat`` replaces ``α`` in the predictor by a plug-in value ``α̂ ∈ (0, 1)`` (the
    data keep the task's ``α``): the mean then estimates
    ``H_b(α) + KL(Ber(α) ‖ Ber(α̂))``. ``max_samples`` (default ``10**8``) refuses an
    ``n`` that would run for hours.
    """
    task = _check_task(task)
    n = _check_int("n", n, 2)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_seed(seed)
    ood = _check_ood(ood)
    if alpha_hat is not None:
        check_probability("alpha_hat", alpha_hat, allow_zero=False)
    _check_size(task, n, batch_size, max_samples)

    def losses_of(batch: RecallBatch) -> torch.Tensor:
        if alpha_hat is None:
            return oracle_losses(task, batch)
        logp = oracle_log_probs(task, batch.tokens, alpha=float(alpha_hat))
        return -logp.gather(1, batch.targets[:, None]).squeeze(1)

    return _run(
        n,
        batch_size,
        seed,
        lambda b, g: sample_sequences(task, b, generator=g, ood=ood),
        losses_of,
    )


def planted_variant_log_probs(
    task: RecallTask, tokens: torch.Tensor, *, ood: bool = False
) -> torch.Tensor:
    """Log-probabilities ``[B, N]`` of the Bayes predictor of the planted variant.

    Where the context holds the ``(q, y)`` pair (:func:`icl.bayes.recover_output` finds it):
    ``(1-α) δ_y + α δ_τ``. Where it does not: ``α δ_τ + (1-α)/K`` on each of the ``K``
    candidate outputs (:func:`n_candidate_outputs`: the training outputs, or the OOD
    outputs when ``ood=True``). Impossible tokens get ``-inf``. Vectorised over the batch.
    """
    task = _check_task(task)
    ood = _check_ood(ood)
    task.check_tokens(tokens)
    y = recover_output(task, tokens)  # validates tokens; -1 where the pair is missing
    found = y >= 0
    a = task.alpha
    B, N = tokens.shape[0], task.vocab_size
    pool = task.ood_outputs if ood else task.outputs
    k = len(pool)
    logp = torch.full((B, N), -math.inf, dtype=torch.float64)
    miss = ~found
    logp[miss.nonzero()[:, :1], pool[None, :]] = math.log1p(-a) - math.log(k)
    rows = found.nonzero().squeeze(1)
    logp[rows, y[rows]] = math.log1p(-a)
    if a > 0:
        logp[:, task.noise_token] = math.log(a)
    return logp


def planted_variant_losses(
    task: RecallTask, batch: RecallBatch, *, ood: bool = False
) -> torch.Tensor:
    """Per-sequence cross-entropy ``[B]`` of :func:`planted_variant_log_probs`."""
    check_batch("batch", batch, _check_task(task))
    logp = planted_variant_log_probs(task, batch.tokens, ood=ood)
    return -logp.gather(1, batch.targets[:, None]).squeeze(1)


def mc_planted_variant_risk(
    task: RecallTask,
    rho: float,
    n: int,
    *,
    seed: int,
    ood: bool = False,
    batch_size: int = DEFAULT_BATCH,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[float, float]:
    """Monte-Carlo risk ``(mean, standard error)`` of the planted variant's Bayes predictor.

    Sequences come from ``icl.sample_sequences(task, B, plant_prob=rho, ood=ood)``: the
    ``(q, y)`` pair is planted with probability ``ρ = rho``. Theory:
    ``R*(ρ) = H_b(α) + (1-ρ)(1-α) log K`` with ``K = n_candidate_outputs(task, ood)``.
    """
    task = _check_task(task)
    rho = _check_rho(rho)
    n = _check_int("n", n, 2)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_seed(seed)
    ood = _check_ood(ood)
    _check_size(task, n, batch_size, max_samples)
    return _run(
        n,
        batch_size,
        seed,
        lambda b, g: sample_sequences(task, b, generator=g, ood=ood, plant_prob=rho),
        lambda batch: planted_variant_losses(task, batch, ood=ood),
    )


# ------------------------------------------------------------------ a predictor without the rule
def _bag_sizes(task: RecallTask) -> tuple[int, int, int]:
    """``(n_ctx, n_fill, V_fill)``: counted context tokens, filler positions, filler support."""
    extra = 2 if task.noisy else 0
    n_ctx = task.seq_len - 2 - extra  # z_1..z_{H-1} minus the q of each pair and the τ
    n_fill = task.seq_len - 3 - extra  # z_H and the planted pair(s) are not filler
    return n_ctx, n_fill, len(task.filler)


def bag_of_context_log_probs(task: RecallTask, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probabilities ``[B, N]`` of the *bag-of-context* predictor (the book's, [D]).

    It knows ``α`` and ``τ`` but not the recall rule: it puts ``α`` on ``τ`` and spreads
    ``1-α`` over the tokens of ``z_1 … z_{H-1}`` in proportion to how often each occurs,
    triggers and ``τ`` excluded. The clean output ``y`` occurs once in its pair and
    ``Binomial(n_fill, 1/V_fill)`` more times as filler, so its risk depends on ``H`` and
    ``N`` (:func:`bag_of_context_risk`). Tokens absent from the context get ``-inf``.
    """
    task = _check_task(task)
    task.check_tokens(tokens)
    B, N = tokens.shape[0], task.vocab_size
    counts = torch.zeros(B, N, dtype=torch.float64)
    counts.scatter_add_(1, tokens[:, :-1], torch.ones(tokens[:, :-1].shape, dtype=torch.float64))
    counts[:, : task.n_triggers] = 0.0
    counts[:, task.noise_token] = 0.0
    total = counts.sum(1, keepdim=True)
    with torch.no_grad():
        logp = torch.log(counts / total) + math.log1p(-task.alpha)
    if task.alpha > 0:
        logp[:, task.noise_token] = math.log(task.alpha)
    return logp


def bag_of_context_risk(task: RecallTask) -> float:
    """Exact risk of :func:`bag_of_context_log_probs`:
    ``H_b(α) + (1-α)(log n_ctx - E log(1 + K))``, ``K ~ Binomial(n_fill, 1/V_fill)``.

    ``n_ctx = H - 2`` (noiseless) or ``H - 4`` (noisy) counted context tokens,
    ``n_fill = n_ctx - 1`` filler positions, ``V_fill = N - 1 - |Q|`` filler tokens. Unlike
    the Bayes risk it depends on ``N``, ``H`` and ``|Q|`` (not on ``|O|`` nor on the split).
    """
    from scipy import stats

    from .bayes import bayes_risk

    task = _check_task(task)
    n_ctx, n_fill, v_fill = _bag_sizes(task)
    k = torch.arange(n_fill + 1, dtype=torch.float64).numpy()
    pmf = stats.binom.pmf(k, n_fill, 1.0 / v_fill)
    e_log = float((pmf * torch.log1p(torch.as_tensor(k)).numpy()).sum())
    return bayes_risk(task.alpha) + (1.0 - task.alpha) * (math.log(n_ctx) - e_log)


def mc_bag_of_context_risk(
    task: RecallTask,
    n: int,
    *,
    seed: int,
    ood: bool = False,
    batch_size: int = DEFAULT_BATCH,
) -> tuple[float, float]:
    """Monte-Carlo risk ``(mean, standard error)`` of the bag-of-context predictor.

    Theory: :func:`bag_of_context_risk`, for both splits.
    """
    task = _check_task(task)
    n = _check_int("n", n, 2)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_seed(seed)
    ood = _check_ood(ood)

    def losses_of(batch: RecallBatch) -> torch.Tensor:
        logp = bag_of_context_log_probs(task, batch.tokens)
        return -logp.gather(1, batch.targets[:, None]).squeeze(1)

    return _run(
        n,
        batch_size,
        seed,
        lambda b, g: sample_sequences(task, b, generator=g, ood=ood),
        losses_of,
    )
