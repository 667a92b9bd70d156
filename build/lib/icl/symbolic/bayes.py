"""Chapter 2's SymPy derivations: the Bayes risk and its extensions (the book's own, [D]).

Every derivation is a :class:`~icl.symbolic.toolkit.Derivation` (see
:mod:`icl.symbolic.toolkit`). Nothing here is a quotation of the paper: the paper states
that the transformer *attains* the Bayes risk; the value of that risk, the minimiser and
the extensions below are derived by the book.

Derivations
-----------
:func:`bayes_optimal_derivation`
    the Bayes-optimal next-token law ``p* = (1-α) δ_y + α δ_τ`` as the minimiser of the
    expected cross-entropy over the simplex (Lagrangian with multiplier ``μ`` for
    ``Σ p = 1``, KKT multipliers ``ν_j`` for ``p_j ≥ 0``), the second-order check and the
    Bayes risk ``H_b(α)``.
:func:`planted_variant_derivation`
    the book's extension: the ``(q, y)`` pair is planted only with probability ``ρ``;
    when it is missing, the Bayes law is ``α δ_τ + (1-α)/K`` on each of the ``K``
    candidate outputs and the risk is ``R*(ρ) = H_b(α) + (1-ρ)(1-α) log K``.
:func:`plugin_excess_derivation`
    the excess risk of a plug-in ``α̂``: ``KL(Ber(α) ‖ Ber(α̂))`` and its quadratic
    expansion ``(α̂-α)² / (2α(1-α))`` (used by the finite-sample chapter).

All functions are deterministic and take well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import sympy as sp

from ..validate import InvalidTypeError
from .toolkit import ALPHA, Derivation, Step, add, equal, make_step, mul

__all__ = [
    "ALPHA_HAT",
    "K",
    "RHO",
    "bayes_optimal_derivation",
    "bayes_risk_expr",
    "bayes_risk_function",
    "binary_entropy_expr",
    "planted_variant_derivation",
    "planted_variant_risk_expr",
    "planted_variant_risk_function",
    "plugin_excess_derivation",
    "plugin_excess_expr",
    "plugin_excess_function",
    "plugin_excess_quadratic_expr",
]

#: A plug-in estimate ``α̂`` of ``α``.
ALPHA_HAT = sp.Symbol(r"\hat{\alpha}", positive=True)
#: The probability ``ρ`` that the ``(q, y)`` pair is planted (planted variant).
RHO = sp.Symbol("rho", nonnegative=True)
#: The number ``K`` of candidate outputs (``|O|`` in distribution, ``N-1-|Q|-|O|`` OOD).
K = sp.Symbol("K", positive=True, integer=True)
#: The Lagrange multiplier of ``Σ p = 1``.
MU = sp.Symbol("mu", real=True)


# --------------------------------------------------------------------------- containers


def _hb_display(a: sp.Expr) -> sp.Expr:
    """``-α log α - (1-α) log(1-α)`` kept as written."""
    return add(mul(-1, a, sp.log(a)), mul(-1, 1 - a, sp.log(1 - a)))


def _check_n_other(n_other: int) -> int:
    if isinstance(n_other, bool) or not isinstance(n_other, int) or not 1 <= n_other <= 20:
        raise ValueError(f"n_other must be an int in [1, 20], got {n_other!r}")
    return n_other


# ------------------------------------------------------------------ binary entropy
def binary_entropy_expr(a: sp.Expr = ALPHA) -> sp.Expr:
    """``H_b(a) = -a log a - (1-a) log(1-a)`` as a SymPy expression."""
    return -a * sp.log(a) - (1 - a) * sp.log(1 - a)


# ------------------------------------------------------------- the Bayes-optimal law
@lru_cache(maxsize=8)
def bayes_optimal_derivation(n_other: int = 2) -> Derivation:
    """Derive ``p* = (1-α) δ_y + α δ_τ`` and ``R* = H_b(α)`` over the simplex.

    Given the context, the target ``z_{H+1}`` is ``y`` with probability ``1-α`` and ``τ``
    with probability ``α`` (``y`` is read off the context). A predictor ``p`` on the
    vocabulary has expected cross-entropy
    ``f(p) = -(1-α) log p_y - α log p_τ - Σ_j 0·log p_j``, where ``j`` runs over the
    ``n_other`` remaining tokens (their number, ``N-2`` in the task, does not change the
    argument; a few make the display readable).

    The coordinates ``p_j`` carry zero weight: ``f`` does not depend on them, so the
    minimiser sits on the *boundary* ``p_j = 0``. The KKT conditions make this exact:
    the Lagrangian ``𝓛 = f + μ(Σ p - 1) - Σ_j ν_j p_j`` (``ν_j ≥ 0`` for ``p_j ≥ 0``)
    gives ``∂𝓛/∂p_j = μ - ν_j = 0`` hence ``ν_j = μ``, and ``μ = 1 > 0`` forces
    ``p_j = 0`` by complementary slackness ``ν_j p_j = 0``. The support coordinates
    ``p_y, p_τ`` are interior (``f = +∞`` on their boundary), so their multipliers vanish.
    ``f`` is convex (a sum of ``-w log p`` with ``w ≥ 0``) and the constraints are
    linear, so the KKT point is the global minimiser; its Hessian on the support is
    positive definite (strictly convex there), so it is unique.

    Returns a :class:`~icl.symbolic.toolkit.Derivation` with results ``p_star`` (dict
    symbol -> value), ``p_star_vector``, ``duals``, ``hessian_support``, ``hessian_at_optimum``,
    ``tangent_curvature`` (``1/(α(1-α))``), ``risk`` (``H_b(α)``), ``risk_at_zero``,
    ``symbols``.
    """
    n = _check_n_other(n_other)
    a = ALPHA
    p_y, p_tau = sp.symbols("p_y p_tau", positive=True)
    p_other = sp.symbols(f"p_1:{n + 1}", nonnegative=True)
    nu = sp.symbols(f"nu_1:{n + 1}", real=True)
    probs = (p_y, p_tau, *p_other)
    f_latex = sp.latex(sp.Function("f")(*probs))

    # 1. objective (display keeps the zero-weight terms 0·log p_j)
    objective = -(1 - a) * sp.log(p_y) - a * sp.log(p_tau)
    objective_display = add(
        mul(-1, 1 - a, sp.log(p_y)),
        mul(-1, a, sp.log(p_tau)),
        *[mul(-1, 0, sp.log(p)) for p in p_other],
    )
    # 2. Lagrangian: μ for Σ p = 1, ν_j ≥ 0 for p_j ≥ 0
    constraint = sp.Add(*probs) - 1
    nu_terms = [v * p for v, p in zip(nu, p_other, strict=True)]
    lagrangian = objective + MU * constraint - sp.Add(*nu_terms)
    lagrangian_display = add(
        *objective_display.args, mul(MU, add(*probs, -1)), *[mul(-1, t) for t in nu_terms]
    )
    # 3. stationarity, complementary slackness, primal feasibility
    grads = [sp.diff(lagrangian, p) for p in probs]
    grads_display = [
        add(mul(-1, 1 - a, sp.Pow(p_y, -1)), MU),
        add(mul(-1, a, sp.Pow(p_tau, -1)), MU),
        *[add(MU, -v) for v in nu],
    ]
    stationarity = [sp.Eq(g, 0) for g in grads]
    slackness = [sp.Eq(v * p, 0) for v, p in zip(nu, p_other, strict=True)]
    feasibility = sp.Eq(sp.Add(*probs), 1)
    sols = sp.solve([*grads, *nu_terms, constraint], [*probs, MU, *nu], dict=True)
    if len(sols) != 1:  # pragma: no cover - guards a SymPy behaviour change
        raise RuntimeError(f"expected a unique KKT point, SymPy returned {sols}")
    sol = sols[0]
    p_star = {p: sp.simplify(sol[p]) for p in probs}
    duals = {MU: sp.simplify(sol[MU]), **{v: sp.simplify(sol[v]) for v in nu}}
    # 4. second-order check on the support {y, τ}
    support = (p_y, p_tau)
    hess_support = sp.hessian(objective, support)
    hess_opt = sp.simplify(hess_support.subs(p_star))
    d = sp.Matrix([1, -1])  # the simplex's tangent direction on the support
    tangent_curv = sp.simplify((d.T * hess_opt * d)[0, 0])
    # 5. risk
    risk = sp.simplify(objective.subs(p_star))
    hb = binary_entropy_expr(a)
    if not equal(risk, hb):  # pragma: no cover
        raise RuntimeError(f"risk {risk} does not simplify to H_b(alpha)")
    risk_at_zero = sp.limit(hb, a, 0, "+")
    p_star_vec = sp.Matrix([p_star[p] for p in probs])

    steps = (
        make_step(
            "objective",
            "Expected cross-entropy of a predictor $p$ on the simplex when the target is $y$ "
            "w.p. $1-\\alpha$ and $\\tau$ w.p. $\\alpha$ (the other tokens have weight 0):",
            (f_latex, objective, objective_display),
        ),
        make_step(
            "lagrangian",
            "Lagrangian: multiplier $\\mu$ for $\\sum_k p_k = 1$, multipliers "
            "$\\nu_j \\ge 0$ for the constraints $p_j \\ge 0$ of the zero-weight tokens:",
            (r"\mathcal{L}", lagrangian, lagrangian_display),
        ),
        make_step(
            "stationarity",
            "Stationarity, $\\partial \\mathcal{L} / \\partial p_k = 0$ for every token "
            "$k = y, \\tau, 1, 2, \\dots$:",
            *[("", eq, sp.Eq(gd, 0, evaluate=False))
              for eq, gd in zip(stationarity, grads_display, strict=True)],
        ),
        make_step(
            "complementary_slackness",
            "Complementary slackness and feasibility ($f = +\\infty$ where $p_y$ or "
            "$p_\\tau$ vanish, so these two are interior and carry no $\\nu$):",
            *slackness,
            feasibility,
        ),
        make_step(
            "kkt_solution",
            "The unique KKT point (SymPy `solve`): $\\nu_j = \\mu = 1 > 0$ (dual feasible) "
            "forces $p_j = 0$: the zero-weight tokens get no mass:",
            *[(sp.latex(k), v) for k, v in {**p_star, **duals}.items()],
        ),
        make_step(
            "p_star",
            "The Bayes-optimal next-token law $p^* = (1-\\alpha)\\,\\delta_y + "
            "\\alpha\\,\\delta_\\tau$, as the vector $(p_y, p_\\tau, p_1, p_2, \\dots)$:",
            ("p^*", p_star_vec.T),
        ),
        make_step(
            "hessian",
            "Second-order check: the Hessian of $f$ on the support $(p_y, p_\\tau)$ is "
            "diagonal with positive entries ($f$ is convex, the constraints linear: the KKT "
            "point is the global minimum), and at $p^*$:",
            (r"\nabla^2 f", hess_support, sp.diag((1 - a) / p_y**2, a / p_tau**2)),
            (r"\nabla^2 f(p^*)", hess_opt, sp.diag(1 / (1 - a), 1 / a)),
        ),
        make_step(
            "tangent_curvature",
            "Curvature along the simplex (direction $d = (1, -1)$ on the support), positive "
            "for $0 < \\alpha < 1$: a strict minimum:",
            (r"d^\top \nabla^2 f(p^*)\, d", tangent_curv, 1 / (a * (1 - a))),
        ),
        make_step(
            "risk",
            "Substituting $p^*$: the Bayes risk is the binary entropy $H_b(\\alpha)$, and "
            "$0$ at $\\alpha = 0$ (the limit, i.e. $0 \\log 0 = 0$):",
            ("R^* = f(p^*)", risk, _hb_display(a)),
            (r"\lim_{\alpha \to 0^+} R^*", risk_at_zero),
        ),
    )
    results = {
        "p_star": p_star,
        "p_star_vector": p_star_vec,
        "duals": duals,
        "objective": objective,
        "lagrangian": lagrangian,
        "hessian_support": hess_support,
        "hessian_at_optimum": hess_opt,
        "tangent_curvature": tangent_curv,
        "risk": risk,
        "risk_at_zero": risk_at_zero,
        "symbols": {"alpha": a, "p_y": p_y, "p_tau": p_tau, "p_other": p_other, "mu": MU,
                    "nu": nu},
    }
    return Derivation("The Bayes-optimal next-token law and the Bayes risk", steps, results)


def bayes_risk_expr() -> sp.Expr:
    """The Bayes risk ``R* = H_b(α)`` as derived by :func:`bayes_optimal_derivation`."""
    return bayes_optimal_derivation()["risk"]


def _safe_numeric(fn: Callable, n_args: int) -> Callable:
    """Wrap a lambdified function: silence 0·log 0 warnings, broadcast, floats for scalars."""

    def wrapped(*args):
        if len(args) != n_args:
            raise ValueError(f"expected {n_args} arguments, got {len(args)}")
        arrays = [np.asarray(x, dtype=float) for x in args]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.asarray(fn(*arrays), dtype=float)
        out = np.broadcast_to(out, np.broadcast(*arrays).shape).copy()
        return float(out) if out.ndim == 0 else out

    return wrapped


def _lambdify_with_zero(expr: sp.Expr, args: tuple[sp.Symbol, ...], at_zero: sp.Expr) -> Callable:
    """Lambdify ``expr`` with the value ``at_zero`` where ``α = 0`` (the ``0 log 0`` limit).

    ``α`` is declared positive, so ``Eq(α, 0)`` would fold to ``False``: the Piecewise is
    built on a real dummy that replaces it.
    """
    x = sp.Dummy("x", real=True)
    sub = {ALPHA: x}
    piece = sp.Piecewise((at_zero.subs(sub), sp.Eq(x, 0)), (expr.subs(sub), True))
    return sp.lambdify(tuple(sub.get(v, v) for v in args), piece, modules="numpy")


@lru_cache(maxsize=1)
def bayes_risk_function() -> Callable:
    """``α ↦ H_b(α)`` lambdified from :func:`bayes_risk_expr` (NumPy, vectorised).

    ``0 log 0`` is taken as 0 (a ``Piecewise`` at ``α = 0``); inputs outside ``[0, 1)``
    raise ``ValueError``.
    """
    expr = bayes_risk_expr()
    fn = _safe_numeric(_lambdify_with_zero(expr, (ALPHA,), sp.limit(expr, ALPHA, 0, "+")), 1)

    def bayes_risk_numeric(alpha):
        arr = np.asarray(alpha, dtype=float)
        if np.any(~np.isfinite(arr)) or np.any(arr < 0) or np.any(arr >= 1):
            raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
        return fn(arr)

    return bayes_risk_numeric


# --------------------------------------------------------- the planted variant (ours)
def _missing_pair_law(k: int | None) -> tuple[tuple[Step, ...], sp.Expr, dict]:
    """Conditional Bayes law when the ``(q, y)`` pair is missing.

    ``k=None``: ``K`` symbolic, reduced by exchangeability to a common mass ``p_c`` on the
    candidates. ``k`` an int: every candidate gets its own coordinate (no symmetry used).
    Returns the steps, the conditional risk and the solution.
    """
    a = ALPHA
    p_tau = sp.Symbol("p_tau", positive=True)
    if k is None:
        kk = K
        p_c = sp.Symbol("p_c", positive=True)
        cands = (p_c,)
        objective = -a * sp.log(p_tau) - kk * ((1 - a) / kk) * sp.log(p_c)
        objective_display = add(mul(-1, a, sp.log(p_tau)),
                               mul(-1, kk, (1 - a) / kk, sp.log(p_c)))
        constraint = p_tau + kk * p_c - 1
        note = (
            "(the objective is symmetric in the $K$ candidates and strictly convex on "
            "their span, so the minimiser gives them a common mass $p_c$)"
        )
    else:
        kk = sp.Integer(k)
        cands = sp.symbols(f"p_c1:{k + 1}", positive=True)
        objective = -a * sp.log(p_tau) - sp.Add(*[(1 - a) / kk * sp.log(p) for p in cands])
        objective_display = add(mul(-1, a, sp.log(p_tau)),
                               *[mul(-1, (1 - a) / kk, sp.log(p)) for p in cands])
        constraint = p_tau + sp.Add(*cands) - 1
        note = f"(here with $K = {k}$ separate coordinates, no symmetry assumed)"
    lagrangian = objective + MU * constraint
    lagrangian_display = add(*objective_display.args, mul(MU, constraint))
    unknowns = (p_tau, *cands)
    grads = [sp.diff(lagrangian, p) for p in unknowns]
    sols = sp.solve([*grads, constraint], [*unknowns, MU], dict=True)
    if len(sols) != 1:  # pragma: no cover
        raise RuntimeError(f"expected a unique stationary point, SymPy returned {sols}")
    sol = {v: sp.simplify(sols[0][v]) for v in (*unknowns, MU)}
    risk_missing = sp.simplify(objective.subs(sol))
    risk_missing_display = add(mul(-1, a, sp.log(a)), mul(-1, 1 - a, sp.log((1 - a) / kk)))
    steps = (
        make_step(
            "missing_objective",
            "Pair missing: the context says nothing about $y$ (the filler is independent of "
            "it), so the target is $\\tau$ w.p. $\\alpha$ and each of the $K$ candidate "
            f"outputs w.p. $(1-\\alpha)/K$; expected cross-entropy {note}:",
            (r"f_{\mathrm{miss}}", objective, objective_display),
        ),
        make_step(
            "missing_stationarity",
            "Lagrangian with $\\mu$ for the sum constraint, and its stationarity equations:",
            (r"\mathcal{L}", lagrangian, lagrangian_display),
            *[sp.Eq(g, 0) for g in grads],
        ),
        make_step(
            "missing_law",
            "Conditional Bayes law: $\\alpha$ on $\\tau$, $\\frac{1-\\alpha}{K}$ on each "
            "candidate output:",
            *[(sp.latex(v), sol[v]) for v in (*unknowns, MU)],
        ),
        make_step(
            "missing_risk",
            "Conditional risk when the pair is missing:",
            (r"R_{\mathrm{miss}}", risk_missing, risk_missing_display),
        ),
    )
    return steps, risk_missing, sol


@lru_cache(maxsize=8)
def planted_variant_derivation(k: int | None = None) -> Derivation:
    """The book's variant: the ``(q, y)`` pair is planted only with probability ``ρ``.

    When the pair is present the Bayes law is ``(1-α) δ_y + α δ_τ`` (risk ``H_b(α)``,
    :func:`bayes_optimal_derivation`). When it is missing the model can tell (no ``q``
    before the end except in the noisy ``(q, τ)`` pair) and ``y`` is uniform over the
    ``K`` candidate outputs (``K = |O|`` in distribution, ``N-1-|Q|-|O|`` for the OOD
    split), so the conditional law is ``α δ_τ + (1-α)/K`` on each candidate and

        R*(ρ) = ρ H_b(α) + (1-ρ) R_miss = H_b(α) + (1-ρ)(1-α) log K.

    ``k=None`` keeps ``K`` symbolic (exchangeability reduction); an int ``k`` solves the
    full Lagrangian with ``k`` separate candidate coordinates and substitutes ``K = k``.
    Results: ``missing_law`` (dict), ``risk_missing``, ``risk_mixture``, ``risk`` (in
    ``α, ρ, K``), ``excess`` (``R*(ρ) - H_b(α)``), ``symbols``.
    """
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 12):
        raise ValueError(f"k must be None (symbolic K) or an int in [1, 12], got {k!r}")
    a = ALPHA
    miss_steps, risk_missing, sol = _missing_pair_law(k)
    hb = bayes_risk_expr()
    mixture = RHO * hb + (1 - RHO) * risk_missing
    mixture_display = add(mul(RHO, _hb_display(a)), mul(1 - RHO, add(
        mul(-1, a, sp.log(a)), mul(-1, 1 - a, sp.log((1 - a) / (K if k is None else k))))))
    kk = K if k is None else sp.Integer(k)
    excess = (1 - RHO) * (1 - a) * sp.log(kk)
    closed = hb + excess
    if not equal(mixture, closed):  # pragma: no cover
        raise RuntimeError("the planted-variant risk does not reduce to the closed form")
    closed_display = add(*_hb_display(a).args, mul(1 - RHO, 1 - a, sp.log(kk)))
    steps = (
        make_step(
            "present",
            "Pair present (probability $\\rho$): the Bayes law and risk of the base task:",
            (r"R_{\mathrm{present}}", hb, _hb_display(a)),
        ),
        *miss_steps,
        make_step(
            "mixture",
            "Total risk: the model tells the two cases apart, so the risks average:",
            (r"R^*(\rho)", mixture, mixture_display),
        ),
        make_step(
            "risk",
            "Simplified: every missing pair costs $(1-\\alpha)\\log K$ nats more:",
            (r"R^*(\rho)", closed, closed_display),
            (r"R^*(\rho) - H_b(\alpha)", excess, mul(1 - RHO, 1 - a, sp.log(kk))),
        ),
    )
    results = {
        "missing_law": sol,
        "risk_missing": risk_missing,
        "risk_mixture": mixture,
        "risk": closed,
        "excess": excess,
        "symbols": {"alpha": a, "rho": RHO, "K": kk},
    }
    return Derivation(
        "The Bayes risk when the $(q, y)$ pair is planted with probability $\\rho$", steps, results
    )


def planted_variant_risk_expr() -> sp.Expr:
    """``R*(ρ) = H_b(α) + (1-ρ)(1-α) log K``.

    Symbols: :data:`~icl.symbolic.toolkit.ALPHA`, :data:`RHO`, :data:`K`.
    """
    return planted_variant_derivation()["risk"]


@lru_cache(maxsize=1)
def planted_variant_risk_function() -> Callable:
    """``(α, ρ, K) ↦ R*(ρ)`` lambdified (NumPy, vectorised; ``0 log 0 = 0``)."""
    expr = planted_variant_risk_expr()
    at_zero = sp.limit(expr, ALPHA, 0, "+")
    fn = _safe_numeric(_lambdify_with_zero(expr, (ALPHA, RHO, K), at_zero), 3)

    def planted_variant_risk_numeric(alpha, rho, k):
        a, r, kk = (np.asarray(x, dtype=float) for x in (alpha, rho, k))
        if np.any(a < 0) or np.any(a >= 1):
            raise ValueError(f"alpha must lie in [0, 1), got {alpha!r}")
        if np.any(r < 0) or np.any(r > 1):
            raise ValueError(f"rho must lie in [0, 1], got {rho!r}")
        if np.any(kk < 1):
            raise ValueError(f"k (number of candidate outputs) must be >= 1, got {k!r}")
        return fn(a, r, kk)

    return planted_variant_risk_numeric


# ------------------------------------------------------------- plug-in excess risk
@lru_cache(maxsize=1)
def plugin_excess_derivation() -> Derivation:
    """Excess risk of the plug-in law ``(1-α̂) δ_y + α̂ δ_τ`` when the truth is ``α``.

    Its expected cross-entropy under ``Ber(α)`` is ``-α log α̂ - (1-α) log(1-α̂)``;
    minus ``H_b(α)`` this is ``KL(Ber(α) ‖ Ber(α̂))``. A Taylor expansion at ``α̂ = α``
    gives ``(α̂-α)² / (2α(1-α))``: the inverse Fisher information of ``Ber(α)`` sets the
    scale, which the finite-sample chapter turns into a ``1/m`` rate.
    Results: ``cross_entropy``, ``excess`` (KL form), ``gradient_at_alpha``,
    ``quadratic``, ``coefficient``, ``symbols``.
    """
    a, b = ALPHA, ALPHA_HAT
    cross = -a * sp.log(b) - (1 - a) * sp.log(1 - b)
    cross_display = add(mul(-1, a, sp.log(b)), mul(-1, 1 - a, sp.log(1 - b)))
    excess_raw = cross - bayes_risk_expr()
    kl = a * sp.log(a / b) + (1 - a) * sp.log((1 - a) / (1 - b))
    kl_display = add(mul(a, sp.log(a / b)), mul(1 - a, sp.log((1 - a) / (1 - b))))
    if not equal(excess_raw, kl):  # pragma: no cover
        raise RuntimeError("the plug-in excess risk does not reduce to the Bernoulli KL")
    grad = sp.simplify(sp.diff(kl, b).subs(b, a))
    quad = sp.factor(sp.simplify(sp.series(kl, b, a, 3).removeO()))
    coeff = sp.simplify(sp.diff(kl, b, 2).subs(b, a) / 2)
    quad_display = (b - a) ** 2 / (2 * a * (1 - a))
    if not (equal(quad, coeff * (b - a) ** 2) and equal(quad, quad_display)):  # pragma: no cover
        raise RuntimeError("series coefficient disagrees with the second derivative")
    steps = (
        make_step(
            "cross_entropy",
            "Expected cross-entropy of the plug-in law $(1-\\hat\\alpha)\\delta_y + "
            "\\hat\\alpha\\delta_\\tau$ when the target is $\\tau$ w.p. $\\alpha$:",
            (r"R(\hat\alpha)", cross, cross_display),
        ),
        make_step(
            "excess",
            "Excess risk over $H_b(\\alpha)$: the Bernoulli Kullback-Leibler divergence",
            (r"R(\hat\alpha) - H_b(\alpha)", excess_raw, kl_display),
        ),
        make_step(
            "first_order",
            "It vanishes, with zero slope, at $\\hat\\alpha = \\alpha$:",
            (r"\partial_{\hat\alpha} \mathrm{KL}\big|_{\hat\alpha = \alpha}", grad),
        ),
        make_step(
            "quadratic",
            "Second-order expansion (SymPy `series` at $\\hat\\alpha = \\alpha$): a "
            "parabola of curvature $1/(\\alpha(1-\\alpha))$, the Fisher information of "
            "$\\mathrm{Ber}(\\alpha)$:",
            (r"\mathrm{KL}(\mathrm{Ber}(\alpha)\,\|\,\mathrm{Ber}(\hat\alpha)) \approx",
             quad, quad_display),
        ),
    )
    results = {
        "cross_entropy": cross,
        "excess_raw": excess_raw,
        "excess": kl,
        "gradient_at_alpha": grad,
        "quadratic": quad,
        "coefficient": coeff,
        "symbols": {"alpha": a, "alpha_hat": b},
    }
    return Derivation("The excess risk of a plug-in noise level", steps, results)


def plugin_excess_expr() -> sp.Expr:
    """``KL(Ber(α) ‖ Ber(α̂)) = α log(α/α̂) + (1-α) log((1-α)/(1-α̂))``."""
    return plugin_excess_derivation()["excess"]


def plugin_excess_quadratic_expr() -> sp.Expr:
    """The quadratic approximation ``(α̂-α)² / (2α(1-α))`` of :func:`plugin_excess_expr`."""
    return plugin_excess_derivation()["quadratic"]


@lru_cache(maxsize=2)
def plugin_excess_function(quadratic: bool = False) -> Callable:
    """``(α, α̂) ↦ KL(Ber(α) ‖ Ber(α̂))`` (or its quadratic approximation), vectorised.

    Both arguments must lie in ``(0, 1)``.
    """
    if not isinstance(quadratic, bool):
        raise InvalidTypeError(f"quadratic must be True or False, got {quadratic!r}")
    expr = plugin_excess_quadratic_expr() if quadratic else plugin_excess_expr()
    fn = _safe_numeric(sp.lambdify((ALPHA, ALPHA_HAT), expr, modules="numpy"), 2)

    def plugin_excess_numeric(alpha, alpha_hat):
        for name, v in (("alpha", alpha), ("alpha_hat", alpha_hat)):
            arr = np.asarray(v, dtype=float)
            if np.any(~np.isfinite(arr)) or np.any(arr <= 0) or np.any(arr >= 1):
                raise ValueError(f"{name} must lie in (0, 1), got {v!r}")
        return fn(alpha, alpha_hat)

    return plugin_excess_numeric
