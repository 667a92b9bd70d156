"""Gaussian-mixture prompts for in-context classification (the book's reconstruction).

Notation. A *task* is a set of ``c`` class means ``μ_0, …, μ_{c-1} ∈ R^d`` sharing one
covariance ``Λ``. A prompt holds ``N`` labelled examples ``(x_i, y_i)`` and a query
``x_q`` whose label ``y_q`` is to be predicted; the classes are equally likely and
``x_i | y_i = k ~ N(μ_k, Λ)``. Binary labels are coded ``y = ±1`` (class 1 is ``+1``).

Tasks are drawn per prompt as ``μ_k = Λ^{1/2} U v_k`` with ``U`` Haar on ``O(d)`` and
``v_k = r s_k e_{k+1}``, so that ``μ_k^⊤ Λ^{-1} μ_l = v_k^⊤ v_l`` for every task: in the
whitened coordinates ``x̃ = Λ^{-1/2} x`` the problem does not depend on ``Λ``. The norm
scales ``s_k`` are 1 unless stated (unequal norms are a generalisation test).

The model reads a prompt only through ``b_N = (1/N) Σ_i y_i x_i`` (binary) or
``B_N = (1/N) Σ_i y_i x_i^⊤`` (one-hot ``y_i``), so long runs sample that statistic
directly (:func:`sample_statistics`): ``b_N = (1/N)[n_+ μ_1 - (N - n_+) μ_0] + Λ^{1/2} g/√N``
with ``n_+ ~ Bin(N, 1/2)`` and ``g ~ N(0, I)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from icl.validate import (
    InvalidTypeError,
    check_budget,
    check_finite_array,
    check_generator,
    check_int,
    check_real,
    check_seed,
    check_tensor,
)

__all__ = [
    "compare_samplers",
    "invariant_statistics",
    "DEFAULT_EIGENVALUES",
    "MixtureTask",
    "Prompts",
    "Statistics",
    "context_statistic",
    "default_task",
    "generator",
    "haar_orthogonal",
    "label_rows",
    "sample_means",
    "sample_prompts",
    "sample_statistics",
]

#: eigenvalues of the default covariance ``Λ = Q diag(0.5, 1.25, 2) Q^⊤``
DEFAULT_EIGENVALUES: tuple[float, ...] = (0.5, 1.25, 2.0)
DTYPE = torch.float64
#: the largest number of scalars a sampler may allocate unless ``max_numbers`` is raised
MAX_NUMBERS = 200_000_000


def generator(seed: int | torch.Generator) -> torch.Generator:
    """A ``torch.Generator`` from a seed (or the generator itself, passed through)."""
    if isinstance(seed, torch.Generator):
        return check_generator("seed", seed)
    g = torch.Generator()
    g.manual_seed(check_seed("seed", seed))
    return g


def haar_orthogonal(
    d: int, batch: int, seed: int | torch.Generator, *, columns: int | None = None
) -> torch.Tensor:
    """``batch`` Haar-distributed orthogonal matrices (the first ``columns`` columns).

    QR of a Gaussian matrix with the signs of ``diag(R)`` moved into ``Q`` (Mezzadri's
    correction), shape ``(batch, d, columns)``, float64.
    """
    d = check_int("d", d, minimum=1)
    batch = check_int("batch", batch, minimum=1)
    k = d if columns is None else check_int("columns", columns, minimum=1, maximum=d)
    check_budget("batch", batch * d * k, MAX_NUMBERS, unit="numbers", keyword="batch")
    g = generator(seed)
    a = torch.randn(batch, d, k, generator=g, dtype=DTYPE)
    q, r = torch.linalg.qr(a)
    sign = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return q * sign.unsqueeze(-2)


@dataclass(frozen=True, eq=False)
class MixtureTask:
    """The task family: dimension ``d``, classes ``c``, mean norm ``r``, covariance ``Λ``.

    ``scales`` multiplies the norm of each whitened mean (``v_k = r s_k e_{k+1}``); the
    default, all ones, gives every mean the same ``Λ^{-1}``-norm ``r``.
    """

    cov: torch.Tensor
    r: float = 1.5
    n_classes: int = 2
    scales: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        cov = check_tensor("cov", self.cov, ndim=2, kind="float", finite=True)
        d = cov.shape[0]
        if cov.shape != (d, d) or d < 1:
            raise ValueError(f"cov must be a square matrix, got shape {tuple(cov.shape)}")
        cov = cov.to(DTYPE)
        if not torch.allclose(cov, cov.T, rtol=0, atol=1e-12 * float(cov.abs().max())):
            raise ValueError("cov must be symmetric")
        evals, evecs = torch.linalg.eigh(cov)
        if float(evals.min()) <= 0:
            raise ValueError(
                f"cov must be positive definite, got smallest eigenvalue {float(evals.min()):g}"
            )
        r = check_real("r", self.r, low=0.0, low_open=True)
        c = check_int("n_classes", self.n_classes, minimum=2)
        if c > d:
            raise ValueError(f"n_classes must be <= d = {d} (the means are orthogonal), got {c}")
        scales = (1.0,) * c if self.scales is None else tuple(self.scales)
        arr = check_finite_array("scales", list(scales), low=0.0)
        if arr.shape != (c,) or (arr <= 0).any():
            raise ValueError(f"scales must be {c} positive numbers, got {self.scales!r}")
        object.__setattr__(self, "cov", cov)
        object.__setattr__(self, "r", r)
        object.__setattr__(self, "n_classes", c)
        object.__setattr__(self, "scales", tuple(float(s) for s in arr))
        object.__setattr__(self, "_evals", evals)
        object.__setattr__(self, "_evecs", evecs)

    @property
    def d(self) -> int:
        """Dimension of the inputs."""
        return int(self.cov.shape[0])

    @property
    def cov_sqrt(self) -> torch.Tensor:
        """``Λ^{1/2}`` (symmetric square root)."""
        return (self._evecs * self._evals.sqrt()) @ self._evecs.T

    @property
    def cov_inv(self) -> torch.Tensor:
        """``Λ^{-1}``."""
        return (self._evecs / self._evals) @ self._evecs.T

    @property
    def cov_inv_sqrt(self) -> torch.Tensor:
        """``Λ^{-1/2}``."""
        return (self._evecs / self._evals.sqrt()) @ self._evecs.T

    @property
    def eigenvalues(self) -> torch.Tensor:
        """Eigenvalues of ``Λ`` in increasing order."""
        return self._evals.clone()

    @property
    def whitened_means(self) -> torch.Tensor:
        """``v_k = r s_k e_{k+1}`` as rows, shape ``(c, d)``."""
        v = torch.zeros(self.n_classes, self.d, dtype=DTYPE)
        idx = torch.arange(self.n_classes)
        v[idx, idx] = self.r * torch.tensor(self.scales, dtype=DTYPE)
        return v

    def with_cov(self, cov: torch.Tensor) -> MixtureTask:
        """The same task family with another covariance (a test-time shift)."""
        return MixtureTask(cov=cov, r=self.r, n_classes=self.n_classes, scales=self.scales)


def default_task(
    *,
    d: int = 3,
    r: float = 1.5,
    n_classes: int = 2,
    eigenvalues: Sequence[float] | None = None,
    seed: int = 0,
    scales: Sequence[float] | None = None,
) -> MixtureTask:
    """``Λ = Q diag(eigenvalues) Q^⊤`` with a seeded Haar ``Q``.

    The default eigenvalues are (0.5, 1.25, 2) for ``d = 3``; for another ``d`` they are
    spread evenly on ``[0.5, 2]`` unless given.
    """
    d = check_int("d", d, minimum=1)
    if eigenvalues is None:
        ev = (
            torch.tensor(DEFAULT_EIGENVALUES, dtype=DTYPE)
            if d == 3
            else torch.linspace(0.5, 2.0, d, dtype=DTYPE)
        )
    else:
        arr = check_finite_array("eigenvalues", list(eigenvalues))
        if arr.shape != (d,) or (arr <= 0).any():
            raise ValueError(f"eigenvalues must be {d} positive numbers, got {eigenvalues!r}")
        ev = torch.tensor(arr, dtype=DTYPE)
    q = haar_orthogonal(d, 1, check_seed("seed", seed))[0]
    cov = (q * ev) @ q.T
    cov = 0.5 * (cov + cov.T)
    return MixtureTask(
        cov=cov, r=r, n_classes=n_classes, scales=None if scales is None else tuple(scales)
    )


def sample_means(task: MixtureTask, batch: int, seed: int | torch.Generator) -> torch.Tensor:
    """One task per prompt: ``μ_k = Λ^{1/2} U v_k``, shape ``(batch, c, d)``."""
    _check_task(task)
    u = haar_orthogonal(task.d, batch, seed, columns=task.n_classes)  # (B, d, c)
    v = u * (task.r * torch.tensor(task.scales, dtype=DTYPE))  # columns U v_k
    return (task.cov_sqrt @ v).transpose(1, 2)


@dataclass(frozen=True, eq=False)
class Prompts:
    """Explicit prompts: ``x`` (B, N, d), class indices ``labels`` (B, N), query ``xq``
    (B, d) with class ``yq`` (B,), and each prompt's means (B, c, d)."""

    x: torch.Tensor
    labels: torch.Tensor
    xq: torch.Tensor
    yq: torch.Tensor
    means: torch.Tensor

    @property
    def length(self) -> int:
        """The prompt length ``N``."""
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int:
        """The number of classes ``c``."""
        return int(self.means.shape[1])


