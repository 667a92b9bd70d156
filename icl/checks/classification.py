"""Self-checks of the exercises on in-context classification (related result R2).

* :func:`prediction`: a function ``(prompts, w) -> ŷ``, the layer's output on a batch of
  two-class prompts, ``ŷ = b_N^⊤ W x_q`` (reference :func:`icl.classification.model.logits`
  of :func:`icl.classification.data.context_statistic`);
* :func:`squared_loss_scale`: a SymPy expression in ``r`` (or a function of ``r``), the
  scale ``β`` of the squared loss's minimiser ``βΛ^{-1}`` at ``N = ∞`` (reference
  :func:`icl.classification.theory.squared_loss_scale`);
* :func:`bayes_accuracy`: a function ``(r, c) -> accuracy``, the Bayes accuracy with ``c``
  classes (reference :func:`icl.classification.theory.bayes_accuracy`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
import torch

from icl.checks import Mismatch, call_answer, check_cases, compare_numbers, compare_tensors, run
from icl.classification import data, model, theory
from icl.validate import check_seed

__all__ = ["bayes_accuracy", "prediction", "squared_loss_scale"]


def prediction(answer: Any, *, seed: int = 0, batch_size: int = 64, strict: bool = False) -> bool:
    """Check ``answer(prompts, w)``: the prediction ``ŷ`` (shape ``(B,)``) of each prompt.

    Run on two-class prompts of several dimensions and lengths (``N = 1`` among them), with
    random ``W`` (not symmetric), ``batch_size`` prompts each, from ``seed``; compared to
    ``1e-9``.
    """
    seed = check_seed("seed", seed)
    batch_size = check_cases("batch_size", batch_size)
    g = torch.Generator().manual_seed(seed)
    cases = [(3, 16), (2, 1), (5, 7), (4, 40)]

    def body() -> None:
        for i, (d, n) in enumerate(cases):
            task = data.default_task(d=d, seed=seed + i)
            prompts = data.sample_prompts(task, n, batch_size, seed=seed + 10 + i)
            w = torch.randn(d, d, generator=g, dtype=torch.float64)
            on = (f"prompts of d = {d}, N = {n} (data.sample_prompts(data.default_task(d={d}, "
                  f"seed={seed + i}), {n}, {batch_size}, seed={seed + 10 + i})), a random W")
            got = call_answer(answer, prompts, w.clone(), what="your function", on=on)
            ref = model.logits(data.context_statistic(prompts), w, prompts.xq)
            if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[1] == 1:
                raise Mismatch(f"Expected shape ({batch_size},), one ŷ per prompt, got "
                               f"{tuple(got.shape)} (on {on}): squeeze the last axis.")
            compare_tensors(
                got, ref, what="your ŷ", on=on, atol=1e-9, show_expected=False,
                hint="the labels enter as ±1 (prompts.labels holds 0/1), b_N is an average "
                "over the N examples, and W sits between b_N and x_q (b_N^T W x_q, not "
                "x_q^T W b_N).",
            )

    return run("prediction", body, strict=strict)


def squared_loss_scale(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check ``β(r)``, a SymPy expression in the symbol ``r`` (or a function of ``r``).

    Compared, to a relative ``1e-9``, at the chapter's ``r = 1.5``, at ``r = 0.5`` and at
    random ``r`` (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    radii = [1.5, 0.5] + [round(0.1 + 4 * float(torch.rand(1, generator=g)), 3)
                          for _ in range(n_cases)]

    def value(r: float) -> Any:
        if isinstance(answer, sp.Expr):
            free = {s.name for s in answer.free_symbols}
            if free - {"r"}:
                raise Mismatch(f"Your expression depends on {sorted(free - {'r'})}: write it "
                               "in the symbol r alone.")
            return sp.N(answer.subs({s: r for s in answer.free_symbols}), 30)
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            raise Mismatch("Expected an expression in r (or a function of r), got a single "
                           "number: the answer must hold for every r.")
        return call_answer(answer, r, what="your function", on=f"r = {r:g}")

    def body() -> None:
        for r in radii[:n_cases]:
            got = value(r)
            if isinstance(got, sp.Basic) and got.free_symbols:
                raise Mismatch(f"At r = {r:g} your expression still holds {got.free_symbols}.")
            compare_numbers(
                got, theory.squared_loss_scale(r), what="your beta", on=f"r = {r:g}", rtol=1e-9,
                hint="y_q L' has mean r^2 and variance 2 r^2: the second moment of ŷ needs "
                "both. Expand E(y_q - ŷ)^2 as a quadratic in beta.",
            )

    return run("squared_loss_scale", body, strict=strict)


def bayes_accuracy(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check ``answer(r, c)``: the Bayes accuracy with ``c`` equal-norm classes.

    Compared, to a relative ``1e-5`` (a quadrature, not a Monte-Carlo estimate), at
    ``(1.5, 4)``, ``(1.5, 2)`` and random ``r`` and ``c ∈ {2, …, 8}`` (``n_cases`` in all,
    from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    cases = [(1.5, 4), (1.5, 2)] + [
        (round(0.3 + 2.7 * float(torch.rand(1, generator=g)), 3),
         int(torch.randint(2, 9, (1,), generator=g))) for _ in range(n_cases)]

    def body() -> None:
        for r, c in cases[:n_cases]:
            on = f"r = {r:g}, c = {c}"
            got = call_answer(answer, r, c, what="your function", on=on)
            compare_numbers(
                got, theory.bayes_accuracy(r, c), what="your accuracy", on=on, rtol=1e-5,
                hint="condition on the noise of the true class: it wins when its score beats "
                "each of the other c - 1 independent scores; integrate over that noise "
                "(scipy.integrate.quad).",
            )

    return run("bayes_accuracy", body, strict=strict)
