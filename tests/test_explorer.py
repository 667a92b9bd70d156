"""The construction explorer: numbers, static figure, and the widget around it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import icl  # noqa: E402
from icl.viz import explorer as widgets  # noqa: E402


@pytest.mark.parametrize("attention", ["linear", "relu"])
def test_state_matches_the_construction(attention):
    task = icl.RecallTask(seq_len=64, alpha=0.3)
    st = widgets.construction_state(task, 30.0, attention, seed=2)
    assert st["a_y"] == pytest.approx(30.0)  # score Λ on the position of y, σ = identity there
    assert st["p_y"] == pytest.approx(0.7, abs=1e-6)
    assert st["p_tau"] == pytest.approx(0.3, abs=1e-6)
    assert st["loss"] == pytest.approx(icl.closed_form_loss(task, 30.0), abs=1e-9)
    assert st["tokens"][st["y_pos"]] == st["y"]


def test_softmax_state_concentrates_on_y():
    task = icl.RecallTask(seq_len=64, alpha=0.5)
    st = widgets.construction_state(task, 25.0, "softmax", seed=0)
    assert st["a_y"] == pytest.approx(1.0, abs=1e-6)
    assert st["loss"] - st["bayes"] < 1e-6


def test_figure_and_widget():
    task = icl.RecallTask(seq_len=32, alpha=0.5)
    fig = widgets.draw_construction_state(task, 3.0, "relu", seed=1)
    assert len(fig.axes) == 2
    w = widgets.construction_explorer(task)
    labels = [getattr(c, "description", "") for c in w.children]
    assert {"Λ", "α", "attention"} <= set(labels)


def test_bad_lambda():
    with pytest.raises(ValueError, match="Lambda must be a finite number >= 0"):
        widgets.construction_state(icl.RecallTask(), -1.0)
