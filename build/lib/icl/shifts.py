"""Test-time distribution shifts of the recall task (the model page §6; the book's own, [D]).

A :class:`Shift` names a change of the test distribution (a longer or shorter context,
another filler law, the pair at the very start or end, distractor pairs, another noise
level ``α_test``, unseen outputs) and carries the prediction the book derives for the
Bayes-optimal construction (the model page §4, linear or ReLU attention, ``Λ ≥ 0``).

The book's derivation. The construction's logits are ``ξ_y = Λ``, ``ξ_τ = γ + Λ`` and 0
elsewhere, whatever the context holds besides the ``(q, y)`` pair, the ``(q, τ)`` pair
and the last ``q``: a filler token ``x`` scores ``x_H^T W x_h = 0`` unless it follows
``q`` or is ``τ``, a distractor ``(q', x)`` scores 0 because ``Ẽ(q') ⟂ Ẽ(q)``, and
neither the length ``H`` nor the position ``p`` enters. With the target noise
integrated out at a test level ``α_t`` (training level ``α``, ``γ = log(α/(1-α))``),

    L(Λ; α_t) = -(1-α_t) log p_y - α_t log p_τ = log(1 + e^γ + (N-2) e^{-Λ}) - α_t γ,

and as ``Λ → ∞`` the model predicts ``(1-α, α)`` on ``(y, τ)``, so

    L(∞; α_t) = -(1-α_t) log(1-α) - α_t log α = H_b(α_t) + KL(Ber(α_t) ‖ Ber(α)).

Moreover ``L(Λ; α_t) - L(Λ; α) = -(α_t - α) γ = [H_b(α_t) + KL(α_t ‖ α)] - H_b(α)`` at
*every* ``Λ``: the α shift adds exactly ``KL`` to the excess risk. Every other shift of
:func:`standard_shifts` leaves the loss unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .bayes import bayes_risk, kl_bernoulli
from .closed_forms import closed_form_loss
from .losses import expected_loss
from .model import OneLayerTransformer
from .task import (
    RecallBatch,
    RecallTask,
    check_batch,
    check_sampler_arguments,
    make_generator,
    sample_sequences,
)
from .task import check_task as _check_task
from .validate import (
    DEFAULT_MAX_BYTES,
    check_bool,
    check_instance,
    check_int,
    check_probability,
    check_real,
    check_seed,
)

__all__ = [
    "SHIFT_KEYS",
    "Shift",
    "ShiftResult",
    "ShiftRow",
    "context_free_risk",
    "evaluate_shift",
    "ood_only_filler",
    "relabel_outputs",
    "shift_batch",
    "shift_table",
    "shift_table_markdown",
    "standard_shifts",
    "zipf_filler",
]

#: Keywords of :func:`icl.task.sample_sequences` a shift may set. ``plant_prob`` is excluded:
#: a missing pair changes the Bayes risk itself (chapter 2), it is not a nuisance shift.
SHIFT_KEYS = ("ood", "alpha", "filler_probs", "pair_position", "n_distractors", "seq_len")


def _check_n(n: object) -> int:
    return check_int("n", n, minimum=1)


@dataclass(frozen=True)
class Shift:
    """A named test-time shift of the recall task.

    Attributes
    ----------
    name, description : str
        A short label (table rows) and one sentence saying what changes.
    prediction : str
        What the book predicts for the construction, stated before any measurement.
    kwargs : dict
        Keywords for :func:`icl.task.sample_sequences` (a subset of :data:`SHIFT_KEYS`).
        ``ood=True`` is realised by :func:`icl.shifts.relabel_outputs` on the unshifted batch drawn
        with the same seed, so the OOD set is *paired* with the in-distribution set.
    """

    name: str
    description: str
    prediction: str
    kwargs: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.kwargs, Mapping):
            raise ValueError(f"kwargs must be a mapping of sampler keywords, got {self.kwargs!r}")
        bad = sorted(set(self.kwargs) - set(SHIFT_KEYS))
        if bad:
            raise ValueError(f"unknown shift keyword(s) {bad} in kwargs; allowed: {SHIFT_KEYS}")
        kw = self.kwargs
        if "alpha" in kw:
            check_probability("kwargs['alpha']", kw["alpha"])
        if "ood" in kw:
            check_bool("kwargs['ood']", kw["ood"])
        for key in ("n_distractors", "seq_len"):
            if key in kw:
                check_int(f"kwargs[{key!r}]", kw[key], minimum=0)
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    def alpha_test(self, task: RecallTask) -> float:
        """The noise level ``α_t`` of the shifted test set (the task's own when unset)."""
        a = self.kwargs.get("alpha")
        return task.alpha if a is None else float(a)

    def bayes_risk(self, task: RecallTask) -> float:
        """Bayes risk under the shift: ``H_b(α_t)`` (the pair is always present)."""
        return bayes_risk(self.alpha_test(task))

    def predicted_change(self, task: RecallTask) -> float:
        """Predicted ``L_shift - L_unshifted`` of the construction, at every ``Λ``.

        ``0`` for every shift but the α shift, where it is
        ``H_b(α_t) + KL(Ber(α_t) ‖ Ber(α)) - H_b(α) = -(α_t - α) γ``.
        """
        a_test = self.alpha_test(task)
        if a_test == task.alpha:
            return 0.0
        return bayes_risk(a_test) + kl_bernoulli(a_test, task.alpha) - bayes_risk(task.alpha)

    def predicted_loss(self, task: RecallTask, Lambda) -> float:
        """Loss of the construction at ``Λ`` under this shift (:func:`icl.closed_form_loss`
        at the shift's test-time ``α``)."""
        a = self.kwargs.get("alpha")
        return closed_form_loss(task, Lambda, alpha_test=None if a is None else float(a))

    def limit_loss(self, task: RecallTask) -> float:
        """``Λ → ∞`` limit of :meth:`predicted_loss`: ``H_b(α_t) + KL(Ber(α_t) ‖ Ber(α))``."""
        a_test = self.alpha_test(task)
        return bayes_risk(a_test) + (kl_bernoulli(a_test, task.alpha) if task.noisy else 0.0)


def zipf_filler(task: RecallTask, exponent: float = 1.0) -> torch.Tensor:
    """A Zipf filler law: ``P(k) ∝ r_k^{-s}`` over the filler tokens (rank ``r_k = k - |Q| + 1``).

    Length-``N`` vector, zero on the triggers and on ``τ``; training outputs get the
    largest probabilities (ranks ``1 … |O|``).
    """
    task = _check_task(task)
    s = check_real("exponent", exponent, low=0.0, low_open=True)
    probs = torch.zeros(task.vocab_size, dtype=torch.float64)
    ranks = torch.arange(1, len(task.filler) + 1, dtype=torch.float64)
    probs[task.filler] = ranks.pow(-s)
    return probs / probs.sum()


def ood_only_filler(task: RecallTask) -> torch.Tensor:
    """Filler restricted to the OOD outputs (uniform on them): no training output in the context
    apart from the planted ``y``."""
    task = _check_task(task)
    probs = torch.zeros(task.vocab_size, dtype=torch.float64)
    probs[task.ood_outputs] = 1.0 / len(task.ood_outputs)
    return probs


def relabel_outputs(
    task: RecallTask,
    batch: RecallBatch,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> RecallBatch:
    """The same sequences with each clean output ``y`` replaced by an unseen output ``y'``.

    ``y'`` is uniform on the OOD outputs; the token after the planted ``q`` and every
    target equal to ``y`` become ``y'``; nothing else changes (the filler is independent
    of ``y``, so the result has exactly the law of ``sample_sequences(..., ood=True)``).
    An ID/OOD comparison on ``batch`` and its relabelling is therefore *paired*.
    """
    task = _check_task(task)
    check_batch("batch", batch, task)
    if bool((batch.pair_pos < 0).any()):
        raise ValueError("relabel_outputs needs the (q, y) pair in every sequence (pair_pos >= 0)")
    g = make_generator(seed, generator)
    pool = task.ood_outputs
    new_y = pool[torch.randint(len(pool), (batch.batch_size,), generator=g)]
    rows = torch.arange(batch.batch_size)
    tokens = batch.tokens.clone()
    tokens[rows, batch.pair_pos + 1] = new_y
    targets = torch.where(batch.targets == batch.outputs, new_y, batch.targets)
    return RecallBatch(
        tokens=tokens,
        targets=targets,
        outputs=new_y,
        pair_pos=batch.pair_pos.clone(),
        noise_pos=batch.noise_pos.clone(),
    )


def standard_shifts(task: RecallTask) -> list[Shift]:
    """The book's shifts for ``task``, the unshifted reference (``"none"``) first.

    Lengths ``H/4`` (at least 8) and ``4H``; a Zipf filler and a filler of OOD outputs
    only; the pair at the very start (``p = 1``) and the very end (``p = H-2``); 3 and 10
    distractor pairs (when ``|Q| ≥ 2``); ``α_t ∈ {0.2, 0.8}`` minus the training level
    (noisy tasks); unseen outputs.
    """
    task = _check_task(task)
    H = task.seq_len
    same = "same loss as unshifted (the construction's logits do not see it)"
    shifts = [
        Shift("none", "the training distribution", "reference"),
        Shift(f"H={max(H // 4, 8)}", "a shorter context", same, {"seq_len": max(H // 4, 8)}),
        Shift(f"H={4 * H}", "a longer context", same, {"seq_len": 4 * H}),
        Shift(
            "Zipf filler",
            "filler ~ Zipf(1) over the filler tokens",
            same,
            {"filler_probs": zipf_filler(task)},
        ),
        Shift(
            "OOD-only filler",
            "filler uniform on the unseen outputs",
            same,
            {"filler_probs": ood_only_filler(task)},
        ),
        Shift("pair at start", "(q, y) at p = 1", same, {"pair_position": "start"}),
        Shift(
            "pair at end",
            "(q, y) at p = H-2, right before the last q",
            same,
            {"pair_position": "end"},
        ),
    ]
    if task.n_triggers >= 2:
        for k in (3, 10):
            shifts.append(
                Shift(
                    f"{k} distractors",
                    f"{k} extra (q', x) pairs, q' another trigger",
                    same,
                    {"n_distractors": k},
                )
            )
    if task.noisy:
        for a_test in (0.2, 0.8):
            if a_test != task.alpha:
                kl = kl_bernoulli(a_test, task.alpha)
                shifts.append(
                    Shift(
                        f"alpha_test={a_test}",
                        f"target = tau with probability {a_test}",
                        f"excess grows by KL(Ber({a_test})||Ber({task.alpha})) = {kl:.4f}",
                        {"alpha": a_test},
                    )
                )
    shifts.append(
        Shift("unseen outputs", "y uniform on the OOD outputs (relabelled)", same, {"ood": True})
    )
    return shifts


def shift_batch(task: RecallTask, shift: Shift, n: int, seed: int = 0) -> RecallBatch:
    """``n`` test sequences under ``shift``, drawn with ``seed``.

    The same ``seed`` gives the same tokens for ``"none"``, the α shifts (only the targets'
    law changes) and the unseen-output shift (relabelled), so these comparisons are paired.
    """
    task = _check_task(task)
    if not isinstance(shift, Shift):
        raise ValueError(f"shift must be an icl.shifts.Shift, got {type(shift).__name__}")
    n = _check_n(n)
    seed = check_seed("seed", seed)
    check_sampler_arguments(task, n, seed=seed, seq_len=shift.kwargs.get("seq_len"),
                            max_bytes=DEFAULT_MAX_BYTES)
    kwargs = dict(shift.kwargs)
    ood = bool(kwargs.pop("ood", False))
    batch = sample_sequences(task, n, seed=seed, **kwargs)
    if ood:
        batch = relabel_outputs(task, batch, seed=seed + 7_919)
    return batch


@dataclass(frozen=True)
class ShiftResult:
    """Loss of one model under one shift: mean over ``n`` sequences, its standard error,
    the per-sequence losses (target noise integrated out at ``α_t``) and ``H_b(α_t)``."""

    shift: str
    loss: float
    se: float
    bayes_risk: float
    losses: np.ndarray

    @property
    def excess(self) -> float:
        """``loss - H_b(α_t)``."""
        return self.loss - self.bayes_risk


@torch.no_grad()
def evaluate_shift(
    model: OneLayerTransformer, task: RecallTask, shift: Shift, n: int = 2048, seed: int = 0
) -> ShiftResult:
    """Loss of ``model`` on ``n`` sequences of ``shift`` (noise integrated out at ``α_t``)."""
    check_instance("model", model, OneLayerTransformer, "an icl.OneLayerTransformer")
    task = _check_task(task)
    if model.task != task:
        raise ValueError(f"model was built for {model.task}, not this task")
    batch = shift_batch(task, shift, n, seed)
    a_test = shift.alpha_test(task)
    per = expected_loss(model(batch.tokens).xi, batch, a_test, task.noise_token).numpy()
    se = float(per.std(ddof=1) / math.sqrt(len(per))) if len(per) > 1 else 0.0
    return ShiftResult(shift.name, float(per.mean()), se, shift.bayes_risk(task), per)


@dataclass(frozen=True)
class ShiftRow:
    """One cell of the shift table: a model under a shift against the prediction.

    ``predicted = L_unshifted + shift.predicted_change(task)``; ``passed`` when
    ``|measured - predicted| ≤ tol`` with ``tol = atol + k · se`` (``se`` the standard
    error of the difference; paired shifts give a per-sequence difference).
    """

    shift: str
    model: str
    measured: float
    predicted: float
    tol: float
    bayes_risk: float
    family: str = ""
    attention: str = ""

    @property
    def passed(self) -> bool:
        return abs(self.measured - self.predicted) <= self.tol


def shift_table(
    models: Mapping[str, OneLayerTransformer],
    task: RecallTask,
    shifts: Sequence[Shift],
    n: int = 2048,
    seed: int = 0,
    *,
    atol: float = 0.02,
    k: float = 3.0,
) -> list[ShiftRow]:
    """Evaluate every model under every shift against ``L_unshifted + predicted_change``.

    The unshifted reference is the shift named ``"none"`` (required). Sets of the same
    ``seed`` share their tokens where the shift allows it (see :func:`shift_batch`); the
    standard error of the difference is then computed per sequence.
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping {label: model}")
    for label, model in models.items():
        check_instance(f"models[{label!r}]", model, OneLayerTransformer,
                       "an icl.OneLayerTransformer")
    check_real("atol", atol, low=0.0)
    check_real("k", k, low=0.0)
    for s in shifts:
        check_instance("shifts", s, Shift, "a list of icl.shifts.Shift")
    names = [s.name for s in shifts]
    if "none" not in names:
        raise ValueError(f"shifts must contain the reference shift 'none', got {names}")
    base_shift = shifts[names.index("none")]
    rows: list[ShiftRow] = []
    for label, model in models.items():
        base = evaluate_shift(model, task, base_shift, n, seed)
        for s in shifts:
            r = evaluate_shift(model, task, s, n, seed)
            paired = set(s.kwargs) <= {"alpha", "ood"}
            if paired:
                diff = r.losses - base.losses
                se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
            else:
                se = math.hypot(r.se, base.se)
            rows.append(
                ShiftRow(
                    s.name,
                    label,
                    r.loss,
                    base.loss + s.predicted_change(task),
                    atol + k * se,
                    r.bayes_risk,
                    model.family,
                    model.attention,
                )
            )
    return rows


def shift_table_markdown(rows: Sequence[ShiftRow], shifts: Sequence[Shift], digits: int = 3) -> str:
    """A Markdown table: one line per shift (its prediction, then per model the measured
    loss and ✓/✗ against ``predicted ± tol``)."""
    if isinstance(rows, (str, bytes)) or not rows:
        raise ValueError("rows must be a non-empty list of ShiftRow")
    for r in rows:
        check_instance("rows", r, ShiftRow, "a list of icl.shifts.ShiftRow")
    for s in shifts:
        check_instance("shifts", s, Shift, "a list of icl.shifts.Shift")
    digits = check_int("digits", digits, minimum=0)
    models = list(dict.fromkeys(r.model for r in rows))
    cell = {(r.shift, r.model): r for r in rows}
    head = "| shift | prediction | " + " | ".join(models) + " |"
    lines = [head, "|" + "---|" * (2 + len(models))]
    for s in shifts:
        out = [s.name, s.prediction]
        for m in models:
            r = cell.get((s.name, m))
            if r is None:
                out.append("")
            else:
                mark = "✓" if r.passed else "✗"
                out.append(f"{r.measured:.{digits}f} {mark}")
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def context_free_risk(task: RecallTask) -> float:
    """Risk of the best predictor that ignores the context (the book's [D]).

    Without reading the ``(q, y)`` pair, ``y`` is uniform on the training outputs ``O``
    and independent of everything else, so the best context-free law is
    ``(1-α)/|O|`` on each training output and ``α`` on ``τ``, with risk
    ``H_b(α) + (1-α) log |O|``. It puts no mass on unseen outputs: its OOD loss is
    infinite. A trained model whose in-distribution loss sits at this value has learned
    the distributional association (``q → O``, ``q → τ``) but no recall.
    """
    task = _check_task(task)
    return bayes_risk(task.alpha) + (1.0 - task.alpha) * math.log(task.n_outputs)
