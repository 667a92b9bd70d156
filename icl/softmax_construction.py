"""Softmax attention and the Bayes-optimal construction: **the book's own analysis** ([D]).

Nothing in this module quotes the paper. The paper claims that a softmax-attention
transformer with *its own* parameterization is Bayes-optimal for the recall task; the
book builds and analyses *one* such parameterization (the model page §4), implemented in
:func:`icl.construction.construction_matrices` (``scaled=True``):

    W = Λ E(q) (Ẽ(q) - E(τ))^T,   V = c I,   F = E(τ) (γ E(q) + c Ẽ(q))^T,   κ = 1,

with ``c = Λ`` (the *scaled*, book's construction) or ``c = 1`` (``V = I``, *unscaled*).
Noiseless: ``W = Σ_k λ_k E(k) Ẽ(k)^T``, ``V = c I`` with ``c = mean(λ)`` or 1, ``F = 0``.
The ``κ = 0`` variant uses ``F = (γ + Λ) E(τ) E(q)^T``.

Per-sequence closed form
------------------------
On a sequence of the sampler, the score is ``ℓ = Λ`` (noiseless: ``λ_q``) at the position
holding ``y`` and 0 at every other position (the ``τ`` position scores ``Λ(1 - 1) = 0``).
With ``Z = e^ℓ + H - 1`` the softmax weights are ``a* = e^ℓ / Z`` (``y``'s position) and
``ε = 1 / Z`` (each of the ``H - 1`` others). Writing ``n_j`` for the number of positions
*other than y's* that hold token ``j`` (``y`` also occurs as filler; ``q`` sits at the
pair starts and at the last position), ``n_q`` for the count of ``q`` and ``m`` for the
number of positions other than ``y``'s that follow a ``q`` (1 noisy, the ``τ`` position; 0
noiseless):

    ξ_A[j] = c (a* 1[j = y] + ε n_j),
    ξ_F[τ] = γ (1 + κ ε n_q) + κ c (a* + ε m)             (κ = 1),
    ξ_F[τ] = γ + Λ                                        (κ = 0),

and ``ξ_F`` vanishes elsewhere (and everywhere when noiseless). :func:`softmax_logits`
computes this from token counts alone; the tests check it against the network to
``1e-10`` in float64.

Rate (scaled, κ = 1, γ = log(α/(1-α)))
--------------------------------------
Per sequence, with ``δ = ξ_τ - ξ_y - γ = (2Λ + 3γ - Λ n_y) ε`` and
``S = Σ_{j ∉ {y, τ}} e^{ξ_j - ξ_y}``, the expected loss given the context is

    ℓ - H_b(α) = log(1 - α + α e^δ + (1 - α) S) - α δ.

Jensen (``1-α+αe^δ ≥ e^{αδ}``), Hoeffding's lemma (``log(1-α+αe^δ) - αδ ≤ δ²/8``) and
``-Λ(1 + Hε) ≤ ξ_j - ξ_y ≤ -Λ + Λ(2H-1)ε`` give, for every sequence and every ``Λ > 0``,

    log(1 + (1-α)(N-2) e^{-Λ(1+Hε) - δ̄})  ≤  ℓ - H_b(α)
        ≤  (1-α)(N-2) e^{-Λ + Λ(2H-1)ε + αδ̄} + δ̄²/8,     δ̄ = (Λ(H+2) + 3|γ|) ε,

hence ``e^Λ (L(Λ) - H_b(α)) → (N-2)(1-α)``: the same rate as linear attention. Noiseless
(shared ``λ``): ``log(1 + (N-1) e^{-λ(1+Hε)}) ≤ ℓ ≤ (N-1) e^{-λ + λ(2H-1)ε}``, limit ``N-1``.

Unscaled (``V = I``): every ``ξ_A[j] ≤ Σ_h a_h = 1`` and ``ξ_j ≥ 0`` for ``j ≠ τ``, so
``ξ_j - ξ_y ≥ -1`` and, minimising over ``ξ_τ``, ``ℓ ≥ H_b(α) + (1-α) log(1 + (N-2)/e)``
for *every* ``Λ`` (noiseless: ``ℓ ≥ log(1 + (N-1)/e)``). As ``Λ → ∞`` the loss tends to
:func:`softmax_unscaled_floor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .architecture import Logits, check_kappa
from .bayes import binary_entropy, recover_output
from .closed_forms import closed_form_loss
from .constants import resolve_gamma
from .losses import expected_excess, expected_losses
from .task import RecallBatch, RecallTask, check_batch, check_task, make_generator
from .validate import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_STEPS,
    check_bool,
    check_budget,
    check_finite_array,
    check_int,
    check_real,
    check_seed,
)

__all__ = [
    "SequenceCounts",
    "sequence_counts",
    "softmax_excess",
    "softmax_excess_bounds",
    "softmax_excess_limit",
    "softmax_logits",
    "softmax_loss",
    "softmax_unscaled_floor",
    "softmax_weights",
    "keyquery_gap_bound",
    "unscaled_logit_bound",
    "unscaled_lower_bound",
]


#: Λ values a Monte-Carlo loss evaluates one after the other unless raised (``max_steps``)
_MAX_LAMBDAS = 100_000


# ------------------------------------------------------------------ helpers
def _check_scale(task: RecallTask, Lambda) -> torch.Tensor:
    """``Λ`` (noisy, a scalar) or ``λ`` (noiseless: scalar shared by all triggers, or ``[|Q|]``)."""
    check_task(task)
    lam = torch.as_tensor(check_finite_array("Lambda", Lambda), dtype=torch.float64)
    if task.noisy:
        if lam.dim() != 0:
            raise ValueError(f"the noisy task takes a scalar Lambda, got shape {tuple(lam.shape)}")
        return lam
    if lam.dim() == 0:
        return lam.expand(task.n_triggers).clone()
    if lam.shape != (task.n_triggers,):
        raise ValueError(
            f"the noiseless task takes a scalar Lambda or lambdas of shape "
            f"({task.n_triggers},), got shape {tuple(lam.shape)}"
        )
    return lam


def softmax_weights(score, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax weights ``(a*, ε)`` when one of ``H`` positions scores ``ℓ`` and the rest 0.

    ``a* = e^ℓ / (e^ℓ + H - 1)`` and ``ε = 1 / (e^ℓ + H - 1)``, computed stably for any
    real ``ℓ`` (``score``, a number or a tensor).
    """
    seq_len = check_int("seq_len", seq_len, minimum=2)
    if isinstance(score, torch.Tensor):
        s = score.to(torch.float64)
        if not bool(torch.isfinite(s).all()):
            raise ValueError("score must be finite, got NaN or inf entries")
    else:
        s = torch.as_tensor(check_finite_array("score", score), dtype=torch.float64)
    a_star = torch.sigmoid(s - math.log(seq_len - 1))
    eps = torch.sigmoid(math.log(seq_len - 1) - s) / (seq_len - 1)
    return a_star, eps


