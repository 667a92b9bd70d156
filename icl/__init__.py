"""icl: the companion package of the book on in-context recall (arXiv:2505.15009).

Notation follows the paper and ``shared/spec/recall-task.md``; see the book's notation page.
The core (task, Bayes risk, model, construction, training, rates) is importable from the
top level. Chapter-specific modules are imported by name, so ``import icl`` stays light:

- ``icl.laws`` (ch. 1): empirical laws of the sampler against their definitions;
- ``icl.symbolic``, ``icl.montecarlo`` (ch. 2): SymPy derivations, Monte-Carlo risks;
- ``icl.symbolic_construction``, ``icl.softmax``, ``icl.widgets`` (ch. 3);
- ``icl.dynamics``, ``icl.finite`` (ch. 4): training dynamics, finite samples;
- ``icl.shifts``, ``icl.weights`` (ch. 5): shifted test sets, weights by token role;
- ``icl.viz.*``: one module of figures per chapter.
"""

from . import config, rates
from .bayes import (
    bayes_risk,
    binary_entropy,
    hoeffding_radius,
    kl_bernoulli,
    oracle_log_probs,
    oracle_losses,
    recover_output,
)
from .config import mode_banner, pick, test_mode
from .construct import (
    Construction,
    closed_form_excess,
    closed_form_logits,
    closed_form_loss,
    construct,
    construction_matrices,
    softmax_unscaled_floor,
)
from .model import ATTENTIONS, FAMILIES, Logits, OneLayerTransformer
from .rates import RateFit, fit_rate, predicted_slope
from .task import RecallBatch, RecallTask, make_generator, sample_sequences
from .train import History, evaluate, expected_loss, train

__version__ = "0.1.0"

__all__ = [
    "ATTENTIONS",
    "FAMILIES",
    "Construction",
    "History",
    "Logits",
    "OneLayerTransformer",
    "RateFit",
    "RecallBatch",
    "RecallTask",
    "bayes_risk",
    "binary_entropy",
    "closed_form_excess",
    "closed_form_logits",
    "closed_form_loss",
    "config",
    "construct",
    "construction_matrices",
    "evaluate",
    "expected_loss",
    "fit_rate",
    "hoeffding_radius",
    "kl_bernoulli",
    "make_generator",
    "mode_banner",
    "oracle_log_probs",
    "oracle_losses",
    "pick",
    "predicted_slope",
    "rates",
    "recover_output",
    "sample_sequences",
    "softmax_unscaled_floor",
    "test_mode",
    "train",
]
