"""Self-checks of the exercises on linear self-attention (chapter R1).

* :func:`noiseless_query_optimum`: a function ``(n, d, sigma2, tau2) -> (eta, loss)``, the
  optimal step and loss when the query target is noiseless (references
  :func:`icl.lsa.theory.eta_star` and :func:`icl.lsa.theory.loss_star`, less the query
  noise ``σ²``);
* :func:`prior_scale_step`: a SymPy expression in ``n``, ``d``, ``sigma2`` (or a function
  of them), the optimal step under the prior ``w ~ N(0, I_d/d)`` (reference
  :func:`icl.lsa.theory.eta_star` at ``τ² = 1/d``);
* :func:`step_loss`: a SymPy expression in ``eta``, ``n``, ``d``, ``sigma2`` (or a
  function of them), the loss of the step ``Γ = ηI`` with ``τ² = 1`` (reference
  :func:`icl.lsa.theory.isotropic_loss`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
import torch

from icl.checks import Mismatch, call_answer, check_cases, compare_numbers, run
from icl.lsa import theory
from icl.validate import check_seed

__all__ = ["noiseless_query_optimum", "prior_scale_step", "step_loss"]


def _sizes(seed: int, n: int) -> list[tuple[int, int, float, float]]:
    """``n`` cases ``(n, d, σ², τ²)``: the chapter's ``(20, 5, 1, 1)`` first, then random."""
    g = torch.Generator().manual_seed(seed)
    out = [(20, 5, 1.0, 1.0)]
    while len(out) < n:
        nn = int(torch.randint(1, 80, (1,), generator=g))
        d = int(torch.randint(1, 12, (1,), generator=g))
        s2 = round(3 * float(torch.rand(1, generator=g)), 3)
        t2 = round(0.1 + 2 * float(torch.rand(1, generator=g)), 3)
        out.append((nn, d, s2, t2))
    return out[:n]


def _evaluate(answer: Any, names: tuple[str, ...], values: tuple[Any, ...], on: str) -> Any:
    """The student's expression (in the symbols ``names``) or function at ``values``."""
    if isinstance(answer, sp.Basic):
        free = {s.name for s in answer.free_symbols}
        if free - set(names):
            raise Mismatch(
                f"Your expression depends on {sorted(free - set(names))}: write it in the "
                f"symbols {', '.join(names)} alone (sympy.Symbol('{names[0]}'), …)."
            )
        v = answer.subs({s: values[names.index(s.name)] for s in answer.free_symbols})
        if isinstance(v, sp.Basic) and v.free_symbols:
            raise Mismatch(f"On {on} your expression still holds {v.free_symbols}.")
        return v
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        raise Mismatch(
            f"Expected an expression in {', '.join(names)} (SymPy symbols) or a function of "
            "them, got a single number: the answer must hold for every value."
        )
    return call_answer(answer, *values, what="your answer", on=on)


def noiseless_query_optimum(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check ``answer(n, d, sigma2, tau2) -> (eta, loss)`` against the noiseless query target.

    Called at ``(20, 5, 1, 1)`` and random sizes (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)

    def body() -> None:
        for n, d, s2, t2 in _sizes(seed, n_cases):
            on = f"n = {n}, d = {d}, sigma2 = {s2:g}, tau2 = {t2:g}"
            out = call_answer(answer, n, d, s2, t2, what="your function", on=on)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise Mismatch(
                    f"Expected your function to return a pair (eta, loss), got "
                    f"{type(out).__name__} {out!r:.60} (on {on})."
                )
            compare_numbers(
                out[0], theory.eta_star(n, d, s2, t2), what="the optimal step", on=on,
                rtol=1e-9, hint="which terms of the loss depend on the step? Noise that the "
                "layer never sees cannot move the minimiser; the examples' noise can.",
            )
            compare_numbers(
                out[1], theory.loss_star(n, d, s2, t2) - s2, what="the optimal loss", on=on,
                rtol=1e-9, atol=1e-12, hint="write the target as w^T x_q (+ ε_q or not) and "
                "expand the square: what does the query noise add to every predictor's loss?",
            )

    return run("noiseless_query_optimum", body, strict=strict)


def prior_scale_step(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check the optimal step under ``w ~ N(0, I_d/d)``: an expression in ``n, d, sigma2``.

    Compared at ``(20, 5, 1)``, at ``σ² = 0`` and at random sizes (``n_cases`` in all).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    cases = [(n, d, s2) for n, d, s2, _ in _sizes(seed, n_cases)]
    cases.insert(1, (10, 3, 0.0))

    def body() -> None:
        for n, d, s2 in cases[: max(n_cases, 2)]:
            on = f"n = {n}, d = {d}, sigma2 = {s2:g}"
            v = _evaluate(answer, ("n", "d", "sigma2"), (n, d, s2), on)
            compare_numbers(
                v, theory.eta_star(n, d, s2, tau2=1 / d), what="your step", on=on, rtol=1e-9,
                hint="redo the optimum with w ~ N(0, τ² I) and keep τ²: only a ratio of σ² "
                "and τ² can enter. Then put τ² = 1/d.",
            )

    return run("prior_scale_step", body, strict=strict)


def step_loss(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``L(ηI)`` (``τ² = 1``, noisy target) as an expression in ``eta, n, d, sigma2``.

    Compared at random steps ``η ∈ [-0.5, 1.5]`` and sizes (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed + 1)
    etas = [round(-0.5 + 2 * float(torch.rand(1, generator=g)), 4) for _ in range(n_cases)]

    def body() -> None:
        for eta, (n, d, s2, _) in zip(etas, _sizes(seed, n_cases), strict=True):
            on = f"eta = {eta:g}, n = {n}, d = {d}, sigma2 = {s2:g}"
            v = _evaluate(answer, ("eta", "n", "d", "sigma2"), (eta, n, d, s2), on)
            compare_numbers(
                v, theory.isotropic_loss(eta, n, d, s2), what="your loss", on=on, rtol=1e-9,
                hint="expand E[(y_q - η v^T x_q)²]; E[v v^T] needs the fourth moment of a "
                "Gaussian x (E[x x^T A x x^T] = tr(A) I + A + A^T for A = w w^T) and the "
                "examples' noise.",
            )

    return run("step_loss", body, strict=strict)