@dataclass(frozen=True)
class SequenceCounts:
    """Token statistics of a batch that the softmax closed form needs (all ``[B]`` or ``[B, N]``).

    Attributes
    ----------
    y
        The clean output read off the context (:func:`icl.bayes.recover_output`).
    q
        The trigger, which is the last token.
    n
        ``[B, N]`` counts of each token over the positions *other than* ``y``'s.
    n_q
        The count of ``q`` over ``z_{1:H}``.
    m
        The positions other than ``y``'s that follow a ``q`` (the ``τ`` position when
        noisy).
    """

    y: torch.Tensor
    q: torch.Tensor
    n: torch.Tensor
    n_q: torch.Tensor
    m: torch.Tensor
    seq_len: int


def sequence_counts(task: RecallTask, tokens: torch.Tensor) -> SequenceCounts:
    """Count what the closed form needs; raise ``ValueError`` off the sampler's structure.

    The closed form assumes exactly one ``(q, y)`` pair (``y ≠ τ``), plus exactly one
    ``(q, τ)`` pair when noisy, and no other token after a ``q`` (distractor pairs
    ``(q', x)`` with ``q' ≠ q`` are fine: they score 0).
    """
    check_task(task).check_tokens(tokens)
    tokens = tokens.long()
    B, H = tokens.shape
    N = task.vocab_size
    q = tokens[:, -1]
    y = recover_output(task, tokens)
    if bool((y < 0).any()):
        raise ValueError("tokens: some sequences hold no (q, y) pair; the closed form needs one")
    follows_q = (tokens[:, :-2] == q[:, None]).sum(1)  # pair starts 0 … H-3
    q_before_last = (tokens[:, :-1] == q[:, None]).sum(1)
    n_tau = (tokens == task.noise_token).sum(1)
    want = 2 if task.noisy else 1
    if bool((q_before_last != want).any()) or bool((follows_q != want).any()):
        raise ValueError(
            f"tokens: every sequence must hold the trigger q exactly {want} time(s) before the "
            "last position (the planted pairs), as the sampler makes them"
        )
    if task.noisy and bool((n_tau != 1).any()):
        raise ValueError("tokens: every noisy sequence must hold the noise token exactly once")
    if task.noisy:
        # the τ position must follow q (score Λ(1 - 1) = 0)
        after_q = tokens[:, 1:-1][tokens[:, :-2] == q[:, None]].view(B, want)
        if bool(((after_q == task.noise_token).sum(1) != 1).any()):
            raise ValueError("tokens: the noise token must follow the trigger (the (q, τ) pair)")
    counts = torch.zeros(B, N, dtype=torch.float64)
    counts.scatter_add_(1, tokens, torch.ones(B, H, dtype=torch.float64))
    counts[torch.arange(B), y] -= 1.0  # y's own position is the one scoring ℓ
    n_q = counts.gather(1, q[:, None]).squeeze(1)
    m = torch.full((B,), float(want - 1), dtype=torch.float64)
    return SequenceCounts(y=y, q=q, n=counts, n_q=n_q, m=m, seq_len=H)


