"""Reading an ordinary transformer trained on the recall task: heads, ablations, shifts ([D]).

The measurements of the chapter *Beyond the stylised model* (the book's own protocol):

* :func:`head_scores`: for every layer and head, the **previous-token score** (mean
  attention weight from position ``h`` to ``h-1``, over ``h ≥ 2`` and the batch) and the
  **recall score** (the attention weight from the last position ``H`` onto the position
  ``p+1`` that holds ``y``, the position after the earlier occurrence of ``q``), beside
  their chance levels under uniform causal attention;
* :func:`evaluate_logits`: loss with the target noise integrated out
  (:func:`icl.expected_loss`), ``P(y)``, ``P(τ)`` and the accuracy of ``argmax ξ_H = y``,
  for either network (:class:`~icl.standard_transformer.StandardTransformer` or the
  paper's :class:`~icl.model.OneLayerTransformer`), optionally with blocks ablated;
* :func:`ablation_table`: the same with the MLPs or the attention of chosen layers
  replaced by zero (the test of the distributional association);
* :func:`test_sets` and :func:`generalisation_rows`: unseen outputs, other context
  lengths ``H`` and other positions of the pair, one table for every network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .bayes import bayes_risk
from .losses import expected_loss
from .model import OneLayerTransformer
from .standard_transformer import StandardTransformer
from .task import RecallBatch, RecallTask, check_task, sample_sequences
from .validate import InvalidTypeError, check_int, check_seed, check_tensor

__all__ = [
    "HeadScores",
    "TestSet",
    "ablation_table",
    "chance_previous_token",
    "chance_recall",
    "evaluate_logits",
    "generalisation_rows",
    "head_scores",
    "last_logits",
    "recall_attention",
    "previous_token_attention",
    "test_sets",
]


def _check_model(model: object) -> StandardTransformer | OneLayerTransformer:
    if not isinstance(model, (StandardTransformer, OneLayerTransformer)):
        raise InvalidTypeError(
            "model must be a StandardTransformer or an icl.OneLayerTransformer, got "
            f"{type(model).__name__}"
        )
    return model


def _check_batch(batch: object) -> RecallBatch:
    if not isinstance(batch, RecallBatch):
        raise InvalidTypeError(f"batch must be an icl.RecallBatch, got {type(batch).__name__}")
    return batch


def _check_maps(attention: object) -> torch.Tensor:
    a = check_tensor("attention", attention, ndim=4, kind="float")
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(
            f"attention must have shape [B, n_heads, H, H], got {tuple(a.shape)}"
        )
    return a


# --------------------------------------------------------------------- attention maps
def previous_token_attention(attention: torch.Tensor) -> torch.Tensor:
    """Mean weight on the previous position, ``mean_{b, h ≥ 2} a[b, :, h, h-1]``, per head.

    ``attention`` is one layer's map ``[B, n_heads, H, H]`` (query row, key column).
    Returns ``[n_heads]``.
    """
    a = _check_maps(attention)
    H = a.shape[-1]
    rows = torch.arange(1, H)
    return a[:, :, rows, rows - 1].mean(dim=(0, 2))


def chance_previous_token(seq_len: int) -> float:
    """Previous-token score of uniform causal attention: ``mean_{h=2..H} 1/h``."""
    H = check_int("seq_len", seq_len, minimum=2)
    return float(np.mean(1.0 / np.arange(2, H + 1)))


def recall_attention(attention: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Weight of the last query position on the 0-based key ``positions[b]``, mean over
    the batch, per head (``[n_heads]``). With ``positions = batch.pair_pos + 1`` it is the
    attention the last position pays to ``y``."""
    a = _check_maps(attention)
    B = a.shape[0]
    pos = check_tensor("positions", positions, shape=(B,), kind="int", low=0,
                       high=a.shape[-1] - 1)
    return a[torch.arange(B), :, -1, pos.long()].mean(0)


def chance_recall(seq_len: int) -> float:
    """Weight of uniform causal attention from the last position on any one position: ``1/H``."""
    return 1.0 / check_int("seq_len", seq_len, minimum=2)


