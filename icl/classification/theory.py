"""Closed forms and quadratures: the Bayes classifier, the optimal scale ``α_N``, errors.

All of it is the book's own derivation [D] for its reconstruction of the setting.

* **Bayes classifier.** With priors ``π_k``, ``P(y = k | x) = softmax_k(μ_k^⊤Λ^{-1}x -
  ½ μ_k^⊤Λ^{-1}μ_k + log π_k)``; binary: ``σ(β^⊤x + β_0)``, ``β = Λ^{-1}(μ_1 - μ_0)``.
  Under the generator (equal norms, equal priors) ``β_0 = 0`` and the true-class
  log-odds ``L`` is ``N(r², 2r²)`` in every dimension.
* **Global minimiser.** ``L_N`` is invariant under ``W ↦ Λ^{-1/2}RΛ^{1/2} W Λ^{1/2}R^⊤Λ^{-1/2}``
  for every orthogonal ``R`` and strictly convex, so ``W*(N) = α_N Λ^{-1}``;
  :func:`optimal_scale` computes ``α_N`` by deterministic quadrature, and
  :func:`scale_coefficient` the ``1/N`` coefficient ``a`` of ``α_N = 2 + a/N + O(N^{-2})``.
* **Inference error** ``E_{N,M} = E TV(p̂, p)`` (``= E|σ(ŷ_M) - P(y_q = +1 | x_q)|`` for two
  classes). At ``M = ∞`` the model's logit is ``(α_N/2) L``, so :func:`error_limit` is a
  one-dimensional integral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.special import expit, log_expit, roots_genlaguerre, roots_hermitenorm
from scipy.stats import binom, norm

from icl.validate import (
    InvalidTypeError,
    check_finite_array,
    check_int,
    check_real,
    check_tensor,
)

from .data import DTYPE, MixtureTask, generator, sample_means, sample_statistics
from .model import logits as model_logits

__all__ = [
    "ALPHA_REFERENCE",
    "ALPHA_REFERENCE_C3",
    "BAYES_REFERENCE",
    "C_SCALING_REFERENCE",
    "SCALE_COEFFICIENT_REFERENCE",
    "Evaluation",
    "bayes_accuracy",
    "bayes_cross_entropy",
    "bayes_logits",
    "bayes_posterior",
    "bias_free_accuracy",
    "bias_free_error_limit",
    "ce_excess_limit",
    "density_posterior",
    "error_limit",
    "evaluate",
    "fixed_rule_accuracy",
    "optimal_scale",
    "rate_factor",
    "scale_coefficient",
    "squared_loss_scale",
    "unequal_norm_bias",
]

#: ``α_N`` (binary, ``d = 3``, ``r = 1.5``) by an independent Monte-Carlo computation,
#: precision ±0.005: the reference the quadrature is checked against
ALPHA_REFERENCE: dict[int, float] = {
    2: 0.493, 4: 0.820, 8: 1.194, 16: 1.511, 32: 1.728, 64: 1.859, 128: 1.926, 256: 1.964,
}
#: the same with ``c = 3`` classes (limit ``3``), precision ±0.005
ALPHA_REFERENCE_C3: dict[int, float] = {
    3: 0.683, 6: 1.161, 12: 1.713, 24: 2.209, 48: 2.562, 96: 2.765, 192: 2.879,
}
#: ``N(1 - α_N/c)`` at ``d = 6``, ``N = 240`` for ``c = 2..6`` (Monte Carlo, ±0.005 in ``α``)
C_SCALING_REFERENCE: dict[int, float] = {2: 7.3, 3: 11.5, 4: 15.9, 5: 20.5, 6: 25.2}
#: ``a`` of ``α_N = 2 + a/N`` at ``d = 3``, ``r = 1.5``: (value, Monte-Carlo precision)
SCALE_COEFFICIENT_REFERENCE: tuple[float, float] = (-9.544, 0.012)
#: Bayes accuracy and cross-entropy at ``r = 1.5``, by number of classes
BAYES_REFERENCE: dict[int, tuple[float, float]] = {2: (0.8556, 0.329), 3: (0.7658, 0.565)}


def _gh(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes and weights for ``E f(Z)``, ``Z ~ N(0, 1)``."""
    x, w = roots_hermitenorm(n)
    return x, w / w.sum()


