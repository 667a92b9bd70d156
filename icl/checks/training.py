"""Self-checks of the exercises on training and the linear rate (chapter 4).

* :func:`final_lambdas`: a pair ``(Λ in float32, Λ in float64)``, where 60 steps of
  normalised gradient descent leave the noisy ``reparam`` model (reference: the run
  itself, :func:`icl.train`);
* :func:`growth_ratio`: a function ``(n_triggers, batch_size) -> ratio``, the leading-order
  growth ``λ̄_T/(ηT)`` of the noiseless scales (reference
  :func:`icl.dynamics.normalized_gd_trajectory` and
  :func:`icl.dynamics.noiseless_balance_efficiency`);
* :func:`plain_gd`: a function ``(task, lr, steps) -> [Λ_0, …, Λ_T]``, plain gradient
  descent on the construction's population loss (reference
  :func:`icl.dynamics.plain_gd_trajectory`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from icl import dynamics
from icl.checks import (
    Mismatch,
    call_answer,
    check_cases,
    compare_numbers,
    compare_tensors,
    run,
)
from icl.model import OneLayerTransformer
from icl.task import RecallTask
from icl.training import train
from icl.validate import check_seed

__all__ = ["final_lambdas", "growth_ratio", "plain_gd"]

#: the run of the float32 exercise: noisy task, linear attention, reparam family
FLOAT32_RUN = {"alpha": 0.5, "steps": 60, "lr": 0.5, "batch_size": 64}


@lru_cache(maxsize=8)
def _trained_lambdas(seed: int) -> tuple[float, float]:
    """``Λ`` after the run of ``FLOAT32_RUN`` in float32 and float64 (batch seed ``seed``)."""
    task = RecallTask(alpha=FLOAT32_RUN["alpha"])
    out = []
    for dtype in (torch.float32, torch.float64):
        net = OneLayerTransformer(task, "linear", "reparam", dtype=dtype)
        train(net, task, FLOAT32_RUN["steps"], FLOAT32_RUN["lr"],
              batch_size=FLOAT32_RUN["batch_size"], seed=seed, ood=False,
              eval_every=FLOAT32_RUN["steps"], progress=False)
        out.append(float(net.Lambda.detach()))
    return out[0], out[1]


def final_lambdas(answer: Any, *, seed: int = 0, strict: bool = False) -> bool:
    """Check the pair ``(Λ float32, Λ float64)`` after the run of ``FLOAT32_RUN``.

    The reference trains the two models (about two seconds) with batches drawn from
    ``seed``; where training stops does not depend on the batches.
    """
    seed = check_seed("seed", seed)
    on = (f"60 steps, eta = 0.5, batch 64, alpha = 0.5, linear reparam model, "
          f"batch seed {seed}")

    def body() -> None:
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise Mismatch(
                f"Expected a pair (Lambda in float32, Lambda in float64), got "
                f"{type(answer).__name__} {answer!r:.60}."
            )
        ref32, ref64 = _trained_lambdas(seed)
        compare_numbers(
            answer[1], ref64, what="your float64 Lambda", on=on, atol=1e-9, rtol=0,
            hint="a normalised step moves Lambda by exactly eta as long as the gradient is "
            "not zero.",
        )
        compare_numbers(
            answer[0], ref32, what="your float32 Lambda", on=on, atol=1e-6, rtol=0,
            hint="a step is skipped once p_y + p_tau rounds to 1 in float32: compare "
            "(N-2)(1-alpha) e^{-Lambda} with half a float32 unit of 1 (2^-24), and remember "
            "that Lambda only takes multiples of eta.",
        )

    return run("final_lambdas", body, strict=strict)


def growth_ratio(answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False) -> bool:
    """Check ``answer(n_triggers, batch_size)``: ``λ̄_T/(ηT)`` to leading order in ``1/B``.

    Called at ``(1, 512)``, ``(4, 512)``, ``(9, 64)`` and random ``|Q|`` in 1 … 20 and
    batch sizes 16 … 1024 (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    cases = [(1, 512), (4, 512), (9, 64)]
    while len(cases) < n_cases:
        cases.append((int(torch.randint(1, 21, (1,), generator=g)),
                      int(torch.randint(16, 1025, (1,), generator=g))))

    def body() -> None:
        for n_q, batch in cases[:n_cases]:
            on = f"n_triggers = {n_q}, batch_size = {batch}"
            got = call_answer(answer, n_q, batch, what="your function", on=on)
            task = RecallTask(n_triggers=n_q, alpha=0.0)
            balanced = dynamics.normalized_gd_trajectory(task, 1.0, 1.0)
            expected = balanced * dynamics.noiseless_balance_efficiency(n_q, batch)
            compare_numbers(
                got, expected, what="your ratio", on=on, rtol=1e-9,
                hint="a normalised step has length eta and is shared among |Q| nearly equal "
                "components (which norm?); then the batch is only nearly balanced: expand "
                "the step to first order in the counts' fluctuation, of variance (|Q|-1)/B.",
            )

    return run("growth_ratio", body, strict=strict)


def plain_gd(answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False) -> bool:
    """Check ``answer(task, lr, steps) -> [Λ_0, …, Λ_steps]``: plain GD on ``L(Λ)`` from 0.

    Called on the default noisy task and random noisy tasks, step sizes and numbers of
    steps (``n_cases`` in all, from ``seed``); entries must agree to ``1e-9`` relative.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    cases = [(RecallTask(alpha=0.2), 1.0, 200)]
    while len(cases) < n_cases:
        N = int(torch.randint(8, 200, (1,), generator=g))
        alpha = round(0.05 + 0.9 * float(torch.rand(1, generator=g)), 2)
        lr = round(10 ** (-2 + 2.5 * float(torch.rand(1, generator=g))), 3)
        steps = int(torch.randint(1, 400, (1,), generator=g))
        cases.append((RecallTask(vocab_size=N, n_outputs=2, seq_len=16, alpha=alpha), lr, steps))

    def body() -> None:
        for task, lr, steps in cases[:n_cases]:
            on = (f"RecallTask(vocab_size={task.vocab_size}, alpha={task.alpha:g}), "
                  f"lr = {lr:g}, steps = {steps}")
            got = call_answer(answer, task, lr, steps, what="your function", on=on)
            if isinstance(got, (list, tuple)):
                try:
                    got = torch.tensor(got, dtype=torch.float64)
                except (TypeError, ValueError):
                    raise Mismatch(f"Expected numbers, got a {type(got).__name__} holding "
                                   f"something else (on {on}).") from None
            if isinstance(got, np.ndarray):
                got = torch.from_numpy(np.asarray(got, dtype=np.float64))
            ref = torch.from_numpy(dynamics.plain_gd_trajectory(task, lr, steps))
            scale = float(ref.abs().max())
            compare_tensors(
                got, ref, what="your trajectory", on=on, atol=1e-9 * max(1.0, scale),
                show_expected=False,
                hint="return Lambda_0 = 0 and the steps+1 values; each step is "
                "Lambda <- Lambda - lr * dL/dLambda with L(Lambda) of section 3.3 at the "
                "task's own gamma (no normalisation): differentiate the log of the whole "
                "partition function.",
            )

    return run("plain_gd", body, strict=strict)
