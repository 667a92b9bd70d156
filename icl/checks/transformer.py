"""Self-checks of the exercises on an ordinary transformer (chapter 8).

* :func:`parameter_count`: a function ``(vocab_size, seq_len, n_layers, d_model, mlp) ->
  int``, the number of trainable scalars of the chapter's network (reference
  :attr:`icl.standard_transformer.StandardTransformer.n_parameters`);
* :func:`noise_averaged_loss`: a function ``(logits, outputs, alpha, noise_token) ->
  [B]``, the per-sequence loss with the target noise integrated out (reference
  :func:`icl.losses.expected_loss`);
* :func:`attention_only`: a trained two-layer attention-only network, evaluated on fresh
  noisy sequences (reference: the Bayes risk :func:`icl.bayes.bayes_risk`, through
  :func:`icl.mechanism.evaluate_logits`).

Each takes ``seed`` (the random cases), ``strict`` (raise instead of returning ``False``)
and prints ``correct`` or what is wrong, on which input, with a hint.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from icl import bayes, losses, mechanism
from icl.checks import Mismatch, call_answer, check_cases, compare_tensors, run
from icl.standard_transformer import StandardTransformer
from icl.task import RecallTask
from icl.validate import check_int, check_seed

__all__ = ["attention_only", "noise_averaged_loss", "parameter_count"]

#: the thresholds of the attention-only exercise, fixed with the chapter's (section 8.5)
GAP_MAX, P_TAU_MIN = 0.1, 0.3


def parameter_count(
    answer: Any, *, seed: int = 0, n_cases: int = 8, strict: bool = False
) -> bool:
    """Check ``answer(vocab_size, seq_len, n_layers, d_model, mlp)``, the parameter count.

    Run on the chapter's sizes with and without MLPs and on random sizes (``n_cases`` in
    all, from ``seed``); ``d_mlp = 4 d_model`` and ``2 seq_len`` learned positions.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)
    cases = [(20, 16, 2, 32, True), (20, 16, 2, 32, False)]
    while len(cases) < n_cases:
        N = int(torch.randint(12, 100, (1,), generator=g))
        H = int(torch.randint(6, 80, (1,), generator=g))
        L = int(torch.randint(1, 5, (1,), generator=g))
        d = 2 * int(torch.randint(1, 33, (1,), generator=g))
        cases.append((N, H, L, d, bool(torch.rand(1, generator=g) < 0.5)))

    def body() -> None:
        for N, H, L, d, mlp in cases[:n_cases]:
            on = f"vocab_size = {N}, seq_len = {H}, n_layers = {L}, d_model = {d}, mlp = {mlp}"
            got = call_answer(answer, N, H, L, d, mlp, what="your function", on=on)
            if isinstance(got, bool) or not isinstance(got, numbers.Integral):
                if not (isinstance(got, float) and got.is_integer()):
                    raise Mismatch(f"Expected a whole number of parameters, got "
                                   f"{type(got).__name__} {got!r:.40} (on {on}).")
            task = RecallTask(vocab_size=N, seq_len=H)
            ref = StandardTransformer(task, n_layers=L, d_model=d, n_heads=2, mlp=mlp).n_parameters
            if int(got) != ref:
                side = "too many" if int(got) > ref else "too few"
                raise Mismatch(
                    f"On {on}, your count {int(got):,} is {side} by {abs(int(got) - ref):,}. "
                    "Hint: every linear map and every layer norm has a bias; the attention "
                    "has four d_model × d_model maps; count the learned positions, and what "
                    "changes with mlp = False."
                )

    return run("parameter_count", body, strict=strict)


