"""The optimal one-layer LSA on in-context regression: the book's derivations [D].

Everything here is derived under the book's normalisation (:mod:`icl.lsa.data`):
prompts of ``n`` examples, ``x ~ N(0, Σ)``, ``w ~ N(m, τ² Σ_w)``, noise ``σ²`` on every
response, the target included. The paper's own constants were not read; these are the
book's.

At a minimiser only the GD part ``v^T Γ x_q`` of the LSA survives (for a prior symmetric
under ``(w, ε) → -(w, ε)``), and the loss of a GD step ``Γ`` is the quadratic

    L(Γ) = E y_q² - 2 tr(Γ^T E[v y_q x_q^T]) + tr(Γ^T E[v v^T] Γ Σ),

whose minimiser is ``Γ* = C^{-1} B Σ^{-1}`` with the moments of :func:`gd_moments`. Closed forms:

* isotropic: ``η* = n / (n + d + 1 + σ²/τ²)``, ``L* = σ² + τ² d (1 - η*)``;
* matched prior ``Σ_w = Σ^{-1}``: ``Γ* = η* Σ^{-1}``, the same ``η*`` and ``L*``;
* i.i.d. coordinates of kurtosis ``κ``: ``η* = n / (n + d - 2 + κ + σ²)`` (``τ² = 1``);
* ReLU targets ``max(u^T x, 0)``, ``u ~ N(0, D)``:
  ``Γ* = n D [(n+3) D + (2 tr D + 4σ²) I]^{-1}``; for ``D = I``,
  ``η_f = n / (n + 2d + 3 + 4σ²)`` and ``L_f* = d/2 + σ² - (d/4) η_f``.

The SymPy functions (``*_sympy``) derive these from Gaussian moments; the Monte-Carlo
functions check them on samples.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import sympy as sp
import torch

from ..validate import check_finite_array, check_int, check_real, check_seed
from .data import Prompts, RegressionTask, as_generator
from .model import gd_step_prediction

__all__ = [
    "bayes_risk_mc",
    "eta_relu",
    "eta_star",
    "gamma_star",
    "gd_loss",
    "gd_moments",
    "isotropic_loss",
    "isotropic_optimum_sympy",
    "kurtosis_eta_star",
    "loss_relu",
    "loss_star",
    "matched_prior_sympy",
    "mc_gd_loss",
    "mc_moment_identity",
    "moment_identity_sympy",
    "relu_step_sympy",
]


# -- closed forms -------------------------------------------------------------------------


def _ndst(n: Any, d: Any, sigma2: Any, tau2: Any) -> tuple[int, int, float, float]:
    return (check_int("n", n, minimum=1), check_int("d", d, minimum=1),
            check_real("sigma2", sigma2, low=0.0),
            check_real("tau2", tau2, low=0.0, low_open=True))


def eta_star(n: int, d: int, sigma2: float = 0.0, tau2: float = 1.0) -> float:
    """``η* = n / (n + d + 1 + σ²/τ²)``: the optimal plain GD step, isotropic data [D]."""
    n, d, sigma2, tau2 = _ndst(n, d, sigma2, tau2)
    return n / (n + d + 1 + sigma2 / tau2)


def loss_star(n: int, d: int, sigma2: float = 0.0, tau2: float = 1.0) -> float:
    """``L* = σ² + τ² d (1 - η*)``: the loss of the optimal LSA, isotropic data [D]."""
    n, d, sigma2, tau2 = _ndst(n, d, sigma2, tau2)
    return sigma2 + tau2 * d * (1 - eta_star(n, d, sigma2, tau2))


def isotropic_loss(eta: float, n: int, d: int, sigma2: float = 0.0, tau2: float = 1.0) -> float:
    """``L(ηI) = σ² + τ² d [1 - 2η + η² (n + d + 1 + σ²/τ²)/n]`` [D].

    Also the loss at a test-time shift: pass the test ``n'`` and ``σ'²``.
    """
    eta = check_real("eta", eta)
    n, d, sigma2, tau2 = _ndst(n, d, sigma2, tau2)
    return sigma2 + tau2 * d * (1 - 2 * eta + eta**2 * (n + d + 1 + sigma2 / tau2) / n)


def kurtosis_eta_star(n: int, d: int, kappa: float, sigma2: float = 0.0) -> float:
    """``η* = n / (n + d - 2 + κ + σ²)``: i.i.d. unit-variance coordinates of kurtosis
    ``κ``, ``w ~ N(0, I)`` [D]. Gaussian: ``κ = 3``."""
    n, d, sigma2, _ = _ndst(n, d, sigma2, 1.0)
    kappa = check_real("kappa", kappa, low=1.0)
    return n / (n + d - 2 + kappa + sigma2)


def eta_relu(n: int, d: int, sigma2: float = 0.0) -> float:
    """``η_f = n / (n + 2d + 3 + 4σ²)``: ReLU targets, ``u ~ N(0, I)`` [D]."""
    n, d, sigma2, _ = _ndst(n, d, sigma2, 1.0)
    return n / (n + 2 * d + 3 + 4 * sigma2)


def loss_relu(n: int, d: int, sigma2: float = 0.0) -> float:
    """``L_f* = d/2 + σ² - (d/4) η_f`` [D]."""
    n, d, sigma2, _ = _ndst(n, d, sigma2, 1.0)
    return d / 2 + sigma2 - d / 4 * eta_relu(n, d, sigma2)


def gd_moments(task: RegressionTask) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(C, B, Σ_q, E y_q²)`` with ``C = E[v v^T]``, ``B = E[v y_q x_q^T]`` and
    ``Σ_q = E[x_q x_q^T]``, so that ``L(Γ) = E y_q² - 2 tr(Γ^T B) + tr(Γ^T C Γ Σ_q)`` [D].

    Linear target, Gaussian covariates, ``W = E[w w^T] = τ² Σ_w + m m^T``:
    ``C = (n+1)/n Σ W Σ + (tr(W Σ) + σ²)/n Σ``, ``B = Σ W Σ``, ``E y_q² = tr(WΣ) + σ²``.
    Non-Gaussian coordinates (``Σ = I``, ``m = 0``, kurtosis ``κ``): ``C`` gains
    ``(κ - 3) diag(W)/n``. ReLU targets (``Σ = I``), ``u ~ N(0, D)``:
    ``C = [(n+3) D + (2 tr D + 4σ²) I] / (4n)``, ``B = D/4``, ``E y_q² = tr D/2 + σ²``.
    """
    if not isinstance(task, RegressionTask):
        raise TypeError(f"task must be an icl.lsa.RegressionTask, got {type(task).__name__}")
    n, d, s2 = task.n, task.d, task.sigma2
    eye = np.eye(d)
    if task.target == "relu":
        if not np.allclose(task.cov, eye) or task.covariates != "gaussian":
            raise ValueError("the ReLU formulas need Gaussian covariates with cov = I")
        D = task.relu_cov
        C = ((n + 3) * D + (2 * np.trace(D) + 4 * s2) * eye) / (4 * n)
        return C, D / 4, eye, float(np.trace(D) / 2 + s2)
    S = task.cov
    W = task.tau2 * task.prior_cov + np.outer(task.prior_mean, task.prior_mean)
    SWS = S @ W @ S
    trWS = float(np.trace(W @ S))
    C = (n + 1) / n * SWS + (trWS + s2) / n * S
    if task.covariates != "gaussian":
        if not np.allclose(S, eye) or np.any(task.prior_mean):
            raise ValueError("non-Gaussian covariates are handled with cov = I and no prior mean")
        C = C + (task.kurtosis - 3) * np.diag(np.diag(W)) / n
    return C, SWS, S.copy(), trWS + s2