@dataclass(frozen=True)
class HeadScores:
    """Per layer and head (arrays ``[n_layers, n_heads]``): ``previous`` (previous-token
    score), ``recall`` (last position → ``y``), ``noise`` (last position → the ``τ`` of the
    ``(q, τ)`` pair; NaN on the noiseless task) and their chance levels."""

    previous: np.ndarray
    recall: np.ndarray
    noise: np.ndarray
    chance_previous: float
    chance_recall: float

    def best(self, which: str) -> tuple[int, int, float]:
        """``(layer, head, score)`` of the head with the largest ``previous`` or ``recall``."""
        if which not in ("previous", "recall"):
            raise ValueError(f"which must be 'previous' or 'recall', got {which!r}")
        arr = getattr(self, which)
        layer, head = np.unravel_index(int(np.argmax(arr)), arr.shape)
        return int(layer), int(head), float(arr[layer, head])


@torch.no_grad()
def head_scores(model: StandardTransformer, batch: RecallBatch) -> HeadScores:
    """The previous-token, recall and noise scores of every head of ``model`` on ``batch``."""
    if not isinstance(model, StandardTransformer):
        raise InvalidTypeError(f"model must be a StandardTransformer, got {type(model).__name__}")
    batch = _check_batch(batch)
    if bool((batch.pair_pos < 0).any()):
        raise ValueError("every sequence of batch needs a planted (q, y) pair")
    maps = model(batch.tokens, return_attention=True).attention
    prev = np.stack([previous_token_attention(a).numpy() for a in maps])
    rec = np.stack([recall_attention(a, batch.pair_pos + 1).numpy() for a in maps])
    if bool((batch.noise_pos >= 0).all()):
        noise = np.stack([recall_attention(a, batch.noise_pos + 1).numpy() for a in maps])
    else:
        noise = np.full_like(rec, np.nan)
    H = batch.seq_len
    return HeadScores(prev, rec, noise, chance_previous_token(H), chance_recall(H))


# --------------------------------------------------------------------- losses
@torch.no_grad()
def last_logits(
    model: StandardTransformer | OneLayerTransformer,
    tokens: torch.Tensor,
    *,
    ablate_mlp: Sequence[int] = (),
    ablate_attention: Sequence[int] = (),
) -> torch.Tensor:
    """``ξ_H`` of either network, ``[B, N]`` (ablations only for a ``StandardTransformer``)."""
    model = _check_model(model)
    if isinstance(model, OneLayerTransformer):
        if ablate_mlp or ablate_attention:
            raise ValueError("ablations need a StandardTransformer")
        return model(tokens).xi
    return model(tokens, ablate_mlp=ablate_mlp, ablate_attention=ablate_attention).last


@torch.no_grad()
def evaluate_logits(
    model: StandardTransformer | OneLayerTransformer,
    batch: RecallBatch,
    task: RecallTask,
    *,
    alpha: float | None = None,
    ablate_mlp: Sequence[int] = (),
    ablate_attention: Sequence[int] = (),
) -> dict[str, float]:
    """``loss`` (target noise integrated out at ``alpha``, default the task's), its
    standard error ``loss_se`` over sequences, ``p_y``, ``p_tau`` and ``accuracy``
    (``argmax ξ_H = y``) of ``model`` on ``batch``."""
    batch = _check_batch(batch)
    task = check_task(task)
    a = task.alpha if alpha is None else float(alpha)
    xi = last_logits(model, batch.tokens, ablate_mlp=ablate_mlp,
                     ablate_attention=ablate_attention).double()
    losses = expected_loss(xi, batch, a, task.noise_token)
    prob = torch.softmax(xi, dim=-1)
    rows = torch.arange(batch.batch_size)
    n = batch.batch_size
    return {
        "loss": float(losses.mean()),
        "loss_se": float(losses.std() / np.sqrt(n)) if n > 1 else float("nan"),
        "p_y": float(prob[rows, batch.outputs].mean()),
        "p_tau": float(prob[:, task.noise_token].mean()),
        "accuracy": float((xi.argmax(1) == batch.outputs).double().mean()),
    }


