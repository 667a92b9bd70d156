"""In-context classification of Gaussian mixtures by one linear-attention layer.

The related result of Shen, Zhou, Yang & Shen (arXiv:2410.11778, ICML 2025), in the
book's own reconstruction of its setting (every constant here is the book's derivation,
not a quotation of the paper):

- :mod:`~icl.classification.data`: tasks, explicit prompts, the fast sampler of ``b_N``;
- :mod:`~icl.classification.model`: the layer ``f(Z)`` and its closed form ``b_N^⊤ W x_q``;
- :mod:`~icl.classification.theory`: Bayes classifier, ``α_N``, inference errors;
- :mod:`~icl.classification.training`: the loss as a logistic regression, Newton, GD;
- :mod:`~icl.classification.viz`: the chapter's figures.

Only the shared pieces of :mod:`icl` are used (validate, config, rates, viz.style).
"""

from __future__ import annotations

from . import data, model, theory, training
from .data import (
    MixtureTask,
    Prompts,
    Statistics,
    context_statistic,
    default_task,
    sample_means,
    sample_prompts,
    sample_statistics,
)
from .model import attention_logits, embed, logits, probabilities
from .theory import (
    bayes_accuracy,
    bayes_cross_entropy,
    bayes_posterior,
    error_limit,
    evaluate,
    optimal_scale,
    rate_factor,
    scale_coefficient,
)
from .training import (
    Features,
    features,
    fit_contraction,
    fit_scale,
    gradient,
    gradient_descent,
    hessian,
    loss,
    newton,
    smoothness,
)

#: This chapter's row of the book's comparison table of related results: one line per
#: column (task, model, optimum, what GD converges to, rate, what generalises).
COMPARISON_ROW: dict[str, str] = {
    "result": "in-context classification (Shen, Zhou, Yang & Shen 2025)",
    "task": "binary / c-class Gaussian mixtures, shared covariance Λ, a new task per prompt",
    "model": "one linear-attention layer, only W = W^KQ block trained (ŷ = b_Nᵀ W x_q)",
    "optimum": "W*(N) = α_N Λ⁻¹, α_N → 2 (c classes: → c), α_N = 2 + a/N, a ≈ -9.55 "
               "(d = 3, r = 1.5; book's derivation): an under-confident LDA",
    "gd_converges_to": "the unique global minimiser (convex logistic regression in vec W)",
    "rate": "linear: ‖W_t - W*‖ ∝ (1 - η λ_min(H(W*)))^t; ρ* ≈ 0.9846 per step "
            "at W* = α_16 Λ⁻¹, η = 1/ℓ (N = 16, Λ eigenvalues 0.5, 1.25, 2; one pool of "
            "20,000 prompts scatters around it by several 1e-4)",
    "generalises": "any test length M (error O(1/N) + O(1/√M)), any Λ seen in training; "
                   "not a shifted Λ' (0.757 vs 0.856) nor unequal mean norms (0.879 vs 0.939)",
}

__all__ = [
    "COMPARISON_ROW",
    "Features",
    "MixtureTask",
    "Prompts",
    "Statistics",
    "attention_logits",
    "bayes_accuracy",
    "bayes_cross_entropy",
    "bayes_posterior",
    "context_statistic",
    "data",
    "default_task",
    "embed",
    "error_limit",
    "evaluate",
    "features",
    "fit_contraction",
    "fit_scale",
    "gradient",
    "gradient_descent",
    "hessian",
    "logits",
    "loss",
    "model",
    "newton",
    "optimal_scale",
    "probabilities",
    "rate_factor",
    "sample_means",
    "sample_prompts",
    "sample_statistics",
    "scale_coefficient",
    "smoothness",
    "theory",
    "training",
]
