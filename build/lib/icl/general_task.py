"""The general recall task of the paper's final version, as the book builds it ([D]).

The v3 text states the task more generally than the v1 sampler (the model page §1): at
least one ``(q, y)`` bigram in the context, every bigram ``(q, x)`` has ``x ∈ {y, τ}``,
several triggers may occur, and the last token is a trigger. This module is the book's
sampler for it (its choices are the book's own, not the paper's):

1. the trigger ``q`` (``0`` when noisy, as in §1; uniform on ``Q`` when noiseless) and the
   clean output ``y ~ Unif(O)``;
2. a per-sequence noise rate ``θ``: the task's ``α`` (``prior=None``), or
   ``θ ~ Beta(a, b)`` (``prior=(a, b)``: the noise level is not known in advance);
3. ``n ~ Unif{1, …, K}`` occurrences of ``q`` before the last token, each followed by ``τ``
   with probability ``θ`` and by ``y`` otherwise; the draw (``θ``, ``n`` and the followers)
   is repeated until at least one follower is ``y`` (``n_y ≥ 1``);
4. ``D`` distractor triggers ``q' ≠ q`` (distinct), each planted once as ``(q', y')`` with
   ``y' ~ Unif(O)``;
5. the ``n + D`` pairs are placed without overlap, uniformly among all such placements in
   positions ``1 … H-1`` (1-based), filler elsewhere, ``z_H = q``;
6. the target: ``τ`` with probability ``θ``, else ``y``.

Bayes-optimal predictor [D]. The clean output ``y`` is still read off the context. Given
the counts ``n_y`` and ``n_τ`` of the followers of ``q``, the noise rate has posterior
``Beta(a + n_τ, b + n_y)`` (conditioning on ``n_y ≥ 1`` is an event of the observed counts,
so it does not change the posterior), and the target is ``τ`` with probability

    p*(n_y, n_τ) = (a + n_τ)/(a + b + n_y + n_τ)          (``α`` when ``θ = α`` is fixed);

the Bayes risk is ``E[H_b(p*)]`` over the counts, computed exactly by
:func:`bayes_risk_general` and by Monte Carlo in chapter 7.

The construction of the model page §4 with linear attention and ``Λ ≥ 0`` gives (the
same orthonormality argument) ``ξ_y = n_y Λ``, ``ξ_τ = γ + n_y Λ`` and 0 elsewhere, so its
ratio ``P(τ)/P(y) = e^γ`` ignores the counts: with ``θ = α`` fixed it stays Bayes-optimal,
with a prior it loses ``E[KL(Ber(p*) ‖ Ber(σ(γ)))]`` in the limit ``Λ → ∞``
(:func:`construction_limit_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp
import torch

from .bayes import binary_entropy
from .task import RecallBatch, RecallTask, check_task, make_generator
from .validate import check_int, check_real

__all__ = [
    "GeneralBatch",
    "GeneralTask",
    "bayes_risk_general",
    "best_count_logit",
    "construction_limit_loss",
    "count_distribution",
    "excess_per_sequence",
    "posterior_noise",
    "posterior_predictive_expr",
]


@dataclass(frozen=True)
class GeneralTask:
    """The book's sampler for the general task (module docstring).

    Parameters
    ----------
    base : RecallTask
        Gives ``N``, ``H``, ``|Q|``, ``|O|`` and, when ``prior`` is ``None``, ``α``.
    max_occurrences : int
        ``K ≥ 1``: the number ``n`` of ``(q, ·)`` bigrams is uniform on ``1 … K``.
    n_distractors : int
        ``D ≥ 0`` other triggers, each planted once (at most ``|Q| - 1``).
    prior : (a, b) or None
        ``θ ~ Beta(a, b)`` per sequence (``a, b > 0``); ``None``: ``θ = α`` of ``base``.
    """

    base: RecallTask
    max_occurrences: int = 4
    n_distractors: int = 2
    prior: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_task(self.base)
        K = check_int("max_occurrences", self.max_occurrences, minimum=1)
        D = check_int("n_distractors", self.n_distractors, minimum=0,
                      maximum=self.base.n_triggers - 1)
        if self.prior is not None:
            if not isinstance(self.prior, tuple) or len(self.prior) != 2:
                raise ValueError(f"prior must be a pair (a, b) or None, got {self.prior!r}")
            a = check_real("prior[0]", self.prior[0], low=0.0, low_open=True)
            b = check_real("prior[1]", self.prior[1], low=0.0, low_open=True)
            object.__setattr__(self, "prior", (a, b))
        if 2 * (K + D) > self.base.seq_len - 1:
            raise ValueError(
                f"seq_len={self.base.seq_len} is too short for {K} + {D} pairs before the last "
                f"token: it needs seq_len >= {2 * (K + D) + 1}"
            )

    @property
    def noisy(self) -> bool:
        """``True`` when the target can be ``τ`` (a prior, or ``α > 0``)."""
        return self.prior is not None or self.base.noisy

    def sample(
        self, batch_size: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> GeneralBatch:
        """Draw ``batch_size`` sequences (vectorised; the rejection of step 3 repeats rounds
        over the rejected rows only)."""
        return _sample(self, check_int("batch_size", batch_size, minimum=1),
                       make_generator(seed, generator))


@dataclass(frozen=True)
class GeneralBatch:
    """Sequences of the general task: ``batch`` (a :class:`icl.RecallBatch`: ``pair_pos`` the
    first ``(q, y)`` pair, ``noise_pos`` the first ``(q, τ)`` pair or ``-1``), the counts
    ``n_y``, ``n_tau`` of the followers of ``q`` and the noise rate ``theta`` of each sequence."""

    batch: RecallBatch
    n_y: torch.Tensor
    n_tau: torch.Tensor
    theta: torch.Tensor


def _draw_theta(task: GeneralTask, n: int, g: torch.Generator) -> torch.Tensor:
    if task.prior is None:
        return torch.full((n,), task.base.alpha, dtype=torch.float64)
    a, b = task.prior
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=g)))
    return torch.from_numpy(rng.beta(a, b, size=n))


def _sample(task: GeneralTask, B: int, g: torch.Generator) -> GeneralBatch:
    base = task.base
    K, D, H = task.max_occurrences, task.n_distractors, base.seq_len
    tau = base.noise_token
    theta = torch.empty(B, dtype=torch.float64)
    n = torch.empty(B, dtype=torch.long)
    is_tau = torch.empty(B, K, dtype=torch.bool)
    todo = torch.arange(B)
    while len(todo):  # rejection of the rows without a (q, y) bigram
        m = len(todo)
        th = _draw_theta(task, m, g)
        nn = torch.randint(1, K + 1, (m,), generator=g)
        flw = torch.rand(m, K, generator=g, dtype=torch.float64) < th[:, None]
        used = torch.arange(K)[None, :] < nn[:, None]
        ok = (used & ~flw).any(1)
        idx = todo[ok]
        theta[idx], n[idx], is_tau[idx] = th[ok], nn[ok], flw[ok]
        todo = todo[~ok]
    used = torch.arange(K)[None, :] < n[:, None]
    is_tau &= used
    # triggers: q, then D distinct distractors from Q \ {q}
    nq = base.n_triggers
    if task.noisy:
        q = torch.zeros(B, dtype=torch.long)
    else:
        q = torch.randint(0, nq, (B,), generator=g)
    # (q + 1 + j) mod |Q| for a random permutation j of 0 … |Q|-2: distinct, never q
    others = (q[:, None] + 1 + torch.rand(B, max(nq - 1, 1), generator=g).argsort(1)) % nq
    distract = others[:, :D]
    y = base.outputs[torch.randint(0, base.n_outputs, (B,), generator=g)]
    y_dis = base.outputs[torch.randint(0, base.n_outputs, (B, max(D, 1)), generator=g)][:, :D]
    # placements: M = K + D dominoes in cells 0 … H-2 (0-based), uniformly without overlap
    M, L = K + D, H - 1
    c = torch.rand(B, L - M, generator=g).argsort(1)[:, :M].sort(1).values
    starts = c + torch.arange(M)[None, :]
    starts = starts.gather(1, torch.rand(B, M, generator=g).argsort(1))  # random roles
    filler = base.filler
    tokens = filler[torch.randint(0, len(filler), (B, H), generator=g)]
    tokens[:, -1] = q
    rows = torch.arange(B)[:, None]
    occ = starts[:, :K]
    follower = torch.where(is_tau, torch.full_like(occ, tau), y[:, None].expand(B, K))
    tokens[rows.expand(B, K)[used], occ[used]] = q[:, None].expand(B, K)[used]
    tokens[rows.expand(B, K)[used], occ[used] + 1] = follower[used]
    if D:
        dpos = starts[:, K:]
        tokens[rows.expand(B, D), dpos] = distract
        tokens[rows.expand(B, D), dpos + 1] = y_dis
    targets = torch.where(torch.rand(B, generator=g, dtype=torch.float64) < theta,
                          torch.full_like(y, tau), y)
    n_tau = is_tau.sum(1)
    n_y = n - n_tau
    big = H + 1
    pair_pos = torch.where(used & ~is_tau, occ, big).min(1).values
    noise_pos = torch.where(is_tau, occ, big).min(1).values
    noise_pos = torch.where(noise_pos == big, -1, noise_pos)
    batch = RecallBatch(tokens=tokens, targets=targets, outputs=y, pair_pos=pair_pos,
                        noise_pos=noise_pos)
    return GeneralBatch(batch=batch, n_y=n_y, n_tau=n_tau, theta=theta)


def posterior_noise(task: GeneralTask, n_y, n_tau) -> np.ndarray:
    """``p*(τ | n_y, n_τ)``: ``(a + n_τ)/(a + b + n_y + n_τ)``, or ``α`` when ``θ`` is fixed."""
    if not isinstance(task, GeneralTask):
        raise TypeError(f"task must be an icl.general_task.GeneralTask, got {type(task).__name__}")
    ny = np.asarray(n_y, dtype=np.float64)
    nt = np.asarray(n_tau, dtype=np.float64)
    if np.any(ny < 0) or np.any(nt < 0):
        raise ValueError("n_y and n_tau must be non-negative counts")
    if task.prior is None:
        return np.full(np.broadcast(ny, nt).shape, task.base.alpha)
    a, b = task.prior
    return (a + nt) / (a + b + ny + nt)


def count_distribution(task: GeneralTask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact law of ``(n_y, n_τ)`` under the sampler: arrays ``n_y``, ``n_τ``, ``prob``.

    ``P(n, n_τ) ∝ (1/K) · C(n, n_τ) B(a + n_τ, b + n - n_τ)/B(a, b) · 1[n_τ < n]`` (the
    beta-binomial law, conditioned on ``n_y ≥ 1``); with ``θ = α`` fixed, the binomial law.
    """
    if not isinstance(task, GeneralTask):
        raise TypeError(f"task must be an icl.general_task.GeneralTask, got {type(task).__name__}")
    ny, nt, w = [], [], []
    for n in range(1, task.max_occurrences + 1):
        for j in range(n):  # n_τ = j < n
            logc = math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
            if task.prior is None:
                al = task.base.alpha
                if al == 0.0:
                    p = 1.0 if j == 0 else 0.0
                else:
                    p = math.exp(logc + j * math.log(al) + (n - j) * math.log1p(-al))
            else:
                a, b = task.prior
                p = math.exp(logc + _lbeta(a + j, b + n - j) - _lbeta(a, b))
            ny.append(n - j)
            nt.append(j)
            w.append(p / task.max_occurrences)
    prob = np.asarray(w)
    return np.asarray(ny), np.asarray(nt), prob / prob.sum()


