"""The Bayes-optimal construction (the model page §4: [E] for its form, [D] for its analysis).

Noiseless, triggers ``Q``:   ``W = Σ_k λ_k E(k) Ẽ(k)^T``,  ``V = I``,  ``ξ = ξ_A`` (``F = 0``).

Noisy, trigger ``q = 0``, noise token ``τ``, ``γ = log(α/(1-α))``:

    W = Λ E(q) (Ẽ(q) - E(τ))^T,   V = I,   F = E(τ) (γ E(q) + Ẽ(q))^T,   κ = 1.

With linear or ReLU attention and ``Λ ≥ 0`` the logits are ``ξ_y = Λ``, ``ξ_τ = γ + Λ``
and 0 elsewhere, so ``L(Λ) = H_b(α) + log(1 + (N-2)(1-α) e^{-Λ})`` (the book's
derivation, verified in chapter 3).

Two variants are the book's own:

* ``κ = 0``: the feed-forward path reads ``x_H`` only, so it cannot pick up ``Λ`` from the
  attention output; ``F = (γ + Λ) E(τ) E(q)^T`` gives the same logits.
* softmax attention: the weights sum to one, so the value scale must grow with the
  attention scale: ``V = Λ I`` and ``F = E(τ)(γ E(q) + Λ Ẽ(q))^T`` (noiseless:
  ``V = λ̄ I``, ``λ̄`` the mean of ``λ``). With ``scaled=False`` the paper's ``V = I`` is
  kept, and the loss stalls above the Bayes risk.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .architecture import check_attention, check_d_model, check_kappa, check_model_size
from .constants import resolve_gamma
from .task import RecallTask, check_task
from .validate import (
    DEFAULT_MAX_BYTES,
    InvalidTypeError,
    PrecisionWarning,
    check_finite_array,
    check_float_dtype,
    check_optional_bool,
    check_real,
)

__all__ = ["Construction", "construct", "construct_kappa0_stalled", "construction_matrices"]


def construction_matrices(
    task: RecallTask,
    scale: torch.Tensor,
    *,
    attention: str = "linear",
    kappa: int = 1,
    gamma: float = 0.0,
    d_model: int = 128,
    scaled: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(W, V, F)`` of the construction, differentiable in ``scale``.

    ``scale`` is ``Λ`` (a 0-d tensor) for the noisy task, ``λ`` (``[|Q|]``) for the
    noiseless one. ``scaled`` (default: ``True`` for softmax, ``False`` otherwise) puts
    the scale into ``V`` and ``F`` too (the book's softmax construction).
    """
    check_attention(attention)
    kappa = check_kappa(kappa)
    d = check_d_model(task, d_model)
    scaled = check_optional_bool("scaled", scaled)
    gamma = check_real("gamma", gamma)
    if not isinstance(scale, torch.Tensor):
        scale = torch.as_tensor(check_finite_array("scale", scale))
    elif scale.is_floating_point() and not bool(torch.isfinite(scale).all()):
        raise ValueError("scale must be finite, got NaN or inf entries")
    N = task.vocab_size
    scale = torch.as_tensor(scale)
    if not scale.is_floating_point():
        scale = scale.to(torch.get_default_dtype())
    dtype = scale.dtype
    if scaled is None:
        scaled = attention == "softmax"
    eye = torch.eye(d, dtype=dtype)
    if task.noisy:
        if scale.dim() != 0:
            raise ValueError(
                f"scale: the noisy task takes a scalar Lambda, got shape {tuple(scale.shape)}"
            )
        q, tau = 0, task.noise_token
        Lam = scale
        W = Lam * torch.outer(eye[q], eye[N + q] - eye[tau])
        c = Lam if scaled else torch.ones((), dtype=dtype)
        V = c * eye
        if kappa:
            F = torch.outer(eye[tau], gamma * eye[q] + c * eye[N + q])
        else:
            F = (gamma + Lam) * torch.outer(eye[tau], eye[q])
        return W, V, F
    if scale.shape != (task.n_triggers,):
        raise ValueError(
            f"scale: the noiseless task takes lambdas of shape ({task.n_triggers},), "
            f"got {tuple(scale.shape)}"
        )
    k = torch.arange(task.n_triggers)
    W = torch.zeros(d, d, dtype=dtype).index_put((k, k + N), scale)
    c = scale.mean() if scaled else torch.ones((), dtype=dtype)
    return W, c * eye, torch.zeros(d, d, dtype=dtype)


@dataclass(frozen=True)
class Construction:
    """The construction's matrices and settings.

    :meth:`icl.OneLayerTransformer.from_construction` loads them into a network; the
    closed forms of its loss are in :mod:`icl.closed_forms`.
    """

    task: RecallTask
    attention: str
    kappa: int
    gamma: float
    scale: torch.Tensor
    W: torch.Tensor
    V: torch.Tensor
    F: torch.Tensor


