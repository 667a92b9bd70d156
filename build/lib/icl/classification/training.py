"""Training ``W`` by gradient descent: the loss as a logistic regression in ``vec W``.

Because ``ŷ = b_N^⊤ W x_q = ⟨W, b_N x_q^⊤⟩`` is linear in ``W``, the population loss

``L_N(W) = E log(1 + exp(-y_q ŷ))``

is a logistic regression in ``w = vec W`` with feature ``φ = vec(b_N x_q^⊤)`` (with ``c``
classes, a multinomial one with features ``Φ_k = vec(B_{N,k} x_q^⊤)``). It is convex with
Hessian ``H(W) = E[σ(ŷ)σ(-ŷ) φ φ^⊤]``, and ``ℓ``-smooth with ``ℓ = λ_max(E φφ^⊤)/4``
(the largest value of ``σσ'`` is ``1/4``, at ``ŷ = 0``; with ``c`` classes
``ℓ = λ_max(E Σ_k Φ_k Φ_k^⊤)/2``, since ``λ_max(diag p - p p^⊤) ≤ 1/2``).

Everything here works on a fixed pool of prompts (an empirical loss; ``vec`` is
row-major, so ``w = W.reshape(-1)``), in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from icl.rates import RateFit, fit_rate
from icl.validate import (
    InvalidTypeError,
    check_budget,
    check_finite_array,
    check_int,
    check_real,
    check_tensor,
)

from .data import DTYPE, Statistics

__all__ = [
    "Features",
    "GDHistory",
    "ScaleFit",
    "features",
    "fit_contraction",
    "fit_scale",
    "gradient",
    "gradient_descent",
    "hessian",
    "loss",
    "newton",
    "sandwich_covariance",
    "smoothness",
]


@dataclass(frozen=True, eq=False)
class Features:
    """A pool of prompts as a regression: ``phi`` (P, d²) with ``y = ±1`` (P,) for two
    classes, or ``phi`` (P, c, d²) with class indices ``y`` (P,) for ``c`` classes."""

    phi: torch.Tensor
    y: torch.Tensor

    @property
    def n_classes(self) -> int:
        """``c`` (2 for the binary, ``±1``-coded pool)."""
        return 2 if self.phi.dim() == 2 else int(self.phi.shape[1])

    @property
    def d(self) -> int:
        """The input dimension ``d`` (``phi`` holds ``d²`` columns)."""
        return math.isqrt(int(self.phi.shape[-1]))


def features(stats: Statistics) -> Features:
    """``φ = vec(b_N x_q^⊤)`` and ``y_q = ±1`` (binary), or ``Φ_k = vec(B_{N,k} x_q^⊤)``."""
    if not isinstance(stats, Statistics):
        raise InvalidTypeError(f"stats must be Statistics, got {type(stats).__name__}")
    b, xq = stats.b, stats.xq
    if b.dim() == 2:
        phi = torch.einsum("pi,pj->pij", b, xq).reshape(b.shape[0], -1)
        return Features(phi=phi, y=2.0 * stats.yq.to(DTYPE) - 1.0)
    phi = torch.einsum("pki,pj->pkij", b, xq).reshape(b.shape[0], b.shape[1], -1)
    return Features(phi=phi, y=stats.yq.clone())


def _check(w: torch.Tensor, feats: Features) -> torch.Tensor:
    if not isinstance(feats, Features):
        raise InvalidTypeError(f"feats must be Features, got {type(feats).__name__}")
    d = feats.d
    w = check_tensor("W", w, shape=(d, d), kind="float", finite=True)
    return w.to(DTYPE).reshape(-1)


def _logits(w: torch.Tensor, feats: Features) -> torch.Tensor:
    return feats.phi @ w


def loss(w: torch.Tensor, feats: Features) -> float:
    """The empirical loss: mean ``log(1 + e^{-y ŷ})``, or the mean cross-entropy."""
    v = _check(w, feats)
    z = _logits(v, feats)
    if feats.n_classes == 2 and feats.phi.dim() == 2:
        return float(torch.nn.functional.softplus(-feats.y * z).mean())
    return float(torch.nn.functional.cross_entropy(z, feats.y))


def gradient(w: torch.Tensor, feats: Features) -> torch.Tensor:
    """``∇L(W)`` as a ``d × d`` matrix (closed form, no autograd)."""
    v = _check(w, feats)
    z = _logits(v, feats)
    if feats.phi.dim() == 2:
        coef = -feats.y * torch.sigmoid(-feats.y * z)
        g = feats.phi.T @ coef / feats.phi.shape[0]
    else:
        p = torch.softmax(z, dim=1)
        p[torch.arange(p.shape[0]), feats.y] -= 1.0
        g = torch.einsum("pk,pkm->m", p, feats.phi) / feats.phi.shape[0]
    return g.reshape(feats.d, feats.d)


def hessian(w: torch.Tensor, feats: Features) -> torch.Tensor:
    """``H(W) = Ê[σ(ŷ)σ(-ŷ) φφ^⊤]`` (or ``Ê[Φ^⊤(diag p - pp^⊤)Φ]``), shape ``(d², d²)``."""
    v = _check(w, feats)
    z = _logits(v, feats)
    n = feats.phi.shape[0]
    if feats.phi.dim() == 2:
        s = torch.sigmoid(z) * torch.sigmoid(-z)
        return (feats.phi * s[:, None]).T @ feats.phi / n
    p = torch.softmax(z, dim=1)
    pphi = torch.einsum("pk,pkm->pm", p, feats.phi)
    diag = torch.einsum("pk,pkm,pkl->ml", p, feats.phi, feats.phi)
    return (diag - pphi.T @ pphi) / n


def smoothness(feats: Features) -> float:
    """``ℓ = λ_max(Ê φφ^⊤)/4`` (binary) or ``λ_max(Ê Σ_k Φ_kΦ_k^⊤)/2``: ``H(W) ⪯ ℓ I``."""
    if not isinstance(feats, Features):
        raise InvalidTypeError(f"feats must be Features, got {type(feats).__name__}")
    n = feats.phi.shape[0]
    if feats.phi.dim() == 2:
        return float(torch.linalg.eigvalsh(feats.phi.T @ feats.phi / n)[-1]) / 4.0
    gram = torch.einsum("pkm,pkl->ml", feats.phi, feats.phi) / n
    return float(torch.linalg.eigvalsh(gram)[-1]) / 2.0


def newton(
    feats: Features, *, w0: torch.Tensor | None = None, tol: float = 1e-13, max_iter: int = 50
) -> torch.Tensor:
    """The minimiser ``Ŵ`` of the empirical loss by Newton's method (with halving steps).

    Stops when the Newton decrement's step is below ``tol`` in Frobenius norm.
    """
    if not isinstance(feats, Features):
        raise InvalidTypeError(f"feats must be Features, got {type(feats).__name__}")
    tol = check_real("tol", tol, low=0.0, low_open=True)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    d = feats.d
    w = torch.zeros(d, d, dtype=DTYPE) if w0 is None else _check(w0, feats).reshape(d, d)
    f = loss(w, feats)
    for _ in range(max_iter):
        g = gradient(w, feats).reshape(-1)
        h = hessian(w, feats)
        step = torch.linalg.solve(h, g).reshape(d, d)
        t = 1.0
        while t > 1e-8:
            cand = w - t * step
            fc = loss(cand, feats)
            if fc <= f + 1e-15 * abs(f):
                break
            t /= 2
        w, f = cand, fc
        if float(torch.linalg.norm(t * step)) < tol:
            return w
    raise RuntimeError(f"Newton's method did not converge in {max_iter} iterations")


@dataclass(frozen=True)
class GDHistory:
    """A gradient-descent run: ``steps`` (0 … T), ``losses``, ``distances``
    ``‖W_t - W_ref‖_F`` (empty without a reference) and the last iterate ``w``."""

    steps: np.ndarray
    losses: np.ndarray
    distances: np.ndarray
    w: torch.Tensor
    lr: float


def gradient_descent(
    feats: Features,
    lr: float,
    steps: int,
    *,
    w0: torch.Tensor | None = None,
    w_ref: torch.Tensor | None = None,
    max_steps: int = 1_000_000,
) -> GDHistory:
    """Full-batch GD ``W_{t+1} = W_t - η ∇L(W_t)`` from ``W_0`` (default ``0``)."""
    if not isinstance(feats, Features):
        raise InvalidTypeError(f"feats must be Features, got {type(feats).__name__}")
    lr = check_real("lr", lr, low=0.0, low_open=True)
    steps = check_int("steps", steps, minimum=1)
    check_budget("steps", steps, max_steps, unit="steps", keyword="max_steps")
    d = feats.d
    w = torch.zeros(d, d, dtype=DTYPE) if w0 is None else _check(w0, feats).reshape(d, d)
    ref = None if w_ref is None else _check(w_ref, feats).reshape(d, d)
    losses, dists = [loss(w, feats)], []
    if ref is not None:
        dists.append(float(torch.linalg.norm(w - ref)))
    for _ in range(steps):  # a loop over steps; each step is vectorised over the pool
        w = w - lr * gradient(w, feats)
        losses.append(loss(w, feats))
        if ref is not None:
            dists.append(float(torch.linalg.norm(w - ref)))
    return GDHistory(
        steps=np.arange(steps + 1, dtype=np.float64),
        losses=np.asarray(losses),
        distances=np.asarray(dists),
        w=w,
        lr=lr,
    )


def fit_contraction(
    history: GDHistory, window: tuple[float, float], *, floor: float = 1e-11
) -> tuple[float, RateFit]:
    """The fitted factor ``ρ̂ = exp(slope)`` of ``log ‖W_t - Ŵ‖_F`` over ``window``."""
    if not isinstance(history, GDHistory):
        raise InvalidTypeError(f"history must be a GDHistory, got {type(history).__name__}")
    if history.distances.size == 0:
        raise ValueError("history has no distances: run gradient_descent with w_ref")
    arr = check_finite_array("window", window)
    if arr.shape != (2,) or not arr[0] < arr[1]:
        raise ValueError(f"window must be (t_min, t_max) with t_min < t_max, got {window!r}")
    floor = check_real("floor", floor, low=0.0, low_open=True)
    fit = fit_rate(history.steps, history.distances, 0.0, window=(float(arr[0]), float(arr[1])),
                   min_excess=floor)
    return math.exp(fit.slope), fit


@dataclass(frozen=True)
class ScaleFit:
    """The best scale ``α̂`` of ``W = α Λ^{-1}`` on a pool, with its standard error."""

    alpha: float
    stderr: float
    n: int


def fit_scale(stats: Statistics, cov_inv: torch.Tensor, *, tol: float = 1e-12) -> ScaleFit:
    """Minimise the empirical loss over ``W = α Λ^{-1}`` (a 1-D Newton), with the
    sandwich standard error ``sd(score)/(√n · |mean Hessian|)``."""
    if not isinstance(stats, Statistics):
        raise InvalidTypeError(f"stats must be Statistics, got {type(stats).__name__}")
    tol = check_real("tol", tol, low=0.0, low_open=True)
    d = stats.xq.shape[1]
    cov_inv = check_tensor("cov_inv", cov_inv, shape=(d, d), kind="float", finite=True)
    lam_x = stats.xq @ cov_inv.to(DTYPE)
    if stats.b.dim() == 2:
        s = (stats.b * lam_x).sum(1) * (2.0 * stats.yq.to(DTYPE) - 1.0)  # margin per unit α
    else:
        s = torch.einsum("pkd,pd->pk", stats.b, lam_x)
    alpha = 1.0
    for _ in range(100):
        score, curv = _scale_derivatives(alpha, s, stats.yq)
        step = float(score.mean() / curv.mean())
        alpha = max(alpha - step, alpha / 2)
        if abs(step) < tol:
            break
    else:
        raise RuntimeError("fit_scale: Newton's method did not converge")
    score, curv = _scale_derivatives(alpha, s, stats.yq)
    n = s.shape[0]
    se = float(score.std() / (math.sqrt(n) * abs(float(curv.mean()))))
    return ScaleFit(alpha=alpha, stderr=se, n=n)


def _scale_derivatives(alpha: float, s: torch.Tensor, yq: torch.Tensor):
    if s.dim() == 1:
        return -s * torch.sigmoid(-alpha * s), s * s * torch.sigmoid(alpha * s) * torch.sigmoid(
            -alpha * s
        )
    p = torch.softmax(alpha * s, dim=1)
    mean_s = (p * s).sum(1)
    score = mean_s - s[torch.arange(s.shape[0]), yq]
    curv = (p * s * s).sum(1) - mean_s**2
    return score, curv


def sandwich_covariance(w: torch.Tensor, feats: Features) -> torch.Tensor:
    """Covariance of ``vec Ŵ`` over pools: ``H^{-1} Ĉov(∇ℓ) H^{-1} / P`` (``d² × d²``), the
    sandwich estimate of how far the pool's minimiser falls from the population one."""
    v = _check(w, feats)
    z = _logits(v, feats)
    n = feats.phi.shape[0]
    if feats.phi.dim() == 2:
        per = (-feats.y * torch.sigmoid(-feats.y * z))[:, None] * feats.phi
    else:
        p = torch.softmax(z, dim=1)
        p[torch.arange(n), feats.y] -= 1.0
        per = torch.einsum("pk,pkm->pm", p, feats.phi)
    per = per - per.mean(0)
    h_inv = torch.linalg.inv(hessian(w, feats))
    return h_inv @ (per.T @ per / n) @ h_inv / n