def gamma_star(task: RegressionTask) -> np.ndarray:
    """``Γ* = C^{-1} B Σ_q^{-1}``: the best GD step (preconditioner ``Γ*^T``) [D]."""
    C, B, Sq, _ = gd_moments(task)
    return np.linalg.solve(C, B) @ np.linalg.inv(Sq)


def gd_loss(task: RegressionTask, gamma: Any) -> float:
    """``L(Γ) = E y_q² - 2 tr(Γ^T B) + tr(Γ^T C Γ Σ_q)``: the exact loss of the GD step ``Γ``."""
    C, B, Sq, ey2 = gd_moments(task)
    g = check_finite_array("gamma", gamma)
    if g.shape != (task.d, task.d):
        raise ValueError(f"gamma must have shape ({task.d}, {task.d}), got {g.shape}")
    return float(ey2 - 2 * np.trace(g.T @ B) + np.trace(g.T @ C @ g @ Sq))


# -- SymPy derivations ----------------------------------------------------------------------


def _expect(expr: sp.Expr, variables: list[sp.Symbol], moments: dict[int, sp.Expr]) -> sp.Expr:
    """``E[expr]`` for independent symmetric variables with the given even moments
    (odd moments vanish): expand into monomials and replace each power by its moment."""
    poly = sp.Poly(sp.expand(expr), *variables)
    total = sp.Integer(0)
    for powers, coeff in poly.terms():
        term = coeff
        for p in powers:
            if p % 2:
                term = 0
                break
            if p:
                term *= moments[p]
        total += term
    return sp.expand(total)


