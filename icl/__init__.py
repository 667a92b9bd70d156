"""icl: the companion package of the book on in-context recall (arXiv:2505.15009).

Notation and the [P]/[E]/[D] labels follow the book page *The task and the model,
precisely* (``book/model.md``). ``import icl`` gives what a chapter reader calls most:
the task, the Bayes risk, the network, the construction and its closed-form loss,
training and rate fits. Everything else is imported by module, one module per idea:

- layers, bottom to top (each imports only from the ones above it in this list):
  ``validate``, ``config``, ``rates`` (shared with the related-results subpackages);
  ``constants`` (γ, the rate constant), ``task`` (sampler); ``bayes``, ``losses``,
  ``architecture``; ``construction``, ``closed_forms``, ``softmax_construction``;
  ``model``; ``roles`` (metrics and weights by token role); ``training``;
- chapter modules: ``laws`` (ch. 1), ``montecarlo`` (ch. 2), ``dynamics`` and
  ``finite`` (ch. 4), ``shifts`` (ch. 5); ``symbolic.bayes`` (ch. 2) and
  ``symbolic.construction`` (ch. 3) for the SymPy derivations;
- ``viz``: every figure, one module per chapter, one shared ``viz.style``; the
  interactive explorers (chapter 3's construction, the explorer page) are
  ``viz.explorer``.

``CONTRIBUTING.md`` describes the layers and the test that enforces them.
"""

from importlib import metadata as _metadata

from . import config
from .architecture import ATTENTIONS, FAMILIES
from .bayes import bayes_risk, binary_entropy, kl_bernoulli
from .closed_forms import closed_form_excess, closed_form_loss
from .config import mode_banner, pick
from .constants import predicted_slope
from .construction import construct
from .losses import expected_loss
from .model import OneLayerTransformer, construct_model
from .rates import fit_rate
from .roles import evaluate
from .task import RecallBatch, RecallTask
from .training import History, train

try:  # the version lives in pyproject.toml only
    __version__ = _metadata.version("icl-recall")
except _metadata.PackageNotFoundError:  # pragma: no cover - a source tree not installed
    __version__ = "0+unknown"

__all__ = [
    "ATTENTIONS",
    "FAMILIES",
    "History",
    "OneLayerTransformer",
    "RecallBatch",
    "RecallTask",
    "bayes_risk",
    "binary_entropy",
    "closed_form_excess",
    "closed_form_loss",
    "config",
    "construct",
    "construct_model",
    "evaluate",
    "expected_loss",
    "fit_rate",
    "kl_bernoulli",
    "mode_banner",
    "pick",
    "predicted_slope",
    "train",
]
