"""The recall task's derived constants, each computed in one place (bottom layer).

These numbers recur in every chapter; this module is their only home, and it imports
nothing of :mod:`icl` except the shared validators. Notation as on the book page
*The task and the model, precisely* (``book/model.md``).

* ``γ = log(α/(1-α))``, the log-odds of the noise: the feed-forward logit of ``τ`` in the
  construction (:func:`log_odds`, :func:`resolve_gamma`);
* ``C = (N-2)(1-α)`` (noisy) or ``N-1`` (noiseless), the constant of the construction's
  excess risk ``L(Λ) - H_b(α) = log(1 + C e^{-Λ}) ≤ C e^{-Λ}`` (:func:`rate_constant`);
* the slope of ``log(excess)`` per step of normalised gradient descent, ``-η`` (noisy) or
  ``-η/√|Q|`` (noiseless, balanced triggers) (:func:`predicted_slope`).
"""

from __future__ import annotations

import math

from .validate import check_bool, check_int, check_probability, check_real

__all__ = ["log_odds", "predicted_slope", "rate_constant", "resolve_gamma"]


def log_odds(alpha: float, name: str = "alpha") -> float:
    """``γ = log(α/(1-α))`` for ``α ∈ (0, 1)``."""
    a = check_probability(name, alpha, allow_zero=False)
    return math.log(a) - math.log1p(-a)


def resolve_gamma(
    alpha: float, gamma: float | None = None, alpha_hat: float | None = None
) -> float:
    """The ``γ`` a construction uses: a given ``gamma``, the plug-in ``log(α̂/(1-α̂))``, or
    the task's own ``log(α/(1-α))`` (``0`` for a noiseless task, ``α = 0``).

    ``gamma`` and ``alpha_hat`` only make sense for a noisy task; passing one of them when
    ``α = 0`` is refused rather than silently ignored.
    """
    a = check_probability("alpha", alpha)
    if gamma is not None and alpha_hat is not None:
        raise ValueError("pass gamma or alpha_hat, not both")
    if a == 0.0 and (gamma is not None or alpha_hat is not None):
        which = "gamma" if gamma is not None else "alpha_hat"
        raise ValueError(
            f"{which} is only used by the noisy task (alpha > 0); this task is noiseless"
        )
    if alpha_hat is not None:
        return log_odds(alpha_hat, "alpha_hat")
    if gamma is not None:
        return check_real("gamma", gamma)
    return log_odds(a) if a > 0 else 0.0


def rate_constant(vocab_size: int, alpha: float) -> float:
    """``C`` in ``L(Λ) - H_b(α) = log(1 + C e^{-Λ})``: ``(N-2)(1-α)`` when noisy, ``N-1``
    when noiseless (where ``Λ`` is a trigger's ``λ_k``)."""
    N = check_int("vocab_size", vocab_size, minimum=3)
    a = check_probability("alpha", alpha)
    return (N - 2) * (1.0 - a) if a > 0 else float(N - 1)


def predicted_slope(lr: float, *, noisy: bool, n_triggers: int = 1) -> float:
    """The book's predicted slope of ``log(excess)`` per step under normalised GD.

    Noisy: ``Λ_t = η t`` so the slope is ``-η``. Noiseless with ``|Q|`` balanced triggers:
    ``λ_k(t) = η t / √|Q|``, slope ``-η/√|Q|``.
    """
    eta = check_real("lr", lr, low=0.0, low_open=True)
    noisy = check_bool("noisy", noisy)
    nq = check_int("n_triggers", n_triggers, minimum=1)
    return -eta if noisy else -eta / math.sqrt(nq)
