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

#: This chapter's row of the book's comparison table of its results (chapter R1, the
#: closing section): the keys of ``icl.comparison.COLUMNS``, Markdown text, in the book's
#: words.
COMPARISON_ROW: dict[str, str] = {
    "result": "in-context linear regression (chapter R1; Mahankali, Hashimoto & Ma)",
    "task": "predict $y_q = w^\\top x_q + \\varepsilon$ from $n$ pairs $(x_i, y_i)$, a fresh "
            "$w$ per prompt",
    "model": "one layer of linear self-attention, merged $W^{PV}, W^{KQ}$; `full` and "
             "`reduced`",
    "optimum": "one GD step on the prompt's least squares, $\\Gamma^\\star = \\eta^\\star I$ "
               "(preconditioned for $\\Sigma \\neq I$): attained at finite weights; optimal "
               "**in the class**, not Bayes-optimal [P; D]",
    "gd_converges_to": "Adam from $b_y = 1$: the predicted $\\Gamma^\\star$, up to a "
                       "floor left by the optimiser's noise that falls as the square root of "
                       "its last learning rate; from a small start some runs stall at the "
                       "best rank-one step [E; D]",
    "rate": "not among claims 1–3 as the book states them (they characterise the "
            "minimiser); here: within tolerance after 800 Adam steps (1600 for the $d = 3$ "
            "runs) at the default size, 4000 at paper scale; no rate fitted [E]",
    "generalises": "unseen tasks $w$ by construction; other $n'$ and $\\sigma'^2$ "
                   "predictably but sub-optimally; non-Gaussian, mean-shifted or "
                   "anisotropic families change the optimum [D]",
}

__all__ = [
    "COMPARISON_ROW",
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
