"""Time the execution of every chapter notebook, as the book build runs them.

Usage::

    python benchmarks/book_time.py [--test-mode] [--out benchmarks/results/book_time.json]
                                   [--notebooks notebooks/01_task.ipynb ...]

Each notebook runs in a fresh ``python3`` kernel with ``notebooks/`` as working directory
(as ``jupyter-book build`` executes it), one after the other. The wall-clock time of each
notebook and their sum are written to a JSON file, with the machine's core count, the
thread setting, the mode (full or test) and the commit, so that the performance page
can show measured numbers only. A notebook that fails is recorded with its error and
the script exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "book_time.json"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def time_notebook(path: Path, test_mode: bool, timeout: int = 1800) -> dict:
    """Execute ``path`` in a fresh kernel; return its name, seconds and error (if any)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "MPLBACKEND": "agg"}
    if test_mode:
        env["ICL_TEST_MODE"] = "1"
    else:
        env.pop("ICL_TEST_MODE", None)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.perf_counter()
    error = None
    try:
        client.execute(env=env)
    except Exception as exc:  # noqa: BLE001 - recorded, then reported by the exit status
        error = f"{type(exc).__name__}: {str(exc)[-2000:]}"
    return {"notebook": path.name, "seconds": time.perf_counter() - t0, "error": error}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-mode", action="store_true", help="ICL_TEST_MODE=1")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--notebooks", nargs="*", type=Path, default=None)
    args = parser.parse_args()
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    rows = []
    for path in paths:
        row = time_notebook(path.resolve(), args.test_mode)
        status = "ok" if row["error"] is None else "FAILED"
        print(f"{row['notebook']:40s} {row['seconds']:8.1f} s  {status}", flush=True)
        rows.append(row)
    result = {
        "mode": "test" if args.test_mode else "full",
        "cores": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "commit": _commit(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "notebooks": rows,
        "total_seconds": sum(r["seconds"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total {result['total_seconds']:.1f} s -> {args.out}")
    return 0 if all(r["error"] is None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
