"""Empirical laws of the recall-task sampler against their definitions (chapter 1).

The sampler of :mod:`icl.task` follows the authors' protocol (the model page §1, [E]). This
module measures, on a sampled :class:`~icl.task.RecallBatch`, the law of each random
choice the protocol makes and sets it beside the law the protocol prescribes:

* :func:`position_law`: the start ``p`` of the ``(q, y)`` pair, uniform on ``0 … H-3``;
* :func:`noise_position_law`: the start ``p'`` of the ``(q, τ)`` pair given ``p``, uniform
  on the starts with ``|p' - p| ≥ 2``;
* :func:`filler_law`: the filler tokens, i.i.d. uniform on ``{|Q|, …, N-2}``;
* :func:`trigger_law`: ``q``, uniform on ``Q`` (noiseless), ``q = 0`` (noisy);
* :func:`output_law`: ``y``, uniform on ``O`` (or on the OOD outputs);
* :func:`target_law`: the fraction of targets equal to ``τ``, ``α`` (binomial).

:func:`check_structure` counts the sequences that break a structural promise of the
protocol (it should find none), and :func:`token_usage` counts how often each token
occurs as filler, as clean output and as target (the facts behind the OOD split);
:func:`filler_exposure` and :func:`overlap_probability` are the references of the
chapter's exercises.

Positions are 0-based, as in :mod:`icl.task` (the book's ``p`` is ``pair_pos + 1``).
Categorical laws are compared with Pearson's chi-square test (:func:`chi_square`); the
noise rate with an exact binomial test and its standard error ``√(α(1-α)/B)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from .task import RecallBatch, RecallTask, check_batch, check_task
from .validate import check_bool, check_finite_array, check_int, check_probability

__all__ = [
    "ChiSquare",
    "LawCheck",
    "TargetCheck",
    "TokenUsage",
    "check_structure",
    "chi_square",
    "filler_exposure",
    "filler_law",
    "filler_mask",
    "noise_position_law",
    "output_law",
    "overlap_probability",
    "position_law",
    "target_law",
    "token_usage",
    "trigger_law",
]


@dataclass(frozen=True)
class ChiSquare:
    """Pearson's goodness-of-fit test: ``statistic = Σ_k (n_k - B π_k)² / (B π_k)``.

    ``dof`` is the number of categories with ``π_k > 0`` minus one; ``p_value`` is the
    upper tail of ``χ²_dof`` at ``statistic`` (0 when a count falls where ``π_k = 0``).
    """

    statistic: float
    p_value: float
    dof: int


@dataclass(frozen=True)
class LawCheck:
    """An empirical categorical law beside the law it should follow.

    Attributes
    ----------
    name : str
        What the law is of (used in plot titles).
    support : ndarray ``[K]``
        The category labels (positions, token ids, …).
    counts : ndarray ``[K]``
        How many draws fell in each category.
    probs : ndarray ``[K]``
        The prescribed probabilities ``π_k`` (they sum to one).
    test : ChiSquare
        Pearson's test of ``counts`` against ``probs``.
    """

    name: str
    support: np.ndarray
    counts: np.ndarray
    probs: np.ndarray
    test: ChiSquare

    @property
    def n(self) -> int:
        """Number of draws ``Σ_k n_k``."""
        return int(self.counts.sum())

    @property
    def frequencies(self) -> np.ndarray:
        """Empirical frequencies ``n_k / n``."""
        return self.counts / max(self.n, 1)

    @property
    def expected(self) -> np.ndarray:
        """Expected counts ``n π_k``."""
        return self.n * self.probs

    @property
    def p_value(self) -> float:
        """Shortcut for ``test.p_value``."""
        return self.test.p_value


@dataclass(frozen=True)
class TargetCheck:
    """The noise rate: ``k`` of ``n`` targets equal ``τ``; the protocol says ``P(τ) = α``.

    ``se = √(α(1-α)/n)`` is the standard error of ``α̂ = k/n`` under the protocol,
    ``z = (α̂ - α)/se`` (0 when ``α = 0`` and ``k = 0``), ``p_value`` the two-sided exact
    binomial test. ``n_other`` counts targets that are neither ``y`` nor ``τ`` (the
    protocol allows none).
    """

    n: int
    k: int
    alpha: float
    n_other: int
    p_value: float

    @property
    def rate(self) -> float:
        """``α̂ = k / n``."""
        return self.k / self.n

    @property
    def se(self) -> float:
        """``√(α(1-α)/n)``."""
        return math.sqrt(self.alpha * (1.0 - self.alpha) / self.n)

    @property
    def z(self) -> float:
        """``(α̂ - α) / se`` (``±inf`` if ``α = 0`` and some target is ``τ``)."""
        diff = self.rate - self.alpha
        if self.se == 0:
            return 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return diff / self.se


def chi_square(counts, probs) -> ChiSquare:
    """Pearson's chi-square test of observed ``counts`` against probabilities ``probs``.

    Categories with ``π_k = 0`` are left out of the statistic; a positive count in one of
    them makes the law impossible and returns ``statistic = inf``, ``p_value = 0``.

    Raises ``ValueError`` if the shapes differ, if counts are negative or not integers,
    if ``probs`` is negative or does not sum to one (within ``1e-6``), or if there is no
    draw or fewer than two categories of positive probability.
    """
    c = check_finite_array("counts", counts)
    p = check_finite_array("probs", probs)
    if c.ndim != 1 or p.shape != c.shape:
        raise ValueError(
            f"counts and probs must be 1-D of the same length, got shapes {c.shape} and {p.shape}"
        )
    if (c < 0).any() or not np.all(c == np.round(c)):
        raise ValueError("counts must be non-negative integers")
    if (p < 0).any() or abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"probs must be non-negative and sum to 1, got sum {p.sum():.8f}")
    n = c.sum()
    if n == 0:
        raise ValueError("counts must hold at least one draw")
    live = p > 0
    if int(live.sum()) < 2:
        raise ValueError("probs must put mass on at least two categories")
    dof = int(live.sum()) - 1
    if (c[~live] > 0).any():
        return ChiSquare(statistic=math.inf, p_value=0.0, dof=dof)
    expected = n * p[live]
    stat = float(((c[live] - expected) ** 2 / expected).sum())
    return ChiSquare(statistic=stat, p_value=float(stats.chi2.sf(stat, dof)), dof=dof)


def _law(name: str, support: np.ndarray, counts: np.ndarray, probs: np.ndarray) -> LawCheck:
    return LawCheck(name, support, counts, probs, chi_square(counts, probs))


def _check_batch(task: RecallTask, batch: RecallBatch) -> None:
    # tokens only: the laws count broken outputs/targets, so their range is not refused
    check_batch("batch", batch)
    check_task(task).check_tokens(batch.tokens, name="batch.tokens")


def position_law(task: RecallTask, batch: RecallBatch) -> LawCheck:
    """Law of the 0-based start ``p`` of the ``(q, y)`` pair: uniform on ``{0, …, H-3}``.

    Sequences without a planted pair (``pair_pos = -1``) are left out.
    """
    _check_batch(task, batch)
    H = batch.seq_len
    pos = batch.pair_pos[batch.pair_pos >= 0]
    if pos.numel() == 0:
        raise ValueError("batch holds no planted (q, y) pair (every pair_pos is -1)")
    if bool((pos > H - 3).any()):
        raise ValueError(f"pair_pos must lie in [0, {H - 3}] for H={H}")
    counts = torch.bincount(pos, minlength=H - 2).numpy()
    probs = np.full(H - 2, 1.0 / (H - 2))
    return _law("pair position p", np.arange(H - 2), counts, probs)


def noise_position_law(task: RecallTask, batch: RecallBatch, n_bins: int = 10) -> LawCheck:
    """Law of the start ``p'`` of the ``(q, τ)`` pair given ``p``, by its relative rank.

    Given ``p``, the protocol draws ``p'`` uniformly from the ``m(p)`` starts
    ``j ∈ {0, …, H-3}`` with ``|j - p| ≥ 2``. Let ``r`` be the rank of ``p'`` in that list
    (``0 … m(p)-1``); the check bins ``r / m(p)`` into ``n_bins`` equal bins of ``[0, 1)``.
    The prescribed probability of bin ``k`` is the average over the batch of
    ``#{r : k ≤ n_bins·r/m(p) < k+1} / m(p)``: an exact statement of "uniform given
    ``p``", pooled over sequences. A start that violates ``|p' - p| ≥ 2`` (or lies outside
    ``0 … H-3``) makes the law impossible: ``p_value = 0``.
    """
    _check_batch(task, batch)
    n_bins = check_int("n_bins", n_bins, minimum=2, maximum=max(2, batch.seq_len - 4))
    if not task.noisy:
        raise ValueError("noise_position_law needs a noisy task (alpha > 0)")
    H = batch.seq_len
    keep = batch.pair_pos >= 0
    p = batch.pair_pos[keep].numpy()
    pn = batch.noise_pos[keep].numpy()
    if p.size == 0:
        raise ValueError("batch holds no planted (q, y) pair (every pair_pos is -1)")
    bad = (np.abs(pn - p) < 2) | (pn < 0) | (pn > H - 3)
    starts = np.arange(H - 2)
    allowed = np.abs(starts[None, :] - p[:, None]) >= 2  # [B, H-2]
    m = allowed.sum(1)  # m(p): H-4 at the two ends, H-5 inside
    # rank of p' among the allowed starts = number of allowed starts below it
    rank = (allowed & (starts[None, :] < pn[:, None])).sum(1)
    # P(bin k | p) = #{r < m(p) : floor(n_bins r / m(p)) = k} / m(p); m(p) takes few values
    probs = np.zeros(n_bins)
    for mv, count in zip(*np.unique(m, return_counts=True), strict=True):
        bins_of_r = (n_bins * np.arange(mv)) // mv
        probs += count * np.bincount(bins_of_r, minlength=n_bins) / mv
    probs /= probs.sum()
    counts = np.bincount(np.where(bad, 0, (n_bins * rank) // m), minlength=n_bins)
    name = "relative rank of p' given p"
    if bad.any():
        test = ChiSquare(statistic=math.inf, p_value=0.0, dof=n_bins - 1)
        return LawCheck(name, np.arange(n_bins), counts, probs, test)
    return _law(name, np.arange(n_bins), counts, probs)


def filler_mask(batch: RecallBatch) -> torch.Tensor:
    """Boolean ``[B, H]`` mask of the filler positions: all but the planted pairs and ``z_H``.

    Distractor pairs are not recorded in a :class:`~icl.task.RecallBatch`, so they count as filler.
    """
    B, H = batch.tokens.shape
    mask = torch.ones(B, H, dtype=torch.bool)
    mask[:, -1] = False
    rows = torch.arange(B)
    for pos in (batch.pair_pos, batch.noise_pos):
        r, s = rows[pos >= 0], pos[pos >= 0]
        mask[r, s] = False
        mask[r, s + 1] = False
    return mask


def filler_law(task: RecallTask, batch: RecallBatch, probs=None) -> LawCheck:
    """Law of the filler tokens (every position outside the planted pairs and ``z_H``).

    The protocol: i.i.d. uniform on ``{|Q|, …, N-2}`` (no trigger, no ``τ``). Pass
    ``probs`` (length ``N``) to check another filler law, e.g. a shifted one. The support
    is the whole vocabulary; a trigger or ``τ`` among the filler gives ``p_value = 0``.
    """
    _check_batch(task, batch)
    N = task.vocab_size
    if probs is None:
        pi = np.zeros(N)
        pi[task.filler.numpy()] = 1.0 / len(task.filler)
    else:
        pi = check_finite_array("probs", probs, low=0.0)
        if pi.shape != (N,) or (pi < 0).any() or pi.sum() <= 0:
            raise ValueError(f"probs must be a non-negative vector of length N={N}")
        pi = pi / pi.sum()
    fill = batch.tokens[filler_mask(batch)]
    counts = torch.bincount(fill, minlength=N).numpy()
    return _law("filler token", np.arange(N), counts, pi)


def trigger_law(task: RecallTask, batch: RecallBatch) -> LawCheck:
    """Law of the trigger ``q = z_H``: uniform on ``Q`` (noiseless) or ``q = 0`` (noisy).

    In the noisy case the law is a point mass; the chi-square test is then replaced by
    an exact check (``p_value`` 1 if every ``q`` is 0, else 0).
    """
    _check_batch(task, batch)
    nq = task.n_triggers
    q = batch.triggers
    if bool(((q < 0) | (q >= nq)).any()):
        counts = torch.bincount(q.clamp(0, nq), minlength=nq + 1)[:nq].numpy()
        return LawCheck("trigger q", np.arange(nq), counts, np.full(nq, 1 / nq),
                        ChiSquare(math.inf, 0.0, nq - 1))
    counts = torch.bincount(q, minlength=nq).numpy()
    if task.noisy:
        probs = np.zeros(nq)
        probs[0] = 1.0
        ok = counts[1:].sum() == 0
        test = ChiSquare(0.0 if ok else math.inf, 1.0 if ok else 0.0, 0)
        return LawCheck("trigger q", np.arange(nq), counts, probs, test)
    return _law("trigger q", np.arange(nq), counts, np.full(nq, 1.0 / nq))


def output_law(task: RecallTask, batch: RecallBatch, ood: bool = False) -> LawCheck:
    """Law of the clean output ``y``: uniform on ``O`` (or on the OOD outputs if ``ood``).

    The support is the whole vocabulary, so an output outside the prescribed set gives
    ``p_value = 0``.
    """
    _check_batch(task, batch)
    check_bool("ood", ood)
    N = task.vocab_size
    pool = (task.ood_outputs if ood else task.outputs).numpy()
    if pool.size < 2:
        raise ValueError("output_law needs at least two outputs in the checked set")
    probs = np.zeros(N)
    probs[pool] = 1.0 / pool.size
    y = batch.outputs
    if bool(((y < 0) | (y >= N)).any()):
        raise ValueError(f"outputs must lie in [0, {N - 1}]")
    counts = torch.bincount(y, minlength=N).numpy()
    return _law("OOD output y" if ood else "output y", np.arange(N), counts, probs)


def target_law(task: RecallTask, batch: RecallBatch, alpha: float | None = None) -> TargetCheck:
    """Fraction of targets equal to ``τ`` against ``α`` (the task's, or ``alpha`` if given).

    Under the protocol the number ``k`` of ``τ`` targets among ``B`` is ``Bin(B, α)`` and
    every other target equals the clean output ``y``.
    """
    _check_batch(task, batch)
    a = task.alpha if alpha is None else check_probability("alpha", alpha)
    is_tau = batch.targets == task.noise_token
    is_y = batch.targets == batch.outputs
    n = batch.batch_size
    k = int(is_tau.sum())
    n_other = int((~is_tau & ~is_y).sum())
    if a == 0:
        p_value = 1.0 if k == 0 else 0.0
    else:
        p_value = float(stats.binomtest(k, n, a).pvalue)
    if n_other:
        p_value = 0.0
    return TargetCheck(n=n, k=k, alpha=a, n_other=n_other, p_value=p_value)


def check_structure(task: RecallTask, batch: RecallBatch, ood: bool = False) -> dict[str, int]:
    """Count the sequences that break each structural promise of the model page §1.

    Returns ``{promise: number of violating sequences}``; a batch of the protocol's
    sampler gives zero everywhere. The promises (``q = z_H``, 0-based starts):

    - ``"last token is an active trigger"``: ``q ∈ Q`` (noiseless) or ``q = 0`` (noisy);
    - ``"(q, y) pair at pair_pos, before z_H"``: ``0 ≤ p ≤ H-3``, ``z_p = q``, ``z_{p+1} = y``;
    - ``"y in its output set"``: ``y ∈ O``, or ``y`` an OOD output when ``ood`` is true;
    - ``"no trigger other than q"``;
    - ``"q only at the pair start(s) and z_H"``: ``q`` occurs 2 times (noiseless) or 3
      times (noisy);
    - ``"tau only right after q in the (q, tau) pair"``: noiseless: no ``τ``; noisy: one
      ``τ``, at ``p'+1``, with ``z_{p'} = q``;
    - ``"pairs do not overlap"``: ``|p' - p| ≥ 2`` (noisy);
    - ``"target is y (noiseless) or y/tau (noisy)"``.
    """
    _check_batch(task, batch)
    check_bool("ood", ood)
    tok, B, H = batch.tokens, batch.batch_size, batch.seq_len
    rows = torch.arange(B)
    q = tok[:, -1]
    y = batch.outputs
    pool = task.ood_outputs if ood else task.outputs
    tau = task.noise_token
    p = batch.pair_pos
    p_ok = (p >= 0) & (p <= H - 3)
    pc = p.clamp(0, H - 3)
    pair_ok = p_ok & (tok[rows, pc] == q) & (tok[rows, pc + 1] == y)
    n_q = (tok == q[:, None]).sum(1)
    n_tau = (tok == tau).sum(1)
    other = ((tok < task.n_triggers) & (tok != q[:, None])).any(1)
    if task.noisy:
        pn = batch.noise_pos
        pn_ok = (pn >= 0) & (pn <= H - 3)
        pnc = pn.clamp(0, H - 3)
        tau_ok = pn_ok & (n_tau == 1) & (tok[rows, pnc] == q) & (tok[rows, pnc + 1] == tau)
        overlap = ~pn_ok | ((pn - p).abs() < 2)
        target_ok = (batch.targets == y) | (batch.targets == tau)
    else:
        tau_ok = n_tau == 0
        overlap = torch.zeros(B, dtype=torch.bool)
        target_ok = batch.targets == y
    return {
        "last token is an active trigger": int((~torch.isin(q, task.active_triggers)).sum()),
        "(q, y) pair at pair_pos, before z_H": int((~pair_ok).sum()),
        "y in its output set": int((~torch.isin(y, pool)).sum()),
        "no trigger other than q": int(other.sum()),
        "q only at the pair start(s) and z_H": int((n_q != 2 + int(task.noisy)).sum()),
        "tau only right after q in the (q, tau) pair": int((~tau_ok).sum()),
        "pairs do not overlap": int(overlap.sum()),
        "target is y (noiseless) or y/tau (noisy)": int((~target_ok).sum()),
    }


@dataclass(frozen=True)
class TokenUsage:
    """How often each token id ``k ∈ {0…N-1}`` occurs in a batch, by role (arrays ``[N]``).

    ``as_filler[k]``: occurrences at filler positions (:func:`filler_mask`);
    ``as_output[k]``: sequences whose clean output ``y`` is ``k``;
    ``as_target[k]``: sequences whose target ``z_{H+1}`` is ``k``;
    ``seqs_with_filler[k]``: sequences holding ``k`` at least once as filler.
    """

    as_filler: np.ndarray
    as_output: np.ndarray
    as_target: np.ndarray
    seqs_with_filler: np.ndarray


def token_usage(task: RecallTask, batch: RecallBatch) -> TokenUsage:
    """Count every token's occurrences as filler, as clean output and as target."""
    _check_batch(task, batch)
    N = task.vocab_size
    mask = filler_mask(batch)
    tok = batch.tokens
    as_filler = torch.bincount(tok[mask], minlength=N).numpy()
    present = torch.zeros(batch.batch_size, N, dtype=torch.bool)
    rows = torch.arange(batch.batch_size)[:, None].expand_as(tok)
    present[rows[mask], tok[mask]] = True
    return TokenUsage(
        as_filler=as_filler,
        as_output=torch.bincount(batch.outputs, minlength=N).numpy(),
        as_target=torch.bincount(batch.targets, minlength=N).numpy(),
        seqs_with_filler=present.sum(0).numpy(),
    )


def filler_exposure(task: RecallTask) -> tuple[float, float]:
    """How often one filler token (e.g. an OOD output) occurs in a training sequence.

    A sequence has ``H - 3`` filler positions (``H - 5`` in the noisy task, which plants a
    second pair), each holding a given filler token with probability ``1/(N-1-|Q|)``
    independently, so the count is binomial. Returns ``(mean count, P(count = 0))``:
    ``((H-3)/(N-1-|Q|), (1 - 1/(N-1-|Q|))^(H-3))`` for the noiseless task (chapter 1 §1.6).
    """
    task = check_task(task)
    n_pos = task.seq_len - 3 - 2 * int(task.noisy)
    k = len(task.filler)
    return n_pos / k, (1 - 1 / k) ** n_pos


def overlap_probability(seq_len: int) -> float:
    """``P(|p' - p| ≤ 1)`` for two independent uniform pair starts among ``S = H - 2``.

    The probability that an *unconstrained* noisy pair would overwrite the ``(q, y)`` pair
    (chapter 1, exercises): ``(3S - 2)/S²``, since the two end starts of ``p`` have two
    neighbours within range instead of three.
    """
    S = check_int("seq_len", seq_len, minimum=4) - 2
    return (3 * S - 2) / S**2