def _logits_from_counts(
    task: RecallTask,
    c: SequenceCounts,
    lam: torch.Tensor,
    *,
    scaled: bool,
    kappa: int,
    gamma: float,
) -> Logits:
    B, N = c.n.shape
    rows = torch.arange(B)
    score = lam if task.noisy else lam[c.q]  # ℓ per sequence (noisy: a scalar)
    a_star, eps = softmax_weights(score, c.seq_len)
    a_star = a_star.expand(B) if a_star.dim() == 0 else a_star
    eps = eps.expand(B) if eps.dim() == 0 else eps
    if scaled:
        val = lam if task.noisy else lam.mean()
    else:
        val = torch.ones((), dtype=torch.float64)
    xi_A = val * eps[:, None] * c.n
    xi_A[rows, c.y] += val * a_star
    xi_F = torch.zeros(B, N, dtype=torch.float64)
    if task.noisy:
        if kappa:
            xi_F[:, task.noise_token] = gamma * (1 + eps * c.n_q) + val * (a_star + eps * c.m)
        else:
            xi_F[:, task.noise_token] = gamma + lam
    return Logits(xi_A + xi_F, xi_A, xi_F)


# ------------------------------------------------------------------ closed forms
def softmax_logits(
    task: RecallTask,
    tokens: torch.Tensor,
    Lambda,
    *,
    scaled: bool = True,
    kappa: int = 1,
    gamma: float | None = None,
    alpha_hat: float | None = None,
) -> Logits:
    """Per-sequence closed-form logits of the softmax construction (the book's [D]), float64.

    Computed from token counts (see the module docstring), independently of the network:
    ``ξ_A[j] = c (a* 1[j=y] + ε n_j)``, ``ξ_F[τ] = γ(1 + κ ε n_q) + κ c (a* + ε m)``
    (``κ = 0``: ``γ + Λ``), with ``c = Λ`` (noiseless ``mean(λ)``) when ``scaled`` else 1.

    Parameters
    ----------
    tokens : LongTensor ``[B, H]`` sampled as in the model page §1 (ID or OOD outputs).
    Lambda : ``Λ`` (noisy); noiseless: a shared ``λ`` or the vector ``λ ∈ R^{|Q|}``.
    scaled : the book's ``V = Λ I`` (True) or the paper's ``V = I`` (False).
    kappa : 0 or 1.
    gamma, alpha_hat : as in :func:`icl.construction.construct`.
    """
    check_task(task)
    check_bool("scaled", scaled)
    kappa = check_kappa(kappa)
    lam = _check_scale(task, Lambda)
    g = resolve_gamma(task.alpha, gamma, alpha_hat)
    counts = sequence_counts(task, tokens)
    return _logits_from_counts(task, counts, lam, scaled=scaled, kappa=kappa, gamma=g)


