"""Rate fitting: recovers known slopes, reports honest errors, rejects bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import icl


def test_exact_exponential_has_exact_slope():
    t = np.arange(0, 200, 10)
    fit = icl.fit_rate(t, 0.7 + 3.0 * np.exp(-0.05 * t), 0.7)
    assert fit.slope == pytest.approx(-0.05, rel=1e-9)
    assert fit.stderr < 1e-9
    assert fit.agrees_with(-0.05, rel_tol=1e-6)
    assert not fit.agrees_with(-0.06, rel_tol=1e-6)
    np.testing.assert_allclose(fit.line(t), 3.0 * np.exp(-0.05 * t), rtol=1e-8)


def test_noisy_slope_within_three_standard_errors():
    rng = np.random.default_rng(0)
    t = np.arange(100.0)
    hits = 0
    for _ in range(200):
        y = 1.0 + np.exp(-0.1 * t + 0.05 * rng.standard_normal(t.size))
        hits += icl.fit_rate(t, y, 1.0).agrees_with(-0.1, n_sigma=3)
    assert hits >= 190  # nominal coverage 99.7 %


def test_window_and_floor():
    t = np.arange(0, 100.0)
    y = 2.0 + np.where(t < 50, np.exp(-0.2 * t), np.exp(-0.2 * 50) * np.exp(-0.01 * (t - 50)))
    assert icl.fit_rate(t, y, 2.0, window=(0, 40)).slope == pytest.approx(-0.2)
    assert icl.fit_rate(t, y, 2.0, window=(60, 99)).slope == pytest.approx(-0.01)
    # points at or below the floor are dropped
    y2 = 1.0 + np.exp(-0.3 * t)
    fit = icl.fit_rate(t, y2, 1.0, min_excess=1e-6)
    assert fit.t_max <= -math.log(1e-6) / 0.3
    assert fit.slope == pytest.approx(-0.3, rel=1e-6)


def test_predicted_slope():
    assert icl.predicted_slope(0.1, noisy=True) == -0.1
    assert icl.predicted_slope(0.1, noisy=False, n_triggers=4) == pytest.approx(-0.05)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([1, 2, 3], [1, 2]), {}, "equal length"),
        (([1, 2, 3], [1, 1, 1]), {}, "at least 3 points"),
        (([1, 2, 3], [2, 2, 2]), {"window": (5, 1)}, "t_min < t_max"),
        (([1, 2, 3], [2, 2, 2]), {"min_excess": 0}, "min_excess must be positive"),
    ],
)
def test_bad_fits(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        icl.fit_rate(*args, 1.0, **kwargs)
    with pytest.raises(ValueError, match="lr must be positive"):
        icl.predicted_slope(0.0, noisy=True)
