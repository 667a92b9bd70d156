"""Measuring the package's speed: the functions behind ``benchmarks/`` and the performance page.

Every timing is the *minimum* over ``repeats`` of the mean time of ``number`` calls (after
one warm-up call): on a shared machine the minimum is the least disturbed measurement.
The training step timed here is exactly the body of :func:`icl.train`'s loop (sample a
batch, forward, backward, normalised update). The *dense* step is the straightforward
implementation that builds the ``[B, H, d]`` inputs and multiplies matrices, as the
paper's experiment code does; it is the reference the fast path is tested against.

Operation count of one fast step ([D]), with ``B`` sequences of length ``H``, vocabulary
``N`` and width ``d``: four indexed passes over the ``B·H`` tokens (a gather and a
scatter-add forward, the same backward), three ``[B, 2N] × [2N, N]`` products
(``12·B·N²`` flops) and two passes over the ``8N²`` entries of ``(W, V, F)`` that meet a
one-hot input (reading them into the step layout, and the update). So ``d`` does not
enter the CPU step at all (other devices also pass over the ``d × d`` matrices). Hence
a predicted exponent 1 in ``H`` and ``B`` where the token passes dominate, between 0 and
2 in ``N`` and near 0 in ``d`` (see :func:`predicted_exponents`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import kernels
from .model import OneLayerTransformer
from .rates import RateFit, fit_rate
from .task import RecallTask, check_task
from .training import _fresh_batch, _token_buffer, _train_step, normalized_step, train
from .validate import check_choice, check_int

__all__ = [
    "PAPER_SIZES",
    "OverheadResult",
    "best_time",
    "dense_step_time",
    "finite_step_time",
    "fit_exponent",
    "machine",
    "op_counts",
    "predicted_exponents",
    "read_book_times",
    "sampling_time",
    "scaling",
    "step_profile",
    "step_time",
    "token_pass_time",
    "train_overhead",
]

PAPER_SIZES = {"N": 60, "d": 128, "H": 256, "B": 512}


def machine() -> dict[str, object]:
    """Core count, torch threads and versions: printed next to every measurement."""
    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def best_time(
    fn: Callable[[], object], *, number: int = 20, repeats: int = 5, clock: str = "cpu"
) -> float:
    """Seconds per call of ``fn``: the minimum over ``repeats`` of the mean of ``number`` calls.

    ``clock="cpu"`` (default) counts the CPU time of this process (user + system), which
    on a shared machine leaves out the time the process waits for a core; with one torch
    thread it equals the wall-clock time of an idle machine. ``clock="wall"`` counts
    wall-clock time.
    """
    number = check_int("number", number, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    now = CLOCKS[check_choice("clock", clock, tuple(CLOCKS))]
    fn()  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = now()
        for _ in range(number):
            fn()
        best = min(best, (now() - t0) / number)
    return best


def _task(N: int, H: int, alpha: float) -> RecallTask:
    return RecallTask(vocab_size=N, seq_len=H, alpha=alpha)


def sampling_time(
    task: RecallTask, batch_size: int = 512, *, seed: int = 0, number: int = 50,
    repeats: int = 5, device: torch.device | str | None = None,
) -> float:
    """Seconds to draw one batch of ``batch_size`` sequences of ``task``."""
    task = check_task(task)
    check_int("batch_size", batch_size, minimum=1)
    g = torch.Generator(device=device or "cpu").manual_seed(seed)
    return best_time(lambda: task.sample(batch_size, generator=g), number=number,
                     repeats=repeats)


def _model(task, attention, family, d_model, dtype, device) -> OneLayerTransformer:
    kw = {"alpha_hat": 0.5} if family == "reparam" and task.noisy else {}
    return OneLayerTransformer(task, attention, family, kappa=1, d_model=d_model,
                               dtype=dtype, device=device, **kw)


def step_time(
    task: RecallTask, attention: str = "linear", family: str = "origin", *,
    batch_size: int = 512, d_model: int = 128, dtype: torch.dtype = torch.float32,
    seed: int = 0, number: int = 20, repeats: int = 5, lr: float = 0.01,
    device: torch.device | str | None = None,
) -> float:
    """Seconds per training step of :func:`icl.train` (fresh batch, fast path, normalised GD)."""
    step = _loop_step(task, attention, family, batch_size=batch_size, d_model=d_model,
                      dtype=dtype, seed=seed, lr=lr, device=device)
    return best_time(step, number=number, repeats=repeats)


def _loop_step(
    task: RecallTask, attention: str, family: str, *, batch_size: int = 512,
    d_model: int = 128, dtype: torch.dtype = torch.float32, seed: int = 0,
    lr: float = 0.01, device: torch.device | str | None = None,
) -> Callable[[], None]:
    """The loop body of :func:`icl.train` on fresh batches (draw a batch into the loop's
    token buffer, one normalised-GD step), for a new model: what every step timing here
    and in ``benchmarks/compare_baseline.py`` calls."""
    task = check_task(task)
    check_int("batch_size", batch_size, minimum=1)
    model = _model(task, attention, family, d_model, dtype, device)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator(device=device or "cpu").manual_seed(seed)
    buffer = _token_buffer(model, params, task.vocab_size, batch_size, task.seq_len,
                           model.device)

    def step() -> None:
        tokens, targets = _fresh_batch(task, buffer, g)
        _train_step(model, params, tokens, targets, lr, True)

    return step


def token_pass_time(
    batch_size: int = 512, seq_len: int = 256, vocab_size: int = 60, *,
    dtype: torch.dtype = torch.float32, number: int = 20, repeats: int = 5, seed: int = 0,
) -> dict[str, float]:
    """Seconds of the passes over the ``B·H`` tokens that one fast step makes on the CPU.

    The compiled kernels of the training step (:mod:`icl.kernels`, on tokens of the
    dtype the training loop uses, :func:`icl.kernels.token_dtype`) make one pass each:
    ``"forward"`` forms each sequence's row ``r`` and reads each token's two entries of
    ``r``, adding its score into ``A`` (linear attention); ``"backward"`` does the same
    with ``∂L/∂A`` into ``∂L/∂r`` and adds the rows into ``∂L/∂Q``; ``"sampling"`` writes
    the ``B·H`` tokens of a batch (``vocab_size`` tokens, one trigger, noisy).
    ``"floor"`` is their sum: the time a step with sampling needs for its token passes
    alone, whatever else it saves.
    """
    B = check_int("batch_size", batch_size, minimum=1)
    H = check_int("seq_len", seq_len, minimum=4)
    N = check_int("vocab_size", vocab_size, minimum=4)
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(N, (B, H), generator=g).to(kernels.token_dtype(N))
    tk = tokens.numpy()
    Q = torch.randn(2 * N, 3 * N, dtype=dtype, generator=g).numpy()
    grad = torch.randn(B, 2 * N, dtype=dtype, generator=g).numpy()
    G = torch.randn(B, N, dtype=dtype, generator=g).numpy()
    r, A, dr = (np.empty((B, 2 * N), dtype=Q.dtype) for _ in range(3))
    direct, dQ, zero = np.empty((B, N), dtype=Q.dtype), np.empty_like(Q), Q.dtype.type(0)
    times = {
        "forward": best_time(
            lambda: kernels.step_forward(tk, Q, 2 * N, False, zero, r, direct, A),
            number=number, repeats=repeats),
        "backward": best_time(
            lambda: kernels.step_backward(tk, grad, r, False, zero, dr, G, dQ),
            number=number, repeats=repeats),
        "sampling": best_time(
            lambda: kernels.sample_default(g, B, H, n_triggers=1, vocab_size=N, pool_lo=1,
                                           pool_n=2, noisy=True, alpha=0.5, tokens=tokens),
            number=number, repeats=repeats),
    }
    times["floor"] = times["forward"] + times["backward"] + times["sampling"]
    return times


def step_profile(
    task: RecallTask, attention: str = "linear", family: str = "origin", *,
    batch_size: int = 512, steps: int = 200, top: int = 12, seed: int = 0,
) -> list[tuple[str, float]]:
    """Where the time of a training step goes: Python's ``cProfile`` over ``steps`` steps of
    :func:`step_time`'s loop body, as ``(function, milliseconds per step)`` for the
    ``top`` functions by their own time (``"(everything else)"`` last).

    A compiled kernel is one function here (Numba's loops are not seen inside); PyTorch
    operations appear as ``{built-in method ...}``. The profiler adds a small cost to
    every Python call, so the sum exceeds :func:`step_time` a little.
    """
    import cProfile
    import pstats

    steps = check_int("steps", steps, minimum=1)
    top = check_int("top", top, minimum=1)
    step = _loop_step(task, attention, family, batch_size=batch_size, seed=seed)
    step()  # warm-up: the plan and the kernels' compilation
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    rows = []
    for (file, _, name), (_, _, own, _, _) in stats.items():
        where = Path(file).stem if file != "~" else ""
        rows.append((f"{where}.{name}" if where else name, 1e3 * own / steps))
    rows.sort(key=lambda row: -row[1])
    rest = sum(ms for _, ms in rows[top:])
    return rows[:top] + [("(everything else)", rest)]


def dense_step_time(
    task: RecallTask, attention: str = "linear", family: str = "origin", *,
    batch_size: int = 512, d_model: int = 128, dtype: torch.dtype = torch.float32,
    seed: int = 0, number: int = 3, repeats: int = 3, lr: float = 0.01,
) -> float:
    """Seconds per step of the straightforward implementation with dense ``[B, H, d]`` inputs."""
    task = check_task(task)
    model = _model(task, attention, family, d_model, dtype, None)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(seed)

    def step() -> None:
        b = task.sample(batch_size, generator=g)
        logits = model(b.tokens, path="dense").xi
        loss = torch.nn.functional.cross_entropy(logits, b.targets)
        normalized_step(params, list(torch.autograd.grad(loss, params)), lr)

    return best_time(step, number=number, repeats=repeats)


def finite_step_time(
    task: RecallTask, m: int = 4096, attention: str = "linear", *, batch_size: int = 512,
    seed: int = 0, number: int = 20, repeats: int = 5, lr: float = 0.5,
) -> float:
    """Seconds per mini-batch of the finite-sample epoch loop (``icl.train(data=...)``).

    As :func:`icl.finite.run_finite_sample` runs it: the noisy ``reparam`` model in
    float64 on ``m`` fixed sequences, visited in shuffled mini-batches of ``batch_size``.
    Measured as the difference of two :func:`icl.train` runs (``2n`` and ``n`` steps,
    evaluated only at their ends, on 64 sequences), so the fixed costs cancel.
    """
    task = check_task(task)
    check_int("m", m, minimum=2)
    data = task.sample(m, seed=seed + 7)

    def run(steps: int) -> float:
        model = OneLayerTransformer(task, attention, "reparam", alpha_hat=0.5,
                                    dtype=torch.float64)
        t0 = time.process_time()
        train(model, task, steps, lr, batch_size=batch_size, seed=seed, eval_every=steps,
              eval_size=64, data=data, progress=False)
        return time.process_time() - t0

    best = math.inf
    run(2)  # warm-up
    for _ in range(repeats):
        best = min(best, (run(2 * number) - run(number)) / number)
    return max(best, 0.0)


@dataclass(frozen=True)
class OverheadResult:
    """Time of :func:`icl.train` with its default evaluations against its bare steps."""

    steps: int
    train_seconds: float
    step_seconds: float
    n_evaluations: int

    @property
    def ratio(self) -> float:
        """``train_seconds / (steps · step_seconds)``."""
        return self.train_seconds / (self.steps * self.step_seconds)


def train_overhead(
    task: RecallTask, steps: int, attention: str = "linear", family: str = "origin", *,
    batch_size: int = 512, repeats: int = 3, seed: int = 0,
) -> OverheadResult:
    """Run :func:`icl.train` with its default evaluation schedule and time its bare steps."""
    task = check_task(task)
    steps = check_int("steps", steps, minimum=1)
    best, n_eval = math.inf, 0
    for _ in range(repeats):
        model = _model(task, attention, family, 128, torch.float32, None)
        t0 = time.process_time()
        hist = train(model, task, steps, 0.01, batch_size=batch_size, seed=seed,
                     progress=False)
        best = min(best, time.process_time() - t0)
        n_eval = len(hist.steps)
    step = step_time(task, attention, family, batch_size=batch_size,
                     number=max(5, min(steps, 50)), repeats=repeats)
    return OverheadResult(steps=steps, train_seconds=best, step_seconds=step,
                          n_evaluations=n_eval)


def op_counts(N: int, d: int, H: int, B: int) -> dict[str, float]:
    """Operation count of one fast step, by kind ([D]; see the module docstring)."""
    return {
        "token passes (4·B·H)": 4.0 * B * H,
        "matrix products (12·B·N²)": 12.0 * B * N * N,
        "parameter entries (2·8N²)": 16.0 * N * N,
    }


def predicted_exponents() -> dict[str, tuple[float, float]]:
    """Range of the exponent of the step time in each size, from :func:`op_counts`.

    The lower end holds where a size-independent term dominates, the upper end
    asymptotically: ``H`` and ``B`` enter the token passes linearly (``B`` also the
    products), ``N`` the products quadratically; ``d`` not at all on the CPU (on other
    devices through passes over the ``d × d`` matrices, up to 2).
    """
    return {"H": (0.0, 1.0), "B": (0.0, 1.0), "N": (0.0, 2.0), "d": (0.0, 2.0)}


def scaling(
    size: str, values, *, base: dict[str, int] | None = None, alpha: float = 0.5,
    attention: str = "linear", family: str = "origin", number: int = 10, repeats: int = 3,
) -> np.ndarray:
    """Step times (seconds) as ``size`` (one of ``"H"``, ``"N"``, ``"B"``, ``"d"``) runs over
    ``values``, the other sizes at ``base`` (default ``PAPER_SIZES``)."""
    check_choice("size", size, ("H", "N", "B", "d"))
    sizes = dict(PAPER_SIZES if base is None else base)
    out = []
    for v in values:
        s = {**sizes, size: int(v)}
        d = max(s["d"], 2 * s["N"])
        task = _task(s["N"], s["H"], alpha)
        out.append(step_time(task, attention, family, batch_size=s["B"], d_model=d,
                             number=number, repeats=repeats))
    return np.asarray(out)


def fit_exponent(values, seconds) -> RateFit:
    """Least-squares slope of ``log(seconds)`` against ``log(values)`` (with its error)."""
    x = np.log(np.asarray(values, dtype=np.float64))
    return fit_rate(x, np.asarray(seconds, dtype=np.float64), 0.0, min_excess=1e-300)


#: where ``benchmarks/book_time.py`` writes its measurements (in a checkout of the book)
BOOK_TIMES = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "book_time.json"


def read_book_times(path: str | Path | None = None) -> dict | None:
    """The JSON written by ``benchmarks/book_time.py`` (``None`` if it was not run)."""
    path = BOOK_TIMES if path is None else Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())
