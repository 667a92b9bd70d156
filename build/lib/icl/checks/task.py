"""Self-checks of the exercises on the recall task and its sampler (chapter 1).

* :func:`ood_exposure`: a function ``task -> (mean, p_absent)``, the binomial law of one
  filler token's count in a sequence (reference :func:`icl.laws.filler_exposure`);
* :func:`overlap_probability`: a SymPy expression in ``H`` (or a function of ``H``), the
  probability that an unconstrained noise pair destroys the ``(q, y)`` pair (reference
  :func:`icl.laws.overlap_probability`);
* :func:`recover_output`: a function ``(task, tokens) -> y``, the rule that reads ``y``
  off the context (reference :func:`icl.bayes.recover_output`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
import torch

from icl import bayes, laws
from icl.checks import Mismatch, call_answer, check_cases, compare_numbers, run
from icl.task import RecallTask
from icl.validate import check_seed

__all__ = ["ood_exposure", "overlap_probability", "recover_output"]


def _random_tasks(seed: int, n: int) -> list[RecallTask]:
    """``n`` tasks with random sizes, alternately noiseless and noisy, the default first."""
    g = torch.Generator().manual_seed(seed)
    tasks = [RecallTask(), RecallTask(alpha=0.5)]
    while len(tasks) < n:
        nq, no = (int(torch.randint(1, 8, (1,), generator=g)) for _ in range(2))
        N = nq + no + 2 + int(torch.randint(1, 60, (1,), generator=g))
        H = int(torch.randint(8, 300, (1,), generator=g))
        noisy = len(tasks) % 2 == 1
        alpha = round(0.05 + 0.9 * float(torch.rand(1, generator=g)), 2) if noisy else 0.0
        tasks.append(RecallTask(vocab_size=N, n_triggers=nq, n_outputs=no, seq_len=H,
                                alpha=alpha))
    return tasks[:n]


def _describe(task: RecallTask) -> str:
    return (f"RecallTask(vocab_size={task.vocab_size}, n_triggers={task.n_triggers}, "
            f"n_outputs={task.n_outputs}, seq_len={task.seq_len}, alpha={task.alpha:g})")


def ood_exposure(answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False) -> bool:
    """Check ``answer(task) -> (mean count, probability of absence)`` of one filler token.

    ``answer`` is the student's function; it is called on the default noiseless and noisy
    tasks and on random others (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)

    def body() -> None:
        for task in _random_tasks(seed, n_cases):
            on = _describe(task)
            out = call_answer(answer, task, what="your function", on=on)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise Mismatch(
                    f"Expected your function to return a pair (mean, p_absent), got "
                    f"{type(out).__name__} {out!r:.60} (on {on})."
                )
            mean, absent = laws.filler_exposure(task)
            kind = "noisy" if task.noisy else "noiseless"
            compare_numbers(
                out[0], mean, what="the mean count", on=on,
                hint=f"count the filler positions of a {kind} sequence (which positions are "
                "not filler?) and the tokens a filler position can hold (τ and the triggers "
                "never occur as filler).",
            )
            compare_numbers(
                out[1], absent, what="P(count = 0)", on=on,
                hint="the positions are independent: the token must miss every one of them.",
            )

    return run("ood_exposure", body, strict=strict)


