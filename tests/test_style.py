"""The shared figure style: one palette, reference lines, seed bands, the loss panel."""

from __future__ import annotations

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from icl import RecallTask  # noqa: E402
from icl.viz import style  # noqa: E402


def test_one_colour_per_role_of_the_task():
    roles = set(RecallTask().roles())
    assert roles <= set(style.ROLE_COLORS) and roles <= set(style.ROLE_LABELS)
    assert len(set(style.ROLE_COLORS.values())) == len(style.ROLE_COLORS)


def test_band_draws_mean_and_spread():
    fig, ax = plt.subplots()
    runs = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    line = style.band(ax, [0, 1, 2], runs)
    assert np.allclose(line.get_ydata(), [2.0, 3.0, 4.0])
    assert len(ax.collections) == 1  # the spread
    with pytest.raises(ValueError, match="one column per x"):
        style.band(ax, [0, 1], runs)
    with pytest.raises(ValueError, match="spread"):
        style.band(ax, [0, 1, 2], runs, spread="iqr")
    plt.close(fig)


def test_loss_panel_excess_is_log_and_needs_bayes():
    fig, ax = plt.subplots()
    line = style.loss_panel(ax, [0, 1, 2], [1.0, 0.8, 0.7], bayes=0.69, excess=True)
    assert ax.get_yscale() == "log"
    assert np.allclose(line.get_ydata(), [0.31, 0.11, 0.01])
    with pytest.raises(ValueError, match="bayes"):
        style.loss_panel(ax, [0, 1, 2], [1.0, 0.8, 0.7], excess=True)
    fig2, ax2 = plt.subplots()
    style.loss_panel(ax2, [0, 1, 2], [1.0, 0.8, 0.7], bayes=0.69)
    assert any(np.allclose(l.get_ydata(), 0.69) for l in ax2.get_lines())  # noqa: E741
    plt.close("all")
