"""``python -m icl reproduce`` on tiny sizes: files written, cache, errors, schema, models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from icl import experiments
from icl import reproduce as rp
from icl.__main__ import main as icl_main

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--steps", "6", "--batch-size", "8", "--seq-len", "16", "--n-train", "16",
    "--epochs", "2", "--eval-size", "16", "--n-evals", "3", "--no-progress",
]
TINY_SIZES = rp.Sizes(steps=6, batch_size=8, seq_len=16, n_train=16, epochs=2,
                      eval_size=16, n_evals=3)


def run_cli(*args: str) -> int:
    return icl_main(["reproduce", *args])


def test_cli_writes_figures_and_results_then_hits_the_cache(tmp_path, capsys):
    out = tmp_path / "rep"
    assert run_cli("--figure", "1", "--seeds", "2", "--out", str(out), *TINY) == 0
    err = capsys.readouterr().err
    assert "0 cached, 24 to train" in err  # 6 models x 2 noise levels x 2 seeds
    for ext in ("png", "pdf"):
        assert (out / f"fig01.{ext}").stat().st_size > 1000
    runs = sorted((out / "runs").glob("*.json"))
    assert len(runs) == 24
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == rp.RESULTS_SCHEMA
    assert len(results["rows"]) == 24
    # second call: nothing trained, the run files untouched
    assert run_cli("--figure", "1", "--seeds", "2", "--out", str(out), "--no-draw", *TINY) == 0
    err = capsys.readouterr().err
    assert "24 cached, 0 to train" in err
    assert "0 run(s) trained" in err
    assert {p: p.stat().st_mtime_ns for p in runs} == stamps
    assert not list(out.rglob("*.tmp*")), "temporary files left behind"


def test_finite_sample_figures_and_results_schema(tmp_path):
    rep = rp.reproduce(["2", "10-12"], 1, tmp_path, sizes=TINY_SIZES, progress=False)
    names = sorted(p.name for p in rep.figure_paths)
    assert names == sorted(f"fig{n:02d}.{e}" for n in (2, 10, 11, 12) for e in ("png", "pdf"))
    results = json.loads(rep.results_path.read_text())
    assert set(results) >= {"schema", "icl_version", "torch", "configuration", "rows", "command"}
    conf = results["configuration"]
    assert conf["seeds"] == 1 and conf["figures"] == ["2", "10-12"]
    assert conf["sizes"]["2"]["n_train"] == 16 and conf["sizes"]["2"]["epochs"] == 2
    for row in results["rows"]:
        assert tuple(row) == rp.ROW_FIELDS
        assert row["mode"] == "finite" and row["steps"] == 2 * 2  # epochs * ceil(m / B)
        for k in ("loss", "loss_ood", "p_y", "p_tau", "bayes_risk"):
            assert isinstance(row[k], float), k
        assert 0.0 <= row["p_y"] <= 1.0 and 0.0 <= row["p_tau"] <= 1.0
        assert row["source"] in ("E", "D")
    reparam = [r for r in results["rows"] if r["family"] == "reparam"]
    assert reparam and all(r["alpha_hat"] is not None for r in reparam)


def test_paper_scale_is_the_default():
    p = rp.PAPER
    assert (p.vocab_size, p.d_model, p.seq_len, p.batch_size, p.steps) == (60, 128, 256, 512, 2000)
    assert (p.n_train, p.epochs, p.alphas) == (2048, 100, (0.0, 0.2, 0.5, 0.8))
    runs = rp.plan("1", 5)
    assert len(runs) == 6 * 2 * 5
    assert {c.steps for c in runs} == {2000} and {c.seed for c in runs} == set(range(5))
    fin = rp.plan("2", 1)
    assert {c.total_steps for c in fin} == {100 * 4}


def test_bad_options_fail_clearly(capsys):
    with pytest.raises(SystemExit) as e:
        run_cli("--figure", "13")
    assert e.value.code == 2
    assert "invalid choice: '13'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_cli("--seeds", "0")
    assert e.value.code == 2
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_cli("--steps", "-3")
    assert e.value.code == 2
    assert "steps must be >= 1, got -3" in capsys.readouterr().err
    assert icl_main(["nonsense"]) == 2
    assert "unknown command 'nonsense'" in capsys.readouterr().err


def test_help_in_process(capsys):
    with pytest.raises(SystemExit) as e:
        run_cli("--help")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--figure" in out and "--seeds" in out and "H = 256" in out


def test_module_entry_point_exit_code():
    """One real ``python -m icl`` process: a bad option exits 2 with argparse's reason."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    bad = subprocess.run([sys.executable, "-m", "icl", "reproduce", "--device", "tpu"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert bad.returncode == 2 and "invalid choice: 'tpu'" in bad.stderr