def noise_averaged_loss(
    answer: Any, *, seed: int = 0, n_cases: int = 5, strict: bool = False
) -> bool:
    """Check ``answer(logits, outputs, alpha, noise_token) -> [B]`` on random logits.

    ``logits`` ``[B, N]`` (float64), ``outputs`` the clean ``y`` ``[B]``; ``α`` includes 0;
    ``n_cases`` batches from ``seed``.
    """
    seed, n_cases = check_seed("seed", seed), check_cases("n_cases", n_cases)
    g = torch.Generator().manual_seed(seed)

    def body() -> None:
        for i in range(n_cases):
            B = int(torch.randint(1, 40, (1,), generator=g))
            N = int(torch.randint(4, 60, (1,), generator=g))
            alpha = 0.0 if i == 1 else round(float(torch.rand(1, generator=g)), 3)
            logits = 3 * torch.randn(B, N, generator=g, dtype=torch.float64)
            outputs = torch.randint(0, N - 1, (B,), generator=g)
            on = (f"random logits of shape ({B}, {N}), alpha = {alpha:g}, "
                  f"noise_token = {N - 1} (case {i}, seed {seed})")
            got = call_answer(answer, logits.clone(), outputs.clone(), alpha, N - 1,
                              what="your function", on=on)
            compare_tensors(
                got, losses.expected_loss(logits, outputs, alpha, N - 1), what="your losses",
                on=on, atol=1e-9, show_expected=False,
                hint="the target is y with probability 1 - α and τ with probability α: "
                "average the two cross-entropies -log softmax(ξ)_y and -log softmax(ξ)_τ "
                "(not the probabilities), one value per sequence.",
            )

    return run("noise_averaged_loss", body, strict=strict)


def attention_only(
    answer: Any, *, seed: int = 0, n_sequences: int = 1024, strict: bool = False
) -> bool:
    """Check a trained two-layer attention-only
    :class:`~icl.standard_transformer.StandardTransformer` (noisy task).

    Evaluated on ``n_sequences`` fresh sequences of its task (drawn from ``seed``): its
    loss must be within ``GAP_MAX`` nats (plus three standard errors) of ``H_b(α)`` and its
    mean ``P(τ)`` above ``P_TAU_MIN``.
    """
    seed = check_seed("seed", seed)
    n_sequences = check_int("n_sequences", n_sequences, minimum=64, maximum=100_000)

    def body() -> None:
        if not isinstance(answer, StandardTransformer):
            raise Mismatch(
                f"Expected a trained icl.standard_transformer.StandardTransformer, got "
                f"{type(answer).__name__}. Hint: hand in the network itself."
            )
        if answer.mlp or answer.n_layers != 2:
            raise Mismatch(
                f"Expected two layers without MLPs, got n_layers = {answer.n_layers}, "
                f"mlp = {answer.mlp}. Hint: StandardTransformer(..., n_layers=2, mlp=False)."
            )
        task = answer.task
        if not task.noisy:
            raise Mismatch("Your network was built for a noiseless task. Hint: the exercise "
                           "is about the noisy task (alpha = 0.5), where τ must be predicted.")
        batch = task.sample(n_sequences, seed=10_000 + seed, ood=False)
        with torch.no_grad():
            r = mechanism.evaluate_logits(answer, batch, task)
        on = f"{n_sequences} fresh sequences of its task (seed {10_000 + seed})"
        gap = r["loss"] - bayes.bayes_risk(task.alpha)
        if gap != gap:
            raise Mismatch(f"The loss of your network is NaN (on {on}).")
        if gap > GAP_MAX + 3 * r["loss_se"]:
            raise Mismatch(
                f"On {on}, the loss of your network is {gap:.3f} nats above the Bayes risk "
                f"(allowed: {GAP_MAX}). Hint: was it trained (train_adam) with the "
                "chapter's steps and step size, on this task?"
            )
        if r["p_tau"] < P_TAU_MIN:
            raise Mismatch(
                f"On {on}, your network puts {r['p_tau']:.3f} on τ on average (at least "
                f"{P_TAU_MIN} required). Hint: train it on the noisy task."
            )

    return run("attention_only", body, strict=strict)
