"""Finite-sample experiments (the model page §5.3): **the book's own analysis** ([D]).

Trained on ``m`` fixed sequences, the reparameterised noisy model can only learn what its
single scalar ``Λ`` and its feed-forward constant ``γ`` allow. The book sets ``γ`` to the
plug-in ``γ̂ = log(α̂/(1-α̂))`` with ``α̂`` the fraction of ``τ`` targets in the sample.
Every sequence's loss still decreases in ``Λ`` (:func:`icl.dynamics.per_example_grad`),
so normalised GD sends ``Λ_t = ηt → ∞`` and the *population* excess risk tends to

    L(∞; α̂) - H_b(α) = KL(Ber(α) ‖ Ber(α̂)) ≈ (α̂ - α)² / (2α(1-α)).

Since ``E[(α̂-α)²] = α(1-α)/m``, the expected excess is ``≈ 1/(2m)`` whatever ``α``; and
Hoeffding bounds ``|α̂ - α| ≤ r = √(log(2/δ)/(2m))`` with probability ``1-δ``, so the
excess is at most the largest KL over that interval (:func:`hoeffding_kl_bound`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp
import torch
from scipy import stats

from .architecture import ATTENTIONS
from .bayes import bayes_risk, kl_bernoulli
from .closed_forms import closed_form_loss
from .model import OneLayerTransformer
from .rates import RateFit
from .task import RecallBatch, RecallTask, check_batch, check_task
from .training import History, train
from .validate import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_STEPS,
    check_budget,
    check_choice,
    check_finite_array,
    check_float_dtype,
    check_int,
    check_int_array,
    check_probability,
    check_seed,
)

__all__ = [
    "FiniteSampleResult",
    "expected_plugin_excess",
    "expected_plugin_excess_exact",
    "expected_quadratic_excess_expr",
    "finite_sample_sweep",
    "hoeffding_kl_bound",
    "kl_bernoulli_array",
    "loglog_slope",
    "plugin_alpha",
    "run_finite_sample",
]


# ------------------------------------------------------------------ checks
def _check_noisy_task(task: object) -> RecallTask:
    check_task(task)
    if not task.noisy:
        raise ValueError(
            f"the finite-sample analysis needs a noisy task (alpha > 0), got alpha={task.alpha}"
        )
    return task


def _check_pos_int(name: str, value: object) -> int:
    return check_int(name, value, minimum=1)


def _check_m_array(m, name: str = "m") -> np.ndarray:
    return check_int_array(name, m, minimum=1)


def _check_alpha_open(alpha: object, name: str = "alpha") -> float:
    return check_probability(name, alpha, allow_zero=False)


# ------------------------------------------------------------------ plug-in estimate
def plugin_alpha(batch: RecallBatch, task: RecallTask) -> float:
    """``α̂``: the fraction of the batch's targets ``z_{H+1}`` equal to the noise token ``τ``."""
    check_batch("batch", batch, check_task(task))
    return float((batch.targets == task.noise_token).double().mean())


def kl_bernoulli_array(alpha, alpha_hat) -> np.ndarray | float:
    """Vectorised ``KL(Ber(α) ‖ Ber(α̂))``: :func:`icl.bayes.kl_bernoulli`, kept under this name."""
    return kl_bernoulli(alpha, alpha_hat)


def hoeffding_kl_bound(alpha: float, m, delta: float) -> np.ndarray | float:
    """Largest ``KL(Ber(α) ‖ Ber(α̂))`` over ``|α̂ - α| ≤ r``, ``r = √(log(2/δ)/(2m))``.

    ``α̂`` is a fraction ``k/m`` that must lie in ``(0, 1)`` for the plug-in ``γ̂`` to be
    finite, so the interval is clipped to ``[1/m, 1 - 1/m]``. KL is convex in ``α̂``
    with its minimum at ``α``, so the maximum sits at an end of the interval. With
    probability at least ``1-δ`` (given ``α̂ ∈ (0, 1)``) the plug-in excess is below this.
    Vectorised over ``m``.
    """
    a = _check_alpha_open(alpha)
    mm = _check_m_array(m)
    delta = check_probability("delta", delta, allow_zero=False)
    if np.any(mm < 2):
        raise ValueError(f"m must be >= 2 (α̂ = k/m must be able to lie in (0, 1)), got {m!r}")
    r = np.sqrt(math.log(2.0 / delta) / (2.0 * mm))
    lo = np.maximum(a - r, 1.0 / mm)
    hi = np.minimum(a + r, 1.0 - 1.0 / mm)
    out = np.maximum(
        kl_bernoulli_array(a, np.minimum(lo, a)), kl_bernoulli_array(a, np.maximum(hi, a))
    )
    return float(out) if np.ndim(out) == 0 else out


