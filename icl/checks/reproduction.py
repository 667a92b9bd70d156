"""Self-checks of the exercises on the reproduction of the paper's experiments (chapter 6).

* :func:`rate_slope`: a function ``(task, lr) -> slope``, the slope per step of the log
  excess risk of the construction under normalised GD (reference
  :func:`icl.dynamics.normalized_gd_trajectory`);
* :func:`softmax_limit`: a function ``task -> loss``, the limit ``Λ → ∞`` of the loss of
  the paper's softmax model with ``V = I`` (reference
  :func:`icl.softmax_construction.softmax_unscaled_floor`);
* :func:`float32_stall`: a function ``(task, lr) -> (Lambda, steps)``, where float32
  normalised GD of the noisy construction stops (reference
  :func:`icl.dynamics.float32_stall`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from typing import Any

import torch

from icl import dynamics, softmax_construction
from icl.checks import Mismatch, call_answer, check_cases, compare_numbers, run
from icl.task import RecallTask
from icl.validate import check_seed

__all__ = ["float32_stall", "rate_slope", "softmax_limit"]


def _random_tasks(seed: int, n: int, *, noiseless: bool = True) -> list[RecallTask]:
    """The paper's tasks first (noisy α = 0.5, noiseless), then random sizes and noise."""
    g = torch.Generator().manual_seed(seed)
    tasks = [RecallTask(alpha=0.5)] + ([RecallTask()] if noiseless else [RecallTask(alpha=0.2)])
    while len(tasks) < n:
        nq = int(torch.randint(1, 10, (1,), generator=g))
        N = nq + 6 + int(torch.randint(0, 200, (1,), generator=g))
        noisy = not noiseless or len(tasks) % 2 == 0
        alpha = round(0.05 + 0.9 * float(torch.rand(1, generator=g)), 2) if noisy else 0.0
        tasks.append(RecallTask(vocab_size=N, n_triggers=nq, alpha=alpha))
    return tasks[:n]


def _describe(task: RecallTask) -> str:
    return (f"RecallTask(vocab_size={task.vocab_size}, n_triggers={task.n_triggers}, "
            f"alpha={task.alpha:g})")


def _lrs(seed: int, n: int) -> list[float]:
    g = torch.Generator().manual_seed(seed + 1)
    return [0.1, 0.05] + [round(0.01 + 0.5 * float(torch.rand(1, generator=g)), 3)
                          for _ in range(n)]


def rate_slope(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``answer(task, lr)``: the slope of ``log(excess)`` per normalised-GD step.

    Compared, to a relative ``1e-9``, on the paper's noisy and noiseless tasks and on random
    tasks (``n_cases`` in all, from ``seed``), half of them noiseless with several triggers.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)

    def body() -> None:
        for task, lr in zip(_random_tasks(seed, n_cases), _lrs(seed, n_cases), strict=False):
            on = f"{_describe(task)}, lr = {lr:g}"
            got = call_answer(answer, task, lr, what="your function", on=on)
            ref = -float(dynamics.normalized_gd_trajectory(task, lr, 1.0))
            kind = "noisy" if task.noisy else "noiseless"
            compare_numbers(
                got, ref, what="your slope", on=on, rtol=1e-9,
                hint=f"for the {kind} task, how far does one normalised step move the scale "
                "of the trigger in the sequence? The normalisation divides by the norm of "
                "the whole gradient vector, one entry per trained scale. (The slope of a "
                "decreasing curve is negative.)",
            )

    return run("rate_slope", body, strict=strict)


def softmax_limit(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``answer(task)``: the ``Λ → ∞`` loss of softmax attention with ``V = I``.

    Compared, to a relative ``1e-6``, on the paper's noisy and noiseless tasks and on random
    tasks (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)

    def body() -> None:
        for task in _random_tasks(seed, n_cases):
            on = _describe(task)
            got = call_answer(answer, task, what="your function", on=on)
            compare_numbers(
                got, softmax_construction.softmax_unscaled_floor(task), what="your limit",
                on=on,
                hint="find the attention output when all the weight sits on y, then the "
                "logits with V = I and the construction's F: they are those of the linear "
                "construction at one value of Lambda. A lower bound on the loss is not its "
                "limit." if task.noisy else "noiseless: there is no tau and every one of "
                "the other N - 1 tokens has logit 0.",
            )

    return run("softmax_limit", body, strict=strict)


def float32_stall(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check ``answer(task, lr) -> (Lambda, steps)``: where float32 normalised GD stops.

    Noisy tasks only: the chapter's (α = 0.5, ``η = 0.05``) and random ones (``n_cases``
    in all, from ``seed``). The tolerance is 5 % relative on both numbers: the exact
    threshold depends on how the softmax rounds, the order of magnitude on float32.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    lrs = [0.05, 0.1] + _lrs(seed, n_cases)[2:]

    def body() -> None:
        for task, lr in zip(_random_tasks(seed, n_cases, noiseless=False), lrs, strict=False):
            on = f"{_describe(task)}, lr = {lr:g}"
            out = call_answer(answer, task, lr, what="your function", on=on)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise Mismatch(
                    f"Expected your function to return a pair (Lambda, steps), got "
                    f"{type(out).__name__} {out!r:.60} (on {on})."
                )
            lam, steps = dynamics.float32_stall(task, lr)
            compare_numbers(
                out[0], lam, what="Lambda at the stall", on=on, rtol=0.05,
                hint="the gradient is the probability mass on the other N - 2 tokens; it "
                "becomes exactly 0 when that mass is lost next to 1 in float32 (how small "
                "is that? torch.finfo(torch.float32)).",
            )
            compare_numbers(
                out[1], steps, what="the number of steps", on=on, rtol=0.05,
                hint="each normalised step moves Lambda by exactly lr.",
            )

    return run("float32_stall", body, strict=strict)
