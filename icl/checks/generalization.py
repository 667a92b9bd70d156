"""Self-checks of the exercises on generalisation (chapter 5).

* :func:`alpha_shift_limit`: a function ``(alpha_train, alpha_test) -> loss``, the limit
  ``Λ → ∞`` of the test loss of a ``reparam`` model trained at one noise level and tested
  at another (reference: :func:`icl.bayes_risk` plus :func:`icl.kl_bernoulli`);
* :func:`freeze_value`: a function ``net -> None`` that sets an ``origin`` model's value
  matrix to the identity and keeps training from moving it;
* :func:`context_free_risk`: a SymPy expression in ``alpha`` and ``K`` (the number of
  training outputs ``|O|``), or a function of the task, the risk of the best predictor
  that ignores the context (reference :func:`icl.shifts.context_free_risk`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

from typing import Any

import sympy as sp
import torch

from icl import shifts
from icl.bayes import bayes_risk, kl_bernoulli
from icl.checks import Mismatch, call_answer, check_cases, compare_numbers, compare_tensors, run
from icl.model import OneLayerTransformer
from icl.task import RecallTask
from icl.training import train
from icl.validate import check_seed

__all__ = ["alpha_shift_limit", "context_free_risk", "freeze_value"]


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return round(low + (high - low) * float(torch.rand(1, generator=g)), 3)


def alpha_shift_limit(
    answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False
) -> bool:
    """Check ``answer(alpha_train, alpha_test)``: the limit test loss under a noise shift.

    Called on the three pairs of the chapter and on random pairs (``n_cases`` in all, from
    ``seed``; ``alpha_test = 0`` among them); compared to a relative ``1e-6``.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    pairs = [(0.2, 0.5), (0.5, 0.2), (0.8, 0.1), (0.3, 0.0)]
    while len(pairs) < n_cases:
        pairs.append((_uniform(g, 0.02, 0.98), _uniform(g, 0.0, 0.98)))

    def body() -> None:
        for a_train, a_test in pairs[:n_cases]:
            on = f"alpha_train = {a_train:g}, alpha_test = {a_test:g}"
            got = call_answer(answer, a_train, a_test, what="your function", on=on)
            ref = bayes_risk(a_test) + kl_bernoulli(a_test, a_train)
            compare_numbers(
                got, ref, what="the limit loss", on=on,
                hint="in the limit the model predicts the noise level it was trained at; "
                "the test targets follow the test level. Take the expected log-loss of the "
                "first law under the second (and check your formula at alpha_test = "
                "alpha_train, where it must be the Bayes risk).",
            )

    return run("alpha_shift_limit", body, strict=strict)


def freeze_value(answer: Any, *, seed: int = 0, n_cases: int = 3, strict: bool = False) -> bool:
    """Check ``answer(net)``: ``V = I`` and excluded from training, ``W`` and ``F`` still train.

    Run on ``origin`` models (linear, ReLU, softmax attention; small random tasks from
    ``seed``): after ``answer(net)``, ``net.V`` must be the identity and stay so through a
    few steps of :func:`icl.train`, while ``W`` and ``F`` move.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    attentions = ["linear", "relu", "softmax"]

    def body() -> None:
        for i in range(n_cases):
            H = int(torch.randint(12, 24, (1,), generator=g))
            task = RecallTask(seq_len=H, alpha=0.5)
            att = attentions[i % 3]
            net = OneLayerTransformer(task, attention=att, family="origin", kappa=1)
            on = f"an origin / {att} model of RecallTask(seq_len={H}, alpha=0.5)"
            out = call_answer(answer, net, what="your function", on=on)
            if isinstance(out, OneLayerTransformer) and out is not net:
                raise Mismatch(
                    f"Your function returned a new model (on {on}): change the model it is "
                    "given, in place (the chapter's code keeps using that one)."
                )
            V = net.V
            if not isinstance(V, torch.nn.Parameter):
                raise Mismatch(f"After your function, net.V is no longer a parameter (on {on}).")
            eye = torch.eye(net.d_model, dtype=V.dtype)
            compare_tensors(V.detach(), eye, what="net.V after your function", on=on,
                            show_expected=False,
                            hint="V must be the identity matrix of size d_model.")
            if V.requires_grad:
                raise Mismatch(
                    f"After your function, net.V still requires a gradient (on {on}): "
                    "training will move it. Hint: every parameter has a flag that says "
                    "whether autograd tracks it."
                )
            before = {n: p.detach().clone() for n, p in net.named_parameters()}
            train(net, task, 3, 0.1, batch_size=16, seed=seed + i, eval_every=3,
                  eval_size=16, ood=False, progress=False)
            compare_tensors(net.V.detach(), eye, what="net.V after 3 training steps", on=on,
                            show_expected=False,
                            hint="training moved V: it must be excluded from training.")
            for name in ("W", "F"):
                if torch.equal(getattr(net, name).detach(), before[name]):
                    raise Mismatch(
                        f"After your function, {name} no longer trains (on {on}): freeze V "
                        "only."
                    )

    return run("freeze_value", body, strict=strict)


def _value_at(answer: Any, task: RecallTask, on: str) -> Any:
    """The answer at ``task``: a SymPy expression in ``alpha`` and ``K``, or a function."""
    if isinstance(answer, sp.Expr):
        free = {s.name for s in answer.free_symbols}
        if free - {"alpha", "K"}:
            raise Mismatch(
                f"Your expression depends on {sorted(free - {'alpha', 'K'})}: write it in the "
                "symbols alpha and K (the number of training outputs) alone."
            )
        value = answer.subs({s: (task.alpha if s.name == "alpha" else task.n_outputs)
                             for s in answer.free_symbols})
        return sp.N(value, 30)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        raise Mismatch(
            "Expected an expression in alpha and K (or a function of the task), got a single "
            "number: the answer must hold for every noise level and every |O|."
        )
    return call_answer(answer, task, what="your function", on=on)


def context_free_risk(
    answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False
) -> bool:
    """Check the risk of the best context-free predictor, ``H_b(α) + (1-α) log |O|``.

    ``answer`` is a SymPy expression in the symbols ``alpha`` and ``K`` = ``|O|`` (or a
    function of a :class:`~icl.task.RecallTask`); evaluated on the chapter's task and on
    random noise levels and output counts (``n_cases`` in all, from ``seed``), to a relative
    ``1e-9``.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    tasks = [RecallTask(alpha=0.5), RecallTask(alpha=0.2, n_outputs=10)]
    while len(tasks) < n_cases:
        k = int(torch.randint(1, 30, (1,), generator=g))
        tasks.append(RecallTask(vocab_size=k + 40, n_outputs=k, alpha=_uniform(g, 0.03, 0.97)))

    def body() -> None:
        for task in tasks[:n_cases]:
            on = f"alpha = {task.alpha:g}, K = |O| = {task.n_outputs}"
            got = _value_at(answer, task, on)
            if isinstance(got, sp.Basic) and got.free_symbols:
                raise Mismatch(f"On {on} your expression still holds {got.free_symbols}.")
            compare_numbers(
                got, shifts.context_free_risk(task), what="your risk", on=on, rtol=1e-9,
                hint="the best context-free law puts alpha on tau and splits the rest "
                "evenly over the training outputs; its risk is the expected log-loss of "
                "that law (condition on whether the target is tau).",
            )

    return run("context_free_risk", body, strict=strict)
