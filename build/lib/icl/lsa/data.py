"""In-context linear regression: the prompts a linear self-attention layer reads.

Per prompt (the book's normalisation, [D]): covariates ``x_1 … x_{n+1}`` i.i.d. with
covariance ``Σ`` (Gaussian by default), a weight ``w ~ N(m, τ² Σ_w)``, responses
``y_i = w^T x_i + ε_i`` with ``ε_i ~ N(0, σ²)``. The query is ``x_q = x_{n+1}`` and the
target ``y_q = y_{n+1}`` (noisy). Every prompt draws a fresh ``(w, x, ε)``.

Variants used to probe the result (what would break it):

* ``covariates="uniform"`` or ``"laplace"``: i.i.d. coordinates with unit variance and
  kurtosis ``κ = 1.8`` or ``6`` (then multiplied by a square root of ``Σ``);
* ``target="relu"``: ``y_i = max(u^T x_i, 0) + ε_i`` with ``u ~ N(0, D)`` (``D = I``
  unless ``relu_cov`` is given); the prior of ``w`` is then unused;
* ``prior_mean``: a prior with a mean ``m``.

Sampling is vectorised: one call draws ``[K, B]`` prompts for ``K`` models at once, each
model with its own noise level if asked. There is no global random state: every
function takes a seed or a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..validate import (
    InvalidTypeError,
    check_budget,
    check_choice,
    check_finite_array,
    check_generator,
    check_int,
    check_real,
    check_seed,
    check_tensor,
)

__all__ = [
    "COVARIATES",
    "KURTOSIS",
    "TARGETS",
    "Prompts",
    "RegressionTask",
    "as_generator",
    "check_prompts",
    "haar_orthogonal",
    "spectrum_covariance",
]

#: the kurtosis of one coordinate, for each covariate law (by name)
KURTOSIS: dict[str, float] = {"gaussian": 3.0, "uniform": 1.8, "laplace": 6.0}
COVARIATES = tuple(KURTOSIS)
TARGETS = ("linear", "relu")


def as_generator(seed: int | torch.Generator, name: str = "seed") -> torch.Generator:
    """A ``torch.Generator``: ``seed`` itself if it is one, else a fresh one seeded with it."""
    if isinstance(seed, torch.Generator):
        return check_generator(name, seed)
    g = torch.Generator()
    g.manual_seed(check_seed(name, seed))
    return g


def _spd(name: str, value: Any, d: int) -> np.ndarray:
    """A symmetric positive-definite ``d × d`` matrix as float64."""
    arr = check_finite_array(name, value)
    if arr.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}), got {arr.shape}")
    if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric")
    if np.linalg.eigvalsh(arr).min() <= 0:
        raise ValueError(f"{name} must be positive definite, got eigenvalues "
                         f"{np.round(np.linalg.eigvalsh(arr), 6).tolist()}")
    return arr


def haar_orthogonal(d: int, seed: int | torch.Generator = 0) -> np.ndarray:
    """A Haar-distributed ``d × d`` orthogonal matrix (QR of a Gaussian, signs fixed)."""
    d = check_int("d", d, minimum=1)
    g = as_generator(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64).numpy()
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))


def spectrum_covariance(eigenvalues, seed: int | torch.Generator = 0) -> np.ndarray:
    """``Σ = Q diag(eigenvalues) Q^T`` with a seeded Haar ``Q``."""
    lam = check_finite_array("eigenvalues", eigenvalues)
    if lam.ndim != 1 or lam.size == 0 or lam.min() <= 0:
        raise ValueError(f"eigenvalues must be a non-empty list of positive numbers, got {lam}")
    q = haar_orthogonal(lam.size, seed)
    s = (q * lam) @ q.T
    return (s + s.T) / 2


@dataclass(frozen=True)
class Prompts:
    """A batch of regression prompts, with a leading axis of ``K`` models (or none).

    Attributes
    ----------
    X : ``[..., n, d]``  the in-context covariates ``x_1 … x_n``
    y : ``[..., n]``     their responses ``y_1 … y_n``
    x_q : ``[..., d]``   the query ``x_{n+1}``
    y_q : ``[..., ]``    the target ``y_{n+1}`` (noisy)
    w : ``[..., d]``     the weight of each prompt (the ReLU direction ``u`` for ReLU targets)
    """

    X: torch.Tensor
    y: torch.Tensor
    x_q: torch.Tensor
    y_q: torch.Tensor
    w: torch.Tensor

    @property
    def n(self) -> int:
        """Number of in-context examples."""
        return self.X.shape[-2]

    @property
    def d(self) -> int:
        """Dimension of the covariates."""
        return self.X.shape[-1]

    def tokens(self) -> torch.Tensor:
        """The token matrix ``Z ∈ R^{(d+1)×(n+1)}`` of every prompt, ``[..., d+1, n+1]``.

        Columns ``z_i = (x_i, y_i)``, the last one ``(x_q, 0)``.
        """
        ctx = torch.cat([self.X, self.y.unsqueeze(-1)], dim=-1)          # [..., n, d+1]
        query = torch.cat([self.x_q, torch.zeros_like(self.x_q[..., :1])], dim=-1)
        return torch.cat([ctx, query.unsqueeze(-2)], dim=-2).transpose(-1, -2)

    def moment(self) -> torch.Tensor:
        """``G = (1/n) Σ_{i≤n} z_i z_i^T``, ``[..., d+1, d+1]``."""
        ctx = torch.cat([self.X, self.y.unsqueeze(-1)], dim=-1)
        return ctx.transpose(-1, -2) @ ctx / self.n

    def v(self) -> torch.Tensor:
        """``v = (1/n) Σ_{i≤n} y_i x_i``: minus the gradient of the in-context least squares
        objective at ``u = 0``, ``[..., d]``."""
        return (self.y.unsqueeze(-1) * self.X).mean(dim=-2)

    def to(self, dtype: torch.dtype) -> Prompts:
        """The same prompts in another floating dtype."""
        return Prompts(*(t.to(dtype) for t in (self.X, self.y, self.x_q, self.y_q, self.w)))


@dataclass(frozen=True)
class RegressionTask:
    """In-context regression with ``n`` examples in dimension ``d``.

    Parameters
    ----------
    d, n
        Dimension and number of in-context examples (``d ≥ 1``, ``n ≥ 1``).
    sigma2
        Noise variance ``σ² ≥ 0`` of every response, the target included.
    tau2
        Prior scale ``τ²`` of ``w ~ N(m, τ² Σ_w)``.
    cov, prior_cov
        ``Σ`` and ``Σ_w`` (``d × d`` SPD; default the identity).
    prior_mean
        ``m`` (default 0).
    covariates
        ``"gaussian"``, ``"uniform"`` or ``"laplace"`` coordinates (unit variance).
    target
        ``"linear"`` (``y = w^T x + ε``) or ``"relu"`` (``y = max(u^T x, 0) + ε``,
        ``u ~ N(0, D)``).
    relu_cov
        ``D`` of the ReLU direction (default the identity: a rotation-invariant family).
    """

    d: int
    n: int
    sigma2: float = 0.0
    tau2: float = 1.0
    cov: Any = None
    prior_cov: Any = None
    prior_mean: Any = None
    covariates: str = "gaussian"
    target: str = "linear"
    relu_cov: Any = None
    _chol: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        d = check_int("d", self.d, minimum=1)
        check_int("n", self.n, minimum=1)
        check_real("sigma2", self.sigma2, low=0.0)
        check_real("tau2", self.tau2, low=0.0, low_open=True)
        check_choice("covariates", self.covariates, COVARIATES)
        check_choice("target", self.target, TARGETS)
        for name in ("cov", "prior_cov", "relu_cov"):
            value = getattr(self, name)
            mat = np.eye(d) if value is None else _spd(name, value, d)
            object.__setattr__(self, name, mat)
            self._chol[name] = np.linalg.cholesky(mat)
        mean = np.zeros(d) if self.prior_mean is None else check_finite_array(
            "prior_mean", self.prior_mean)
        if mean.shape != (d,):
            raise ValueError(f"prior_mean must have shape ({d},), got {mean.shape}")
        object.__setattr__(self, "prior_mean", mean)
        object.__setattr__(self, "_identity", {k: bool(np.array_equal(getattr(self, k), np.eye(d)))
                                               for k in ("cov", "prior_cov", "relu_cov")})
        object.__setattr__(self, "_has_mean", bool(np.any(mean)))
        object.__setattr__(self, "sigma2", float(self.sigma2))
        object.__setattr__(self, "tau2", float(self.tau2))

    # -- descriptions ----------------------------------------------------------------

    @property
    def kurtosis(self) -> float:
        """Kurtosis ``κ = E[x^4]`` of one (unit-variance) coordinate before ``Σ^{1/2}``."""
        return KURTOSIS[self.covariates]

    @property
    def isotropic(self) -> bool:
        """Gaussian ``N(0, I)`` covariates, linear target, prior ``N(0, τ² I)``."""
        return (self.covariates == "gaussian" and self.target == "linear"
                and np.allclose(self.cov, np.eye(self.d))
                and np.allclose(self.prior_cov, np.eye(self.d))
                and not np.any(self.prior_mean))

    def same_up_to_noise(self, other: RegressionTask) -> bool:
        """Whether ``other`` is this task with possibly another ``σ²``."""
        if not isinstance(other, RegressionTask):
            return False
        return (self.d, self.n, self.tau2, self.covariates, self.target) == (
            other.d, other.n, other.tau2, other.covariates, other.target) and all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("cov", "prior_cov", "prior_mean", "relu_cov"))

    def with_(self, **changes: Any) -> RegressionTask:
        """A copy with some fields changed (e.g. ``task.with_(n=80)``)."""
        fields = dict(d=self.d, n=self.n, sigma2=self.sigma2, tau2=self.tau2, cov=self.cov,
                      prior_cov=self.prior_cov, prior_mean=self.prior_mean,
                      covariates=self.covariates, target=self.target, relu_cov=self.relu_cov)
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; allowed: {sorted(fields)}")
        fields.update(changes)
        return RegressionTask(**fields)

    # -- sampling --------------------------------------------------------------------

    def _coordinates(self, shape: tuple[int, ...], g: torch.Generator,
                     dtype: torch.dtype) -> torch.Tensor:
        if self.covariates == "gaussian":
            return torch.randn(*shape, generator=g, dtype=dtype)
        if self.covariates == "uniform":  # U(-√3, √3): variance 1, kurtosis 9/5
            return (torch.rand(*shape, generator=g, dtype=dtype) * 2 - 1) * math.sqrt(3.0)
        # Laplace with scale 1/√2: variance 1, kurtosis 6 (difference of two exponentials)
        e = torch.empty(2, *shape, dtype=dtype).exponential_(1.0, generator=g)
        return (e[0] - e[1]) / math.sqrt(2.0)

    def sample(
        self,
        batch: int,
        seed: int | torch.Generator = 0,
        *,
        models: int | None = None,
        sigma2: Any = None,
        dtype: torch.dtype = torch.float32,
        max_bytes: int = 2 * 1024**3,
    ) -> Prompts:
        """Draw ``batch`` prompts (``[batch, …]``), or ``[models, batch, …]`` if ``models``.

        ``sigma2`` (with ``models``): one noise variance per model, overriding the task's.
        """
        batch = check_int("batch", batch, minimum=1)
        if dtype not in (torch.float32, torch.float64):
            raise InvalidTypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        g = as_generator(seed)
        lead: tuple[int, ...] = (batch,)
        if models is not None:
            lead = (check_int("models", models, minimum=1), batch)
        d, n = self.d, self.n
        check_budget("batch", 8.0 * math.prod(lead) * (n + 1) * (d + 2) * 3, max_bytes)
        noise_sd = torch.full(lead[:1] if models is not None else (), math.sqrt(self.sigma2),
                              dtype=dtype)
        if sigma2 is not None:
            if models is None:
                raise ValueError("sigma2 per model needs models=K")
            s2 = check_finite_array("sigma2", sigma2, low=0.0)
            if s2.shape != (lead[0],):
                raise ValueError(f"sigma2 must have one entry per model ({lead[0]}), "
                                 f"got shape {s2.shape}")
            noise_sd = torch.as_tensor(np.sqrt(s2), dtype=dtype)
        return self._draw(lead, g, noise_sd, dtype)

    def _draw(self, lead: tuple[int, ...], g: torch.Generator, noise_sd: torch.Tensor,
              dtype: torch.dtype) -> Prompts:
        """The sampler without input checks (``noise_sd``: ``[]`` or ``[K]``)."""
        d, n = self.d, self.n
        x = self._coordinates((*lead, n + 1, d), g, dtype)
        if not self._identity["cov"]:
            x = x @ torch.as_tensor(self._chol["cov"], dtype=dtype).T     # cov Σ
        w = torch.randn(*lead, d, generator=g, dtype=dtype)
        if self.target == "linear":
            if not self._identity["prior_cov"]:
                w = w @ torch.as_tensor(self._chol["prior_cov"], dtype=dtype).T
            w = w * math.sqrt(self.tau2)
            if self._has_mean:
                w = w + torch.as_tensor(self.prior_mean, dtype=dtype)
            clean = (x * w.unsqueeze(-2)).sum(-1)
        else:
            if not self._identity["relu_cov"]:
                w = w @ torch.as_tensor(self._chol["relu_cov"], dtype=dtype).T
            clean = (x * w.unsqueeze(-2)).sum(-1).clamp_min(0.0)
        eps = torch.randn(*lead, n + 1, generator=g, dtype=dtype)
        sd = noise_sd.reshape(noise_sd.shape + (1,) * (len(lead) + 1 - noise_sd.dim()))
        y = clean + sd * eps
        return Prompts(X=x[..., :n, :], y=y[..., :n], x_q=x[..., n, :], y_q=y[..., n], w=w)


def check_prompts(name: str, value: Any) -> Prompts:
    """A :class:`Prompts` with consistent, finite shapes."""
    if not isinstance(value, Prompts):
        raise InvalidTypeError(f"{name} must be icl.lsa.Prompts, got {type(value).__name__}")
    lead = tuple(value.X.shape[:-2])
    d = value.X.shape[-1]
    check_tensor(f"{name}.X", value.X, kind="float", finite=True)
    check_tensor(f"{name}.y", value.y, shape=(*lead, value.X.shape[-2]), finite=True)
    check_tensor(f"{name}.x_q", value.x_q, shape=(*lead, d), finite=True)
    check_tensor(f"{name}.y_q", value.y_q, shape=lead, finite=True)
    return value
