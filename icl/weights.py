"""Reading trained weights by token role (the book's own tools for chapter 5).

The embeddings are one-hot (spec section 3): coordinate ``k < N`` is ``E(k)``, coordinate
``N + k`` is ``Ẽ(k)`` (the previous-token copy) and ``2N … d-1`` are unused. Grouping the
coordinates by the *role* of their token (the trigger ``q``, the other triggers, the
training outputs ``O``, the unseen outputs, the noise token ``τ``) turns a ``d × d``
matrix ``W``, ``V`` or ``F`` into a small role × role table.

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

from dataclasses import dataclass

import numpy as np
import torch

from .model import check_d_model
from .task import RecallTask
from .task import check_task as _check_task

__all__ = [
    "REDUCTIONS",
    "RoleTable",
    "copy_scores",
    "never_seen_tokens",
    "role_blocks",
    "role_mass",
    "role_of_coordinates",
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
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if rows not in ("all", "logits"):
        raise ValueError(f"rows must be 'all' or 'logits', got {rows!r}")
    if isinstance(matrix, torch.Tensor):
        M = matrix.detach().double().cpu().numpy()
    else:
        M = np.asarray(matrix, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"matrix must be square d x d, got shape {M.shape}")
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
    M = V.detach().double().cpu().numpy() if isinstance(V, torch.Tensor) else np.asarray(V, float)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.shape[0] < 2 * task.vocab_size:
        raise ValueError(f"V must be square d x d with d >= 2N, got shape {M.shape}")
    diag = np.diagonal(M)
    return {k: diag[v] for k, v in _token_roles(task).items()}


def never_seen_tokens(task: RecallTask) -> np.ndarray:
    """Tokens that never occur in a training sequence: the triggers other than ``q = 0`` in
    the noisy task (the filler excludes triggers); empty in the noiseless task."""
    task = _check_task(task)
    return _token_roles(task).get("q'", np.array([], dtype=np.int64)).astype(np.int64)