def moment_identity_sympy(d: int = 3) -> dict[str, Any]:
    """``E[x x^T A x x^T] = tr(A) I + A + A^T + (κ - 3) diag(A)`` for i.i.d. symmetric
    coordinates with ``E x² = 1``, ``E x⁴ = κ`` and a symbolic ``d × d`` matrix ``A``.

    Returns the difference (the zero matrix when the identity holds) and the Gaussian
    case (``κ = 3``: ``tr(A) I + A + A^T``).
    """
    d = check_int("d", d, minimum=1, maximum=5)
    kappa = sp.Symbol("kappa", positive=True)
    x = sp.symbols(f"x1:{d + 1}", real=True)
    A = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"a{i + 1}{j + 1}", real=True))
    X = sp.Matrix(x)
    inner = (X.T * A * X)[0, 0]
    lhs = sp.Matrix(d, d, lambda i, j: _expect(x[i] * x[j] * inner, list(x),
                                               {2: sp.Integer(1), 4: kappa}))
    rhs = A.trace() * sp.eye(d) + A + A.T + (kappa - 3) * sp.diag(*[A[i, i] for i in range(d)])
    diff = sp.simplify(lhs - rhs)
    return {"lhs": lhs, "rhs": rhs, "difference": diff, "kappa": kappa,
            "gaussian": sp.simplify(lhs.subs(kappa, 3))}


