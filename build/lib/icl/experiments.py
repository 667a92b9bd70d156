"""The paper's experiments, one run at a time (the model page §5.1 and §7, [E]).

A :class:`RunConfig` names one training run of the paper's figures: a model of
:data:`PAPER_MODELS`, a noise level ``α``, a seed, the sizes (``N``, ``d``, ``H``, ``B``)
and the optimiser (normalised GD, ``η``, steps), in *population* mode (a fresh batch of
``B`` sequences at every step) or *finite-sample* mode (``m`` fixed sequences visited for
a number of epochs). :func:`run` trains it with the public API (:class:`icl.RecallTask`,
:class:`icl.OneLayerTransformer`, :func:`icl.train`) and returns a :class:`RunRecord`:
the curves the figures draw, the final numbers the results file lists, and the theory's
number for the same quantity.

The models are the paper's, exactly (the model page §3, §4): the ``reparam`` softmax
model keeps ``V = I`` (``scaled=False``), which stalls above the Bayes risk. The book's
scaled construction ``V = ΛI`` is the separate entry ``reparam-softmax-scaled``, labelled
[D]; it never stands in for the paper's model.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .bayes import bayes_risk, kl_bernoulli
from .closed_forms import closed_form_loss
from .constants import predicted_slope
from .finite import plugin_alpha
from .model import OneLayerTransformer
from .rates import fit_rate
from .softmax_construction import softmax_unscaled_floor
from .task import RecallTask
from .training import train
from .validate import check_bool, check_choice, check_int, check_probability, check_real

__all__ = [
    "MODES",
    "PAPER_MODELS",
    "PaperModel",
    "RunConfig",
    "RunRecord",
    "build_model",
    "fit_window",
    "fitted_rate",
    "run",
]

#: the two data modes of the paper's protocol
MODES = ("population", "finite")


@dataclass(frozen=True)
class PaperModel:
    """One model of the paper's figures.

    ``key`` is its name in the results file; ``family``, ``attention``, ``kappa`` and
    ``scaled`` are the arguments of :class:`icl.OneLayerTransformer`; ``source`` is
    ``"E"`` for the paper's own models and ``"D"`` for the book's addition.
    """

    key: str
    family: str
    attention: str
    kappa: int
    scaled: bool | None
    label: str
    source: str


def _models() -> dict[str, PaperModel]:
    rows = [
        ("reparam-linear", "reparam", "linear", 1, None, "reparam, linear"),
        ("reparam-relu", "reparam", "relu", 1, None, "reparam, ReLU"),
        ("reparam-softmax", "reparam", "softmax", 1, False, "reparam, softmax (V = I)"),
        ("reparam_w-linear", "reparam_w", "linear", 1, None, "reparam_w, linear"),
        ("reparam_w-relu", "reparam_w", "relu", 1, None, "reparam_w, ReLU"),
        ("origin-linear", "origin", "linear", 1, None, "origin, linear (κ = 1)"),
        ("origin-relu", "origin", "relu", 1, None, "origin, ReLU (κ = 1)"),
        ("origin-softmax", "origin", "softmax", 0, None, "origin, softmax (κ = 0)"),
    ]
    out = {k: PaperModel(k, f, a, kap, s, lab, "E") for k, f, a, kap, s, lab in rows}
    out["reparam-softmax-scaled"] = PaperModel(
        "reparam-softmax-scaled",
        "reparam",
        "softmax",
        1,
        True,
        "[D] book's softmax construction (V = ΛI)",
        "D",
    )
    return out


#: every model the reproduction trains, by key (the last one is the book's, [D])
PAPER_MODELS: dict[str, PaperModel] = _models()


@dataclass(frozen=True)
class RunConfig:
    """One training run. Defaults are the paper's sizes (the model page §5.1).

    ``steps`` is used in population mode; finite-sample mode trains for ``epochs``
    passes over ``n_train`` sequences in batches of ``batch_size``.
    """

    model: str
    alpha: float
    seed: int = 0
    mode: str = "population"
    lr: float = 0.1
    steps: int = 2000
    n_train: int = 2048
    epochs: int = 100
    batch_size: int = 512
    vocab_size: int = 60
    d_model: int = 128
    seq_len: int = 256
    eval_size: int = 1024
    n_evals: int = 100

    def __post_init__(self) -> None:
        check_choice("model", self.model, tuple(PAPER_MODELS))
        check_probability("alpha", self.alpha)
        object.__setattr__(self, "alpha", float(self.alpha))
        check_int("seed", self.seed, minimum=0)
        check_choice("mode", self.mode, MODES)
        object.__setattr__(self, "lr", check_real("lr", self.lr, low=0.0, low_open=True))
        for name in ("steps", "n_train", "epochs", "batch_size", "eval_size", "n_evals"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("vocab_size", self.vocab_size, minimum=11)
        check_int("d_model", self.d_model, minimum=2 * self.vocab_size)
        check_int("seq_len", self.seq_len, minimum=6)
        if self.mode == "finite" and self.alpha == 0.0:
            raise ValueError("mode='finite' needs a noisy task (alpha > 0), got alpha=0")

    @property
    def spec(self) -> PaperModel:
        return PAPER_MODELS[self.model]

    @property
    def total_steps(self) -> int:
        """The number of gradient steps of the run (finite sample, ``epochs · ⌈m / B⌉``)."""
        if self.mode == "population":
            return self.steps
        return self.epochs * math.ceil(self.n_train / min(self.batch_size, self.n_train))

    def task(self) -> RecallTask:
        return RecallTask(vocab_size=self.vocab_size, seq_len=self.seq_len, alpha=self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunRecord:
    """What one run leaves behind (all plain numbers and lists: it is stored as JSON).

    ``curves`` maps a name to a list over ``curves["step"]``: ``loss``, ``loss_ood``,
    ``p_y``, ``p_tau``, ``p_y_ood``, ``p_tau_ood``, ``xiA_y``, ``xiA_other``, ``xiF_tau``,
    ``xiF_other``. ``final`` holds the last value of each, the fitted rate and its
    standard error; ``theory`` the book's prediction for the same run (``None`` where it
    predicts nothing).
    """

    config: dict[str, Any]
    curves: dict[str, list[float]]
    final: dict[str, float | None]
    theory: dict[str, float | None]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def build_model(config: RunConfig, task: RecallTask, alpha_hat: float | None = None):
    """The network of ``config`` at initialisation (every trainable parameter zero)."""
    s = config.spec
    kwargs: dict[str, Any] = {"d_model": config.d_model}
    if s.scaled is not None:
        kwargs["scaled"] = s.scaled
    if alpha_hat is not None and task.noisy and s.family != "origin":
        kwargs["alpha_hat"] = alpha_hat
    return OneLayerTransformer(task, s.attention, s.family, s.kappa, **kwargs)


def fit_window(
    steps, losses, bayes: float, *, high: float = 0.02, low: float = 1e-7
) -> tuple[float, float] | None:
    """The steps over which the excess ``L - H_b`` decays geometrically inside ``[low, high]``.

    Above ``high`` the excess ``log(1 + C e^{-Λ})`` is not yet exponential in ``Λ``;
    below ``low`` the float32 gradient of a ``reparam`` model rounds to zero
    (``1 + C e^{-Λ}`` is 1 in float32 near ``Λ ≈ 20``) and ``Λ`` stops. The window is the
    first stretch of evaluations inside the band along which the excess keeps
    decreasing: a plateau (``Λ`` stopped, the loss constant) ends it. ``None`` if fewer
    than three evaluations qualify.
    """
    high = check_real("high", high, low=0.0, low_open=True)
    low = check_real("low", low, low=0.0, low_open=True)
    t = np.asarray(steps, dtype=np.float64)
    ex = np.asarray(losses, dtype=np.float64) - bayes
    inside = np.flatnonzero((ex <= high) & (ex >= low))
    if inside.size < 3:
        return None
    first = last = inside[0]
    while last + 1 < ex.size and low <= ex[last + 1] < ex[last]:
        last += 1
    if last - first + 1 < 3:
        return None
    return float(t[first]), float(t[last])


def fitted_rate(
    curves: dict[str, list[float]], bayes: float
) -> tuple[float | None, float | None, tuple[float, float] | None]:
    """``(slope, stderr, window)`` of ``log(L - H_b)`` against the step over
    :func:`fit_window` (``None`` where no window qualifies)."""
    window = fit_window(curves["step"], curves["loss"], bayes)
    if window is None:
        return None, None, None
    fit = fit_rate(curves["step"], curves["loss"], bayes, window=window, min_excess=1e-12)
    return fit.slope, fit.stderr, window


def _theory(config: RunConfig, task: RecallTask, lam_final: float | None, alpha_hat):
    """The book's prediction for this run (the model page §4, §5.2, §5.3)."""
    s = config.spec
    hb = bayes_risk(task.alpha)
    out: dict[str, float | None] = {
        "bayes_risk": hb,
        "loss": None,
        "loss_ood": None,
        "rate": None,
        "limit": hb,
    }
    if s.family != "reparam":
        return out
    if s.attention in ("linear", "relu"):
        if config.mode == "population":
            out["rate"] = predicted_slope(
                config.lr, noisy=task.noisy, n_triggers=task.n_triggers
            )
        if lam_final is not None:
            kw = {"alpha_hat": alpha_hat} if alpha_hat is not None else {}
            out["loss"] = float(closed_form_loss(task, lam_final, **kw))
            out["loss_ood"] = out["loss"]
        if alpha_hat is not None:
            out["limit"] = hb + float(kl_bernoulli(task.alpha, alpha_hat))
    elif s.scaled is False:
        out["limit"] = softmax_unscaled_floor(task)
    return out