def construct(
    task: RecallTask,
    Lambda: float | None = None,
    *,
    lambdas: Sequence[float] | None = None,
    attention: str = "linear",
    kappa: int = 1,
    gamma: float | None = None,
    alpha_hat: float | None = None,
    d_model: int = 128,
    scaled: bool | None = None,
    dtype: torch.dtype = torch.float64,
    max_bytes: float = DEFAULT_MAX_BYTES,
) -> Construction:
    """The Bayes-optimal parameters of the model page §4 at a given ``Λ`` (or ``λ``).

    Noisy task: pass ``Lambda``. Noiseless task: pass ``lambdas`` (one per trigger) or a
    scalar ``Lambda`` shared by all triggers. ``max_bytes`` bounds the memory of the
    ``d × d`` matrices (default 2 GiB). A ``PrecisionWarning`` says when ``dtype`` cannot
    hold ``γ + Λ`` apart from ``Λ`` (float32 from ``Λ ≈ 1e7``).
    """
    task = check_task(task)
    g = resolve_gamma(task.alpha, gamma, alpha_hat)
    check_attention(attention)
    check_kappa(kappa)
    check_d_model(task, d_model)
    check_optional_bool("scaled", scaled)
    dtype = check_float_dtype("dtype", dtype)
    check_model_size(d_model, dtype, max_bytes, n_matrices=4)
    if task.noisy:
        if lambdas is not None or Lambda is None:
            raise ValueError("the noisy task takes a scalar Lambda (and no lambdas)")
        scale = torch.tensor(check_real("Lambda", Lambda), dtype=dtype)
        _warn_if_unrepresentable(float(scale), g, dtype)
    else:
        if (Lambda is None) == (lambdas is None):
            raise ValueError("the noiseless task takes either Lambda or lambdas")
        if lambdas is None:
            scale = torch.full((task.n_triggers,), check_real("Lambda", Lambda), dtype=dtype)
        else:
            if isinstance(lambdas, (str, bytes)):
                raise InvalidTypeError(f"lambdas must be numbers, got {lambdas!r}")
            lam = check_finite_array("lambdas", lambdas)
            if lam.shape != (task.n_triggers,):
                raise ValueError(
                    f"lambdas must have shape ({task.n_triggers},), one per trigger, got "
                    f"shape {lam.shape}"
                )
            scale = torch.as_tensor(lam, dtype=dtype)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError(f"Lambda/lambdas must be finite, got {scale.tolist()}")
    W, V, F = construction_matrices(
        task, scale, attention=attention, kappa=kappa, gamma=g, d_model=d_model, scaled=scaled
    )
    return Construction(task, attention, check_kappa(kappa), g, scale, W, V, F)


def construct_kappa0_stalled(task: RecallTask, Lambda: float, **kwargs) -> Construction:
    """The ``κ = 0`` model that keeps the ``κ = 1`` construction's matrices (chapter 3).

    Its feed-forward path reads ``x_H`` only, so ``ξ_τ = γ`` no longer grows with ``Λ``:
    the loss has a minimum above the Bayes risk and then grows like ``αΛ``
    (:func:`icl.closed_forms.kappa0_stalled_loss`). ``kwargs`` go to :func:`construct`
    (``kappa`` is fixed).
    """
    if "kappa" in kwargs:
        raise ValueError(
            "kappa: construct_kappa0_stalled fixes it (kappa=1 matrices, kappa=0 model)"
        )
    c = construct(task, Lambda, kappa=1, **kwargs)
    return Construction(c.task, c.attention, 0, c.gamma, c.scale, c.W, c.V, c.F)


def _warn_if_unrepresentable(Lambda: float, gamma: float, dtype: torch.dtype) -> None:
    """Warn when ``dtype`` rounds ``γ + Λ`` so far that ``ξ_τ - ξ_y`` is no longer ``γ``.

    The logit gap ``γ`` then becomes 0 (float32, ``|γ| ≈ 1.4`` and ``Λ ≥ 1e8``) and the
    loss jumps from ``H_b(α)`` to about ``log 2``, silently; float64 keeps ``γ`` up to
    ``Λ ≈ 1e15``.
    """
    if gamma == 0.0 or dtype == torch.float64:
        return
    lam = torch.tensor(Lambda, dtype=dtype)
    gap = float(torch.tensor(gamma + Lambda, dtype=dtype) - lam)
    if abs(gap - gamma) > 1e-2 * abs(gamma):
        warnings.warn(
            f"Lambda={Lambda:g}: in {dtype} the logit of tau, gamma + Lambda, rounds to "
            f"{Lambda + gap:g}, a gap of {gap:g} instead of gamma={gamma:.4g}, so the loss is "
            "not the construction's; pass dtype=torch.float64",
            PrecisionWarning,
            stacklevel=3,
        )
