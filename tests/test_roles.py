"""Tests of icl.weights: role blocks, role tables and what a trained origin model learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import icl
from icl import roles as Wt

NOISY = icl.RecallTask(alpha=0.5)
NOISELESS = icl.RecallTask(alpha=0.0)


@pytest.mark.parametrize("task", [NOISY, NOISELESS], ids=["noisy", "noiseless"])
@pytest.mark.parametrize("d", [120, 128])
def test_role_blocks_partition(task, d):
    blocks = Wt.role_blocks(task, d)
    allidx = np.concatenate(list(blocks.values()))
    assert sorted(allidx.tolist()) == list(range(d))  # disjoint and covering
    assert ("unused" in blocks) == (d > 2 * task.vocab_size)
    assert ("E(q')" in blocks) == task.noisy  # other triggers only exist in the noisy task
    N = task.vocab_size
    assert blocks["E(τ)"].tolist() == [N - 1] and blocks["Ẽ(τ)"].tolist() == [2 * N - 1]
    assert blocks["E(O)"].tolist() == task.outputs.tolist()
    assert blocks["Ẽ(OOD)"].tolist() == (task.ood_outputs + N).tolist()
    labels = Wt.role_of_coordinates(task, d)
    for name, idx in blocks.items():
        assert all(labels[i] == name for i in idx)


def test_role_mass_hand_built():
    N, d = 60, 128
    M = np.zeros((d, d))
    M[0, N + 0] = 3.0  # E(q) row, Ẽ(q) column
    M[N - 1, 0] = -2.0  # E(τ) row, E(q) column
    for k in range(5, 9):  # identity on the training outputs
        M[k, k] = 1.0
    M[9:59, 9] = 0.5  # the E(OOD) rows, one E(OOD) column
    t = Wt.role_mass(M, NOISY)
    assert t.get("E(q)", "Ẽ(q)") == 3.0
    assert t.get("E(τ)", "E(q)") == 2.0
    assert t.get("E(O)", "E(O)") == pytest.approx(4 / 16)
    assert t.get("E(OOD)", "E(OOD)") == pytest.approx(0.5 * 50 / 2500)
    assert np.count_nonzero(t.values) == 4
    f = Wt.role_mass(M, NOISY, reduce="frobenius")
    assert f.get("E(O)", "E(O)") == pytest.approx(2.0)
    assert f.get("E(OOD)", "E(OOD)") == pytest.approx(0.5 * np.sqrt(50))
    s = Wt.role_mass(torch.tensor(M), NOISY, reduce="mean")
    assert s.get("E(τ)", "E(q)") == -2.0
    assert Wt.role_mass(M, NOISY, rows="logits").rows == ("E(q)", "E(q')", "E(O)", "E(OOD)", "E(τ)")
    assert "E(q)" in t.format()


def test_copy_scores_hand_built():
    V = torch.zeros(128, 128)
    V[torch.arange(60), torch.arange(60)] = torch.arange(60, dtype=torch.float32)
    sc = Wt.copy_scores(V, NOISY)
    assert sc["O"].tolist() == [5, 6, 7, 8]
    assert sc["OOD"].tolist() == list(range(9, 59)) and sc["τ"].tolist() == [59]
    assert Wt.never_seen_tokens(NOISY).tolist() == [1, 2, 3, 4]
    assert Wt.never_seen_tokens(NOISELESS).tolist() == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="reduce"):
        Wt.role_mass(np.zeros((128, 128)), NOISY, reduce="max")
    with pytest.raises(ValueError, match="square"):
        Wt.role_mass(np.zeros((128, 64)), NOISY)
    with pytest.raises(ValueError, match="d_model"):
        Wt.role_blocks(NOISY, 100)
    with pytest.raises(ValueError, match="rows"):
        Wt.role_mass(np.zeros((128, 128)), NOISY, rows="some")
    with pytest.raises(ValueError, match="unknown block"):
        Wt.role_mass(np.zeros((128, 128)), NOISY).get("E(x)", "E(q)")
    with pytest.raises(ValueError, match="V must"):
        Wt.copy_scores(np.zeros((100, 100)), NOISY)
    with pytest.raises(ValueError, match="task must"):
        Wt.role_blocks(None, 128)


def test_trained_origin_weights_facts():
    """A small origin model trained by normalised GD from zero: the exact zeros of the
    module docstring, and copy scores large on training outputs, ~0 on unseen ones."""
    task = icl.RecallTask(vocab_size=24, n_outputs=4, seq_len=32, alpha=0.5)
    d = 52
    m = icl.OneLayerTransformer(task, attention="linear", family="origin", d_model=d)
    icl.train(m, task, 150, 0.1, batch_size=128, eval_every=150, eval_size=64, ood=False)
    W, V, F = (x.detach() for x in m.matrices())
    N = task.vocab_size
    assert float(V[N:].abs().max()) == 0 and float(F[N:].abs().max()) == 0
    dead = np.concatenate([Wt.never_seen_tokens(task), Wt.never_seen_tokens(task) + N])
    dead = torch.as_tensor(np.concatenate([dead, np.arange(2 * N, d)]))
    for M in (W, V, F):
        assert float(M[:, dead].abs().max()) == 0
    assert float(W[dead].abs().max()) == 0
    sc = Wt.copy_scores(V, task)
    assert sc["O"].min() > 10 * np.abs(sc["OOD"]).max() > 0


def test_role_figures():
    import matplotlib

    matplotlib.use("agg")
    from matplotlib.figure import Figure

    from icl.viz import generalization as viz

    M = np.eye(128)
    fig = viz.plot_role_tables({"V": Wt.role_mass(M, NOISY, reduce="mean", rows="logits")})
    assert isinstance(fig, Figure)
    assert isinstance(viz.plot_copy_scores({"I": Wt.copy_scores(M, NOISY)}), Figure)
    with pytest.raises(ValueError):
        viz.plot_role_tables({})
