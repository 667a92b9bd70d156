"""Chapter 3's SymPy derivations: the Bayes-optimal construction (the book's own work, [D]).

The form of the construction is the authors' (the model page §4, [E]); what it computes,
its loss and its rate are derived here, not quoted from the paper.

:func:`tiny_example`
    a five-token instance of the task (``q = 0``, ``y = 1``, fillers ``2, 3``,
    ``τ = 4``; ``H = 8``, ``d = 10``) on which every vector and matrix is written out: the
    inputs ``x_h``, the matrices ``W, V, F`` with symbols ``Λ, γ``, the scores, the weights,
    ``A``, and the logits ``ξ_A``, ``ξ_F``. The same tokens are a valid
    :class:`icl.RecallTask` batch, so the notebook can compare the symbols with the network.
:func:`construction_derivation`
    that walk-through for linear, ReLU or softmax attention (scaled or not), ``κ ∈ {0, 1}``.
:func:`loss_derivation`
    general ``N``: from ``ξ_y = Λ``, ``ξ_τ = γ + Λ`` to
    ``L(Λ) = log(1 + e^γ + (N-2) e^{-Λ}) - αγ = H_b(α) + log(1 + (N-2)(1-α) e^{-Λ})`` at
    ``γ = log(α/(1-α))``, the rate ``e^Λ (L - H_b) → (N-2)(1-α)``, the slope ``-1`` of the
    log-excess, and the noiseless ``log(1 + (N-1) e^{-λ})``.
:func:`kappa0_derivation`
    the ``κ = 0`` model carrying the ``κ = 1`` feed-forward matrix: ``ξ_τ = γ`` stalls,
    ``L(Λ)`` has a minimum ``H_b(α) + α Λ*`` at ``Λ* = log(1 + (N-2)(1-α)/α)`` and grows
    like ``αΛ``.

To let SymPy use ``0 < α < 1`` the noise level is written ``α = β/(1+β)`` with ``β > 0``
(so ``β = e^γ`` at the optimal ``γ``) whenever an identity needs it.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from ..validate import check_bool, check_int, check_optional_bool
from .bayes import binary_entropy_expr
from .toolkit import ALPHA, Derivation, Step, add, check_display, equal, mul

__all__ = [
    "BETA",
    "GAMMA",
    "LAMBDA",
    "LAMBDA_SMALL",
    "N_SYM",
    "TINY",
    "construction_derivation",
    "kappa0_derivation",
    "loss_derivation",
    "tiny_example",
]

#: The attention scale ``Λ`` (non-negative).
LAMBDA = sp.Symbol("Lambda", nonnegative=True)
#: The feed-forward offset ``γ``.
GAMMA = sp.Symbol("gamma", real=True)
#: The vocabulary size ``N``.
N_SYM = sp.Symbol("N", positive=True, integer=True)
#: The noiseless scale ``λ`` (shared by the triggers).
LAMBDA_SMALL = sp.Symbol("lambda", nonnegative=True)
#: ``β = α/(1-α) > 0``: the odds of the noise token.
BETA = sp.Symbol("beta", positive=True)

#: The tiny instance (token roles, the sequence ``z_1 … z_H`` and the task parameters).
TINY = {
    "vocab_size": 5,
    "q": 0,
    "y": 1,
    "tau": 4,
    "noisy_tokens": (2, 0, 4, 1, 0, 1, 3, 0),  # (q, τ) at h = 2, (q, y) at h = 5, y as filler
    "noiseless_tokens": (2, 1, 3, 0, 1, 2, 3, 0),  # (q, y) at h = 4, y as filler at h = 2
}

ROLE_NAMES = ("q", "y", "f", "τ")  # representative tokens 0, 1, 2, 4


def _e(k: int, d: int) -> sp.Matrix:
    v = sp.zeros(d, 1)
    v[k] = 1
    return v


def tiny_example(noisy: bool = True) -> dict[str, object]:
    """Inputs of the tiny instance: ``tokens``, the ``H × d`` matrix ``X`` of rows ``x_h^T``,
    and the embedding helpers ``E(k)``, ``Ẽ(k)`` as SymPy column vectors (``d = 2N = 10``)."""
    if not isinstance(noisy, bool):
        raise ValueError(f"noisy must be True or False, got {noisy!r}")
    N = TINY["vocab_size"]
    d = 2 * N
    tokens = TINY["noisy_tokens"] if noisy else TINY["noiseless_tokens"]

    def E(k: int) -> sp.Matrix:
        return _e(k, d)

    def Et(k: int) -> sp.Matrix:
        return _e(N + k, d)

    rows = [E(tokens[0]).T]
    rows += [(E(tokens[h]) + Et(tokens[h - 1])).T for h in range(1, len(tokens))]
    return {"tokens": tokens, "X": sp.Matrix.vstack(*rows), "E": E, "Et": Et, "N": N, "d": d}


@lru_cache(maxsize=32)
def construction_derivation(
    noisy: bool = True,
    attention: str = "linear",
    kappa: int = 1,
    scaled: bool | None = None,
    stalled: bool = False,
) -> Derivation:
    """Walk the construction through the tiny instance, symbol by symbol.

    Parameters
    ----------
    noisy : the noisy construction (``Λ``, ``γ``) or the noiseless one (``λ = Λ`` here).
    attention : ``"linear"``, ``"relu"`` or ``"softmax"``.
    kappa : 0 or 1. With ``κ = 0`` the feed-forward matrix is ``(γ + Λ) E(τ) E(q)^T``,
        unless ``stalled=True``, which keeps the ``κ = 1`` matrix ``E(τ)(γE(q) + Ẽ(q))^T``.
    scaled : softmax only: the book's ``V = Λ I`` (default) or ``V = I``.

    Results: ``tokens``, ``X``, ``W``, ``V``, ``F``, ``scores``, ``weights``, ``A``,
    ``xi_A``, ``xi_F``, ``xi`` (column vectors of length ``N = 5``), ``role_scores``.
    """
    check_bool("noisy", noisy)
    if attention not in ("linear", "relu", "softmax"):
        raise ValueError(f"attention must be 'linear', 'relu' or 'softmax', got {attention!r}")
    kappa = check_int("kappa", kappa, minimum=0, maximum=1)
    check_optional_bool("scaled", scaled)
    check_bool("stalled", stalled)
    if scaled is None:
        scaled = attention == "softmax"
    if stalled and (kappa != 0 or not noisy):
        raise ValueError("stalled=True describes the kappa=0 model of the noisy task")
    ex = tiny_example(noisy)
    E, Et, X, N, d = ex["E"], ex["Et"], ex["X"], ex["N"], ex["d"]
    q, tau = TINY["q"], TINY["tau"]
    lam, g = LAMBDA, GAMMA
    c = lam if scaled else sp.Integer(1)
    if noisy:
        W = lam * E(q) * (Et(q) - E(tau)).T
        if kappa == 1 or stalled:
            F = E(tau) * (g * E(q) + c * Et(q)).T
        else:
            F = (g + lam) * E(tau) * E(q).T
    else:
        W = lam * E(q) * Et(q).T
        F = sp.zeros(d, d)
    V = c * sp.eye(d)
    U = sp.eye(d)[:N, :]
    xH = X[X.rows - 1, :].T
    s = (X * W.T * xH).T  # row vector: s_h = x_H^T W x_h
    if attention == "linear":
        a = s
    elif attention == "relu":
        a = s.applyfunc(lambda v: sp.Max(v, 0))
    else:
        ex_s = s.applyfunc(sp.exp)
        Z = sum(ex_s)
        a = ex_s / Z
    A = X.T * a.T
    xi_A = (U * V * A).applyfunc(sp.simplify)
    xi_F = (U * F * (xH + kappa * A)).applyfunc(sp.simplify)
    xi = (xi_A + xi_F).applyfunc(sp.simplify)
    reps = (0, 1, 2, 4)  # q, y, filler, τ
    role_scores = sp.Matrix(
        4, 4, lambda i, j: (xH.T * W * (E(reps[j]) + Et(reps[i])))[0, 0]
    )  # row: z_{h-1}, column: z_h
    act = {
        "linear": r"a_h = s_h",
        "relu": r"a_h = \max(s_h, 0)",
        "softmax": r"a = \mathrm{softmax}(s)",
    }
    Fname = "the κ = 1 matrix (stalled)" if stalled else ("(γ+Λ) E(τ)E(q)^T" if kappa == 0 else "")
    steps = (
        Step(
            "inputs",
            "Inputs $x_h = E(z_h) + \\tilde E(z_{h-1})$ of the tiny sequence "
            f"$z = {tuple(ex['tokens'])}$ (rows; columns $0…4$ are $E$, $5…9$ are $\\tilde E$).",
            (X,),
            ("X",),
        ),
        Step(
            "parameters",
            "The construction's key-query matrix and feed-forward matrix"
            + (f" ({Fname})" if Fname else "")
            + (", value matrix $V = \\Lambda I$." if scaled else ", value matrix $V = I$."),
            (W, F),
            ("W", "F"),
        ),
        Step(
            "role_scores",
            "Score $x_H^\\top W x_h$ for each pair (row: $z_{h-1}$, column: $z_h$) of roles "
            "$q, y, f, \\tau$: only a position right after $q$ scores $\\Lambda$, and the "
            "$\\tau$ after $q$ scores $\\Lambda - \\Lambda = 0$.",
            (role_scores,),
            ("",),
        ),
        Step("scores", "Scores along the sequence, $s_h = x_H^\\top W x_h$.", (s,), ("s",)),
        Step("weights", f"Attention weights, ${act[attention]}$.", (a,), ("a",)),
        Step("A", "Attention output $A = \\sum_h a_h x_h$ (transposed).", (A.T,), ("A^\\top",)),
        Step(
            "logits",
            "Logits: $\\xi_A = U V A$ (recall of $y$), $\\xi_F = U F (x_H + \\kappa A)$ "
            "(the $q \\to \\tau$ association), $\\xi = \\xi_A + \\xi_F$ (transposed).",
            (xi_A.T, xi_F.T, xi.T),
            ("\\xi_A^\\top", "\\xi_F^\\top", "\\xi^\\top"),
        ),
    )
    results = {
        "tokens": ex["tokens"],
        "X": X,
        "W": W,
        "V": V,
        "F": F,
        "scores": s,
        "weights": a,
        "A": A,
        "xi_A": xi_A,
        "xi_F": xi_F,
        "xi": xi,
        "role_scores": role_scores,
    }
    title = (
        f"The {'noisy' if noisy else 'noiseless'} construction with {attention} attention, "
        f"κ = {kappa}, on a tiny sequence"
    )
    return Derivation(title, steps, results)


@lru_cache(maxsize=1)
def loss_derivation() -> Derivation:
    """Loss of the linear/ReLU construction for general ``N`` (the book's [D]).

    Results: ``loss`` (as computed from the logits), ``loss_simplified``
    (``log(1+e^γ+(N-2)e^{-Λ}) - αγ``), ``gamma_star``, ``loss_optimal``
    (``H_b(α) + log(1 + (N-2)(1-α)e^{-Λ})``), ``excess``, ``rate_constant``
    (``(N-2)(1-α)``), ``slope`` (``-1``), ``noiseless_loss``, ``noiseless_rate_constant``;
    and the booleans ``proved_simplified``, ``proved_optimal`` that SymPy closed the
    identities.
    """
    lam, g, N, a, b = LAMBDA, GAMMA, N_SYM, ALPHA, BETA
    Hb = binary_entropy_expr(a)
    xi_y, xi_tau = lam, g + lam
    lse = sp.log(sp.exp(xi_y) + sp.exp(xi_tau) + (N - 2))
    loss = lse - (1 - a) * xi_y - a * xi_tau
    simplified = sp.log(1 + sp.exp(g) + (N - 2) * sp.exp(-lam)) - a * g
    proved_simplified = equal(loss, simplified)
    g_star = sp.log(a / (1 - a))
    optimal = Hb + sp.log(1 + (N - 2) * (1 - a) * sp.exp(-lam))
    # 0 < α < 1 through α = β/(1+β)
    to_beta = {a: b / (1 + b)}
    proved_optimal = equal(simplified.subs(g, g_star).subs(to_beta), optimal.subs(to_beta))
    excess = sp.log(1 + (N - 2) * (1 - a) * sp.exp(-lam))
    rate = sp.factor(sp.limit(excess * sp.exp(lam), lam, sp.oo))
    slope = sp.limit(sp.diff(sp.log(excess), lam), lam, sp.oo)
    lam0 = LAMBDA_SMALL
    loss0 = sp.log(sp.exp(lam0) + (N - 1)) - lam0
    loss0_simpl = sp.log(1 + (N - 1) * sp.exp(-lam0))
    proved_noiseless = equal(loss0, loss0_simpl)
    rate0 = sp.limit(loss0_simpl * sp.exp(lam0), lam0, sp.oo)
    Nm2, om = add(N, -2), add(1, -a)
    show_loss = check_display(
        add(
            sp.log(add(sp.exp(lam), sp.exp(add(g, lam)), Nm2)),
            mul(-1, om, lam),
            mul(-1, a, add(g, lam)),
        ),
        loss,
    )
    show_simpl = check_display(
        add(sp.log(add(1, sp.exp(g), mul(Nm2, sp.exp(-lam)))), mul(-1, a, g)), simplified
    )
    hb_show = add(mul(-1, a, sp.log(a)), mul(-1, om, sp.log(om)))
    show_opt = check_display(add(hb_show, sp.log(add(1, mul(Nm2, om, sp.exp(-lam))))), optimal)
    show_rate = check_display(mul(Nm2, om), rate)
    show_loss0 = add(sp.log(add(1, mul(add(N, -1), sp.exp(-lam0)))))
    show_rate0 = add(N, -1)
    steps = (
        Step(
            "logits",
            "The logits of the construction (previous derivation): $\\Lambda$ for $y$, "
            "$\\gamma + \\Lambda$ for $\\tau$, 0 for the other $N - 2$ tokens.",
            (xi_y, xi_tau),
            ("\\xi_y", "\\xi_\\tau"),
        ),
        Step(
            "loss",
            "Expected cross-entropy given the context: the target is $\\tau$ with "
            "probability $\\alpha$, else $y$.",
            (loss, simplified),
            ("\\ell(\\Lambda)", ""),
            (show_loss, show_simpl),
        ),
        Step(
            "gamma_star",
            "At $\\gamma = \\log\\frac{\\alpha}{1-\\alpha}$ the loss splits into the Bayes risk "
            "and an excess (SymPy proves the identity with $\\alpha = \\beta/(1+\\beta)$).",
            (g_star, optimal),
            ("\\gamma^*", "\\ell(\\Lambda)"),
            (None, show_opt),
        ),
        Step(
            "rate",
            "The excess decays like $e^{-\\Lambda}$: its rate constant and the slope of its "
            "logarithm as $\\Lambda \\to \\infty$.",
            (rate, slope),
            (
                "\\lim_{\\Lambda\\to\\infty} e^{\\Lambda}(\\ell - H_b)",
                "\\lim_{\\Lambda\\to\\infty} \\frac{d}{d\\Lambda}\\log(\\ell - H_b)",
            ),
            (show_rate, None),
        ),
        Step(
            "noiseless",
            "Noiseless ($\\alpha = 0$, no $F$): $\\xi_y = \\lambda$ and the other $N-1$ logits 0.",
            (loss0_simpl, rate0),
            ("\\ell(\\lambda)", "\\lim_{\\lambda\\to\\infty} e^{\\lambda}\\ell"),
            (show_loss0, show_rate0),
        ),
    )
    results = {
        "loss": loss,
        "loss_simplified": simplified,
        "gamma_star": g_star,
        "loss_optimal": optimal,
        "excess": excess,
        "rate_constant": rate,
        "slope": slope,
        "noiseless_loss": loss0_simpl,
        "noiseless_rate_constant": rate0,
        "proved_simplified": proved_simplified,
        "proved_optimal": proved_optimal,
        "proved_noiseless": proved_noiseless,
    }
    return Derivation("Loss of the linear/ReLU construction", steps, results)


@lru_cache(maxsize=1)
def kappa0_derivation() -> Derivation:
    """The ``κ = 0`` model with the ``κ = 1`` feed-forward matrix (the book's [D]).

    ``ξ_y = Λ``, ``ξ_τ = γ``: ``ℓ(Λ) = log(e^Λ + e^γ + N - 2) - (1-α)Λ - αγ``. Results:
    ``loss``, ``p_tau`` (``P(τ)``), ``p_tau_limit`` (0), ``lambda_star``, ``loss_min``
    (``H_b(α) + αΛ*`` at the optimal ``γ``), ``growth`` (``lim ℓ/Λ = α``),
    ``proved_min`` (SymPy closed ``ℓ(Λ*) = H_b + αΛ*``).
    """
    lam, g, N, a, b = LAMBDA, GAMMA, N_SYM, ALPHA, BETA
    Z = sp.exp(lam) + sp.exp(g) + N - 2
    loss = sp.log(Z) - (1 - a) * lam - a * g
    p_tau = sp.exp(g) / Z
    p_tau_limit = sp.limit(p_tau, lam, sp.oo)
    sol = sp.solve(sp.Eq(sp.diff(loss, lam), 0), lam)
    lam_star_raw = sol[0]
    g_star = sp.log(a / (1 - a))
    lam_star = sp.log(1 + (N - 2) * (1 - a) / a)
    to_beta = {a: b / (1 + b)}
    proved_star = equal(
        sp.exp(lam_star_raw.subs(g, g_star)).subs(to_beta), sp.exp(lam_star).subs(to_beta)
    )
    loss_min = binary_entropy_expr(a) + a * lam_star
    proved_min = equal(loss.subs({g: g_star, lam: lam_star}).subs(to_beta), loss_min.subs(to_beta))
    growth = sp.limit(loss / lam, lam, sp.oo)
    Nm2, om = add(N, -2), add(1, -a)
    Z_show = add(sp.exp(lam), sp.exp(g), Nm2)
    show_loss = check_display(add(sp.log(Z_show), mul(-1, om, lam), mul(-1, a, g)), loss)
    show_p = check_display(mul(sp.exp(g), sp.Pow(Z_show, -1, evaluate=False)), p_tau)
    show_star = check_display(sp.log(add(1, mul(Nm2, om, sp.Pow(a, -1)))), lam_star)
    hb_show = add(mul(-1, a, sp.log(a)), mul(-1, om, sp.log(om)))
    show_min = check_display(
        add(hb_show, mul(a, sp.Symbol("Lambda^*"))),
        loss_min.subs(sp.log(1 + (N - 2) * (1 - a) / a), sp.Symbol("Lambda^*")),
    )
    steps = (
        Step(
            "logits",
            "With $\\kappa = 0$ the feed-forward path reads $x_H$ only: "
            "$U F x_H = \\gamma\\, e_\\tau$ no longer picks up $\\Lambda$.",
            (lam, g),
            ("\\xi_y", "\\xi_\\tau"),
        ),
        Step(
            "loss",
            "Its expected loss and the probability of $\\tau$.",
            (loss, p_tau),
            ("\\ell(\\Lambda)", "P(\\tau)"),
            (show_loss, show_p),
        ),
        Step(
            "limits",
            "As $\\Lambda \\to \\infty$ the model stops predicting $\\tau$ and the loss grows "
            "like $\\alpha\\Lambda$.",
            (p_tau_limit, growth),
            (
                "\\lim_{\\Lambda\\to\\infty} P(\\tau)",
                "\\lim_{\\Lambda\\to\\infty} \\ell(\\Lambda)/\\Lambda",
            ),
        ),
        Step(
            "minimum",
            "The best this model can do, at $\\gamma = \\log\\frac{\\alpha}{1-\\alpha}$: "
            "a minimum strictly above $H_b(\\alpha)$.",
            (lam_star, loss_min),
            ("\\Lambda^*", "\\ell(\\Lambda^*)"),
            (show_star, show_min),
        ),
    )
    results = {
        "loss": loss,
        "p_tau": p_tau,
        "p_tau_limit": p_tau_limit,
        "lambda_star": lam_star,
        "loss_min": loss_min,
        "growth": growth,
        "proved_star": proved_star,
        "proved_min": proved_min,
    }
    return Derivation("The κ = 0 model with the κ = 1 feed-forward matrix", steps, results)
