"""Time one normalised-GD step of the ``origin`` model at the paper's scale.

Usage: ``python benchmarks/step_speed.py [--steps 2000] [--threads 1]``

Times, in one process, a full step (sampling, forward, backward, update) of the
``origin`` model (N = 60, d = 128, H = 256, B = 512, linear attention, κ = 1) on the
dense reference path and on the structured fast path, prints both and their ratio, then
times ``--steps`` steps of :func:`icl.train` on the fast path.
"""

from __future__ import annotations

import argparse
import time

import torch

import icl
from icl.training import normalized_step


def time_steps(path: str, n: int, seed: int = 0) -> float:
    """Mean seconds per step over ``n`` steps (after one warm-up step)."""
    task = icl.RecallTask(alpha=0.5)
    model = icl.OneLayerTransformer(task, "linear", "origin", kappa=1, d_model=128)
    g = torch.Generator().manual_seed(seed)
    params = list(model.parameters())

    def step() -> None:
        batch = task.sample(512, generator=g)
        loss = torch.nn.functional.cross_entropy(model(batch.tokens, path=path).xi, batch.targets)
        normalized_step(params, list(torch.autograd.grad(loss, params)), 0.1)

    step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps of icl.train to time")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--repeats", type=int, default=20, help="steps timed per path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    dense = time_steps("dense", args.repeats)
    fast = time_steps("fast", args.repeats * 10)
    print(f"dense path: {1e3 * dense:8.2f} ms/step")
    print(f"fast path:  {1e3 * fast:8.2f} ms/step")
    print(f"speed-up:   {dense / fast:8.1f}x")
    task = icl.RecallTask(alpha=0.5)
    model = icl.OneLayerTransformer(task, "linear", "origin", kappa=1)
    t0 = time.perf_counter()
    icl.train(model, task, args.steps, 0.1, eval_every=args.steps // 10, progress=False)
    total = time.perf_counter() - t0
    print(f"icl.train, {args.steps} steps of the origin model (with 11 evaluations): {total:.1f} s")


if __name__ == "__main__":
    main()