def run(config: RunConfig, *, progress: bool | None = None, device: str = "cpu") -> RunRecord:
    """Train the run ``config`` describes and return its :class:`RunRecord`.

    Seeds: the run's ``seed`` seeds the training stream and the evaluation sets
    (:func:`icl.train`); a finite-sample run draws its ``m`` sequences with seed
    ``10^6 (seed + 1) + m`` (:func:`icl.finite.run_finite_sample` uses the same rule).
    The reparameterised models of a finite-sample run use the plug-in ``γ̂`` of those
    sequences (the model page §5.3). ``device`` is passed on to :func:`icl.train`.
    """
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be an icl.experiments.RunConfig, got {config!r}")
    if progress is not None:
        check_bool("progress", progress)
    device = check_choice("device", device, ("cpu", "cuda"))
    task = config.task()
    t0 = time.perf_counter()
    alpha_hat = data = None
    if config.mode == "finite":
        data = task.sample(config.n_train, seed=1_000_000 * (config.seed + 1) + config.n_train)
        a = plugin_alpha(data, task)
        alpha_hat = a if 0.0 < a < 1.0 else None
    model = build_model(config, task, alpha_hat)
    steps = config.total_steps
    kwargs: dict[str, Any] = {}
    if device != "cpu":
        model = model.to(device)
        kwargs["device"] = device
    hist = train(
        model,
        task,
        steps,
        config.lr,
        batch_size=config.batch_size,
        seed=config.seed,
        eval_every=max(1, steps // config.n_evals),
        eval_size=config.eval_size,
        ood=True,
        data=data,
        progress=progress,
        **kwargs,
    )
    seconds = time.perf_counter() - t0
    curves: dict[str, list[float]] = {"step": [int(t) for t in hist.steps]}
    for name in ("loss", "p_y", "p_tau", "xiA_y", "xiA_other", "xiF_tau", "xiF_other"):
        curves[name] = [float(v) for v in hist.pop[name]]
    for name in ("loss", "p_y", "p_tau"):
        curves[f"{name}_ood"] = [float(v) for v in hist.ood[name]]
    hb = bayes_risk(task.alpha)
    final: dict[str, float | None] = {k: v[-1] for k, v in curves.items() if k != "step"}
    final["rate"], final["rate_stderr"], window = fitted_rate(curves, hb)
    lam_final = None
    if config.spec.family == "reparam":
        key = "Lambda" if task.noisy else None
        if key is not None:
            lam_final = float(hist.params[key][-1])
        else:
            lam_final = [float(hist.params[f"lambdas[{k}]"][-1]) for k in range(task.n_triggers)]
    theory = _theory(config, task, lam_final, alpha_hat)
    extra = {
        "alpha_hat": alpha_hat,
        "Lambda": lam_final,
        "fit_window": window,
        "steps_trained": steps,
        "train_loss_last": float(hist.train_loss[-1]),
    }
    return RunRecord(config.to_dict(), curves, final, theory, seconds, extra)