@dataclass(frozen=True, eq=False)
class Statistics:
    """What the model reads of a prompt: ``b`` = ``b_N`` (B, d) for two classes or
    ``B_N`` (B, c, d) for more, the query ``xq`` (B, d), its class ``yq`` (B,), the means."""

    b: torch.Tensor
    xq: torch.Tensor
    yq: torch.Tensor
    means: torch.Tensor


def _check_task(task: object) -> MixtureTask:
    if not isinstance(task, MixtureTask):
        raise InvalidTypeError(f"task must be a MixtureTask, got {type(task).__name__}")
    return task


def _queries(task: MixtureTask, means: torch.Tensor, g: torch.Generator):
    batch = means.shape[0]
    yq = torch.randint(task.n_classes, (batch,), generator=g)
    z = torch.randn(batch, task.d, generator=g, dtype=DTYPE)
    xq = means[torch.arange(batch), yq] + z @ task.cov_sqrt
    return xq, yq


def sample_prompts(
    task: MixtureTask, length: int, batch: int, seed: int | torch.Generator
) -> Prompts:
    """``batch`` explicit prompts of ``length`` examples each, one task per prompt."""
    _check_task(task)
    n = check_int("length", length, minimum=1)
    b = check_int("batch", batch, minimum=1)
    check_budget("batch", b * (n + 1) * task.d, MAX_NUMBERS, unit="numbers", keyword="batch")
    g = generator(seed)
    means = sample_means(task, b, g)
    labels = torch.randint(task.n_classes, (b, n), generator=g)
    z = torch.randn(b, n, task.d, generator=g, dtype=DTYPE)
    x = torch.gather(means, 1, labels.unsqueeze(-1).expand(b, n, task.d)) + z @ task.cov_sqrt
    xq, yq = _queries(task, means, g)
    return Prompts(x=x, labels=labels, xq=xq, yq=yq, means=means)


