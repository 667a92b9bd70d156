"""Training and evaluating LSA models; exact least squares for the linear families.

* :func:`train_lsa`: Adam on fresh batches, ``K`` models at once (the loss is the sum of
  the ``K`` models' mean squared errors; Adam acts entry by entry, so each model follows
  exactly the trajectory it would follow alone on its own batches) [E: the book's
  protocol].
* :func:`evaluate`: ``Γ``, ``η̂``, ``‖b_x‖``, ``‖a_y‖``, the loss and the paired excess over
  a reference GD step on the same fixed prompts, in float64.
* :func:`fit_gd_step`, :func:`fit_reduced`, :func:`fit_relaxation`: least squares over
  features that make ``ŷ`` linear in the parameters: the best GD step ``Γ``, the exact
  minimiser of the ``reduced`` family, and the *linear relaxation* of ``b^T G A x_q``
  (every product ``G_{kl} x_{q,m}`` a free feature), which no LSA can beat.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..validate import (
    check_bool,
    check_budget,
    check_finite_array,
    check_int,
    check_real,
    check_seed,
    check_tensor,
)
from .data import Prompts, RegressionTask, as_generator, check_prompts
from .model import LinearSelfAttention, _reduced_forward, gd_step_prediction

__all__ = [
    "Evaluation",
    "LeastSquares",
    "TrainResult",
    "evaluate",
    "fit_gd_step",
    "fit_reduced",
    "fit_relaxation",
    "relaxation_coefficients",
    "relaxation_gamma",
    "train_lsa",
]


def _check_task(name: str, task: Any) -> RegressionTask:
    if not isinstance(task, RegressionTask):
        raise TypeError(f"{name} must be an icl.lsa.RegressionTask, got {type(task).__name__}")
    return task


@dataclass
class TrainResult:
    """A trained module of ``K`` models and its training curve.

    ``steps`` ``[T']`` and ``loss`` ``[K, T']``: the mini-batch loss of each model,
    averaged over the ``record_every`` steps that end at each recorded step.
    ``gamma`` ``[K, T', d, d]``, ``b_x_norm`` and ``a_y_norm`` ``[K, T']``: ``Γ``, ``‖b_x‖``
    and ``‖a_y‖`` of each model at each recorded step (the weights, not averages), so that
    their approach to the optimum and the floor left by the optimiser's noise can be read.
    ``sigma2`` ``[K]``: the noise level each model was trained at.
    """

    model: LinearSelfAttention
    steps: np.ndarray
    loss: np.ndarray
    gamma: np.ndarray
    b_x_norm: np.ndarray
    a_y_norm: np.ndarray
    sigma2: np.ndarray
    seconds: float

    def index(self, step: int) -> int:
        """The position of ``step`` among the recorded steps (it must be one of them)."""
        step = check_int("step", step, minimum=1)
        hits = np.flatnonzero(self.steps == step)
        if not len(hits):
            raise ValueError(f"step must be a recorded step (a multiple of record_every or "
                             f"the last), got {step}; recorded: {self.steps[0]}, "
                             f"{self.steps[1] if len(self.steps) > 1 else ''}, ..., "
                             f"{self.steps[-1]}")
        return int(hits[0])

    def gamma_error(self, gamma_star: Any, step: int | None = None) -> np.ndarray:
        """``‖Γ_t - Γ*‖_F / ‖Γ*‖_F`` per model and recorded step, ``[K, T']``, or per
        model at one recorded ``step``, ``[K]`` (``gamma_star`` ``[d, d]`` or ``[K, d, d]``)."""
        K, _, d, _ = self.gamma.shape
        gs = torch.as_tensor(np.asarray(gamma_star, dtype=np.float64))
        if gs.dim() == 2 and gs.shape == (d, d):
            gs = gs.expand(K, d, d)
        check_tensor("gamma_star", gs, shape=(K, d, d), finite=True)
        gs = gs.numpy()[:, None]
        err = (np.linalg.norm(self.gamma - gs, axis=(-2, -1))
               / np.linalg.norm(gs, axis=(-2, -1)))
        return err if step is None else err[:, self.index(step)]


def _noise_levels(tasks: Sequence[RegressionTask], runs: int) -> np.ndarray:
    return np.repeat([t.sigma2 for t in tasks], runs)


def _sampler(tasks: Sequence[RegressionTask], runs: int, batch: int,
             g: torch.Generator) -> Callable[[], Prompts]:
    """Draw ``[K, batch]`` prompts, model ``k`` from ``tasks[k // runs]``: one vectorised
    call when the tasks differ only in ``σ²``, one call per task otherwise."""
    K = len(tasks) * runs
    first = tasks[0]
    same = all(first.same_up_to_noise(t) for t in tasks)
    if same:
        sd = torch.as_tensor(np.sqrt(_noise_levels(tasks, runs)), dtype=torch.float32)
        return lambda: first._draw((K, batch), g, sd, torch.float32)
    sds = [torch.full((runs,), math.sqrt(t.sigma2)) for t in tasks]

    def draw() -> Prompts:
        parts = [t._draw((runs, batch), g, sd, torch.float32)
                 for t, sd in zip(tasks, sds, strict=True)]
        return Prompts(*(torch.cat([getattr(p, f) for p in parts])
                         for f in ("X", "y", "x_q", "y_q", "w")))
    return draw


def _check_tasks(tasks: Any) -> list[RegressionTask]:
    items = [tasks] if isinstance(tasks, RegressionTask) else list(tasks)
    if not items:
        raise ValueError("tasks must hold at least one RegressionTask")
    for i, t in enumerate(items):
        _check_task(f"tasks[{i}]", t)
    if len({(t.d, t.n) for t in items}) != 1:
        raise ValueError("tasks trained together must share d and n, got "
                         f"{sorted({(t.d, t.n) for t in items})}")
    return items


def train_lsa(
    tasks: RegressionTask | Sequence[RegressionTask],
    steps: int,
    *,
    runs: int = 1,
    lr: float = 3e-3,
    milestones: Sequence[tuple[float, float]] = ((0.75, 1 / 3),),
    batch: int = 1024,
    init_std: float = 0.01,
    pv_last: float | None = 1.0,
    family: str = "full",
    seed: int = 0,
    record_every: int = 50,
) -> TrainResult:
    """Train ``runs`` LSA models per task (float32) with Adam on fresh batches.

    Model ``k`` learns ``tasks[k // runs]`` (tasks trained together share ``d`` and
    ``n``), from its own initialisation and its own batches. The learning rate is ``lr``,
    multiplied by ``factor`` from the fraction ``f`` of the steps on, for each
    ``(f, factor)`` in ``milestones`` (default: ``lr/3`` for the last quarter).
    """
    tasks = _check_tasks(tasks)
    steps = check_int("steps", steps, minimum=1)
    runs = check_int("runs", runs, minimum=1)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    batch = check_int("batch", batch, minimum=1)
    record_every = check_int("record_every", record_every, minimum=1)
    seed = check_seed("seed", seed)
    check_budget("steps", steps, 10_000_000, unit="steps", keyword="steps")
    sched = []
    for i, item in enumerate(milestones):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"milestones[{i}] must be (fraction, factor), got {item!r}")
        f = check_real(f"milestones[{i}][0]", item[0], low=0.0, high=1.0)
        sched.append((math.floor(f * steps) + 1,
                      check_real(f"milestones[{i}][1]", item[1], low=0.0, low_open=True)))
    K = len(tasks) * runs
    model = LinearSelfAttention(tasks[0].d, family, models=K, init_std=init_std,
                                pv_last=pv_last, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    draw = _sampler(tasks, runs, batch, as_generator(seed + 1))
    rec_steps, rec_loss, acc = [], [], torch.zeros(K, dtype=torch.float64)
    rec_gamma, rec_bx, rec_ay = [], [], []
    start = time.perf_counter()
    for t in range(1, steps + 1):
        for at, factor in sched:
            if t == at:
                for group in opt.param_groups:
                    group["lr"] = lr * factor
        p = draw()
        per = ((_reduced_forward(model.b, model.A, p, True) - p.y_q) ** 2).mean(-1)  # [K]
        opt.zero_grad(set_to_none=True)
        per.sum().backward()
        opt.step()
        acc += per.detach().double()
        if t % record_every == 0 or t == steps:
            span = t - (rec_steps[-1] if rec_steps else 0)
            rec_steps.append(t)
            rec_loss.append((acc / span).numpy().copy())
            acc.zero_()
            rec_gamma.append(model.gamma().numpy())
            rec_bx.append(np.linalg.norm(model.b_x().numpy(), axis=1))
            rec_ay.append(np.linalg.norm(model.a_y().numpy(), axis=1))
    return TrainResult(model=model, steps=np.asarray(rec_steps),
                       loss=np.stack(rec_loss, axis=1), gamma=np.stack(rec_gamma, axis=1),
                       b_x_norm=np.stack(rec_bx, axis=1), a_y_norm=np.stack(rec_ay, axis=1),
                       sigma2=_noise_levels(tasks, runs), seconds=time.perf_counter() - start)


@dataclass
class Evaluation:
    """Held-out evaluation of ``K`` models (float64, paired with a reference GD step).

    ``gamma`` ``[K, d, d]``, ``eta_hat`` ``[K]``, ``b_x_norm`` ``[K]``, ``a_y_norm`` ``[K]``;
    ``loss`` ``[K]`` and its standard error ``loss_se``; ``loss_ref`` ``[K]``, the loss of
    the reference ``Γ_ref`` on the same prompts; ``excess = loss - loss_ref`` and its
    standard error ``excess_se`` (paired); ``gd_gap`` ``[K]``: RMS difference between the
    model's predictions and the GD step with the model's own ``Γ``, relative to the RMS
    of the predictions.
    """

    gamma: np.ndarray
    eta_hat: np.ndarray
    b_x_norm: np.ndarray
    a_y_norm: np.ndarray
    loss: np.ndarray
    loss_se: np.ndarray
    loss_ref: np.ndarray
    excess: np.ndarray
    excess_se: np.ndarray
    gd_gap: np.ndarray

    def gamma_error(self, gamma_star: Any) -> np.ndarray:
        """``‖Γ - Γ*‖_F / ‖Γ*‖_F`` per model."""
        gs = np.asarray(gamma_star, dtype=np.float64)
        return (np.linalg.norm(self.gamma - gs, axis=(-2, -1))
                / np.linalg.norm(gs, axis=(-2, -1)))


@torch.no_grad()
def evaluate(
    model: LinearSelfAttention,
    tasks: RegressionTask | Sequence[RegressionTask],
    gamma_ref: Any,
    *,
    n_prompts: int = 200_000,
    seed: int = 12345,
    chunk: int = 10_000,
    mask: bool = True,
) -> Evaluation:
    """Evaluate every model on ``n_prompts`` fixed prompts (model ``k`` on
    ``tasks[k // runs]``, ``runs = K / len(tasks)``), against the GD step ``gamma_ref``
    (``[d, d]`` or ``[K, d, d]``) on the same prompts, in float64."""
    if not isinstance(model, LinearSelfAttention):
        raise TypeError(f"model must be an icl.lsa.LinearSelfAttention, got {type(model).__name__}")
    tasks = _check_tasks(tasks)
    n_prompts = check_int("n_prompts", n_prompts, minimum=2)
    chunk = check_int("chunk", chunk, minimum=1)
    mask = check_bool("mask", mask)
    K, d = model.models, model.d
    if tasks[0].d != d:
        raise ValueError(f"tasks have d = {tasks[0].d} but model.d = {d}")
    if K % len(tasks):
        raise ValueError(f"the model holds {K} models, not a multiple of {len(tasks)} tasks")
    ref = torch.as_tensor(np.asarray(gamma_ref, dtype=np.float64))
    if ref.dim() == 2 and ref.shape == (d, d):
        ref = ref.expand(K, d, d)
    check_tensor("gamma_ref", ref, shape=(K, d, d), finite=True)
    g = as_generator(check_seed("seed", seed))
    sums = torch.zeros(5, K, dtype=torch.float64)  # Σe, Σe², Σδ, Σδ², Σe_ref
    gap = torch.zeros(2, K, dtype=torch.float64)
    own = model.gamma()
    done = 0
    while done < n_prompts:
        b = min(chunk, n_prompts - done)
        p = _sampler(tasks, K // len(tasks), b, g)().to(torch.float64)
        yhat = _forward64(model, p, mask)
        e = (yhat - p.y_q) ** 2
        e_ref = (gd_step_prediction(p, ref) - p.y_q) ** 2
        delta = e - e_ref
        sums += torch.stack([e.sum(1), (e**2).sum(1), delta.sum(1), (delta**2).sum(1),
                             e_ref.sum(1)])
        gd = gd_step_prediction(p, own)
        gap += torch.stack([((yhat - gd) ** 2).sum(1), (yhat**2).sum(1)])
        done += b
    N = float(n_prompts)
    mean_e, mean_d = sums[0] / N, sums[2] / N
    var_e = (sums[1] / N - mean_e**2).clamp_min(0) * N / (N - 1)
    var_d = (sums[3] / N - mean_d**2).clamp_min(0) * N / (N - 1)
    gam = own.numpy()
    return Evaluation(
        gamma=gam,
        eta_hat=np.trace(gam, axis1=1, axis2=2) / d,
        b_x_norm=np.linalg.norm(model.b_x().numpy(), axis=1),
        a_y_norm=np.linalg.norm(model.a_y().numpy(), axis=1),
        loss=mean_e.numpy(),
        loss_se=(var_e / N).sqrt().numpy(),
        loss_ref=(sums[4] / N).numpy(),
        excess=mean_d.numpy(),
        excess_se=(var_d / N).sqrt().numpy(),
        gd_gap=(gap[0] / gap[1]).sqrt().numpy(),
    )


def _forward64(model: LinearSelfAttention, p: Prompts, mask: bool) -> torch.Tensor:
    """The model's prediction computed in float64 from its (float32) weights."""
    return _reduced_forward(model.b.double(), model.A.double(), p, mask)


# -- exact least squares over linear features ------------------------------------------


@dataclass
class LeastSquares:
    """A least-squares fit ``ŷ = φ^T c`` on training prompts.

    ``coef`` and ``se`` (heteroscedasticity-robust standard errors), ``train_loss``
    (mean squared error on the training prompts) and ``features`` (the feature map, so
    that :meth:`loss` evaluates held-out prompts).
    """

    coef: np.ndarray
    se: np.ndarray
    train_loss: float
    features: Callable[[Prompts], torch.Tensor]

    def predict(self, prompts: Prompts) -> torch.Tensor:
        """``φ(prompts)^T c``."""
        phi = self.features(check_prompts("prompts", prompts).to(torch.float64))
        return phi @ torch.as_tensor(self.coef)

    def loss(self, prompts: Prompts) -> tuple[float, float]:
        """Mean squared error on ``prompts`` and its standard error."""
        e = (self.predict(prompts) - prompts.y_q.double()) ** 2
        return float(e.mean()), float(e.std() / math.sqrt(e.numel()))


def _lstsq(phi: torch.Tensor, target: torch.Tensor,
           features: Callable[[Prompts], torch.Tensor]) -> LeastSquares:
    F, y = phi.numpy(), target.numpy()
    gram = F.T @ F
    coef = np.linalg.solve(gram, F.T @ y)
    resid = y - F @ coef
    # heteroscedasticity-robust (sandwich) standard errors: the residual variance of a
    # prompt depends on its features (through w and x), so the textbook formula is too small
    inv = np.linalg.inv(gram)
    meat = (F * resid[:, None] ** 2).T @ F
    dof = len(y) / max(len(y) - F.shape[1], 1)
    se = np.sqrt(np.clip(np.diag(inv @ meat @ inv) * dof, 0, None))
    return LeastSquares(coef=coef, se=se, train_loss=float(np.mean(resid**2)),
                        features=features)


def _gd_features(p: Prompts) -> torch.Tensor:
    return torch.einsum("bj,bk->bjk", p.v(), p.x_q).flatten(1)          # v_j x_{q,k}


def _reduced_features(p: Prompts) -> torch.Tensor:
    s = (p.y**2).mean(-1, keepdim=True)                                 # (1/n) Σ y_i²
    return torch.cat([_gd_features(p), s * p.x_q], dim=1)


def _relaxation_features(mask: bool) -> Callable[[Prompts], torch.Tensor]:
    def features(p: Prompts) -> torch.Tensor:
        G = p.moment()
        if not mask:
            zq = torch.cat([p.x_q, torch.zeros_like(p.x_q[:, :1])], dim=1)
            G = G + torch.einsum("bk,bl->bkl", zq, zq) / p.n
        rows, cols = torch.triu_indices(G.shape[-1], G.shape[-1])
        return torch.einsum("bf,bm->bfm", G[:, rows, cols], p.x_q).flatten(1)
    return features


def _train_prompts(name: str, prompts: Prompts) -> Prompts:
    p = check_prompts(name, prompts)
    if p.X.dim() != 3:
        raise ValueError(f"{name} must be [B, n, d] prompts (no model axis), "
                         f"got X of shape {tuple(p.X.shape)}")
    return p.to(torch.float64)


def fit_gd_step(prompts: Prompts) -> LeastSquares:
    """The best GD step over all ``Γ``: least squares of ``y_q`` on ``v_j x_{q,k}``.
    ``coef.reshape(d, d)`` is ``Γ`` (row ``j``, column ``k``)."""
    p = _train_prompts("prompts", prompts)
    return _lstsq(_gd_features(p), p.y_q, _gd_features)


def fit_reduced(prompts: Prompts) -> LeastSquares:
    """The exact empirical minimiser of the ``reduced`` family (``b = e_{d+1}``):
    ``ŷ = v^T A_x x_q + ((1/n) Σ y_i²) a_y^T x_q``. ``coef[:d*d]`` is ``A_x = Γ``,
    ``coef[d*d:]`` is ``a_y``."""
    p = _train_prompts("prompts", prompts)
    return _lstsq(_reduced_features(p), p.y_q, _reduced_features)


def fit_relaxation(prompts: Prompts, *, mask: bool = True) -> LeastSquares:
    """The linear relaxation of ``b^T G A x_q``: least squares over every product
    ``G_{kl} x_{q,m}`` (``k ≤ l``). Every LSA of either family, masked (or not, with
    ``mask=False``), is one choice of these coefficients, so none has a lower
    training loss."""
    mask = check_bool("mask", mask)
    p = _train_prompts("prompts", prompts)
    feats = _relaxation_features(mask)
    return _lstsq(feats(p), p.y_q, feats)


def relaxation_gamma(fit: LeastSquares, d: int) -> np.ndarray:
    """The ``Γ`` implied by a relaxation fit: the coefficient of ``G_{j,d+1} x_{q,k}``
    (``G_{j,d+1} = v_j``) at row ``j``, column ``k``."""
    d = check_int("d", d, minimum=1)
    rows, cols = torch.triu_indices(d + 1, d + 1)
    coef = fit.coef.reshape(len(rows), d)
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(rows, cols, strict=True))}
    return np.stack([coef[index[(j, d)]] for j in range(d)])


def relaxation_coefficients(gamma: Any) -> np.ndarray:
    """The coefficients of the linear relaxation (layout of :func:`fit_relaxation`) that
    make it exactly the GD step ``Γ``: ``Γ_{jk}`` on ``G_{j,d+1} x_{q,k}``, zero elsewhere."""
    g = check_finite_array("gamma", gamma)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"gamma must be a square matrix, got shape {g.shape}")
    d = g.shape[0]
    rows, cols = torch.triu_indices(d + 1, d + 1)
    coef = np.zeros((len(rows), d))
    for i, (a, b) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        if b == d and a < d:
            coef[i] = g[a]
    return coef.ravel()