def isotropic_optimum_sympy(d_check: int = 2) -> dict[str, Any]:
    """The isotropic optimum in closed form [D].

    1. ``E[v v^T]`` computed from moments at ``d = d_check`` (symbolic ``n, σ², τ²``),
       against ``τ²/n (n + d + 1 + σ²/τ²) I``;
    2. ``L(η) = σ² + τ² d [1 - 2η + η² (n + d + 1 + σ²/τ²)/n]`` minimised over ``η``.
    """
    d_check = check_int("d_check", d_check, minimum=1, maximum=4)
    n, d, s2, t2, eta = sp.symbols("n d sigma2 tau2 eta", positive=True)
    x = sp.symbols(f"x1:{d_check + 1}", real=True)
    w = sp.symbols(f"w1:{d_check + 1}", real=True)
    e = sp.Symbol("e", real=True)  # ε = σ e, e ~ N(0, 1)
    y = sum(wi * xi for wi, xi in zip(w, x, strict=True)) + sp.sqrt(s2) * e
    # E[y² x x^T | w] over x ~ N(0, I), e ~ N(0, 1), then over w ~ N(0, τ² I)
    gauss = {2: sp.Integer(1), 4: sp.Integer(3)}
    one = sp.Matrix(d_check, d_check, lambda i, j: _expect(y**2 * x[i] * x[j], [*x, e], gauss))
    mean_yx = sp.Matrix(w)  # E[y x | w] = w
    cond = one / n + (n - 1) / n * mean_yx * mean_yx.T
    wmom = {2: t2, 4: 3 * t2**2}
    Evv = cond.applyfunc(lambda e: _expect(e, list(w), wmom))
    predicted = t2 / n * (n + d_check + 1 + s2 / t2) * sp.eye(d_check)
    loss = s2 + t2 * d * (1 - 2 * eta + eta**2 * (n + d + 1 + s2 / t2) / n)
    eta_opt = sp.solve(sp.diff(loss, eta), eta)[0]
    loss_opt = sp.simplify(loss.subs(eta, eta_opt))
    return {
        "Evv": sp.simplify(Evv),
        "Evv_difference": sp.simplify(Evv - predicted),
        "loss": loss,
        "eta_star": sp.simplify(eta_opt),
        "loss_star": sp.factor(sp.simplify(loss_opt - s2)) + s2,
        "loss_star_check": sp.simplify(loss_opt - (s2 + t2 * d * (1 - eta_opt))),
        "symbols": (n, d, s2, t2, eta),
    }


def matched_prior_sympy() -> dict[str, Any]:
    """``Γ* = C^{-1} B = η* Σ^{-1}`` for ``Σ_w = Σ^{-1}`` and a symbolic 2×2 SPD ``Σ`` [D].

    ``C = τ² (n+1)/n Σ Σ_w Σ + (τ² tr(Σ_w Σ) + σ²)/n Σ``, ``B = τ² Σ Σ_w``.
    """
    a, c, n, s2, t2 = sp.symbols("a c n sigma2 tau2", positive=True)
    b = sp.Symbol("b", real=True)
    S = sp.Matrix([[a, b], [b, c]])
    Sw = S.inv()
    C = t2 * (n + 1) / n * S * Sw * S + (t2 * (Sw * S).trace() + s2) / n * S
    B = t2 * S * Sw
    gamma = sp.simplify(C.inv() * B)
    eta = n / (n + 2 + 1 + s2 / t2)
    return {"Sigma": S, "gamma": gamma, "difference": sp.simplify(gamma - eta * S.inv()),
            "eta_star": sp.simplify(eta)}


def relu_step_sympy() -> dict[str, Any]:
    """``η_f`` for ``f(x) = max(u^T x, 0)``, ``u ~ N(0, I_d)`` [D].

    Along ``u`` (``s = u^T x/|u| ~ N(0,1)``): ``E[f x] = |u| E[s_+ s] u/|u| = u/2``,
    ``E[f² |x|²] = |u|² (E[s_+^4] + (d-1) E[s_+^2])``; then
    ``η_f = n E|β|² / ((n-1) E|β|² + E[f² |x|²] + σ² d)``.
    """
    s = sp.Symbol("s", real=True)
    n, d, s2 = sp.symbols("n d sigma2", positive=True)
    phi = sp.exp(-s**2 / 2) / sp.sqrt(2 * sp.pi)
    half = {k: sp.integrate(s**k * phi, (s, 0, sp.oo)) for k in (2, 4)}
    beta_coef = half[2]                       # E[s_+ s] = E[s² 1(s>0)] = 1/2
    E_beta2 = beta_coef**2 * d                # E|u|² = d
    E_f2x2 = d * (half[4] + (d - 1) * half[2])
    eta_f = sp.simplify(n * E_beta2 / ((n - 1) * E_beta2 + E_f2x2 + s2 * d))
    E_f2 = d * half[2]
    loss_f = sp.simplify(E_f2 + s2 - eta_f * E_beta2)
    return {"half_moments": half, "E_beta2": E_beta2, "E_f2x2": sp.expand(E_f2x2),
            "eta_f": eta_f, "loss_f": loss_f,
            "eta_f_difference": sp.simplify(eta_f - n / (n + 2 * d + 3 + 4 * s2)),
            "loss_f_difference": sp.simplify(loss_f - (d / 2 + s2 - d / 4 * eta_f)),
            "symbols": (n, d, s2)}


