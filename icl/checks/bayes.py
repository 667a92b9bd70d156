"""Self-checks of the exercises on the Bayes risk (chapter 2).

* :func:`bayes_risk`: a function ``alpha -> R*``, the Bayes risk ``H_b(α)`` in nats with
  its value at ``α = 0`` (reference :func:`icl.bayes.bayes_risk`);
* :func:`two_noise_risk`: a SymPy expression in ``alpha_1``, ``alpha_2`` (or a function
  of the two), the Bayes risk of a task with two noise tokens (reference
  :func:`icl.bayes.categorical_entropy`);
* :func:`plugin_bound`: a function ``(alpha, m, delta) -> bound``, the second-order
  ``1-δ`` bound on the excess risk of a plug-in ``α̂`` (reference
  :func:`icl.finite.quadratic_hoeffding_bound`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

import math
from typing import Any

import sympy as sp
import torch

from icl import bayes, finite
from icl.checks import Mismatch, call_answer, check_cases, compare_numbers, run
from icl.validate import check_seed

__all__ = ["bayes_risk", "plugin_bound", "two_noise_risk"]


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=g))


def bayes_risk(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``answer(alpha) -> H_b(α)`` (nats; 0 at ``α = 0``).

    Called at ``α = 0``, ``0.5``, ``0.2`` and random levels in ``(0, 1)`` (``n_cases`` in
    all, from ``seed``), some of them within ``1e-6`` of 0.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    alphas = [0.0, 0.5, 0.2]
    while len(alphas) < n_cases:
        tiny = len(alphas) % 3 == 0
        alphas.append(10 ** _uniform(g, -9, -6) if tiny else round(_uniform(g, 0.01, 0.99), 4))

    def body() -> None:
        for alpha in alphas[:n_cases]:
            on = f"alpha = {alpha:.6g}"
            hint = ("the risk is the expected cross-entropy of the Bayes law, in nats "
                    "(natural log); at alpha = 0 the target is always y and the convention "
                    "0 log 0 = 0 applies.")
            try:
                got = call_answer(answer, alpha, what="your function", on=on)
                compare_numbers(got, bayes.bayes_risk(alpha), what="your risk", on=on,
                                rtol=1e-9, hint=hint)
            except Mismatch as m:  # an error or a NaN (at alpha = 0): add the hint
                if "Hint:" in str(m):
                    raise
                raise Mismatch(f"{m} Hint: {hint}") from None

    return run("bayes_risk", body, strict=strict)


def two_noise_risk(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check the Bayes risk with two noise tokens, an expression in ``alpha_1``, ``alpha_2``.

    ``answer`` is a SymPy expression in the symbols named ``alpha_1`` and ``alpha_2`` (or
    a function of the two levels); it is evaluated at ``(0.1, 0.3)`` and at random interior
    points of ``α_1, α_2 > 0``, ``α_1 + α_2 < 1`` (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    points = [(0.1, 0.3), (0.45, 0.05)]
    while len(points) < n_cases:
        a1, a2 = _uniform(g, 0.01, 0.98), _uniform(g, 0.01, 0.98)
        if a1 + a2 < 0.99:
            points.append((round(a1, 4), round(a2, 4)))

    def value(a1: float, a2: float) -> Any:
        on = f"alpha_1 = {a1:g}, alpha_2 = {a2:g}"
        if isinstance(answer, sp.Expr):
            names = {s.name: s for s in answer.free_symbols}
            extra = set(names) - {"alpha_1", "alpha_2"}
            if extra:
                raise Mismatch(
                    f"Your expression depends on {sorted(extra)}: write it in the symbols "
                    "alpha_1 and alpha_2 alone (the answer cell defines them)."
                )
            subs = {names[k]: v for k, v in (("alpha_1", a1), ("alpha_2", a2)) if k in names}
            return answer.subs(subs).evalf()
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            raise Mismatch(
                "Expected an expression in alpha_1 and alpha_2 (or a function of them), got "
                "a single number: the answer must hold for every noise level."
            )
        return call_answer(answer, a1, a2, what="your function", on=on)

    def body() -> None:
        for a1, a2 in points[:n_cases]:
            on = f"alpha_1 = {a1:g}, alpha_2 = {a2:g}"
            v = value(a1, a2)
            if isinstance(v, sp.Basic) and v.free_symbols:
                raise Mismatch(f"On {on} your expression still holds {v.free_symbols}.")
            compare_numbers(
                v, bayes.categorical_entropy([1 - a1 - a2, a1, a2]), what="your risk", on=on,
                rtol=1e-9,
                hint="the Bayes law puts on each token the probability that the target is "
                "that token; the risk is the expected cross-entropy of that law, a sum with "
                "one term per token the target can be.",
            )

    return run("two_noise_risk", body, strict=strict)


def plugin_bound(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``answer(alpha, m, delta)``: the second-order ``1-δ`` bound on the plug-in excess.

    Called at ``(0.2, 2048, 0.05)`` and random ``α ∈ (0.05, 0.95)``, ``m`` from 10 to
    ``10^5`` and ``δ ∈ (0.001, 0.3)`` (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    cases = [(0.2, 2048, 0.05)]
    while len(cases) < n_cases:
        cases.append((round(_uniform(g, 0.05, 0.95), 3), int(10 ** _uniform(g, 1, 5)),
                      round(10 ** _uniform(g, -3, math.log10(0.3)), 4)))

    def body() -> None:
        for alpha, m, delta in cases[:n_cases]:
            on = f"alpha = {alpha:g}, m = {m}, delta = {delta:g}"
            got = call_answer(answer, alpha, m, delta, what="your function", on=on)
            compare_numbers(
                got, finite.quadratic_hoeffding_bound(alpha, m, delta), what="your bound",
                on=on, rtol=1e-9,
                hint="put Hoeffding's radius (icl.bayes.hoeffding_radius: which logarithm?) "
                "into the quadratic approximation of section 2.7, whose curvature is the "
                "Fisher information 1/(alpha (1 - alpha)); mind the factor 1/2.",
            )

    return run("plugin_bound", body, strict=strict)