def ablation_table(
    model: StandardTransformer,
    batch: RecallBatch,
    task: RecallTask,
    ablations: Mapping[str, tuple[Sequence[int], Sequence[int]]] | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`evaluate_logits` under each ablation ``name → (mlp layers, attention layers)``.

    Default: ``none``; ``all MLPs``; ``last MLP``; ``last attention`` (0-based layer
    ``L-1``).
    """
    if not isinstance(model, StandardTransformer):
        raise InvalidTypeError(f"model must be a StandardTransformer, got {type(model).__name__}")
    last = model.n_layers - 1
    if ablations is None:
        ablations = {
            "none": ((), ()),
            "all MLPs": (tuple(range(model.n_layers)), ()),
            "last MLP": ((last,), ()),
            "last attention": ((), (last,)),
        }
    if not isinstance(ablations, Mapping) or not ablations:
        raise InvalidTypeError(f"ablations must be a non-empty mapping, got {ablations!r}")
    return {
        name: evaluate_logits(model, batch, task, ablate_mlp=mlp, ablate_attention=att)
        for name, (mlp, att) in ablations.items()
    }


# --------------------------------------------------------------------- shifts
@dataclass(frozen=True)
class TestSet:
    """A named test set: its batch, the Bayes risk of its law and whether the trained
    positions suffice (``in_range``: every position ``≤`` the training ``H``)."""

    name: str
    batch: RecallBatch
    bayes_risk: float
    in_range: bool

    __test__ = False  # not a pytest class


def test_sets(
    task: RecallTask,
    n: int,
    *,
    seed: int = 0,
    seq_lens: Sequence[int] = (),
) -> list[TestSet]:
    """The chapter's test sets, each of ``n`` sequences drawn with ``seed``:

    ``in distribution``; ``unseen outputs`` (``y`` an OOD output, :meth:`icl.task.RecallTask.sample`
    with ``ood=True``); ``pair at start`` (``p = 1``) and ``pair at end`` (``p = H-2``);
    and ``H = h`` for each ``h`` in ``seq_lens``. The Bayes risk is ``H_b(α)`` for every
    one (the model page §2: it depends on none of these).
    """
    task = check_task(task)
    n = check_int("n", n, minimum=1, maximum=10_000_000)
    seed = check_seed("seed", seed)
    lens = [check_int("seq_lens", h, minimum=6 if task.noisy else 4) for h in seq_lens]
    R = bayes_risk(task.alpha)
    H = task.seq_len
    out = [
        TestSet("in distribution", task.sample(n, seed=seed), R, True),
        TestSet("unseen outputs", task.sample(n, seed=seed, ood=True), R, True),
        TestSet("pair at start",
                sample_sequences(task, n, seed=seed, pair_position="start"), R, True),
        TestSet("pair at end", sample_sequences(task, n, seed=seed, pair_position="end"),
                R, True),
    ]
    for h in lens:
        out.append(TestSet(f"H = {h}", sample_sequences(task, n, seed=seed, seq_len=h), R,
                           h <= H))
    return out


def generalisation_rows(
    models: Mapping[str, StandardTransformer | OneLayerTransformer],
    task: RecallTask,
    sets: Sequence[TestSet],
) -> dict[str, dict[str, dict[str, float]]]:
    """``{model name: {test set name: evaluate_logits(...)}}``; a test set longer than a
    ``StandardTransformer``'s ``max_len`` gives NaN entries."""
    task = check_task(task)
    if not isinstance(models, Mapping) or not models:
        raise InvalidTypeError(f"models must be a non-empty mapping, got {models!r}")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, model in models.items():
        _check_model(model)
        row = {}
        for s in sets:
            if not isinstance(s, TestSet):
                raise InvalidTypeError(f"sets must hold TestSet items, got {type(s).__name__}")
            if isinstance(model, StandardTransformer) and s.batch.seq_len > model.max_len:
                row[s.name] = {k: float("nan") for k in
                               ("loss", "loss_se", "p_y", "p_tau", "accuracy")}
            else:
                row[s.name] = evaluate_logits(model, s.batch, task)
        table[name] = row
    return table