def overlap_probability(
    answer: Any, *, seed: int = 0, n_cases: int = 6, strict: bool = False
) -> bool:
    """Check ``P(|p' - p| ≤ 1)`` as a SymPy expression in ``H`` (or a function of ``H``).

    The answer is compared exactly (as a rational number) with the reference at ``H = 6``,
    ``H = 256`` and random lengths (``n_cases`` in all, from ``seed``).
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    lengths = [6, 256] + [int(h) for h in torch.randint(7, 10_000, (n_cases,), generator=g)]

    def value(H: int) -> Any:
        on = f"H = {H}"
        if isinstance(answer, sp.Expr):
            free = {s.name for s in answer.free_symbols}
            if free - {"H"}:
                raise Mismatch(
                    f"Your expression depends on {sorted(free - {'H'})}: write it in the "
                    "symbol H alone (S = H - 2 is not a separate symbol)."
                )
            return answer.subs({s: H for s in answer.free_symbols})
        if isinstance(answer, (int, float)) and not isinstance(answer, bool):
            raise Mismatch(
                "Expected an expression in H (e.g. built from H = sympy.Symbol('H')) or a "
                "function of H, got a single number: the answer must hold for every H."
            )
        return call_answer(answer, H, what="your function", on=on)

    def body() -> None:
        for H in lengths[:n_cases]:
            v = value(H)
            if isinstance(v, sp.Expr) and v.free_symbols:
                raise Mismatch(f"At H = {H} your expression still holds {v.free_symbols}.")
            exact = sp.Rational(3 * (H - 2) - 2, (H - 2) ** 2)
            ref = laws.overlap_probability(H)
            assert abs(float(exact) - ref) < 1e-15  # the reference, in exact arithmetic
            if isinstance(v, sp.Basic) and sp.simplify(v - exact) == 0:
                continue
            compare_numbers(
                v, ref, what="your probability", on=f"H = {H}", rtol=1e-9,
                hint="count the starts p' with |p' - p| ≤ 1 for each p, and do not forget "
                "that p = 0 and p = H - 3 have fewer neighbours than the others.",
            )

    return run("overlap_probability", body, strict=strict)


def recover_output(
    answer: Any, *, seed: int = 0, batch_size: int = 200, strict: bool = False
) -> bool:
    """Check ``answer(task, tokens) -> y``: the clean output read off each context.

    Run on batches of the four kinds (noiseless/noisy, in distribution/OOD) and on a noisy
    task with short sequences (where the noise pair often comes first), ``batch_size``
    sequences each, from ``seed``; compared with the stored ``y`` of the sampler.
    """
    seed = check_seed("seed", seed)
    batch_size = check_cases("batch_size", batch_size)
    cases = [
        ("noiseless, in distribution", RecallTask(), False),
        ("noiseless, OOD", RecallTask(), True),
        ("noisy (alpha = 0.5), in distribution", RecallTask(alpha=0.5), False),
        ("noisy (alpha = 0.5), OOD", RecallTask(alpha=0.5), True),
        ("noisy, H = 8", RecallTask(seq_len=8, alpha=0.3), False),
    ]

    def body() -> None:
        for i, (name, task, ood) in enumerate(cases):
            batch = task.sample(batch_size, seed=seed + i, ood=ood)
            on = f"a {name} batch (task.sample({batch_size}, seed={seed + i}, ood={ood}))"
            got = call_answer(answer, task, batch.tokens.clone(), what="your function", on=on)
            if not isinstance(got, torch.Tensor):
                raise Mismatch(f"Expected a tensor of {batch_size} token ids, got "
                               f"{type(got).__name__} (on {on}).")
            if tuple(got.shape) != (batch_size,):
                raise Mismatch(f"Expected shape ({batch_size},), one y per sequence, got "
                               f"{tuple(got.shape)} (on {on}).")
            if got.is_floating_point() or got.dtype == torch.bool:
                raise Mismatch(f"Expected integer token ids, got dtype {got.dtype} (on {on}).")
            ref = bayes.recover_output(task, batch.tokens)
            bad = (got.cpu().long() != ref).nonzero().flatten()
            if len(bad):
                j = int(bad[0])
                hint = ("in the noisy task q occurs three times; the token after one of them "
                        "is τ." if int(got[j]) == task.noise_token else
                        "y is the token right after an earlier occurrence of q = z_H.")
                raise Mismatch(
                    f"On {on}, {len(bad)} of {batch_size} sequences are wrong; the first is "
                    f"sequence {j} (pair start p = {int(batch.pair_pos[j]) + 1}): you return "
                    f"{int(got[j])}, its context holds y = {int(ref[j])}. Hint: {hint}"
                )

    return run("recover_output", body, strict=strict)
