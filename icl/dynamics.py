"""Training dynamics of the reparameterised models: **the book's own derivations** ([D]).

Nothing in this module quotes the paper. The paper states that normalised gradient
descent drives the expected loss to the Bayes risk at a linear rate; the formulas below
are the book's derivation of that rate for the construction of the model page §4, and of the
*sublinear* rate of plain (unnormalised) gradient descent on the same model. Chapter 4
checks each of them against :func:`icl.train`.

The per-example derivative (noisy task, linear/ReLU attention, ``Λ ≥ 0``)
----------------------------------------------------------------------------
The logits are ``ξ_y = Λ``, ``ξ_τ = γ + Λ`` and 0 for the other ``N - 2`` tokens, so
with ``Z = e^Λ (1 + e^γ) + N - 2`` the two possible losses of a sequence are

    ℓ_y = log Z - Λ,        ℓ_τ = log Z - γ - Λ,

and both have the same derivative

    dℓ/dΛ = e^Λ (1 + e^γ)/Z - 1 = -(N - 2)/Z  < 0.

It depends on nothing but ``Λ``: not on the sequence, not on the target. Hence

* **normalised** (S)GD from ``Λ_0 = 0`` moves ``Λ`` by exactly ``+η`` at every step,
  whatever the batch: ``Λ_t = η t``, and the excess risk
  ``log(1 + (N-2)(1-α) e^{-ηt}) ≤ (N-2)(1-α) e^{-ηt}`` falls at the linear rate ``η``;
* **plain** GD follows the deterministic recursion ``Λ_{t+1} = Λ_t + η (N-2)/Z(Λ_t)``
  (the mini-batch average of identical numbers is that number: the stochastic and the
  population gradients coincide). Its gradient flow ``(e^Λ/(1-α) + N - 2) dΛ = η(N-2) dt``
  integrates to ``e^Λ/(1-α) + (N-2) Λ = η(N-2) t + 1/(1-α)``, so
  ``Λ_t ≈ log(η (N-2)(1-α) t)`` and the excess ``≈ (N-2)(1-α) e^{-Λ_t} ≈ 1/(η t)``:
  ``O(1/t)``, sublinear.

Noiseless task (``|Q|`` triggers, ``λ ∈ R^{|Q|}``): ``ξ_y = λ_q``, ``ℓ = log(1 + (N-1)
e^{-λ_q})``, so ``∂ℓ/∂λ_k = -1[q = k] (N-1)/(e^{λ_k} + N - 1)``. A batch with ``n_k``
sequences of trigger ``k`` has gradient ``g_k = -(n_k/B)(N-1)/(e^{λ_k}+N-1)``; every
component is negative, and normalising the *vector* ``g`` gives increments
``η g_k/‖g‖``. Balanced batches at equal ``λ_k`` give ``λ_k(t) = ηt/√|Q|`` (slope
``-η/√|Q|``); any imbalance makes ``Σ_k Δλ_k < η √|Q|`` (Cauchy-Schwarz), so the mean
of ``λ`` stays *at or below* ``ηt/√|Q|``. Plain GD on the population loss:
``λ_{t+1} = λ_t + (η/|Q|)(N-1)/(e^{λ_t} + N - 1)``, excess ``≈ |Q|/(ηt)``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy as sp
import torch

from .bayes import bayes_risk
from .closed_forms import closed_form_excess
from .constants import resolve_gamma
from .model import OneLayerTransformer
from .rates import RateFit, fit_rate
from .task import RecallTask
from .task import check_task as _check_task
from .validate import (
    DEFAULT_MAX_STEPS,
    check_budget,
    check_finite_array,
    check_instance,
    check_int,
    check_real,
    check_tensor,
    check_window,
)

__all__ = [
    "excess_bound",
    "float32_stall",
    "local_slope",
    "noiseless_balance_efficiency",
    "normalized_gd_excess",
    "normalized_gd_trajectory",
    "per_example_derivative_expr",
    "per_example_grad",
    "plain_gd_asymptotics",
    "plain_gd_excess",
    "plain_gd_excess_constant",
    "plain_gd_flow",
    "plain_gd_trajectory",
    "theory_fit",
]


# ------------------------------------------------------------------ argument checks
def _check_lr(lr: object) -> float:
    return check_real("lr", lr, low=0.0, low_open=True)


def _check_steps(steps: object, max_steps: int = DEFAULT_MAX_STEPS) -> int:
    steps = check_int("steps", steps, minimum=0)
    check_budget("steps", steps, check_int("max_steps", max_steps, minimum=1),
                 unit="steps", keyword="max_steps")
    return steps


def _check_t(t) -> np.ndarray:
    return check_finite_array("t", t, low=0.0)


def _out(x: np.ndarray) -> np.ndarray | float:
    return float(x) if np.ndim(x) == 0 else x


def _constants(task: RecallTask, gamma: float | None = None) -> tuple[float, int, float]:
    """``(c, n, s)`` of the scalar dynamics ``dℓ/dλ = -n/(c e^λ + n)``, per-step factor ``s``.

    Noisy: ``c = 1 + e^γ``, ``n = N - 2``, ``s = 1``. Noiseless (one trigger's ``λ_k``
    under the population gradient): ``c = 1``, ``n = N - 1``, ``s = 1/|Q|``.
    """
    N = task.vocab_size
    g = resolve_gamma(task.alpha, gamma, None)  # refuses gamma for the noiseless task
    if task.noisy:
        return 1.0 + math.exp(g), N - 2, 1.0
    return 1.0, N - 1, 1.0 / task.n_triggers


def _excess_shared(task: RecallTask, lam: np.ndarray) -> np.ndarray:
    """Closed-form excess elementwise over ``lam`` (noiseless: ``λ`` shared by all triggers)."""
    lam = np.asarray(lam, dtype=np.float64)
    if task.noisy:
        return np.asarray(closed_form_excess(task, lam))
    return np.asarray(closed_form_excess(task, lam[..., None]))


def noiseless_balance_efficiency(n_triggers: int, batch_size: int) -> float:
    """Leading-order ``E[Σ_k Δλ_k] / (η √|Q|)`` of one normalised step on a random batch.

    With ``n_k`` sequences of trigger ``k`` in a batch of ``B`` (multinomial, equal ``λ``),
    the step is ``η n/‖n‖`` and ``Σ_k n_k/(√|Q| ‖n‖) = 1/√(1 + mean_k e_k²)`` with
    ``e_k = |Q| n_k/B - 1``, ``E[e_k²] = (|Q|-1)/B``: the mean of ``λ`` grows at
    ``≈ (1 - (|Q|-1)/(2B)) η/√|Q|`` per step (the book's [D], leading order in ``1/B``;
    the realised value fluctuates with the batches). A lagging trigger has a larger
    gradient, which keeps the ``λ_k`` together.
    """
    n_triggers = check_int("n_triggers", n_triggers, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    return 1.0 - (n_triggers - 1) / (2.0 * batch_size)


# ------------------------------------------------------------------ per-example gradient
@lru_cache(maxsize=1)
def per_example_derivative_expr() -> dict[str, sp.Expr]:
    """SymPy: ``dℓ_y/dΛ`` and ``dℓ_τ/dΛ`` of the noisy construction, both ``-(N-2)/Z``.

    Returns ``{"Z", "loss_y", "loss_tau", "d_loss_y", "d_loss_tau", "common"}`` with
    ``common = -(N-2)/Z``; raises ``RuntimeError`` if SymPy disagrees (it does not).
    """
    lam, g = sp.symbols("Lambda gamma", real=True)
    n = sp.Symbol("N", positive=True)
    Z = sp.exp(lam) + sp.exp(g + lam) + (n - 2)
    loss_y = sp.log(Z) - lam
    loss_tau = sp.log(Z) - (g + lam)
    d_y = sp.diff(loss_y, lam)
    d_tau = sp.diff(loss_tau, lam)
    common = -(n - 2) / Z
    for d in (d_y, d_tau):
        if sp.simplify(d - common) != 0:  # pragma: no cover
            raise RuntimeError("per-example derivative is not -(N-2)/Z")
    return {
        "Z": Z,
        "loss_y": loss_y,
        "loss_tau": loss_tau,
        "d_loss_y": d_y,
        "d_loss_tau": d_tau,
        "common": common,
    }


def per_example_grad(
    task: RecallTask,
    Lambda,
    *,
    gamma: float | None = None,
    alpha_hat: float | None = None,
) -> np.ndarray | float:
    """Derivative of one sequence's loss in the trained scale (the book's [D]).

    Noisy task: ``dℓ/dΛ = -(N-2)/Z`` with ``Z = e^Λ(1 + e^γ) + N - 2``, the *same* for
    every sequence and for both targets ``y`` and ``τ`` (``γ`` as in the model: the task's,
    a given ``gamma`` or the plug-in ``log(α̂/(1-α̂))``). Noiseless task: ``Lambda`` is
    the ``λ_q`` of the sequence's trigger and the result is
    ``∂ℓ/∂λ_q = -(N-1)/(e^{λ_q} + N - 1)`` (the other ``λ_k`` get 0). Valid for
    linear/ReLU attention and ``Λ ≥ 0``; vectorised over ``Lambda``.
    """
    task = _check_task(task)
    lam = check_finite_array("Lambda", Lambda)
    if np.any(lam < 0):
        raise ValueError(
            f"Lambda must be finite and >= 0 (the construction's regime), got {Lambda!r}"
        )
    N = task.vocab_size
    if task.noisy:
        g = resolve_gamma(task.alpha, gamma, alpha_hat)
        # -(N-2)/(e^Λ(1+e^γ) + N-2), written to stay finite for large Λ
        out = -(N - 2) * np.exp(-lam) / ((1.0 + math.exp(g)) + (N - 2) * np.exp(-lam))
    else:
        if gamma is not None or alpha_hat is not None:
            raise ValueError("gamma / alpha_hat apply to the noisy task only (alpha > 0)")
        out = -(N - 1) * np.exp(-lam) / (1.0 + (N - 1) * np.exp(-lam))
    return _out(out)


# ------------------------------------------------------------------ normalised GD
def normalized_gd_trajectory(task: RecallTask, lr: float, t) -> np.ndarray | float:
    """Predicted scale after ``t`` normalised steps from zero (the book's [D]).

    Noisy: ``Λ_t = η t`` (exact, any batch). Noiseless with balanced batches:
    ``λ_k(t) = η t/√|Q|`` (an upper bound on the mean of ``λ`` otherwise).
    """
    task = _check_task(task)
    eta = _check_lr(lr)
    tt = _check_t(t)
    scale = 1.0 if task.noisy else 1.0 / math.sqrt(task.n_triggers)
    return _out(eta * scale * tt)


def float32_stall(task: RecallTask, lr: float) -> tuple[float, int]:
    """``(Λ, t)`` at which normalised GD of the noisy construction stops, in float32.

    The derivative of a sequence's loss in ``Λ`` is ``-(1 - p_y - p_τ)``, the mass on the
    ``N - 2`` other tokens, ``≈ (N-2)(1-α) e^{-Λ}`` (chapter 4). In float32 it is exactly
    0 once that mass is below the machine epsilon ``ε = 2^{-23}`` next to 1, i.e. from
    ``Λ* = log((N-2)(1-α)/ε)`` on; ``Λ_t = ηt`` crosses it at step ``t = ⌈Λ*/η⌉``, where
    training stops (a zero gradient is not normalised). Returns ``(ηt, t)``, the book's
    [D]. The prediction holds to within one step: whether a mass between ``ε/2`` and ``ε``
    still rounds to a nonzero gradient depends on the order of the float32 operations
    (the closed-form step of :func:`icl.train` can stop one step earlier); checked against
    :func:`icl.train` in ``tests/test_dynamics.py``.
    """
    task = _check_task(task)
    eta = _check_lr(lr)
    if not task.noisy:
        raise ValueError("task must be noisy (alpha > 0) for float32_stall, got alpha = 0")
    c = (task.vocab_size - 2) * (1.0 - task.alpha)
    lam = math.log(c / float(torch.finfo(torch.float32).eps))
    steps = max(math.ceil(lam / eta - 1e-9), 0)
    return eta * steps, steps


def excess_bound(task: RecallTask, lr: float, t) -> np.ndarray | float:
    """The book's bound on the excess risk along normalised GD (a straight line on a log scale).

    Noisy: ``(N-2)(1-α) e^{-ηt}``. Noiseless (balanced): ``(N-1) e^{-ηt/√|Q|}``.
    """
    task = _check_task(task)
    lam = np.asarray(normalized_gd_trajectory(task, lr, t))
    N = task.vocab_size
    c = (N - 2) * (1.0 - task.alpha) if task.noisy else float(N - 1)
    return _out(c * np.exp(-lam))


def normalized_gd_excess(task: RecallTask, lr: float, t) -> np.ndarray | float:
    """Exact excess ``log(1 + (N-2)(1-α) e^{-ηt})`` along ``Λ_t = ηt`` (noiseless:
    ``log(1 + (N-1) e^{-ηt/√|Q|})``), via :func:`icl.closed_form_excess`."""
    task = _check_task(task)
    lam = np.asarray(normalized_gd_trajectory(task, lr, t))
    return _out(_excess_shared(task, lam))


def theory_fit(
    task: RecallTask,
    lr: float,
    steps,
    *,
    window: tuple[float, float] | None = None,
    min_excess: float = 1e-7,
) -> RateFit:
    """The straight-line fit :func:`icl.fit_rate` would return on the *exact* theory curve.

    The excess is ``log(1 + x)`` with ``x = c e^{-Λ}``, not ``x`` itself: its log-slope
    in ``Λ`` is ``-x/((1+x) log(1+x)) ≈ -(1 - x/2)``, so a fit over a window starting
    at ``x_0`` is biased by at most about ``x_0/2`` in relative terms. Comparing this fit's
    slope with ``-η`` measures that bias, which is the honest ``rel_tol`` of a rate check.
    """
    task = _check_task(task)
    t = check_finite_array("steps", steps, low=0.0)
    window = check_window("window", window)
    min_excess = check_real("min_excess", min_excess, low=0.0, low_open=True)
    exc = np.asarray(normalized_gd_excess(task, lr, t))
    bayes = bayes_risk(task.alpha)
    return fit_rate(t, exc + bayes, bayes, window=window, min_excess=min_excess)


# ------------------------------------------------------------------ plain GD
def plain_gd_trajectory(
    task: RecallTask,
    lr: float,
    steps: int,
    *,
    gamma: float | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> np.ndarray:
    """Scale along plain GD on the population loss, ``t = 0 … steps`` (the book's [D]).

    Noisy: ``Λ_{t+1} = Λ_t + η (N-2)/Z(Λ_t)``, ``Z = e^Λ(1+e^γ) + N - 2``; every
    sequence has this gradient, so it is also the trajectory of plain *stochastic* GD.
    Noiseless: ``λ_{t+1} = λ_t + (η/|Q|)(N-1)/(e^{λ_t} + N - 1)`` (population gradient,
    uniform trigger). A scalar recursion, iterated exactly in float64; ``max_steps``
    (default ``10**7``) refuses a loop that would run for minutes.
    """
    task = _check_task(task)
    eta = _check_lr(lr)
    steps = _check_steps(steps, max_steps)
    c, n, s = _constants(task, gamma)
    out = np.empty(steps + 1)
    lam = 0.0
    out[0] = lam
    for i in range(1, steps + 1):
        lam += eta * s * n * math.exp(-lam) / (c + n * math.exp(-lam))
        out[i] = lam
    return out


def plain_gd_flow(
    task: RecallTask, lr: float, t, *, gamma: float | None = None
) -> np.ndarray | float:
    """Gradient-flow approximation of :func:`plain_gd_trajectory`, solved exactly.

    ``(c e^Λ + n) dΛ = η s n dt`` from ``Λ_0 = 0`` integrates to
    ``c e^Λ + n Λ = η s n t + c`` (noisy: ``c = 1/(1-α)``, ``n = N-2``, ``s = 1``;
    noiseless: ``c = 1``, ``n = N-1``, ``s = 1/|Q|``); solved for ``Λ`` by Newton's
    method (the left side is increasing and convex in ``Λ``). Vectorised over ``t``.
    """
    task = _check_task(task)
    eta = _check_lr(lr)
    tt = _check_t(t)
    c, n, s = _constants(task, gamma)
    rhs = eta * s * n * tt + c
    # start to the right of the root (convex increasing: Newton then decreases monotonically)
    lam = np.log(np.maximum(rhs / c, 1.0)) + 1.0
    for _ in range(100):
        f = c * np.exp(lam) + n * lam - rhs
        step = f / (c * np.exp(lam) + n)
        lam = lam - step
        if np.all(np.abs(step) < 1e-13 * np.maximum(1.0, np.abs(lam))):
            break
    return _out(lam)


def plain_gd_asymptotics(
    task: RecallTask, lr: float, t
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Leading-order ``(Λ_t, excess_t)`` of plain GD for large ``t`` (the book's [D]).

    Noisy: ``Λ_t ≈ log(η (N-2)(1-α) t)``, ``excess ≈ 1/(η t)``. Noiseless:
    ``λ_t ≈ log(η (N-1) t/|Q|)``, ``excess ≈ |Q|/(η t)``. ``t`` must be positive.
    """
    task = _check_task(task)
    eta = _check_lr(lr)
    tt = _check_t(t)
    if np.any(tt <= 0):
        raise ValueError("t must be positive for the asymptotic formulas (they diverge at t = 0)")
    c, n, s = _constants(task)
    lam = np.log(eta * s * n * tt / c)
    return _out(lam), _out(1.0 / (eta * s * tt))


def plain_gd_excess_constant(task: RecallTask, lr: float) -> float:
    """``lim_{t→∞} t · excess_t`` under plain GD: ``1/η`` (noisy), ``|Q|/η`` (noiseless)."""
    task = _check_task(task)
    eta = _check_lr(lr)
    return 1.0 / eta if task.noisy else task.n_triggers / eta


def plain_gd_excess(
    task: RecallTask, lr: float, steps: int, *, max_steps: int = DEFAULT_MAX_STEPS
) -> np.ndarray:
    """Exact excess ``L(Λ_t) - H_b(α)`` along :func:`plain_gd_trajectory`, ``t = 0 … steps``."""
    return np.asarray(
        _excess_shared(task, plain_gd_trajectory(task, lr, steps, max_steps=max_steps))
    )


# ------------------------------------------------------------------ diagnostics
def local_slope(steps, excess, *, span: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Local slope ``Δ log(excess)/Δt`` between points ``span`` apart.

    Returns ``(midpoints, slopes)``. A linear rate has a constant slope ``-η``; an
    ``O(1/t)`` excess has slope ``≈ -1/t``, which flattens towards 0.
    """
    t = check_finite_array("steps", steps)
    e = check_finite_array("excess", excess)
    if t.ndim != 1 or t.shape != e.shape:
        raise ValueError(
            f"steps and excess must be 1-D of equal length, got {t.shape} and {e.shape}"
        )
    span = check_int("span", span, minimum=1, maximum=max(len(t) - 1, 1))
    if span >= len(t):
        raise ValueError(f"span must be an integer in [1, {len(t) - 1}], got {span!r}")
    if np.any(e <= 0):
        raise ValueError("excess must be positive to take its logarithm")
    le = np.log(e)
    return 0.5 * (t[span:] + t[:-span]), (le[span:] - le[:-span]) / (t[span:] - t[:-span])


def autograd_per_example_grad(
    model: torch.nn.Module, tokens: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Per-sequence ``dℓ/dθ`` of a ``reparam`` model by autograd, ``[B, n_params]``.

    A reference for :func:`per_example_grad` (one backward pass per sequence; small
    batches only).
    """
    check_instance("model", model, OneLayerTransformer, "an icl.OneLayerTransformer")
    model.task.check_tokens(tokens)
    check_tensor("targets", targets, shape=(tokens.shape[0],), kind="int", low=0,
                 high=model.task.vocab_size - 1)
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for b in range(tokens.shape[0]):
        logits = model(tokens[b : b + 1]).xi
        loss = torch.nn.functional.cross_entropy(logits, targets[b : b + 1])
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)
