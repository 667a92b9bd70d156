"""Before/after: the current package against an earlier commit, measured in one process.

Usage::

    python benchmarks/compare_baseline.py [--base main] [--repeats 7] [--json out.json]

The earlier ``icl/`` is read from git (``git archive <base> icl``) into a temporary
package ``icl_base`` and imported next to the current ``icl``; the two are timed
alternately (minimum over repeats of the process CPU time, and of the wall time, per
call), one torch thread, at the paper's sizes (N = 60, d = 128, H = 256, B = 512,
α = 0.5):

* sampling a batch;
* a full training step (sample, forward, backward, normalised update) for every
  attention × family;
* the finite-sample epoch loop, per mini-batch (noisy ``reparam`` model, float64);
* ``icl.train`` with its default evaluation schedule, against its bare steps.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import icl  # noqa: E402
from icl import perf  # noqa: E402


def load_base(commit: str):
    """Import the ``icl`` package of ``commit`` as ``icl_base``."""
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "icl"],
                          capture_output=True, check=True).stdout
    tmp = Path(tempfile.mkdtemp(prefix="icl_base_"))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / "icl").rename(tmp / "icl_base")
    sys.path.insert(0, str(tmp))
    return importlib.import_module("icl_base")


def old_step(base, task, attention, family, dtype=torch.float32):
    """The loop body of the earlier ``train`` (as it was written there)."""
    base_perf = sys.modules.get("icl_base.perf")
    if hasattr(base_perf, "_loop_step"):  # the earlier package times its own loop body
        return base_perf._loop_step(task, attention, family, dtype=dtype)
    kw = {"alpha_hat": 0.5} if family == "reparam" and task.noisy else {}
    model = base.OneLayerTransformer(task, attention, family, kappa=1, dtype=dtype, **kw)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    training = sys.modules.get("icl_base.training")
    if training is not None and hasattr(training, "_train_step"):

        def step():
            b = task.sample(512, generator=g)
            float(training._train_step(model, params, b.tokens, b.targets, 0.01, True))

        return step

    def step():
        b = task.sample(512, generator=g)
        loss = torch.nn.functional.cross_entropy(model(b.tokens).xi, b.targets)
        grads = list(torch.autograd.grad(loss, params))
        sys.modules["icl_base.train"].normalized_step(params, grads, 0.01)
        float(loss.detach())

    return step


def new_step(task, attention, family):
    """The loop body of the current ``train`` on fresh batches."""
    return perf._loop_step(task, attention, family)


def alternate(fns: dict, number: int, repeats: int) -> dict:
    """Minimum CPU seconds per call of each function, the functions interleaved; the
    minimum wall seconds per call are left in ``alternate.wall``."""
    best = dict.fromkeys(fns, math.inf)
    wall = dict.fromkeys(fns, math.inf)
    for f in fns.values():
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t0, w0 = time.process_time(), time.perf_counter()
            for _ in range(number):
                f()
            best[k] = min(best[k], (time.process_time() - t0) / number)
            wall[k] = min(wall[k], (time.perf_counter() - w0) / number)
    alternate.wall = wall
    return best


def train_time(mod, task, steps, data=None, **kw):
    """Seconds of one ``mod.train`` run: the origin model on fresh batches, or the noisy
    ``reparam`` model (float64) on the fixed ``data``."""
    if data is None:
        model = mod.OneLayerTransformer(task, "linear", "origin")
    else:
        model = mod.OneLayerTransformer(task, "linear", "reparam", alpha_hat=0.5,
                                        dtype=torch.float64)
    t0 = time.process_time()
    mod.train(model, task, steps, 0.5 if data is not None else 0.01, data=data,
              progress=False, **kw)
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--parts", default="sampling,steps,finite,train",
                        help="comma-separated subset of sampling,steps,finite,train")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_base(args.base)
    # the trainer's module, by its name then or now, and the timing helpers if it has them
    for name in ("training", "train", "perf"):
        try:
            importlib.import_module(f"icl_base.{name}")
        except ImportError:
            pass

    info = {**perf.machine(), "base": args.base}
    print(f"cores {info['cores']}, torch threads {info['torch_threads']}, "
          f"load {info['load_1min']:.2f}, base {args.base}")
    out: dict[str, object] = {"machine": info}
    R = args.repeats
    parts = set(args.parts.split(","))
    tasks = {"noisy": (base.RecallTask(alpha=0.5), icl.RecallTask(alpha=0.5)),
             "noiseless": (base.RecallTask(), icl.RecallTask())}
    tb, tn = tasks["noisy"]
    if "sampling" in parts:
        _sampling(out, tasks, R)
    if "steps" in parts:
        _steps(out, base, tb, tn, R)
    if "finite" in parts:
        _finite(out, base, tb, tn, R)
    if "train" in parts:
        _train(out, base, tb, tn, R)
    info["load_1min_end"] = os.getloadavg()[0]
    print(f"load at the end {info['load_1min_end']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")


def _sampling(out, tasks, R):
    fns = {}
    for name, (tb, tn) in tasks.items():
        gb, gn = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        fns[f"sample {name} before"] = lambda tb=tb, gb=gb: tb.sample(512, generator=gb)
        fns[f"sample {name} after"] = lambda tn=tn, gn=gn: tn.sample(512, generator=gn)
    res = alternate(fns, 30, R)
    for k, v in res.items():
        print(f"{k:40s} {1e3 * v:8.3f} ms CPU  {1e3 * alternate.wall[k]:8.3f} ms wall")
    out["sampling_ms"] = {k: 1e3 * v for k, v in res.items()}
    out["sampling_wall_ms"] = {k: 1e3 * v for k, v in alternate.wall.items()}


def _steps(out, base, tb, tn, R):
    out["step_ms"] = {}
    for family in icl.FAMILIES:
        for attention in icl.ATTENTIONS:
            res = alternate({"before": old_step(base, tb, attention, family),
                             "after": new_step(tn, attention, family)}, 10, R)
            key = f"{family}/{attention}"
            out["step_ms"][key] = {k: 1e3 * v for k, v in res.items()}
            out.setdefault("step_wall_ms", {})[key] = {
                k: 1e3 * v for k, v in alternate.wall.items()}
            print(f"step {key:28s} before {1e3 * res['before']:8.2f} ms   "
                  f"after {1e3 * res['after']:6.2f} ms   x{res['before'] / res['after']:5.1f}  "
                  f"(wall {1e3 * alternate.wall['before']:.2f} / "
                  f"{1e3 * alternate.wall['after']:.2f} ms)")


def _finite(out, base, tb, tn, R):
    # finite-sample epoch loop per batch (difference of two runs: fixed costs cancel)
    m, n = 4096, 16
    db, dn = tb.sample(m, seed=7), tn.sample(m, seed=7)
    per = {"before": math.inf, "after": math.inf}
    for _ in range(max(3, R // 2)):
        for k, (mod, t, d) in {"before": (base, tb, db), "after": (icl, tn, dn)}.items():
            long = train_time(mod, t, 2 * n, data=d, eval_every=2 * n, eval_size=64, ood=False)
            short = train_time(mod, t, n, data=d, eval_every=n, eval_size=64, ood=False)
            per[k] = min(per[k], (long - short) / n)
    out["finite_batch_ms"] = {k: 1e3 * v for k, v in per.items()}
    print(f"finite-sample loop, per batch (m={m}, B=512, reparam float64): before "
          f"{1e3 * per['before']:.2f} ms  after {1e3 * per['after']:.2f} ms")


def _train(out, base, tb, tn, R):
    # train() with its default evaluation schedule against its bare steps
    out["train_overhead"] = {}
    step_b = alternate({"b": old_step(base, tb, "linear", "origin")}, 20, R)["b"]
    step_a = alternate({"a": new_step(tn, "linear", "origin")}, 20, R)["a"]
    for steps in (50, 200, 1000):
        tbest = {"before": math.inf, "after": math.inf}
        for _ in range(3 if steps < 1000 else 1):
            tbest["before"] = min(tbest["before"], train_time(base, tb, steps))
            tbest["after"] = min(tbest["after"], train_time(icl, tn, steps))
        ratios = {"before": tbest["before"] / (steps * step_b),
                  "after": tbest["after"] / (steps * step_a)}
        out["train_overhead"][steps] = {"train_s": tbest, "ratio": ratios}
        print(f"icl.train {steps:5d} steps, default evaluation: before {tbest['before']:.2f} s "
              f"(x{ratios['before']:.2f} of bare steps)  after {tbest['after']:.2f} s "
              f"(x{ratios['after']:.2f})")


if __name__ == "__main__":
    main()