def test_interrupt_keeps_finished_runs(tmp_path, monkeypatch, capsys):
    real = experiments.run
    calls = []

    def flaky(config, **kwargs):
        calls.append(config)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(config, **kwargs)

    monkeypatch.setattr(experiments, "run", flaky)
    out = tmp_path / "rep"
    assert run_cli("--figure", "2", "--out", str(out), "--no-draw", *TINY) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(list((out / "runs").glob("*.json"))) == 2
    assert not list(out.rglob("*.tmp*"))
    monkeypatch.setattr(experiments, "run", real)
    assert run_cli("--figure", "2", "--out", str(out), "--no-draw", *TINY) == 0
    assert "2 cached, 1 to train" in capsys.readouterr().err


def test_the_paper_softmax_model_keeps_v_identity():
    task = experiments.RunConfig("reparam-softmax", 0.5, seq_len=16).task()
    paper = experiments.build_model(experiments.RunConfig("reparam-softmax", 0.5), task)
    book = experiments.build_model(experiments.RunConfig("reparam-softmax-scaled", 0.5), task)
    with torch.no_grad():
        paper.Lambda.fill_(3.0)
        book.Lambda.fill_(3.0)
    eye = torch.eye(128)
    assert torch.equal(paper.matrices()[1], eye)
    assert torch.allclose(book.matrices()[1], 3.0 * eye)
    assert experiments.PAPER_MODELS["reparam-softmax"].source == "E"
    assert experiments.PAPER_MODELS["reparam-softmax-scaled"].source == "D"
    assert "[D]" in experiments.PAPER_MODELS["reparam-softmax-scaled"].label


def test_run_config_and_reproduce_validate_their_inputs(tmp_path):
    with pytest.raises(ValueError, match="model must be one of"):
        experiments.RunConfig("transformer", 0.5)
    with pytest.raises(ValueError, match="alpha must lie in"):
        experiments.RunConfig("reparam-linear", 1.5)
    with pytest.raises(ValueError, match="mode='finite' needs a noisy task"):
        experiments.RunConfig("reparam-linear", 0.0, mode="finite")
    with pytest.raises(ValueError, match="figure must be one of"):
        rp.reproduce("13", 1, tmp_path)
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        rp.reproduce("1", 0, tmp_path)
    with pytest.raises(ValueError, match="device must be one of"):
        rp.reproduce("1", 1, tmp_path, device="tpu")


def test_ledger_needs_every_figure_group(tmp_path):
    rep = rp.reproduce("2", 1, tmp_path, sizes=TINY_SIZES, progress=False, draw=False)
    with pytest.raises(ValueError, match="needs every figure group"):
        rp.claims_ledger(rep)


def test_fit_window_brackets_the_geometric_stretch():
    steps = list(range(0, 200, 10))
    losses = [0.5 + 58 * 2.718281828 ** (-0.1 * t) for t in steps]
    lo, hi = experiments.fit_window(steps, losses, 0.5)
    assert 0 < lo < hi
    assert experiments.fit_window(steps[:2], losses[:2], 0.5) is None


def test_tables_are_markdown_with_escaped_bars(tmp_path):
    rep = rp.reproduce("2", 2, tmp_path, sizes=TINY_SIZES, progress=False, draw=False)
    table = rp.final_table(rep, "2", 0.5).splitlines()
    assert len(table) == 2 + 3  # header, rule, one row per model
    assert all(line.count("|") == 10 for line in table)
    assert " ± " in table[2]  # two seeds: mean ± standard deviation
    claim = rp.Claim("P3", "|OOD − ID| small", "1", "m", "−η/|Q|", "holds", "e", 0.0)
    row = rp.ledger_markdown([claim]).splitlines()[-1]
    assert row.replace("\\|", "").count("|") == 7
    with pytest.raises(ValueError, match="figure must be one of"):
        rp.final_table(rep, "7", 0.5)
    assert rp.summary([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5), 2)
    assert rp.summary([4.0]) == (4.0, 0.0, 1)


def test_top_level_help(capsys):
    assert icl_main(["--help"]) == 0
    assert "reproduce" in capsys.readouterr().out
    assert icl_main([]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert run_cli("--device", "cuda", "--out", str(tmp_path), *TINY) == 2
    assert "no CUDA device" in capsys.readouterr().err