def _chi2_nodes(dof: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``E f(T)``, ``T ~ χ²_dof`` (generalised Gauss–Laguerre)."""
    if dof == 0:
        return np.zeros(1), np.ones(1)
    t, w = roots_genlaguerre(n, dof / 2 - 1)
    return 2 * t, w / w.sum()


# ------------------------------------------------------------------ Bayes classifier


def _prior_logs(priors, c: int) -> torch.Tensor:
    if priors is None:
        return torch.full((c,), -math.log(c), dtype=DTYPE)
    arr = check_finite_array("priors", priors, low=0.0)
    if arr.shape != (c,) or (arr <= 0).any() or abs(arr.sum() - 1) > 1e-12:
        raise ValueError(f"priors must be {c} positive numbers summing to 1, got {priors!r}")
    return torch.tensor(np.log(arr), dtype=DTYPE)


def bayes_logits(
    means: torch.Tensor, cov_inv: torch.Tensor, x: torch.Tensor, priors=None
) -> torch.Tensor:
    """``μ_k^⊤Λ^{-1}x - ½ μ_k^⊤Λ^{-1}μ_k + log π_k``, shape ``(B, c)``."""
    means = check_tensor("means", means, ndim=3, kind="float", finite=True).to(DTYPE)
    b, c, d = means.shape
    x = check_tensor("x", x, shape=(b, d), kind="float", finite=True).to(DTYPE)
    cov_inv = check_tensor("cov_inv", cov_inv, shape=(d, d), kind="float", finite=True)
    lm = means @ cov_inv.to(DTYPE)
    return (
        torch.einsum("bkd,bd->bk", lm, x)
        - 0.5 * (lm * means).sum(-1)
        + _prior_logs(priors, c)
    )


def bayes_posterior(
    means: torch.Tensor, cov_inv: torch.Tensor, x: torch.Tensor, priors=None
) -> torch.Tensor:
    """``P(y = k | x, task)``, shape ``(B, c)`` (closed form)."""
    return torch.softmax(bayes_logits(means, cov_inv, x, priors), dim=1)


def density_posterior(
    means: torch.Tensor, cov: torch.Tensor, x: torch.Tensor, priors=None
) -> torch.Tensor:
    """``π_k p_k(x) / Σ_j π_j p_j(x)`` from the Gaussian densities themselves (the
    independent reference for :func:`bayes_posterior`)."""
    means = check_tensor("means", means, ndim=3, kind="float", finite=True).to(DTYPE)
    b, c, d = means.shape
    x = check_tensor("x", x, shape=(b, d), kind="float", finite=True).to(DTYPE)
    cov = check_tensor("cov", cov, shape=(d, d), kind="float", finite=True).to(DTYPE)
    dist = torch.distributions.MultivariateNormal(means, covariance_matrix=cov)
    logp = dist.log_prob(x.unsqueeze(1)) + _prior_logs(priors, c)
    return torch.softmax(logp, dim=1)


def bayes_accuracy(r: float, n_classes: int = 2, *, nodes: int = 200) -> float:
    """Bayes accuracy ``∫ φ(z) Φ(z + r)^{c-1} dz`` (``= Φ(r/√2)`` for two classes)."""
    r = check_real("r", r, low=0.0, low_open=True)
    c = check_int("n_classes", n_classes, minimum=2)
    z, w = _gh(check_int("nodes", nodes, minimum=2))
    return float(np.sum(w * norm.cdf(z + r) ** (c - 1)))


def bayes_cross_entropy(r: float, n_classes: int = 2, *, nodes: int = 40) -> float:
    """Bayes cross-entropy ``E log(1 + Σ_{j≠k} exp(r(z_j - z_k) - r²))`` (true class
    ``k``), by a ``c``-dimensional Gauss–Hermite rule (``c ≤ 4``)."""
    r = check_real("r", r, low=0.0, low_open=True)
    c = check_int("n_classes", n_classes, minimum=2, maximum=4)
    n = check_int("nodes", nodes, minimum=2, maximum=200)
    z, w = _gh(n)
    if c == 2:  # L = r² + √2 r z
        return float(np.sum(w * -log_expit(r * r + math.sqrt(2) * r * z)))
    grids = np.meshgrid(*([z] * c), indexing="ij")
    weights = np.prod(np.meshgrid(*([w] * c), indexing="ij"), axis=0)
    zk = grids[0]
    others = sum(np.exp(r * (g - zk) - r * r) for g in grids[1:])
    return float(np.sum(weights * np.log1p(others)))


# ------------------------------------------------------------------ the global minimiser


def optimal_scale(
    length: int | None, *, d: int = 3, r: float = 1.5, nodes: int = 20, tail: float = 1e-15
) -> float:
    """``α_N``: the minimiser ``W*(N) = α_N Λ^{-1}`` of the binary loss, by quadrature.

    In whitened coordinates, with the task rotated to ``ν_0 = r e_1``, ``ν_1 = r e_2``
    and ``y_q = +1`` (both allowed by symmetry), write ``ρ = r/√2`` and use the basis
    ``u = (e_2 - e_1)/√2``, ``w = (e_1 + e_2)/√2``. Given ``n_+`` and ``x̃_q``, the
    logit per unit scale ``s = b̃_N^⊤ x̃_q`` is Gaussian with mean ``ρ x_u + ρ(2n_+/N - 1) x_w``
    and variance ``‖x̃_q‖²/N``. ``α_N`` solves ``E[s σ(-α s)] = 0``: Gauss–Hermite in
    ``x_u, x_w`` and in ``s``, Gauss–Laguerre for ``‖x_⊥‖² ~ χ²_{d-2}``, an exact sum over
    ``n_+ ~ Bin(N, ½)`` (terms below ``tail`` dropped). ``length=None`` gives 2.
    """
    d = check_int("d", d, minimum=2)
    r = check_real("r", r, low=0.0, low_open=True)
    if length is None:
        return 2.0
    n_len = check_int("length", length, minimum=1, maximum=100_000)
    nodes = check_int("nodes", nodes, minimum=4, maximum=60)
    tail = check_real("tail", tail, low=0.0, high=1e-6, low_open=True)
    rho = r / math.sqrt(2)
    z, wz = _gh(nodes)
    g, wg = _gh(max(8, (3 * nodes) // 5))
    chi, wc = _chi2_nodes(d - 2, max(4, nodes // 3))
    n = np.arange(n_len + 1)
    pn = binom.pmf(n, n_len, 0.5)
    keep = pn > tail
    n, pn = n[keep], pn[keep] / pn[keep].sum()
    xu = (rho + z)[:, None, None, None, None]
    xw = (rho + z)[None, :, None, None, None]
    c2 = chi[None, None, :, None, None]
    e = (2 * n / n_len - 1)[None, None, None, :, None]
    s = rho * xu + rho * e * xw + np.sqrt((xu**2 + xw**2 + c2) / n_len) * g
    weight = (
        wz[:, None, None, None, None] * wz[None, :, None, None, None]
        * wc[None, None, :, None, None] * pn[None, None, None, :, None]
        * wg[None, None, None, None, :]
    )
    s, weight = s.ravel(), np.broadcast_to(weight, s.shape).ravel()

    ws, ws2 = weight * s, weight * s * s
    lo, hi = 1e-6, 50.0  # the score E[s σ(-α s)] decreases in α: keep a bracket
    alpha = min(2.0, max(0.1, 2.0 + scale_coefficient(d=d, r=r, nodes=40) / n_len))
    for _ in range(100):
        p = expit(-alpha * s)
        score = float(np.sum(ws * p))
        if score > 0:
            lo = alpha
        else:
            hi = alpha
        step = score / float(np.sum(ws2 * p * (1 - p)))
        new = alpha + step
        if not lo < new < hi:
            new = 0.5 * (lo + hi)
        if abs(new - alpha) < 1e-13:
            return float(new)
        alpha = new
    return float(brentq(lambda a: float(np.sum(ws * expit(-a * s))), lo, hi, xtol=1e-13))


def scale_coefficient(*, d: int = 3, r: float = 1.5, nodes: int = 120) -> float:
    """``a`` in ``α_N = 2 + a/N + O(N^{-2})`` (binary).

    ``a = -E[(2 f_2(2s_0) + 2 f_3(2s_0) s_0) q] / E[f_2(2s_0) s_0²]`` with ``s_0 = ρ x_u``
    (half the true log-odds), ``q = ‖x̃_q‖² + (m^⊤x̃_q)²``, ``m = (ν_0 + ν_1)/2``,
    ``f_2 = σ(z)σ(-z)``, ``f_3 = f_2 (1 - 2σ)``: the context statistic fluctuates around
    ``(μ_1 - μ_0)/2`` with covariance ``(I + mm^⊤)/N`` (whitened). Gauss–Hermite in
    ``(x_u, x_w)``; ``E‖x_⊥‖² = d - 2``.
    """
    d = check_int("d", d, minimum=2)
    r = check_real("r", r, low=0.0, low_open=True)
    z, w = _gh(check_int("nodes", nodes, minimum=4, maximum=400))
    rho = r / math.sqrt(2)
    xu, xw = np.meshgrid(rho + z, rho + z, indexing="ij")
    weight = np.outer(w, w)
    s0 = rho * xu
    f2 = expit(2 * s0) * expit(-2 * s0)
    f3 = f2 * (1 - 2 * expit(2 * s0))
    q = xu**2 + xw**2 + (d - 2) + rho**2 * xw**2
    return float(-np.sum(weight * (2 * f2 + 2 * f3 * s0) * q) / np.sum(weight * f2 * s0**2))


# ------------------------------------------------------------------ errors at M = ∞


def _gauss_expect(f, mean: float, sd: float, kinks: tuple[float, ...] = ()) -> float:
    """``E f(X)``, ``X ~ N(mean, sd²)``, by adaptive quadrature split at the kinks of
    ``f`` (Gauss–Hermite converges slowly across a kink of ``|·|``)."""
    def g(x: float) -> float:
        return f(x) * norm.pdf(x, mean, sd)

    edges = [-np.inf, *sorted(kinks), np.inf]
    return float(sum(quad(g, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
                     for a, b in zip(edges[:-1], edges[1:], strict=True)))


def error_limit(alpha: float, *, r: float = 1.5) -> float:
    """``E_{N,∞} = E|σ(α L/2) - σ(L)|``, ``L ~ N(r², 2r²)`` (binary, ``W = α Λ^{-1}``).

    The two curves cross at ``L = 0``: the integral is split there."""
    alpha = check_real("alpha", alpha)
    r = check_real("r", r, low=0.0, low_open=True)
    return _gauss_expect(lambda x: abs(expit(alpha * x / 2) - expit(x)), r * r,
                         math.sqrt(2) * r, (0.0,))


def ce_excess_limit(alpha: float, *, r: float = 1.5, nodes: int = 200) -> float:
    """Cross-entropy excess at ``M = ∞``: ``E KL(Ber(σ(L)) ‖ Ber(σ(αL/2)))``."""
    alpha = check_real("alpha", alpha)
    r = check_real("r", r, low=0.0, low_open=True)
    z, w = _gh(check_int("nodes", nodes, minimum=4))
    lo = r * r + math.sqrt(2) * r * z
    p, lm = expit(lo), alpha * lo / 2
    kl = p * (log_expit(lo) - log_expit(lm)) + (1 - p) * (log_expit(-lo) - log_expit(-lm))
    return float(np.sum(w * kl))


def squared_loss_scale(r: float) -> float:
    """``β = 2/(2 + r²)``: the minimiser ``βΛ^{-1}`` of the squared loss at ``N = ∞``.

    With ``W = βΛ^{-1}`` the output is ``ŷ = (β/2) L'`` with ``y_q L' ~ N(r², 2r²)``, so
    ``E(y_q - ŷ)² = 1 - βr² + (β²/4)(2r² + r⁴)``, minimal at ``β = 2/(2 + r²)`` (the book's
    [D]; the logistic loss gives ``2``).
    """
    r = check_real("r", r, low=0.0, low_open=True)
    return 2.0 / (2.0 + r * r)


def unequal_norm_bias(r: float, ratio: float) -> float:
    """``β_0 = -½(‖ν_1‖² - ‖ν_0‖²) = -½ r²(ratio² - 1)`` for ``‖ν_1‖ = ratio · r``."""
    r = check_real("r", r, low=0.0, low_open=True)
    ratio = check_real("ratio", ratio, low=0.0, low_open=True)
    return -0.5 * r * r * (ratio**2 - 1)


def bias_free_accuracy(r: float, ratio: float) -> tuple[float, float]:
    """(bias-free model, Bayes) accuracies at ``M = ∞`` when ``‖ν_1‖ = ratio · ‖ν_0‖``:
    ``½[Φ(ratio² r²/Δ) + Φ(r²/Δ)]`` and ``Φ(Δ/2)``, ``Δ = r √(1 + ratio²)``."""
    r = check_real("r", r, low=0.0, low_open=True)
    ratio = check_real("ratio", ratio, low=0.0, low_open=True)
    delta = r * math.sqrt(1 + ratio**2)
    model = 0.5 * (norm.cdf(ratio**2 * r * r / delta) + norm.cdf(r * r / delta))
    return float(model), float(norm.cdf(delta / 2))


def bias_free_error_limit(r: float, ratio: float, *, alpha: float = 2.0) -> float:
    """``E_{∞,∞}`` of the bias-free model ``σ(α L'/2)`` against ``σ(L' + β_0)``, where
    ``L' = (ν_1 - ν_0)^⊤ x̃`` is ``N(ratio² r², Δ²)`` or ``N(-r², Δ²)`` by class."""
    b0 = unequal_norm_bias(r, ratio)
    alpha = check_real("alpha", alpha)
    delta = r * math.sqrt(1 + ratio**2)
    kinks = () if alpha == 2 else (b0 / (alpha / 2 - 1),)

    def f(x: float) -> float:
        return abs(expit(alpha * x / 2) - expit(x + b0))

    return 0.5 * sum(_gauss_expect(f, mean, delta, kinks) for mean in (ratio**2 * r * r, -r * r))


# ------------------------------------------------------------------ Monte Carlo


@dataclass(frozen=True)
class Evaluation:
    """Monte-Carlo test metrics of ``W`` on ``n`` prompts of length ``M``: each as
    (mean, standard error). ``error`` is ``E TV(p̂, p)``; ``ce_excess`` the model's
    cross-entropy minus the Bayes posterior's, on the same prompts."""

    error: tuple[float, float]
    accuracy: tuple[float, float]
    bayes_accuracy: tuple[float, float]
    cross_entropy: tuple[float, float]
    ce_excess: tuple[float, float]
    n: int


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def evaluate(
    task: MixtureTask,
    w: torch.Tensor,
    test_length: int | None,
    batch: int,
    seed: int | torch.Generator,
) -> Evaluation:
    """Test ``W`` on fresh prompts of length ``M = test_length`` (``None``: ``M = ∞``),
    drawn with equal class priors, against the Bayes posterior of each prompt's task."""
    if not isinstance(task, MixtureTask):
        raise InvalidTypeError(f"task must be a MixtureTask, got {type(task).__name__}")
    batch = check_int("batch", batch, minimum=2)  # a standard error needs two prompts
    st = sample_statistics(task, test_length, batch, seed)
    y_hat = model_logits(st.b, w, st.xq)
    post = bayes_posterior(st.means, task.cov_inv, st.xq)
    if y_hat.dim() == 1:
        logp = torch.stack([torch.nn.functional.logsigmoid(-y_hat),
                            torch.nn.functional.logsigmoid(y_hat)], dim=1)
    else:
        logp = torch.log_softmax(y_hat, dim=1)
    idx = torch.arange(st.yq.shape[0])
    tv = 0.5 * (logp.exp() - post).abs().sum(1)
    ce = -logp[idx, st.yq]
    ce_bayes = -post[idx, st.yq].log()
    acc = (logp.argmax(1) == st.yq).to(DTYPE)
    bayes_acc = (post.argmax(1) == st.yq).to(DTYPE)
    return Evaluation(
        error=_mean_se(tv),
        accuracy=_mean_se(acc),
        bayes_accuracy=_mean_se(bayes_acc),
        cross_entropy=_mean_se(ce),
        ce_excess=_mean_se(ce - ce_bayes),
        n=int(st.yq.shape[0]),
    )


def fixed_rule_accuracy(
    task: MixtureTask, w: torch.Tensor, batch: int, seed: int | torch.Generator
) -> tuple[float, float]:
    """Accuracy at ``M = ∞`` of ``sign(b_∞^⊤ W x)`` on ``task`` (e.g. a shifted ``Λ'``).

    Given the task, ``β = W^⊤ b_∞`` and the accuracy is ``½[Φ(β^⊤μ_1/s) + Φ(-β^⊤μ_0/s)]``,
    ``s² = β^⊤Λ'β`` (exact); averaged over ``batch`` tasks: (mean, standard error).
    """
    if not isinstance(task, MixtureTask):
        raise InvalidTypeError(f"task must be a MixtureTask, got {type(task).__name__}")
    if task.n_classes != 2:
        raise ValueError(f"task must have two classes, got n_classes = {task.n_classes}")
    w = check_tensor("W", w, shape=(task.d, task.d), kind="float", finite=True).to(DTYPE)
    means = sample_means(task, check_int("batch", batch, minimum=2), generator(seed))
    beta = (0.5 * (means[:, 1] - means[:, 0])) @ w
    s = torch.sqrt(torch.einsum("bi,ij,bj->b", beta, task.cov, beta))
    p1 = torch.special.ndtr((beta * means[:, 1]).sum(1) / s)
    p0 = torch.special.ndtr(-(beta * means[:, 0]).sum(1) / s)
    return _mean_se(0.5 * (p1 + p0))


def rate_factor(lr: float, hess: torch.Tensor) -> float:
    """The predicted asymptotic contraction of GD, ``ρ = 1 - η λ_min(H(W*))``."""
    lr = check_real("lr", lr, low=0.0, low_open=True)
    hess = check_tensor("hess", hess, ndim=2, kind="float", finite=True)
    if hess.shape[0] != hess.shape[1] or hess.shape[0] == 0:
        raise ValueError(f"hess must be a non-empty square matrix, got shape {tuple(hess.shape)}")
    return 1.0 - lr * float(torch.linalg.eigvalsh(hess.to(DTYPE))[0])