# -- Monte Carlo -----------------------------------------------------------------------------


def mc_moment_identity(A: Any, n_samples: int = 200_000, seed: int = 0,
                       covariates: str = "gaussian") -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo ``E[x x^T A x x^T]`` (i.i.d. unit-variance coordinates of the given law)
    and the standard error of each entry."""
    A = check_finite_array("A", A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {A.shape}")
    n_samples = check_int("n_samples", n_samples, minimum=2)
    d = A.shape[0]
    task = RegressionTask(d, 1, covariates=covariates)
    p = task.sample(n_samples, check_seed("seed", seed), dtype=torch.float64)
    x = p.x_q.numpy()
    q = np.einsum("bi,ij,bj->b", x, A, x)
    vals = np.einsum("bi,bj,b->bij", x, x, q)
    return vals.mean(0), vals.std(0, ddof=1) / math.sqrt(n_samples)


def mc_gd_loss(task: RegressionTask, gamma: Any, n_prompts: int = 200_000,
               seed: int | torch.Generator = 0, chunk: int = 50_000) -> tuple[float, float]:
    """Monte-Carlo loss ``E(v^T Γ x_q - y_q)²`` of the GD step ``Γ`` and its standard error."""
    if not isinstance(task, RegressionTask):
        raise TypeError(f"task must be an icl.lsa.RegressionTask, got {type(task).__name__}")
    g_ = check_finite_array("gamma", gamma)
    n_prompts = check_int("n_prompts", n_prompts, minimum=2)
    chunk = check_int("chunk", chunk, minimum=1)
    g = as_generator(seed)
    s, s2, done = 0.0, 0.0, 0
    while done < n_prompts:
        b = min(chunk, n_prompts - done)
        p: Prompts = task.sample(b, g).to(torch.float64)
        e = (gd_step_prediction(p, g_) - p.y_q) ** 2
        s, s2, done = s + float(e.sum()), s2 + float((e**2).sum()), done + b
    mean = s / n_prompts
    var = (s2 / n_prompts - mean**2) * n_prompts / (n_prompts - 1)
    return mean, math.sqrt(max(var, 0.0) / n_prompts)



def bayes_risk_mc(task: RegressionTask, n_prompts: int = 100_000,
                  seed: int | torch.Generator = 0) -> tuple[float, float]:
    """Monte-Carlo Bayes risk ``σ² + E[x_q^T P x_q]`` of a Gaussian linear task, with the
    posterior covariance ``P = (X^T X/σ² + (τ² Σ_w)^{-1})^{-1}`` of ``w`` given the prompt
    (the posterior mean of ``w`` is the best predictor). Needs ``σ² > 0``."""
    if not isinstance(task, RegressionTask):
        raise TypeError(f"task must be an icl.lsa.RegressionTask, got {type(task).__name__}")
    if task.target != "linear" or task.covariates != "gaussian":
        raise ValueError("the Bayes risk is computed for Gaussian covariates and linear targets")
    if task.sigma2 <= 0:
        raise ValueError("sigma2 must be > 0 (at σ² = 0 and n ≥ d the Bayes risk is 0)")
    n_prompts = check_int("n_prompts", n_prompts, minimum=2)
    p = task.sample(n_prompts, seed, dtype=torch.float64)
    prec0 = torch.as_tensor(np.linalg.inv(task.tau2 * task.prior_cov))
    prec = p.X.transpose(1, 2) @ p.X / task.sigma2 + prec0
    quad = (p.x_q * torch.linalg.solve(prec, p.x_q.unsqueeze(-1)).squeeze(-1)).sum(-1)
    r = task.sigma2 + quad
    return float(r.mean()), float(r.std() / math.sqrt(n_prompts))
