"""Tests of the SymPy derivations (icl/symbolic.py): the book's own derivations, [D]."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import sympy as sp

import icl
from icl.montecarlo import agrees, mc_planted_variant_risk, n_candidate_outputs
from icl.symbolic import bayes as S

A = S.ALPHA


def _zero(expr) -> bool:
    return sp.simplify(sp.expand_log(expr, force=True)) == 0


# ------------------------------------------------------------------ Bayes-optimal law


@pytest.mark.parametrize("n_other", [1, 2, 4])
def test_p_star_is_one_minus_alpha_alpha_zeros(n_other):
    d = S.bayes_optimal_derivation(n_other)
    vec = d["p_star_vector"]
    expected = sp.Matrix([1 - A, A] + [0] * n_other)
    assert vec.shape == expected.shape
    assert all(_zero(u - v) for u, v in zip(vec, expected, strict=True))
    # the multipliers: mu = 1 and nu_j = mu > 0 (dual feasible: forces p_j = 0)
    assert all(v == 1 for v in d["duals"].values())
    assert sum(vec) - 1 == 0


def test_p_star_satisfies_stationarity_and_minimises():
    d = S.bayes_optimal_derivation(2)
    subs = {**d["p_star"], **d["duals"]}
    for eq in d.step("stationarity").exprs:
        assert _zero((eq.lhs - eq.rhs).subs(subs))
    # numerically: no random point of the simplex does better than p* (alpha = 0.3)
    sym = d["symbols"]
    f = sp.lambdify((sym["p_y"], sym["p_tau"], A), d["objective"])
    best = f(0.7, 0.3, 0.3)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=2000)
    assert np.all(f(p[:, 0], p[:, 1], 0.3) >= best - 1e-12)


def test_risk_simplifies_to_binary_entropy_and_matches_icl():
    risk = S.bayes_risk_expr()
    assert _zero(risk - S.binary_entropy_expr(A))
    assert S.bayes_optimal_derivation()["risk_at_zero"] == 0
    for a in (0.05, 0.2, 0.5, 0.8, 0.99):
        assert float(risk.subs(A, a)) == pytest.approx(icl.bayes_risk(a), rel=1e-12)


def test_lambdified_bayes_risk():
    f = S.bayes_risk_function()
    grid = np.linspace(0, 0.99, 23)
    np.testing.assert_allclose(f(grid), [icl.bayes_risk(a) for a in grid], rtol=1e-12, atol=0)
    assert f(0.0) == 0.0
    assert f(0.2) == pytest.approx(0.500402, abs=1e-6)
    assert isinstance(f(0.5), float)
    for bad in (-0.1, 1.0, [0.2, 1.3]):
        with pytest.raises(ValueError, match="alpha"):
            f(bad)


def test_second_order_check_positive():
    d = S.bayes_optimal_derivation()
    h = d["hessian_at_optimum"]
    assert _zero(h[0, 0] - 1 / (1 - A)) and _zero(h[1, 1] - 1 / A) and h[0, 1] == 0
    assert _zero(d["tangent_curvature"] - 1 / (A * (1 - A)))
    for a in (0.01, 0.3, 0.5, 0.97):
        hn = np.array(h.subs(A, a), dtype=float)
        assert np.all(np.linalg.eigvalsh(hn) > 0)
        assert float(d["tangent_curvature"].subs(A, a)) > 0
    # the Hessian on the support is diag((1-alpha)/p_y^2, alpha/p_tau^2): positive at every
    # interior point when 0 < alpha < 1 (convexity)
    hs, sym = d["hessian_support"], d["symbols"]
    assert _zero(hs[0, 0] - (1 - A) / sym["p_y"] ** 2)
    assert _zero(hs[1, 1] - A / sym["p_tau"] ** 2)
    assert hs[0, 1] == 0 and hs[1, 0] == 0


def test_steps_render_latex_and_are_named():
    d = S.bayes_optimal_derivation()
    assert d.names == [
        "objective", "lagrangian", "stationarity", "complementary_slackness", "kkt_solution",
        "p_star", "hessian", "tangent_curvature", "risk",
    ]
    for step in d:
        tex = step.latex()
        assert isinstance(tex, str) and tex
    assert r"\mu" in d.step("lagrangian").latex()
    assert "0 \\log" in d.step("objective").latex()  # the zero-weight terms are shown
    assert "$$" in d.to_markdown()
    with pytest.raises(KeyError):
        d["nope"]
    with pytest.raises(ValueError, match="n_other"):
        S.bayes_optimal_derivation(0)


# --------------------------------------------------------------- planted variant (ours)


def test_planted_variant_formula_and_missing_law():
    d = S.planted_variant_derivation()
    R, K = S.RHO, S.K
    expected = S.binary_entropy_expr(A) + (1 - R) * (1 - A) * sp.log(K)
    assert _zero(d["risk"] - expected)
    assert _zero(d["risk"].subs(R, 1) - S.binary_entropy_expr(A))
    law = {str(k): v for k, v in d["missing_law"].items()}
    assert _zero(law["p_tau"] - A) and _zero(law["p_c"] - (1 - A) / K)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_planted_variant_without_symmetry_agrees(k):
    dk = S.planted_variant_derivation(k)
    assert _zero(dk["risk"] - S.planted_variant_risk_expr().subs(S.K, k))
    for name, value in dk["missing_law"].items():
        if str(name).startswith("p_c"):
            assert _zero(value - (1 - A) / k)
    with pytest.raises(ValueError, match="k must"):
        S.planted_variant_derivation(0)


def test_planted_variant_lambdified():
    f = S.planted_variant_risk_function()
    assert f(0.2, 1.0, 4) == pytest.approx(icl.bayes_risk(0.2))
    assert f(0.0, 0.0, 4) == pytest.approx(math.log(4))
    assert f(0.0, 1.0, 50) == 0.0
    np.testing.assert_allclose(
        f(0.3, np.array([0.0, 0.5]), 4),
        [icl.bayes_risk(0.3) + r * 0.7 * math.log(4) for r in (1.0, 0.5)],
    )
    with pytest.raises(ValueError, match="rho"):
        f(0.2, 1.5, 4)


@pytest.mark.parametrize(("alpha", "rho", "ood", "seed"),
                         [(0.2, 0.5, False, 1), (0.5, 0.25, True, 2), (0.0, 0.7, True, 3)])
def test_planted_variant_matches_monte_carlo(alpha, rho, ood, seed):
    task = icl.RecallTask(alpha=alpha, seq_len=24, vocab_size=40)
    k = n_candidate_outputs(task, ood)
    theory = S.planted_variant_risk_function()(alpha, rho, k)
    mean, se = mc_planted_variant_risk(task, rho, 5000, seed=seed, ood=ood)
    assert se > 0
    assert agrees(mean, se, theory), (mean, se, theory)


# ---------------------------------------------------------------- plug-in excess risk


def test_plugin_excess_is_bernoulli_kl():
    d = S.plugin_excess_derivation()
    b = S.ALPHA_HAT
    assert _zero(d["excess_raw"] - S.plugin_excess_expr())
    assert d["gradient_at_alpha"] == 0
    kl = S.plugin_excess_function()
    for a, ah in ((0.2, 0.3), (0.5, 0.1), (0.8, 0.95), (0.3, 0.3)):
        assert float(S.plugin_excess_expr().subs({A: a, b: ah})) == pytest.approx(
            icl.kl_bernoulli(a, ah), rel=1e-10, abs=1e-15)
        assert kl(a, ah) == pytest.approx(icl.kl_bernoulli(a, ah), rel=1e-10, abs=1e-15)
    with pytest.raises(ValueError, match="alpha_hat"):
        kl(0.2, 0.0)


def test_plugin_excess_quadratic_coefficient():
    d = S.plugin_excess_derivation()
    b = S.ALPHA_HAT
    assert _zero(d["coefficient"] - 1 / (2 * A * (1 - A)))
    quad = S.plugin_excess_quadratic_expr()
    assert _zero(quad - (b - A) ** 2 / (2 * A * (1 - A)))
    assert _zero(sp.Poly(quad, b).coeff_monomial(b**2) - 1 / (2 * A * (1 - A)))
    # the approximation error is cubic: ratio -> 1 as alpha_hat -> alpha
    kl, q = S.plugin_excess_function(), S.plugin_excess_function(quadratic=True)
    for eps in (1e-2, 1e-3):
        assert kl(0.3, 0.3 + eps) / q(0.3, 0.3 + eps) == pytest.approx(1.0, abs=10 * eps)


def test_derivations_are_fast_and_deterministic():
    for fn in (S.bayes_optimal_derivation, S.planted_variant_derivation,
               S.plugin_excess_derivation):
        fn.cache_clear()
        t0 = time.perf_counter()
        first = fn()
        elapsed = time.perf_counter() - t0
        assert elapsed < 2.0, (fn.__name__, elapsed)
        fn.cache_clear()
        second = fn()
        assert [s.latex() for s in first] == [s.latex() for s in second]