@lru_cache(maxsize=1)
def expected_quadratic_excess_expr() -> sp.Expr:
    """SymPy: ``E[(α̂-α)²/(2α(1-α))]`` with ``E[α̂] = α``, ``Var α̂ = α(1-α)/m``: ``1/(2m)``.

    Uses :func:`icl.symbolic.bayes.plugin_excess_quadratic_expr` (the quadratic expansion of
    the Bernoulli KL) and takes the expectation of the polynomial in ``α̂`` moment by
    moment.
    """
    from .symbolic.bayes import ALPHA_HAT, plugin_excess_quadratic_expr
    from .symbolic.toolkit import ALPHA

    m = sp.Symbol("m", positive=True)
    quad = sp.expand(plugin_excess_quadratic_expr())
    poly = sp.Poly(quad, ALPHA_HAT)
    moments = {0: 1, 1: ALPHA, 2: ALPHA**2 + ALPHA * (1 - ALPHA) / m}
    if poly.degree() > 2:  # pragma: no cover
        raise RuntimeError("the quadratic expansion has degree > 2 in alpha_hat")
    terms = zip(poly.monoms(), poly.coeffs(), strict=True)
    expect = sum(coef * moments[deg[0]] for deg, coef in terms)
    return sp.simplify(expect)


def expected_plugin_excess(m) -> np.ndarray | float:
    """The book's leading-order ``E[KL(Ber(α) ‖ Ber(α̂))] ≈ 1/(2m)`` (independent of ``α``)."""
    mm = _check_m_array(m)
    out = 0.5 / mm
    return float(out) if out.ndim == 0 else out


def expected_plugin_excess_exact(
    alpha: float, m, *, max_steps: int = DEFAULT_MAX_STEPS
) -> np.ndarray | float:
    """``E[KL(Ber(α) ‖ Ber(α̂)) | 0 < α̂ < 1]`` with ``mα̂ ~ Binomial(m, α)``, summed exactly.

    Conditioning excludes ``α̂ ∈ {0, 1}`` (infinite KL; the plug-in model cannot be built),
    events of probability ``α^m + (1-α)^m``. Vectorised over ``m``; the sum has ``m - 1``
    terms, so ``max_steps`` (default ``10**7``) bounds the total.
    """
    a = _check_alpha_open(alpha)
    mm = _check_m_array(m)
    if np.any(mm < 2):
        raise ValueError(f"m must be >= 2, got {m!r}")
    check_budget("m", float(mm.sum()), check_int("max_steps", max_steps, minimum=1),
                 unit="terms", keyword="max_steps")
    out = np.empty(mm.shape, dtype=np.float64)
    for idx, mi in np.ndenumerate(mm):
        k = np.arange(1, mi)
        w = stats.binom.pmf(k, mi, a)
        out[idx] = float(np.sum(w * kl_bernoulli_array(a, k / mi)) / np.sum(w))
    return float(out) if out.ndim == 0 else out


# ------------------------------------------------------------------ experiments
@dataclass(frozen=True)
class FiniteSampleResult:
    """One finite-sample run.

    ``alpha_hat`` is the plug-in ``α̂``; ``excess`` the measured population excess
    ``L - H_b(α)`` of the trained model (held-out fresh sequences) and ``ood_excess`` the
    same on unseen-output sequences; ``kl`` the prediction ``KL(Ber(α) ‖ Ber(α̂))`` (the
    ``Λ → ∞`` limit); ``closed_form`` the exact excess at the final ``Λ``; ``Lambda`` the
    final ``Λ``; ``history`` the full :class:`icl.History`.
    """

    m: int
    seed: int
    alpha_hat: float
    excess: float
    ood_excess: float
    kl: float
    closed_form: float
    Lambda: float
    history: History


def run_finite_sample(
    task: RecallTask,
    m: int,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    lr: float = 0.5,
    seed: int = 0,
    attention: str = "linear",
    batch_size: int = 512,
    eval_size: int = 1024,
    dtype: torch.dtype = torch.float64,
) -> FiniteSampleResult:
    """Train the noisy ``reparam`` model with plug-in ``γ̂`` on ``m`` fixed sequences.

    The ``m`` sequences are drawn with a seed derived from ``(seed, m)`` (so runs at
    different ``m`` are independent); ``α̂`` is their fraction of ``τ`` targets; the model
    ``OneLayerTransformer(task, attention, "reparam", alpha_hat=α̂)`` is trained by
    normalised GD (:func:`icl.train` with ``data=``) for ``steps`` steps or ``epochs``
    passes over the data (give one; default ``epochs=100``, the paper's protocol).
    Linear and ReLU attention reach the closed form; softmax is allowed but its excess
    approaches the KL more slowly. ``float64`` by default, so that ``Λ_t = ηt`` keeps
    growing past the point where float32 gradients round to zero (``Λ ≈ 20``).
    """
    task = _check_noisy_task(task)
    m = check_int("m", m, minimum=2)
    check_choice("attention", attention, ATTENTIONS)
    seed = check_seed("seed", seed)
    batch_size = _check_pos_int("batch_size", batch_size)
    check_float_dtype("dtype", dtype)
    check_budget("m", 17 * m * task.seq_len, DEFAULT_MAX_BYTES)  # the m sequences in memory
    if steps is not None and epochs is not None:
        raise ValueError("pass steps or epochs, not both")
    if steps is None:
        epochs = 100 if epochs is None else _check_pos_int("epochs", epochs)
        steps = epochs * math.ceil(m / min(batch_size, m))
    steps = _check_pos_int("steps", steps)
    data = task.sample(m, seed=1_000_000 * (seed + 1) + m)
    a_hat = plugin_alpha(data, task)
    if not 0.0 < a_hat < 1.0:
        raise ValueError(
            f"the m={m} sequences drawn with seed={seed} give alpha_hat={a_hat}: the plug-in "
            "gamma = log(alpha_hat/(1-alpha_hat)) is infinite; use a larger m or another seed"
        )
    model = OneLayerTransformer(task, attention, "reparam", alpha_hat=a_hat, dtype=dtype)
    hist = train(
        model,
        task,
        steps,
        lr,
        batch_size=batch_size,
        seed=seed,
        eval_every=steps,
        eval_size=eval_size,
        data=data,
        progress=False,
    )
    lam = float(hist.params["Lambda"][-1])
    hb = bayes_risk(task.alpha)
    return FiniteSampleResult(
        m=m,
        seed=seed,
        alpha_hat=a_hat,
        excess=float(hist.excess("pop")[-1]),
        ood_excess=float(hist.excess("ood")[-1]),
        kl=float(kl_bernoulli_array(task.alpha, a_hat)),
        closed_form=float(closed_form_loss(task, lam, alpha_hat=a_hat)) - hb,
        Lambda=lam,
        history=hist,
    )


