"""The construction explorer: numbers, static figure, and the widget around it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
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


# ---------------------------------------------------------------- the explorer page's panel

SMALL = widgets.ExplorerSizes(steps=12, batch_size=16, eval_size=32, n_lambda=21,
                              n_samples=32)


@pytest.fixture(scope="module")
def panel():
    return widgets.parameter_explorer(icl.RecallTask(alpha=0.2, seq_len=32), 0.1,
                                      sizes=SMALL)


def _agrees_with_the_package(state):
    """The numbers of a state against the functions they come from."""
    task = icl.RecallTask(vocab_size=state["vocab_size"], seq_len=state["seq_len"],
                          alpha=state["alpha"])
    assert state["bayes"] == pytest.approx(icl.bayes_risk(task.alpha), abs=0.0)
    if state["attention"] != "softmax":
        grid = state["Lambda"] if task.noisy else state["Lambda"][:, None]
        assert np.allclose(state["construction_loss"], icl.closed_form_loss(task, grid),
                           rtol=0, atol=1e-12)
    # the training run is the one icl.train gives for the same setting and seed
    model = icl.OneLayerTransformer(task, state["attention"], state["family"])
    hist = icl.train(model, task, SMALL.steps, state["lr"], batch_size=SMALL.batch_size,
                     eval_size=SMALL.eval_size, eval_every=max(1, SMALL.steps // 50),
                     ood=False, seed=SMALL.seed, progress=False)
    assert np.array_equal(hist.array("loss"), state["train_loss"])


CHANGES = [
    ("alpha", 0.5),
    ("vocab_size", 30),
    ("seq_len", 48),
    ("lr", 0.5),
    ("attention", "relu"),
    ("family", "origin"),
    ("attention", "softmax"),
    ("alpha", 0.0),
]


@pytest.mark.parametrize(("name", "value"), CHANGES, ids=[f"{n}={v}" for n, v in CHANGES])
def test_each_control_redraws_and_agrees(panel, name, value):
    before_updates, before_png = panel.updates, bytes(panel.image.value)
    before_state = panel.state
    panel.controls[name].value = value
    assert panel.updates == before_updates + 1  # one change, one redraw
    png = bytes(panel.image.value)
    assert png[:4] == b"\x89PNG" and png != before_png  # the figure was redrawn
    assert panel.state is not before_state and panel.state[name] == pytest.approx(value)
    _agrees_with_the_package(panel.state)
    shown = panel.numbers.value
    assert f"{panel.state['bayes']:.6f}" in shown  # the Bayes risk shown is H_b(new α)
    assert f"{panel.state['final_loss']:.6f}" in shown


def test_alpha_changes_the_bayes_risk_shown(panel):
    panel.controls["alpha"].value = 0.3
    assert f"{icl.bayes_risk(0.3):.6f}" in panel.numbers.value
    panel.controls["alpha"].value = 0.5
    assert f"{icl.bayes_risk(0.5):.6f}" in panel.numbers.value  # log 2 = 0.693147
    assert "0.693147" in panel.numbers.value


def test_panel_has_every_control_and_displays(panel):
    assert set(panel.controls) == {"alpha", "vocab_size", "seq_len", "lr", "attention",
                                   "family"}
    assert panel.controls["attention"].options == icl.ATTENTIONS
    assert panel.controls["family"].options == icl.FAMILIES
    assert "application/vnd.jupyter.widget-view+json" in panel._repr_mimebundle_()


def test_reparam_run_follows_the_trajectory():
    # chapter 4: Λ_t = ηt exactly (noisy, linear), so the run sits on L(ηt)
    state = widgets.explorer_state(icl.RecallTask(alpha=0.2, seq_len=16), 0.2, sizes=SMALL)
    assert state["trajectory_loss"] is not None
    assert np.abs(state["train_loss"] - state["trajectory_loss"]).max() < 1e-5
    fig = widgets.draw_explorer_state(state)
    assert len(fig.axes) == 3
    origin = widgets.explorer_state(icl.RecallTask(alpha=0.2, seq_len=16), 0.2, "relu",
                                    "origin", SMALL)
    assert origin["trajectory_loss"] is None


def test_explorer_refuses_bad_inputs():
    task = icl.RecallTask(alpha=0.2, seq_len=16)
    with pytest.raises(ValueError, match="lr must lie in"):
        widgets.explorer_state(task, 0.0)
    with pytest.raises(ValueError, match="family must be one of"):
        widgets.explorer_state(task, 0.1, family="x")
    with pytest.raises(TypeError, match="sizes"):
        widgets.explorer_state(task, 0.1, sizes={"steps": 3})
    with pytest.raises(ValueError, match="steps must be <= 10000"):
        widgets.ExplorerSizes(steps=10**6)
    with pytest.raises(ValueError, match="state must come from explorer_state"):
        widgets.draw_explorer_state({"alpha": 0.2})
