"""Reading a trained model by token role: its metrics, its logits, its weights.

Everything the book says about *which part of the network carries what* is computed
here: :func:`evaluate` (loss, ``P(y)``, ``P(τ)`` and the split of the logits between the
attention path ``ξ_A`` and the feed-forward path ``ξ_F``), :func:`role_split` (the
finer split, including the direct and attention-fed parts of ``ξ_F``),
:func:`probability_by_role`, :func:`attention_on_output`, and the weight tables below
(the book's own tools, chapters 4 and 5).

The embeddings are one-hot (*The task and the model, precisely*, §3): coordinate
``k < N`` is ``E(k)``, coordinate ``N + k`` is ``Ẽ(k)`` (the previous-token copy) and
``2N … d-1`` are unused. Grouping the coordinates by the *role* of their token (the
trigger ``q``, the other triggers, the training outputs ``O``, the unseen outputs, the
noise token ``τ``) turns a ``d × d`` matrix ``W``, ``V`` or ``F`` into a small role × role
table.

Orientation: entry ``M[i, j]`` sits in row role ``r(i)`` and column role ``r(j)``.

* ``W`` (``s_h = x_H^T W x_h``): rows index the query ``x_H = E(q) + Ẽ(z_{H-1})``,
  columns the key ``x_h = E(z_h) + Ẽ(z_{h-1})``.
* ``V`` (``ξ_A = U V A``) and ``F`` (``ξ_F = U F (x_H + κ A)``): rows ``0 … N-1`` are
  the logits (``U = E^T`` reads nothing else), columns the coordinates of ``A`` or ``x_H``.

What gradient descent can and cannot reach (exact facts, the book's derivation): the
gradients are ``∂L/∂V = U^T (p - e_{z_{H+1}}) A^T``, ``∂L/∂F = U^T (p - e) (x_H + κA)^T``
and ``∂L/∂W = Σ_h (∂L/∂s_h) x_H x_h^T``. Hence, from a zero initialisation,

1. rows ``N … d-1`` of ``V`` and ``F`` stay exactly 0 (``U`` never reads them);
2. a coordinate that is never non-zero in any training input (the ``E`` and ``Ẽ``
   coordinates of a token that never occurs, e.g. the triggers ``q' ≠ 0`` of the noisy
   task, and the unused coordinates) keeps its columns of ``V``, ``F``, ``W`` and its
   rows of ``W`` exactly 0;
3. an unseen output ``o`` occurs in training only as filler, never as a target: row ``o``
   of ``V`` only ever receives ``p_o A^T`` (a push *down*), never the ``(p_y - 1) A^T``
   that builds the copy entry ``V[y, y] > 0`` of a training output. So the *copy score*
   ``V[o, o]`` of an unseen output stays ``≤ 0`` up to the noise of the steps, while
   ``V[y, y]`` of a training output grows (:func:`copy_scores`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .architecture import check_d_model
from .losses import _expected_from_logp
from .model import OneLayerTransformer
from .task import RecallBatch, RecallTask, check_batch
from .task import check_task as _check_task
from .validate import (
    InvalidTypeError,
    check_choice,
    check_instance,
    check_int,
    check_probability,
    check_tensor,
)

__all__ = [
    "REDUCTIONS",
    "RoleTable",
    "attention_on_output",
    "coordinate_label",
    "copy_scores",
    "evaluate",
    "never_seen_tokens",
    "nonzero_entries",
    "probability_by_role",
    "role_blocks",
    "role_mass",
    "role_of_coordinates",
    "role_split",
]

REDUCTIONS = ("mean_abs", "frobenius", "mean")


def _token_roles(task: RecallTask) -> dict[str, np.ndarray]:
    """Token roles, empty ones dropped: ``q`` (the active triggers), ``q'`` (the other
    triggers), ``O``, ``OOD``, ``τ``."""
    active = task.active_triggers.numpy()
    others = np.setdiff1d(task.triggers.numpy(), active)
    roles = {
        "q": active,
        "q'": others,
        "O": task.outputs.numpy(),
        "OOD": task.ood_outputs.numpy(),
        "τ": np.array([task.noise_token]),
    }
    return {k: v for k, v in roles.items() if len(v)}


def role_blocks(task: RecallTask, d_model: int = 128) -> dict[str, np.ndarray]:
    """Coordinate index sets of every role, in display order.

    Keys ``E(q)``, ``E(q')``, ``E(O)``, ``E(OOD)``, ``E(τ)``, then ``Ẽ(q)`` … ``Ẽ(τ)``
    (coordinates ``N + k``), then ``unused`` (``2N … d-1``); roles without tokens (``q'``
    in the noiseless task, ``unused`` when ``d = 2N``) are left out. In the noiseless task
    ``q`` stands for all of ``Q``. The sets partition ``{0, …, d-1}``.
    """
    task = _check_task(task)
    d = check_d_model(task, d_model)
    N = task.vocab_size
    tokens = _token_roles(task)
    blocks = {f"E({k})": v.astype(np.int64) for k, v in tokens.items()}
    blocks.update({f"Ẽ({k})": (v + N).astype(np.int64) for k, v in tokens.items()})
    if d > 2 * N:
        blocks["unused"] = np.arange(2 * N, d, dtype=np.int64)
    return blocks


def role_of_coordinates(task: RecallTask, d_model: int = 128) -> list[str]:
    """The role label of each coordinate ``0 … d-1`` (inverse of :func:`role_blocks`)."""
    labels = [""] * check_d_model(_check_task(task), d_model)
    for name, idx in role_blocks(task, d_model).items():
        for i in idx:
            labels[int(i)] = name
    return labels


@dataclass(frozen=True)
class RoleTable:
    """A role × role summary of a matrix: ``values[r, c]`` reduces the block
    ``M[rows of role r, columns of role c]``."""

    rows: tuple[str, ...]
    cols: tuple[str, ...]
    values: np.ndarray
    reduce: str

    def get(self, row: str, col: str) -> float:
        """The entry of block (``row``, ``col``), e.g. ``table.get("E(O)", "E(O)")``."""
        if row not in self.rows or col not in self.cols:
            raise ValueError(
                f"unknown block ({row!r}, {col!r}); rows {self.rows}, cols {self.cols}"
            )
        return float(self.values[self.rows.index(row), self.cols.index(col)])

    def format(self, digits: int = 3) -> str:
        """A plain-text table."""
        width = max(8, digits + 6)
        head = " " * 10 + "".join(f"{c:>{width}}" for c in self.cols)
        lines = [head]
        for i, r in enumerate(self.rows):
            lines.append(f"{r:<10}" + "".join(f"{v:>{width}.{digits}f}" for v in self.values[i]))
        return "\n".join(lines)


def role_mass(
    matrix: torch.Tensor | np.ndarray,
    task: RecallTask,
    *,
    reduce: str = "mean_abs",
    rows: str = "all",
) -> RoleTable:
    """Role × role table of a ``d × d`` matrix (``W``, ``V`` or ``F``).

    ``reduce``: ``"mean_abs"`` (mean ``|M_ij|`` over the block: comparable across blocks
    of different sizes), ``"frobenius"`` (``‖M_block‖_F``: the block's total mass) or
    ``"mean"`` (signed mean). ``rows="logits"`` keeps only the row roles ``E(·)`` (for
    ``V`` and ``F``, whose rows ``≥ N`` are never read).
    """
    task = _check_task(task)
    check_choice("reduce", reduce, REDUCTIONS)
    check_choice("rows", rows, ("all", "logits"))
    M = _square_matrix("matrix", matrix, task)
    blocks = role_blocks(task, int(M.shape[0]))
    row_names = [k for k in blocks if not rows == "logits" or k.startswith("E(")]
    col_names = list(blocks)
    out = np.zeros((len(row_names), len(col_names)))
    for i, r in enumerate(row_names):
        for j, c in enumerate(col_names):
            block = M[np.ix_(blocks[r], blocks[c])]
            if reduce == "mean_abs":
                out[i, j] = np.abs(block).mean()
            elif reduce == "frobenius":
                out[i, j] = np.sqrt((block**2).sum())
            else:
                out[i, j] = block.mean()
    return RoleTable(tuple(row_names), tuple(col_names), out, reduce)


def copy_scores(V: torch.Tensor | np.ndarray, task: RecallTask) -> dict[str, np.ndarray]:
    """The diagonal ``V[k, k]`` (``k < N``) grouped by token role.

    ``V[k, k]`` is the logit token ``k`` gains per unit of attention on a position holding
    ``k`` (through ``ξ_A = U V A``, ``A ∋ a_h E(z_h)``): the model's ability to *copy* an
    attended ``k`` to the output. Returns ``{"q": …, "q'": …, "O": …, "OOD": …, "τ": …}``
    (empty roles left out), each an array of the diagonal entries of that role.
    """
    task = _check_task(task)
    M = _square_matrix("V", V, task)
    diag = np.diagonal(M)
    return {k: diag[v] for k, v in _token_roles(task).items()}


def never_seen_tokens(task: RecallTask) -> np.ndarray:
    """Tokens that never occur in a training sequence: the triggers other than ``q = 0`` in
    the noisy task (the filler excludes triggers); empty in the noiseless task."""
    task = _check_task(task)
    return _token_roles(task).get("q'", np.array([], dtype=np.int64)).astype(np.int64)


# ------------------------------------------------------------------ metrics and logits
@torch.no_grad()
def evaluate(
    model: OneLayerTransformer, batch: RecallBatch, alpha: float | None = None
) -> dict[str, float]:
    """Metrics of ``model`` on ``batch``.

    Returns ``loss`` (target noise integrated out, :func:`icl.losses.expected_loss`),
    ``sampled_loss`` (cross-entropy against ``batch.targets``), ``p_y`` and ``p_tau``
    (mean probability of the clean output and of ``τ``), and the role split of the logits:
    ``xiA_y`` and ``xiA_other`` (mean of ``ξ_{A,y}`` and of ``max_{j≠y} ξ_{A,j}``),
    ``xiF_tau`` and ``xiF_other`` (mean of ``ξ_{F,τ}`` and of ``max_{j≠τ} ξ_{F,j}``).
    """
    _check_model_and_batch(model, batch)
    a = model.task.alpha if alpha is None else check_probability("alpha", alpha)
    values = _metrics(model, batch.tokens, batch.outputs, batch.targets, a, groups=1)
    return dict(zip(_METRIC_NAMES, values[0], strict=True))


#: the keys of :func:`evaluate`, in the order of ``_metrics``' columns
_METRIC_NAMES = ("loss", "sampled_loss", "p_y", "p_tau", "xiA_y", "xiA_other", "xiF_tau",
           "xiF_other")


@torch.no_grad()
def _metrics(
    model: OneLayerTransformer, tokens: torch.Tensor, outputs: torch.Tensor,
    targets: torch.Tensor, alpha: float, groups: int,
) -> list[list[float]]:
    """The metrics of :func:`evaluate` (columns in the order of ``_METRIC_NAMES``) for each of
    ``groups`` equal consecutive blocks of the batch, unchecked, one forward pass and one
    read-back. The training loop evaluates its held-out and unseen-output sets this way."""
    task = model.task
    tau = task.noise_token
    out = model._forward_fast(tokens.long(), *model.matrices())
    xi, xi_A, xi_F = (t.double().view(groups, -1, task.vocab_size) for t in out)
    y = outputs.view(groups, -1, 1)
    logp = torch.log_softmax(xi, dim=-1)
    loss = _expected_from_logp(logp, y.squeeze(2), alpha, tau)  # expected_loss, reusing logp
    prob = torch.softmax(xi, dim=-1)
    F_rest = xi_F.clone()
    F_rest[..., tau] = -math.inf
    cols = torch.stack([
        loss,
        -logp.gather(2, targets.view(groups, -1, 1)).squeeze(2),
        prob.gather(2, y).squeeze(2),
        prob[..., tau],
        xi_A.gather(2, y).squeeze(2),
        xi_A.scatter(2, y, -math.inf).amax(2),
        xi_F[..., tau],
        F_rest.amax(2),
    ], dim=2)  # [groups, n, 8]
    return cols.mean(1).tolist()


@torch.no_grad()
def role_split(model: OneLayerTransformer, batch: RecallBatch) -> dict[str, float]:
    """Which path of a trained network carries ``y`` and ``τ`` (held-out means over ``batch``).

    With ``R = {0 … N-1} \\ {y, τ}`` (the tokens that should get no mass):

    * attention ``ξ_A``: ``A_y``, ``A_tau`` and ``A_rest = max_{j∈R} ξ_{A,j}``;
    * feed-forward ``ξ_F``: ``F_y``, ``F_tau``, ``F_rest``; and its split
      ``ξ_F = U F x_H + κ U F A`` into the *direct* path (reads the last token and its
      predecessor only: it can carry ``q → τ`` but cannot know ``y``) with
      ``direct_tau`` and ``direct_rest = max_{j≠τ}``, and the part read off the attention
      output, ``via_attention_y`` and ``via_attention_tau``.
    """
    _check_model_and_batch(model, batch)
    task = model.task
    N, tau = task.vocab_size, task.noise_token
    out = model(batch.tokens)
    xi_A, xi_F = out.xi_A.double(), out.xi_F.double()
    _, _, F = model.matrices()
    last, prev = batch.tokens[:, -1], batch.tokens[:, -2]
    FU = F[:N].double()
    direct = FU[:, last].T + FU[:, N + prev].T  # U F x_H, x_H = E(z_H) + Ẽ(z_{H-1})
    via = xi_F - direct
    rows = torch.arange(batch.batch_size)
    y = batch.outputs
    rest = torch.ones_like(xi_A, dtype=torch.bool)
    rest[rows, y] = False
    rest[:, tau] = False
    not_tau = torch.ones_like(xi_A, dtype=torch.bool)
    not_tau[:, tau] = False

    def mean(x: torch.Tensor) -> float:
        return float(x.mean())

    def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(~mask, -torch.inf).max(1).values

    return {
        "A_y": mean(xi_A[rows, y]),
        "A_tau": mean(xi_A[:, tau]),
        "A_rest": mean(masked_max(xi_A, rest)),
        "F_y": mean(xi_F[rows, y]),
        "F_tau": mean(xi_F[:, tau]),
        "F_rest": mean(masked_max(xi_F, rest)),
        "direct_tau": mean(direct[:, tau]),
        "direct_rest": mean(masked_max(direct, not_tau)),
        "via_attention_y": mean(via[rows, y]),
        "via_attention_tau": mean(via[:, tau]),
    }



@torch.no_grad()
def probability_by_role(model: OneLayerTransformer, batch: RecallBatch) -> dict[str, float]:
    """Mean predicted probability mass per token role on ``batch``.

    Keys: ``y`` (the clean output), ``τ``, ``O∖y`` (training outputs other than ``y``),
    ``OOD∖y`` (unseen outputs other than ``y``), ``Q`` (triggers). They sum to 1.
    On unseen-output sequences a model that bets on the training outputs puts its mass
    on ``O∖y``: the reason its loss can exceed ``log N``.
    """
    _check_model_and_batch(model, batch)
    task = model.task
    p = torch.softmax(model(batch.tokens).xi.double(), dim=-1)
    rows = torch.arange(batch.batch_size)
    is_y = torch.zeros_like(p, dtype=torch.bool)
    is_y[rows, batch.outputs] = True

    def mass(tokens: torch.Tensor) -> float:
        mask = torch.zeros(task.vocab_size, dtype=torch.bool)
        mask[tokens] = True
        return float((p * (mask[None, :] & ~is_y)).sum(1).mean())

    return {
        "y": float(p[rows, batch.outputs].mean()),
        "τ": float(p[:, task.noise_token].mean()),
        "O∖y": mass(task.outputs),
        "OOD∖y": mass(task.ood_outputs),
        "Q": mass(task.triggers),
    }


@torch.no_grad()
def attention_on_output(model: OneLayerTransformer, batch: RecallBatch) -> float:
    """Mean attention weight ``a_h`` on the position holding ``y`` (``h = p + 1``).

    Compared between a batch and its :func:`icl.shifts.relabel_outputs`, it tells whether the
    attention (the *where*) carries over to unseen outputs, separately from the value
    and feed-forward paths (the *what*).
    """
    _check_model_and_batch(model, batch)
    if bool((batch.pair_pos < 0).any()):
        raise ValueError("batch must be an icl.RecallBatch with the (q, y) pair in every sequence")
    _, a = model.scores(batch.tokens)
    rows = torch.arange(batch.batch_size)
    return float(a[rows, batch.pair_pos + 1].double().mean())


def coordinate_label(task: RecallTask, index: int) -> str:
    """The embedding a coordinate of ``R^d`` belongs to: ``E(k)`` for ``k < N``, ``Ẽ(k)``
    for ``N + k``, ``unused`` beyond ``2N``."""
    task = _check_task(task)
    i = check_int("index", index, minimum=0)
    N = task.vocab_size
    if i < N:
        return f"E({i})"
    if i < 2 * N:
        return f"Ẽ({i - N})"
    return f"unused({i})"


def nonzero_entries(task: RecallTask, M: torch.Tensor, limit: int = 6) -> str:
    """The non-zero entries of a ``d × d`` matrix, named by embedding, e.g.
    ``[E(0), Ẽ(0)] = 3``; at most ``limit`` of them, then their count."""
    task = _check_task(task)
    M = check_tensor("M", M, ndim=2)
    limit = check_int("limit", limit, minimum=1)
    idx = torch.nonzero(M)
    items = [
        f"[{coordinate_label(task, int(i))}, {coordinate_label(task, int(j))}] = "
        f"{float(M[i, j]):.3g}"
        for i, j in idx[:limit]
    ]
    more = f", ... ({len(idx)} entries)" if len(idx) > limit else ""
    return ", ".join(items) + more


def _check_model_and_batch(model: object, batch: object) -> None:
    """``model`` a network, ``batch`` a batch of its task (tokens and outputs in range)."""
    check_instance("model", model, OneLayerTransformer, "an icl.OneLayerTransformer")
    check_batch("batch", batch, model.task)


def _square_matrix(name: str, matrix: object, task: RecallTask) -> np.ndarray:
    """A square ``d × d`` matrix with ``d ≥ 2N`` and finite entries, as float64 NumPy."""
    if isinstance(matrix, torch.Tensor):
        M = matrix.detach().double().cpu().numpy()
    elif isinstance(matrix, np.ndarray) and matrix.dtype.kind in "iuf":
        M = np.asarray(matrix, dtype=np.float64)
    else:
        raise InvalidTypeError(
            f"{name} must be a d x d tensor or NumPy array, got {type(matrix).__name__}"
        )
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 2 * task.vocab_size:
        raise ValueError(
            f"{name} must be square d x d with d >= 2N = {2 * task.vocab_size}, got shape "
            f"{M.shape}"
        )
    if not np.all(np.isfinite(M)):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return M
