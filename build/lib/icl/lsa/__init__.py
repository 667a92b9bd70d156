"""icl.lsa: one layer of linear self-attention on in-context linear regression.

The book's first related result (Mahankali, Hashimoto & Ma, arXiv:2307.03576): trained on
noisy in-context regression, one LSA layer converges to one step of (preconditioned)
gradient descent on the prompt's least-squares objective. Self-contained: it uses only
the shared pieces of :mod:`icl` (``icl.validate``, ``icl.config``, ``icl.viz.style``).

- :mod:`icl.lsa.data`: prompts ``(x_i, y_i)``, covariate laws, priors, ReLU targets;
- :mod:`icl.lsa.model`: the LSA layer (``full`` and ``reduced``), its dense reference
  and the GD step it reduces to;
- :mod:`icl.lsa.theory`: the optimal steps (SymPy derivations and numeric formulas),
  Monte-Carlo checks;
- :mod:`icl.lsa.training`: training, evaluation, exact least squares;
- :mod:`icl.lsa.viz`: the chapter's figures.
"""

from .data import COVARIATES, KURTOSIS, Prompts, RegressionTask, spectrum_covariance
from .model import FAMILIES, LinearSelfAttention, gd_step_prediction
from .training import (
    Evaluation,
    LeastSquares,
    TrainResult,
    evaluate,
    fit_gd_step,
    fit_reduced,
    fit_relaxation,
    relaxation_coefficients,
    relaxation_gamma,
    train_lsa,
)

__all__ = [
    "COVARIATES",
    "FAMILIES",
    "KURTOSIS",
    "Evaluation",
    "LeastSquares",
    "LinearSelfAttention",
    "Prompts",
    "RegressionTask",
    "TrainResult",
    "evaluate",
    "fit_gd_step",
    "fit_reduced",
    "fit_relaxation",
    "gd_step_prediction",
    "relaxation_coefficients",
    "relaxation_gamma",
    "spectrum_covariance",
    "train_lsa",
]