def finite_sample_sweep(task: RecallTask, ms, seeds, **kwargs) -> dict[str, np.ndarray]:
    """:func:`run_finite_sample` over every ``m`` in ``ms`` and every seed in ``seeds``.

    Returns arrays of shape ``[len(ms), len(seeds)]``: ``alpha_hat``, ``excess``,
    ``ood_excess``, ``kl``, ``closed_form``, ``Lambda``; and ``m`` (``[len(ms)]``).
    Keyword arguments go to :func:`run_finite_sample`.
    """
    _check_noisy_task(task)
    ms_arr = _check_m_array(ms, "ms")
    if ms_arr.ndim != 1 or len(ms_arr) == 0:
        raise ValueError(f"ms must be a non-empty 1-D sequence of sizes, got {ms!r}")
    if np.any(ms_arr < 2):
        raise ValueError(f"ms must hold sizes >= 2, got {ms!r}")
    seeds = list(check_int_array("seeds", seeds, minimum=0).ravel())
    if not seeds:
        raise ValueError("seeds must be non-empty")
    seeds = [int(s) for s in seeds]
    keys = ("alpha_hat", "excess", "ood_excess", "kl", "closed_form", "Lambda")
    out = {k: np.empty((len(ms_arr), len(seeds))) for k in keys}
    for i, m in enumerate(ms_arr.tolist()):
        for j, s in enumerate(seeds):
            res = run_finite_sample(task, m, seed=s, **kwargs)
            for k in keys:
                out[k][i, j] = getattr(res, k)
    out["m"] = ms_arr
    return out


# ------------------------------------------------------------------ role split


def loglog_slope(ms, excess) -> RateFit:
    """Fit ``log(mean excess) ≈ intercept + slope · log m`` across sizes, with propagated errors.

    ``excess[i, j]``: size ``ms[i]``, seed ``j`` (at least 2 seeds). Ordinary least
    squares on the log of each size's mean over seeds; the slope's standard error is
    propagated from each size's own spread (delta method, ``se(log mean) = se(mean)/mean``):
    ``Var(slope) = Σ_i c_i² se_i²`` with the OLS weights ``c_i = (x_i - x̄)/Σ(x - x̄)²``,
    ``x = log m``. (Residual-based errors would be unreliable with few sizes; inverse-variance
    weights would favour the sizes whose skewed sample happened to have a small spread.)
    The prediction ``E[excess] ≈ 1/(2m)`` is a slope of ``-1``. Returns an
    :class:`icl.rates.RateFit` whose ``t`` axis is ``log m`` (``fit.line(np.log(m))``).
    """
    m = _check_m_array(ms, "ms").astype(np.float64)
    e = check_finite_array("excess", excess)
    if m.ndim != 1 or e.ndim != 2 or e.shape[0] != m.shape[0] or e.shape[1] < 2:
        raise ValueError(
            f"excess must have shape [len(ms), n_seeds >= 2], got {e.shape} for {m.shape[0]} sizes"
        )
    if len(m) < 2:
        raise ValueError(f"need at least 2 sizes to fit a slope, got {len(m)}")
    if np.any(e <= 0):
        raise ValueError("excess must be positive to take its logarithm")
    mean = e.mean(1)
    se_log = e.std(1, ddof=1) / math.sqrt(e.shape[1]) / mean
    x, y = np.log(m), np.log(mean)
    c = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
    slope = float(c @ y)
    return RateFit(
        slope=slope,
        stderr=float(math.sqrt(np.sum(c**2 * se_log**2))),
        intercept=float(y.mean() - slope * x.mean()),
        n=len(m),
        t_min=float(x.min()),
        t_max=float(x.max()),
    )