def label_rows(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The label rows of the embedding: ``±1`` (shape (B, N)) for two classes, one-hot
    (B, N, c) for more."""
    c = check_int("n_classes", n_classes, minimum=2)
    labels = check_tensor("labels", labels, kind="int", low=0, high=c - 1)
    if c == 2:
        return 2.0 * labels.to(DTYPE) - 1.0
    return torch.nn.functional.one_hot(labels, c).to(DTYPE)


def context_statistic(prompts: Prompts) -> torch.Tensor:
    """``b_N = (1/N) Σ y_i x_i`` (B, d) or ``B_N = (1/N) Σ y_i x_i^⊤`` (B, c, d)."""
    if not isinstance(prompts, Prompts):
        raise InvalidTypeError(f"prompts must be Prompts, got {type(prompts).__name__}")
    y = label_rows(prompts.labels, prompts.n_classes)
    if prompts.n_classes == 2:
        return torch.einsum("bn,bnd->bd", y, prompts.x) / prompts.length
    return torch.einsum("bnk,bnd->bkd", y, prompts.x) / prompts.length


def sample_statistics(
    task: MixtureTask,
    length: int | None,
    batch: int,
    seed: int | torch.Generator,
    *,
    means: torch.Tensor | None = None,
) -> Statistics:
    """Sample ``b_N`` (or ``B_N``) with the query, without building the prompts.

    ``length=None`` gives the ``N = ∞`` limit ``b_∞ = (μ_1 - μ_0)/2`` (``B_∞`` has rows
    ``μ_k / c``). ``means`` (B, c, d) reuses given tasks instead of drawing new ones.
    """
    _check_task(task)
    bsz = check_int("batch", batch, minimum=1)
    check_budget("batch", bsz * task.n_classes * task.d * 3, MAX_NUMBERS, unit="numbers",
                 keyword="batch")
    g = generator(seed)
    c, d = task.n_classes, task.d
    if means is None:
        means = sample_means(task, bsz, g)
    else:
        means = check_tensor("means", means, shape=(bsz, c, d), kind="float", finite=True)
        means = means.to(DTYPE)
    if length is None:
        if c == 2:
            b = 0.5 * (means[:, 1] - means[:, 0])
        else:
            b = means / c
    else:
        n = check_int("length", length, minimum=1)
        if c == 2:
            n_plus = torch.binomial(
                torch.full((bsz,), float(n), dtype=DTYPE), torch.full((bsz,), 0.5, dtype=DTYPE),
                generator=g,
            )
            noise = torch.randn(bsz, d, generator=g, dtype=DTYPE) @ task.cov_sqrt
            b = (n_plus[:, None] * means[:, 1] - (n - n_plus)[:, None] * means[:, 0]) / n
            b = b + noise / n**0.5
        else:
            probs = torch.full((bsz, c), 1.0 / c, dtype=DTYPE)
            counts = _multinomial_counts(probs, n, g)
            noise = torch.randn(bsz, c, d, generator=g, dtype=DTYPE) @ task.cov_sqrt
            b = (counts[..., None] * means + counts.sqrt()[..., None] * noise) / n
    xq, yq = _queries(task, means, g)
    return Statistics(b=b, xq=xq, yq=yq, means=means)


def _multinomial_counts(probs: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """Multinomial(n, probs) counts by sequential binomials (vectorised over rows)."""
    left = torch.full(probs.shape[:1], float(n), dtype=DTYPE)
    mass = torch.ones(probs.shape[:1], dtype=DTYPE)
    out = torch.zeros_like(probs)
    for k in range(probs.shape[1] - 1):  # loop over classes, not over prompts
        p = (probs[:, k] / mass).clamp(0.0, 1.0)
        out[:, k] = torch.binomial(left, p, generator=g)
        left = left - out[:, k]
        mass = mass - probs[:, k]
    out[:, -1] = left
    return out


def invariant_statistics(b: torch.Tensor, xq: torch.Tensor, means: torch.Tensor,
                         task: MixtureTask) -> dict[str, torch.Tensor]:
    """Scalars whose law does not depend on the task's rotation ``U`` (binary):
    ``μ_1^⊤Λ^{-1}b``, ``μ_0^⊤Λ^{-1}b``, ``‖Λ^{-1/2}b‖²`` and ``b^⊤Λ^{-1}x_q``."""
    _check_task(task)
    d = task.d
    b = check_tensor("b", b, shape=(None, d), kind="float", finite=True).to(DTYPE)
    xq = check_tensor("xq", xq, shape=(b.shape[0], d), kind="float", finite=True).to(DTYPE)
    means = check_tensor("means", means, shape=(b.shape[0], 2, d), kind="float", finite=True)
    means = means.to(DTYPE)
    lb = b @ task.cov_inv
    return {
        "mu1_b": (lb * means[:, 1]).sum(1),
        "mu0_b": (lb * means[:, 0]).sum(1),
        "norm_b": (lb * b).sum(1),
        "b_xq": (lb * xq).sum(1),
    }


def compare_samplers(
    task: MixtureTask, length: int, batch: int, seed: int
) -> dict[str, float]:
    """Two-sample Kolmogorov–Smirnov p-values between ``b_N`` of explicit prompts and
    of :func:`sample_statistics` (independent draws, seeds ``seed`` and ``seed + 1``), on
    the rotation-free scalars of :func:`invariant_statistics`."""
    from scipy.stats import ks_2samp

    _check_task(task)
    if task.n_classes != 2:
        raise ValueError(f"task must have two classes, got n_classes = {task.n_classes}")
    seed = check_seed("seed", seed)
    p = sample_prompts(task, length, batch, seed)
    explicit = invariant_statistics(context_statistic(p), p.xq, p.means, task)
    s = sample_statistics(task, length, batch, seed + 1)
    fast = invariant_statistics(s.b, s.xq, s.means, task)
    return {k: float(ks_2samp(explicit[k].numpy(), fast[k].numpy()).pvalue) for k in explicit}
