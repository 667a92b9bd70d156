"""Execute every chapter notebook in test mode (``ICL_TEST_MODE=1``).

Each notebook runs in a fresh ``python3`` kernel whose environment carries the variable,
with ``notebooks/`` as working directory, exactly as the book build runs it but with the
package's reduced sizes. A notebook fails the test on any error, and it must print the
test-mode banner of :func:`icl.config.mode_banner`, which proves the variable reached the
kernel (its first cell, the set-up cell, prints it).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from icl import config

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TEST_BANNER = "icl: TEST MODE"
CELL_TIMEOUT = int(os.environ.get("ICL_TEST_CELL_TIMEOUT", "600"))  # seconds per cell


def output_text(nb: nbformat.NotebookNode) -> str:
    """All text a notebook printed or displayed (streams, plain-text results, errors)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in {"execute_result", "display_data"}:
                parts.append(out.get("data", {}).get("text/plain", ""))
            elif out.output_type == "error":
                parts.append("\n".join(out.traceback))
    return "\n".join(parts)


def run_notebook(path: Path, env_overrides: dict[str, str]) -> nbformat.NotebookNode:
    """Execute ``path`` in a fresh kernel (cwd = its folder) with ``env_overrides`` set."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    # The kernel's environment is exactly this dict (jupyter_client does not merge it).
    env = {**os.environ, **env_overrides}
    client.execute(env=env)
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_test_mode(path):
    nb = run_notebook(path, {config.ENV_VAR: "1", "MPLBACKEND": "agg"})
    text = output_text(nb)
    assert TEST_BANNER in text, (
        f"{path.name} ran without printing {TEST_BANNER!r}: ICL_TEST_MODE did not reach the "
        "kernel, or the set-up cell is missing"
    )


# ---------------------------------------------------------------- the switch itself


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " 1 "])
def test_test_mode_on(monkeypatch, value):
    monkeypatch.setenv(config.ENV_VAR, value)
    assert config.test_mode() is True
    assert config.pick(2000, 200) == 200
    assert config.mode_banner().startswith(TEST_BANNER)


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off"])
def test_test_mode_off(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(config.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(config.ENV_VAR, value)
    assert config.test_mode() is False
    assert config.pick(2000, 200) == 2000
    assert TEST_BANNER not in config.mode_banner()


def test_test_mode_is_read_at_call_time(monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.pick("full", "test") == "full"
    monkeypatch.setenv(config.ENV_VAR, "1")
    assert config.pick("full", "test") == "test"


def test_env_var_name_is_the_documented_one():
    assert config.ENV_VAR == "ICL_TEST_MODE"


def test_paper_scale_switch(monkeypatch):
    monkeypatch.delenv("ICL_TEST_MODE", raising=False)
    monkeypatch.delenv("ICL_PAPER_SCALE", raising=False)
    assert not config.paper_scale()
    monkeypatch.setenv("ICL_PAPER_SCALE", "1")
    assert config.paper_scale()
    assert "paper scale" in config.mode_banner()
    monkeypatch.setenv("ICL_TEST_MODE", "1")  # test mode wins
    assert not config.paper_scale()
    assert "TEST MODE" in config.mode_banner()