def _lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def bayes_risk_general(task: GeneralTask) -> float:
    """``E[H_b(p*(n_y, n_τ))]`` over the exact law of the counts (the book's [D])."""
    ny, nt, prob = count_distribution(task)
    p = posterior_noise(task, ny, nt)
    return float(sum(w * binary_entropy(float(x)) for w, x in zip(prob, p, strict=True)))


def _cross_entropy(p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``-p log σ(d) - (1-p) log σ(-d)``, stably."""
    return p * np.logaddexp(0.0, -d) + (1 - p) * np.logaddexp(0.0, d)


def construction_limit_loss(task: GeneralTask, gamma: float) -> float:
    """The loss of the construction as ``Λ → ∞`` (linear attention): the logit gap
    ``ξ_τ - ξ_y = γ`` for every context, so ``E[CE(Ber(p*), Ber(σ(γ)))]``."""
    g = check_real("gamma", gamma)
    ny, nt, prob = count_distribution(task)
    p = posterior_noise(task, ny, nt)
    return float(np.sum(prob * _cross_entropy(p, np.full_like(p, g))))


def best_count_logit(task: GeneralTask, iters: int = 50) -> tuple[np.ndarray, float]:
    """The best logit gap *linear in the counts*, ``ξ_τ - ξ_y = β₀ + β₁ n_τ + β₂ n_y``.

    Minimises the exact expected cross-entropy over the law of the counts (a convex
    logistic regression with soft targets ``p*``, Newton's method). Returns ``(β, loss)``.
    A linear-attention model can realise any such gap in the limit (chapter 7).
    """
    iters = check_int("iters", iters, minimum=1)
    ny, nt, prob = count_distribution(task)
    p = posterior_noise(task, ny, nt)
    X = np.stack([np.ones_like(p), nt.astype(float), ny.astype(float)], 1)
    beta = np.zeros(3)
    for _ in range(iters):
        s = 1.0 / (1.0 + np.exp(-(X @ beta)))
        grad = X.T @ (prob * (s - p))
        hess = (X * (prob * s * (1 - s))[:, None]).T @ X + 1e-12 * np.eye(3)
        beta = beta - np.linalg.solve(hess, grad)
    return beta, float(np.sum(prob * _cross_entropy(p, X @ beta)))


@lru_cache(maxsize=1)
def posterior_predictive_expr() -> dict[str, sp.Expr]:
    """SymPy: ``P(target = τ | n_y, n_τ)`` under a ``Beta(a, b)`` prior on ``θ``.

    The likelihood of the followers is ``θ^{n_τ}(1-θ)^{n_y}``; with the prior density
    ``θ^{a-1}(1-θ)^{b-1}/B(a, b)`` the posterior mean of ``θ`` is the ratio of two beta
    functions, ``B(a+n_τ+1, b+n_y)/B(a+n_τ, b+n_y)``, which ``gammasimp`` reduces to
    ``(a + n_τ)/(a + b + n_y + n_τ)``. Returns ``{"ratio", "simplified", "expected"}``;
    raises ``RuntimeError`` if the two disagree.
    """
    a, b, ny, nt = sp.symbols("a b n_y n_tau", positive=True)

    def beta_fn(x, y):
        return sp.gamma(x) * sp.gamma(y) / sp.gamma(x + y)

    ratio = beta_fn(a + nt + 1, b + ny) / beta_fn(a + nt, b + ny)
    simplified = sp.simplify(sp.gammasimp(ratio))
    expected = (a + nt) / (a + b + ny + nt)
    if sp.simplify(simplified - expected) != 0:  # pragma: no cover
        raise RuntimeError("posterior predictive is not (a + n_tau)/(a + b + n)")
    return {"ratio": ratio, "simplified": simplified, "expected": expected}


def excess_per_sequence(task: GeneralTask, xi: torch.Tensor, batch: GeneralBatch) -> torch.Tensor:
    """Each sequence's expected loss above the Bayes-optimal one, target noise integrated out.

    With ``p* = p*(n_y, n_τ)`` (:func:`posterior_noise`) and the model's log-probabilities
    ``log P`` from the logits ``xi`` (``[B, N]``), the sequence's expected loss is
    ``-p* log P_τ - (1-p*) log P_y`` and the Bayes-optimal one ``H_b(p*)``; returns their
    difference (``[B]``, float64, ``≥ 0``).
    """
    if not isinstance(task, GeneralTask):
        raise TypeError(f"task must be an icl.general_task.GeneralTask, got {type(task).__name__}")
    if not isinstance(batch, GeneralBatch):
        raise TypeError(
            f"batch must be an icl.general_task.GeneralBatch, got {type(batch).__name__}"
        )
    B, N = batch.batch.batch_size, task.base.vocab_size
    if not isinstance(xi, torch.Tensor) or tuple(xi.shape) != (B, N):
        raise ValueError(f"xi must be a [B, N] = [{B}, {N}] tensor of logits")
    p = torch.from_numpy(posterior_noise(task, batch.n_y.numpy(), batch.n_tau.numpy()))
    logp = torch.log_softmax(xi.detach().double(), dim=-1)
    rows = torch.arange(B)
    ce = -(1 - p) * logp[rows, batch.batch.outputs]
    if task.noisy:
        ce = ce - p * logp[:, task.base.noise_token]
    h = -(torch.xlogy(p, p) + torch.xlogy(1 - p, 1 - p))
    return ce - h
