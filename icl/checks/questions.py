"""Self-checks of the exercises on the open questions (chapter 7).

* :func:`sign_step_fraction`: a function ``(n_triggers, batch_size) -> float``, the
  expected ``λ̄_T/(ηT)`` of the sign steps of section 7.5 (reference: the probability that
  a batch holds a given trigger, ``_trigger_in_batch``);
* :func:`one_occurrence_risk`: a function ``(a, b) -> float``, the Bayes risk of the
  general task with ``K = 1`` and a ``Beta(a, b)`` prior (reference
  :func:`icl.general_task.bayes_risk_general`);
* :func:`posterior_predictive`: a SymPy expression in ``a``, ``b``, ``n_y``, ``n_tau`` (or a
  function of them), ``P(target = τ | n_y, n_τ)`` (reference
  :func:`icl.general_task.posterior_noise`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
import torch

from icl import general_task
from icl.checks import Mismatch, call_answer, check_cases, compare_numbers, run
from icl.task import RecallTask
from icl.validate import check_int, check_seed

__all__ = ["one_occurrence_risk", "posterior_predictive", "sign_step_fraction"]


def _trigger_in_batch(n_triggers: int, batch_size: int) -> float:
    """``1 - (1 - 1/|Q|)^B``: a batch of ``B`` sequences (triggers i.i.d. uniform on ``Q``)
    holds a given trigger; a sign step then moves its ``λ_k`` by ``η``, else not at all."""
    n_triggers = check_int("n_triggers", n_triggers, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return 1.0 - (1.0 - 1.0 / n_triggers) ** batch_size


def sign_step_fraction(
    answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False
) -> bool:
    """Check ``answer(n_triggers, batch_size)``, the expected ``λ̄_T/(ηT)`` of sign steps.

    Run at the chapter's ``(50, 64)``, at ``B < |Q|`` and ``B ≫ |Q|``, and at random sizes
    (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    cases = [(50, 64), (200, 16), (5, 512)]
    while len(cases) < n_cases:
        cases.append((int(torch.randint(1, 300, (1,), generator=g)),
                      int(torch.randint(1, 1000, (1,), generator=g))))

    def body() -> None:
        for Q, B in cases[:n_cases]:
            on = f"n_triggers = {Q}, batch_size = {B}"
            got = call_answer(answer, Q, B, what="your function", on=on)
            compare_numbers(
                got, _trigger_in_batch(Q, B), what="your fraction", on=on, rtol=1e-9,
                hint="a λ_k moves by exactly η when its trigger is in the batch, whatever "
                "the number of sequences that hold it; what is the probability that none "
                "of the B sequences holds it?",
            )

    return run("sign_step_fraction", body, strict=strict)


def _priors(seed: int, n: int) -> list[tuple[float, float]]:
    g = torch.Generator().manual_seed(seed)
    out = [(1.0, 1.0), (0.5, 4.0)]
    while len(out) < n:
        a, b = (round(0.1 + 9.9 * float(torch.rand(1, generator=g)), 3) for _ in range(2))
        out.append((a, b))
    return out[:n]


def one_occurrence_risk(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check ``answer(a, b)``: the Bayes risk of the general task with ``K = 1``, no
    distractor and a ``Beta(a, b)`` prior on the noise rate (``n_cases`` priors from
    ``seed``, ``Beta(1, 1)`` first)."""
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    base = RecallTask(alpha=0.5)

    def body() -> None:
        for a, b in _priors(seed, n_cases):
            on = f"a = {a:g}, b = {b:g}"
            got = call_answer(answer, a, b, what="your function", on=on)
            task = general_task.GeneralTask(base, max_occurrences=1, n_distractors=0,
                                            prior=(a, b))
            compare_numbers(
                got, general_task.bayes_risk_general(task), what="your Bayes risk", on=on,
                rtol=1e-9, hint="with K = 1 every context shows the same counts; the "
                "posterior of θ conditions on them (the one follower of q is y, not τ).",
            )

    return run("one_occurrence_risk", body, strict=strict)


def posterior_predictive(
    answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False
) -> bool:
    """Check ``P(target = τ | n_y, n_τ)`` under ``θ ~ Beta(a, b)``: an expression in ``a``,
    ``b``, ``n_y``, ``n_tau`` (or a function of them), on ``n_cases`` random cases."""
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed + 1)
    cases = [(a, b, int(torch.randint(1, 9, (1,), generator=g)),
              int(torch.randint(0, 6, (1,), generator=g))) for a, b in _priors(seed, n_cases)]
    cases[0] = (1.0, 1.0, 1, 0)
    names = ("a", "b", "n_y", "n_tau")
    base = RecallTask(alpha=0.5)

    def value(case: tuple[float, float, int, int], on: str) -> Any:
        if isinstance(answer, sp.Basic):
            free = {s.name for s in answer.free_symbols}
            if free - set(names):
                raise Mismatch(f"Your expression depends on {sorted(free - set(names))}: write "
                               f"it in the symbols {', '.join(names)} alone.")
            v = answer.subs({s: case[names.index(s.name)] for s in answer.free_symbols})
            return v
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            raise Mismatch("Expected an expression in a, b, n_y, n_tau (SymPy symbols) or a "
                           "function of them, got a single number.")
        return call_answer(answer, *case, what="your answer", on=on)

    def body() -> None:
        for case in cases:
            a, b, ny, nt = case
            on = f"a = {a:g}, b = {b:g}, n_y = {ny}, n_tau = {nt}"
            task = general_task.GeneralTask(base, prior=(a, b))
            ref = float(general_task.posterior_noise(task, ny, nt))
            compare_numbers(
                value(case, on), ref, what="your probability", on=on, rtol=1e-9,
                hint="the followers of q are n_τ draws of τ and n_y of y, each τ with "
                "probability θ: multiply the Beta(a, b) density by that likelihood, then "
                "average θ over the posterior.",
            )

    return run("posterior_predictive", body, strict=strict)
