"""Self-checks of the exercises on the Bayes-optimal construction (chapter 3).

* :func:`best_split`: a function ``(task, budget) -> λ``, the scales of the noiseless
  construction that minimise its loss for a fixed sum (checked through
  :func:`icl.closed_form_loss`);
* :func:`plugin_limit`: a function ``(alpha, alpha_hat) -> L_∞``, the loss of the
  construction with a plug-in offset as ``Λ → ∞`` (reference :func:`icl.bayes_risk` and
  :func:`icl.kl_bernoulli`);
* :func:`lambda_for_excess`: a function ``(task, eps) -> Λ``, the scale at which the
  construction's excess risk equals ``eps`` (checked through
  :func:`icl.closed_form_excess`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from icl import bayes, closed_forms
from icl.checks import Mismatch, as_number, call_answer, check_cases, compare_numbers, run
from icl.task import RecallTask
from icl.validate import check_seed

__all__ = ["best_split", "lambda_for_excess", "plugin_limit"]


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=g))


def _int(g: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (1,), generator=g))


def _random_tasks(seed: int, n: int, *, noisy: bool | None) -> list[RecallTask]:
    """``n`` tasks with random sizes; ``noisy=None`` alternates noiseless and noisy."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    while len(tasks) < n:
        nq, no = _int(g, 1, 9), _int(g, 1, 6)
        N = nq + no + 2 + _int(g, 1, 150)
        is_noisy = (len(tasks) % 2 == 1) if noisy is None else noisy
        alpha = round(_uniform(g, 0.05, 0.95), 2) if is_noisy else 0.0
        tasks.append(RecallTask(vocab_size=N, n_triggers=1 if is_noisy else nq,
                                n_outputs=no, seq_len=16, alpha=alpha))
    return tasks


def _describe(task: RecallTask) -> str:
    return (f"RecallTask(vocab_size={task.vocab_size}, n_triggers={task.n_triggers}, "
            f"alpha={task.alpha:g})")


def _as_vector(value: Any, n: int, *, on: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Mismatch(f"Expected {n} numbers (one scale per trigger), got "
                       f"{type(value).__name__} (on {on}).") from None
    if arr.shape != (n,):
        raise Mismatch(f"Expected {n} scales (one per trigger), got an array of shape "
                       f"{arr.shape} (on {on}).")
    if not np.all(np.isfinite(arr)):
        raise Mismatch(f"Your scales hold NaN or infinity (on {on}).")
    return arr


def best_split(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``answer(task, budget) -> λ``: the loss-minimising scales with ``Σ_k λ_k = budget``.

    Called on the default noiseless task and random noiseless tasks with random budgets
    (``n_cases`` in all, from ``seed``); the scales must sum to the budget and their loss
    :func:`icl.closed_form_loss` must equal the smallest loss under that budget.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed + 1)
    cases = [(RecallTask(), 20.0)] + [
        (t, round(_uniform(g, 0.5, 40.0), 3)) for t in _random_tasks(seed, n_cases, noisy=False)
    ]

    def body() -> None:
        for task, budget in cases[:n_cases]:
            on = f"{_describe(task)}, budget = {budget:g}"
            lam = _as_vector(call_answer(answer, task, budget, what="your function", on=on),
                             task.n_triggers, on=on)
            if abs(lam.sum() - budget) > 1e-9 * max(1.0, budget):
                raise Mismatch(
                    f"On {on}, your scales sum to {lam.sum():.6g}, not to the budget."
                )
            best = closed_forms.closed_form_loss(task, np.full(task.n_triggers,
                                                               budget / task.n_triggers))
            compare_numbers(
                closed_forms.closed_form_loss(task, lam), best,
                what="the loss L(lambda) of your scales", on=on, rtol=1e-10,
                hint="look at the shape of u -> log(1 + (N-1) e^{-u}): what does its second "
                "derivative say about the mean of its values (Jensen)?",
            )

    return run("best_split", body, strict=strict)


def plugin_limit(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``answer(alpha, alpha_hat)``: the loss of the plug-in construction as ``Λ → ∞``.

    Called at ``(0.2, 0.1)``, ``(0.2, 0.2)`` and random levels in ``(0.02, 0.98)``
    (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    cases = [(0.2, 0.1), (0.2, 0.2)]
    while len(cases) < n_cases:
        cases.append((round(_uniform(g, 0.02, 0.98), 3), round(_uniform(g, 0.02, 0.98), 3)))

    def body() -> None:
        for alpha, alpha_hat in cases[:n_cases]:
            on = f"alpha = {alpha:g}, alpha_hat = {alpha_hat:g}"
            got = call_answer(answer, alpha, alpha_hat, what="your function", on=on)
            expected = bayes.bayes_risk(alpha) + bayes.kl_bernoulli(alpha, alpha_hat)
            compare_numbers(
                got, expected, what="your limit", on=on, rtol=1e-9,
                hint="the target follows the true alpha while the logits use the plug-in "
                "gamma_hat: take the expectation under Ber(alpha) of the cross-entropy of "
                "the limiting law (which law does the model predict as Lambda grows?).",
            )

    return run("plugin_limit", body, strict=strict)


def lambda_for_excess(
    answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False
) -> bool:
    """Check ``answer(task, eps) -> Λ``: the scale at which the excess risk equals ``eps``.

    Called on the default noisy and noiseless tasks and random others (noiseless: one
    ``λ`` shared by every trigger), with ``eps`` from ``10^{-6}`` to 1 (``n_cases`` in
    all, from ``seed``); :func:`icl.closed_form_excess` at the answer must equal ``eps``.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed + 1)
    tasks = [RecallTask(alpha=0.2), RecallTask()] + _random_tasks(seed, n_cases, noisy=None)
    eps = [0.5, 1e-3] + [round(10 ** _uniform(g, -6, 0), 8) for _ in range(n_cases)]

    def body() -> None:
        for task, e in list(zip(tasks, eps, strict=True))[:n_cases]:
            on = f"{_describe(task)}, eps = {e:g}"
            lam = as_number(call_answer(answer, task, e, what="your function", on=on),
                            what="your Lambda", on=on)
            compare_numbers(
                closed_forms.closed_form_excess(task, lam), e,
                what="the excess L(Lambda) - H_b(alpha) at your Lambda", on=on, rtol=1e-8,
                hint="solve the closed form of section 3.3 exactly, not its bound "
                "(N-2)(1-alpha) e^{-Lambda}; in the noiseless task the constant is N - 1 "
                "and H_b = 0.",
            )

    return run("lambda_for_excess", body, strict=strict)
