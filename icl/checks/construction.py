"""Self-checks of the exercises on the Bayes-optimal construction (chapter 3).

* :func:`construction_scores`: a function ``(task, tokens, Lambda) -> s``, the attention
  scores of the construction on a batch (reference: the network built by
  :func:`icl.construct_model`);
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
from icl.checks import (
    Mismatch,
    as_number,
    call_answer,
    check_cases,
    compare_numbers,
    compare_tensors,
    run,
)
from icl.model import construct_model
from icl.task import RecallTask
from icl.validate import check_seed

__all__ = ["best_split", "construction_scores", "lambda_for_excess", "plugin_limit"]


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


def construction_scores(
    answer: Any, *, seed: int = 0, batch_size: int = 64, strict: bool = False
) -> bool:
    """Check ``answer(task, tokens, Lambda) -> s``, the ``[B, H]`` scores of the construction.

    Run on batches (``batch_size`` sequences, from ``seed``) of the default noisy and
    noiseless tasks and of a small noisy task with two triggers, at scales drawn from
    ``seed``; compared with the scores of the network :func:`icl.construct_model` builds
    (linear attention, float64), to ``1e-9``.
    """
    seed = check_seed("seed", seed)
    batch_size = check_cases("batch_size", batch_size)
    g = torch.Generator().manual_seed(seed)
    tasks = [
        ("the default noisy task", RecallTask(alpha=0.2)),
        ("the default noiseless task", RecallTask()),
        ("a small noisy task (N = 12, |Q| = 2, H = 8)",
         RecallTask(vocab_size=12, n_triggers=2, n_outputs=2, seq_len=8, alpha=0.3)),
    ]

    def body() -> None:
        for i, (name, task) in enumerate(tasks):
            lam = round(_uniform(g, 0.5, 10.0), 3)
            batch = task.sample(batch_size, seed=seed + i)
            on = f"{name}, Lambda = {lam:g} (task.sample({batch_size}, seed={seed + i}))"
            got = call_answer(answer, task, batch.tokens.clone(), lam, what="your function",
                              on=on)
            with torch.no_grad():
                ref, _ = construct_model(task, lam).scores(batch.tokens)
            if isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(ref.shape):
                got = got.detach().double()
            compare_tensors(
                got, ref, what="your score tensor", on=on, atol=1e-9, show_expected=False,
                hint="s_h = x_H^T W x_h with x_h = E(z_h) + E~(z_{h-1}) (x_1 = E(z_1)): "
                "read off which coordinates of x_H and x_h the rows and columns of W "
                "touch, in the noisy task and in the noiseless one.",
            )

    return run("construction_scores", body, strict=strict)