def _monte_carlo(
    task: RecallTask,
    Lambda,
    what: str,
    *,
    batch: RecallBatch | None,
    n_samples: int,
    seed: int | None,
    scaled: bool,
    kappa: int,
    gamma: float | None,
    alpha_hat: float | None,
    ood: bool,
    max_bytes: float = DEFAULT_MAX_BYTES,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> np.ndarray | float:
    task = check_task(task)
    check_bool("scaled", scaled)
    kappa = check_kappa(kappa)
    g = resolve_gamma(task.alpha, gamma, alpha_hat)
    check_bool("ood", ood)
    lams = check_finite_array("Lambda", Lambda)
    check_budget("Lambda", lams.size, check_int("max_steps", max_steps, minimum=1),
                 unit="values", keyword="max_steps")
    max_bytes = check_real("max_bytes", max_bytes, low=0.0, low_open=True, finite=False)
    if batch is None:
        n_samples = check_int("n_samples", n_samples, minimum=1)
        if seed is not None:
            check_seed("seed", seed)
        # the sampler's tokens plus the float64 counts [B, N] and logits [B, N]
        check_budget("n_samples", n_samples * (17 * task.seq_len + 40 * task.vocab_size),
                     max_bytes)
        batch = task.sample(n_samples, generator=make_generator(seed), ood=ood)
    else:
        check_batch("batch", batch, task)
    counts = sequence_counts(task, batch.tokens)
    out = np.empty(lams.shape, dtype=np.float64)
    fn = expected_losses if what == "loss" else expected_excess
    for idx, lam in np.ndenumerate(lams):
        xi = _logits_from_counts(
            task, counts, _check_scale(task, float(lam)), scaled=scaled, kappa=kappa, gamma=g
        ).xi
        out[idx] = float(fn(task, xi, counts.y).mean())
    return float(out) if out.ndim == 0 else out


def softmax_loss(
    task: RecallTask,
    Lambda,
    *,
    batch: RecallBatch | None = None,
    n_samples: int = 4096,
    seed: int | None = 0,
    scaled: bool = True,
    kappa: int = 1,
    gamma: float | None = None,
    alpha_hat: float | None = None,
    ood: bool = False,
    max_bytes: float = DEFAULT_MAX_BYTES,
    max_steps: int = _MAX_LAMBDAS,
) -> np.ndarray | float:
    """Monte-Carlo expected loss of the softmax construction at each ``Λ`` of ``Lambda``.

    One batch (``batch``, or ``n_samples`` fresh sequences drawn with ``seed``) is shared
    by every ``Λ``; each context contributes its exact expected loss over the target
    (:func:`icl.losses.expected_losses`), computed from the closed-form logits. Returns an array
    shaped like ``Lambda`` (noiseless: ``Lambda`` holds shared ``λ`` values), or a float.
    ``max_bytes`` (default 2 GiB) bounds the memory of the ``n_samples`` sequences,
    ``max_steps`` (default ``10**5``) the number of ``Λ`` values.
    """
    return _monte_carlo(
        task,
        Lambda,
        "loss",
        batch=batch,
        n_samples=n_samples,
        seed=seed,
        scaled=scaled,
        kappa=kappa,
        gamma=gamma,
        alpha_hat=alpha_hat,
        ood=ood,
        max_bytes=max_bytes,
        max_steps=max_steps,
    )


def softmax_excess(
    task: RecallTask,
    Lambda,
    *,
    batch: RecallBatch | None = None,
    n_samples: int = 4096,
    seed: int | None = 0,
    scaled: bool = True,
    kappa: int = 1,
    gamma: float | None = None,
    alpha_hat: float | None = None,
    ood: bool = False,
    max_bytes: float = DEFAULT_MAX_BYTES,
    max_steps: int = _MAX_LAMBDAS,
) -> np.ndarray | float:
    """Monte-Carlo expected excess ``L(Λ) - H_b(α)``, each context's term computed stably
    (:func:`icl.losses.expected_excess`); same arguments as :func:`softmax_loss`."""
    return _monte_carlo(
        task,
        Lambda,
        "excess",
        batch=batch,
        n_samples=n_samples,
        seed=seed,
        scaled=scaled,
        kappa=kappa,
        gamma=gamma,
        alpha_hat=alpha_hat,
        ood=ood,
        max_bytes=max_bytes,
        max_steps=max_steps,
    )


# ------------------------------------------------------------------ asymptotics
def softmax_excess_limit(task: RecallTask) -> float:
    """``lim_{Λ→∞} e^Λ (L(Λ) - H_b(α))`` of the scaled construction: ``(N-2)(1-α)`` noisy,
    ``N-1`` noiseless (shared ``λ``). The same constant as for linear attention."""
    return check_task(task).rate_constant


def softmax_excess_bounds(
    task: RecallTask, Lambda
) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
    """Deterministic two-sided bounds on the excess of the scaled softmax construction.

    Valid for every sequence of the sampler (so for the expected loss), ``κ = 1``,
    ``γ = log(α/(1-α))``, shared ``λ = Λ > 0`` when noiseless (the book's [D], proof in the
    module docstring). Vectorised over ``Lambda``; both bounds times ``e^Λ`` tend to
    :func:`softmax_excess_limit`.
    """
    task = check_task(task)
    lam = check_finite_array("Lambda", Lambda)
    if np.any(lam <= 0):
        raise ValueError(f"Lambda must be finite and > 0, got {Lambda!r}")
    N, H, a = task.vocab_size, task.seq_len, task.alpha
    eps = np.exp(-lam) / (1.0 + (H - 1) * np.exp(-lam))
    if task.noisy:
        g = abs(task.gamma)
        dbar = (lam * (H + 2) + 3.0 * g) * eps
        lower = np.log1p((1 - a) * (N - 2) * np.exp(-lam * (1 + H * eps) - dbar))
        upper = (1 - a) * (N - 2) * np.exp(-lam + lam * (2 * H - 1) * eps + a * dbar)
        upper = upper + dbar**2 / 8.0
    else:
        lower = np.log1p((N - 1) * np.exp(-lam * (1 + H * eps)))
        upper = (N - 1) * np.exp(-lam + lam * (2 * H - 1) * eps)
    if lam.ndim == 0:
        return float(lower), float(upper)
    return lower, upper


def unscaled_logit_bound(task: RecallTask, gamma: float | None = None) -> float:
    """Bound on ``max_j |ξ_j|`` of the unscaled (``V = I``, κ = 1) softmax construction.

    ``ξ_A[j] = Σ_h a_h 1[z_h = j] ≤ 1``; ``ξ_F[τ] = γ (x_H + A)_{E(q)} + (x_H + A)_{Ẽ(q)}``
    with both coordinates of ``x_H + A`` in ``[0, 2]``: ``|ξ_j| ≤ 1 + 2(|γ| + 1)`` noisy,
    ``≤ 1`` noiseless, whatever ``Λ``.
    """
    g = resolve_gamma(check_task(task).alpha, gamma, None)
    return 1.0 + 2.0 * (abs(g) + 1.0) if task.noisy else 1.0


def unscaled_lower_bound(task: RecallTask) -> float:
    """Lower bound on the loss of the unscaled softmax construction, valid for every ``Λ``.

    ``ξ_j - ξ_y ≥ -1`` for ``j ∉ {y, τ}`` gives ``S ≥ (N-2)/e``; minimising
    ``log(1 + S + e^d) - α d`` over ``d = ξ_τ - ξ_y`` gives
    ``H_b(α) + (1-α) log(1 + (N-2)/e)`` (noiseless: ``log(1 + (N-1)/e)``), strictly above
    the Bayes risk (the book's [D]).
    """
    N = check_task(task).vocab_size
    if task.noisy:
        return binary_entropy(task.alpha) + (1 - task.alpha) * math.log1p((N - 2) / math.e)
    return math.log1p((N - 1) / math.e)


def keyquery_gap_bound(task: RecallTask) -> float:
    """Largest smallest score gap a key–query matrix of unit Frobenius norm can give ``y``.

    For any ``W``, let ``g(W)`` be the smallest gap ``s_y - s_h = x_H^T W (x_y - x_h)``
    between the position holding ``y`` and another position, over every context the
    sampler can draw. Two kinds of position suffice (the book's [D], the chapter on open
    questions §7.4): a filler position that holds ``y`` itself after a filler token ``p``
    (gap ``x_H^T W (Ẽ(q) - Ẽ(p))``) and, noisy, the ``τ`` position (gap
    ``x_H^T W (E(y) - E(τ))``), with ``x_H = E(q) + Ẽ(f)``, ``f`` the filler token before
    the last position. The smallest gap is at most their average over ``f, p`` uniform on
    the ``n_f`` filler tokens and ``y`` uniform on ``O``; Cauchy–Schwarz then gives
    ``g(W) ≤ c ‖W‖_F`` with::

        noisy:      c = ½ √(1 + 1/n_f) √(2 + 1/n_f + 1/|O|),
        noiseless:  c = 1 + 1/n_f                        (the ``y``-filler positions only).

    Default task (``n_f = 54``, ``|O| = 4``): ``c ≈ 0.760`` noisy. The scalar model
    ``W = Λ E(q)(Ẽ(q) - E(τ))^T`` has gap ``Λ`` for a step of length ``η`` in ``Λ``; a
    matrix trained entry by entry by normalised steps has ``‖W_t‖_F ≤ ηt``, so its
    smallest gap grows by at most ``c η`` per step.
    """
    check_task(task)
    n_f = int(task.filler.numel())
    if task.noisy:
        return 0.5 * math.sqrt(1 + 1 / n_f) * math.sqrt(2 + 1 / n_f + 1 / task.n_outputs)
    return 1 + 1 / n_f


def softmax_unscaled_floor(task: RecallTask) -> float:
    """Limit ``Λ → ∞`` of the loss of the construction with softmax attention and ``V = I``.

    The weights concentrate on the position of ``y``, so ``A → E(y) + Ẽ(q)`` and the
    logits saturate at ``ξ_y = 1`` (and ``ξ_τ = γ + 1``): the loss tends to the linear
    formula at ``Λ = 1``, strictly above the Bayes risk (the book's [D]).
    """
    return closed_form_loss(check_task(task), 1.0)
