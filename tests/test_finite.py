"""Finite-sample helpers (icl/finite.py): plug-in α̂, the KL/Hoeffding bound, training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

import icl
from icl import finite as Fi

TASK = icl.RecallTask(seq_len=32, alpha=0.2)


def test_plugin_alpha_counts_noise_targets():
    batch = TASK.sample(10, seed=0)
    targets = batch.outputs.clone()
    targets[[1, 4, 7]] = TASK.noise_token
    b = icl.RecallBatch(batch.tokens, targets, batch.outputs, batch.pair_pos, batch.noise_pos)
    assert Fi.plugin_alpha(b, TASK) == pytest.approx(0.3)
    big = TASK.sample(20_000, seed=1)
    # sampler's targets: α̂ ~ α within 4 standard errors
    assert abs(Fi.plugin_alpha(big, TASK) - 0.2) < 4 * math.sqrt(0.16 / 20_000)
    with pytest.raises(ValueError, match="batch"):
        Fi.plugin_alpha(big.tokens, TASK)


def test_kl_array_matches_scalar_kl():
    a_hat = np.array([0.01, 0.15, 0.2, 0.5, 0.93])
    np.testing.assert_allclose(Fi.kl_bernoulli_array(0.2, a_hat),
                               [icl.kl_bernoulli(0.2, b) for b in a_hat], rtol=1e-12)
    assert Fi.kl_bernoulli_array(0.2, 0.0) == math.inf
    with pytest.raises(ValueError, match="alpha"):
        Fi.kl_bernoulli_array(0.2, 1.5)


@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.5, 0.8])
@pytest.mark.parametrize("m", [20, 100, 1000])
def test_hoeffding_kl_bound_dominates_every_alpha_hat_in_the_radius(alpha, m):
    delta = 0.05
    bound = Fi.hoeffding_kl_bound(alpha, m, delta)
    r = icl.bayes.hoeffding_radius(m, delta)
    k = np.arange(1, m)
    inside = k[np.abs(k / m - alpha) <= r]
    kl = Fi.kl_bernoulli_array(alpha, inside / m)
    assert np.all(kl <= bound + 1e-15)
    # tight: attained (up to the k/m grid) at an end of the interval
    ends = np.array([max(alpha - r, 1 / m), min(alpha + r, 1 - 1 / m)])
    assert bound == pytest.approx(Fi.kl_bernoulli_array(alpha, ends).max(), rel=1e-12)
    # ... and some α̂ just outside the radius exceeds it (unless the interval is clipped)
    if alpha + r + 1 / m < 1 - 1 / m and alpha - r - 1 / m > 1 / m:
        assert max(Fi.kl_bernoulli_array(alpha, [alpha - r - 1 / m, alpha + r + 1 / m])) > bound


def test_hoeffding_kl_bound_vectorised_and_decreasing():
    ms = np.array([64, 256, 1024, 4096])
    b = Fi.hoeffding_kl_bound(0.2, ms, 0.05)
    assert b.shape == (4,) and np.all(np.diff(b) < 0)
    np.testing.assert_allclose(b, [Fi.hoeffding_kl_bound(0.2, int(m), 0.05) for m in ms])
    # at large m the bound is the quadratic r²/(2α(1-α)) to leading order
    r = icl.bayes.hoeffding_radius(4096, 0.05)
    assert b[-1] == pytest.approx(r**2 / (2 * 0.2 * 0.8), rel=0.1)


@pytest.mark.parametrize(
    "args, match",
    [((0.0, 10, 0.1), "alpha"), ((0.2, 0, 0.1), "m must"), ((0.2, 1, 0.1), "m must"),
     ((0.2, 10, 1.0), "delta"), ((0.2, 10.5, 0.1), "m must")],
)
def test_hoeffding_kl_bound_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        Fi.hoeffding_kl_bound(*args)


def test_expected_excess_is_one_over_2m():
    m = sp.Symbol("m", positive=True)
    assert sp.simplify(Fi.expected_quadratic_excess_expr() - 1 / (2 * m)) == 0
    ms = np.array([200, 2000, 20000])
    exact = Fi.expected_plugin_excess_exact(0.2, ms)
    rel = np.abs(exact / Fi.expected_plugin_excess(ms) - 1)
    assert np.all(rel < [0.1, 0.02, 0.005])
    # and the exact expectation approaches 1/(2m) as m grows
    assert np.all(np.diff(rel) < 0)


def test_run_finite_sample_excess_is_the_plug_in_kl():
    res = Fi.run_finite_sample(TASK, 200, steps=40, lr=0.5, seed=3, batch_size=64, eval_size=128)
    assert res.Lambda == pytest.approx(20.0, abs=1e-9)  # Λ_t = ηt with the plug-in γ̂ too
    assert res.alpha_hat != 0.2  # a genuine sampling error ...
    assert res.kl > 1e-5
    # ... which the population excess reproduces exactly (up to (N-2)e^{-20} ≈ 1e-7)
    assert res.excess == pytest.approx(res.closed_form, abs=1e-10)
    assert res.excess == pytest.approx(res.kl, abs=2e-7)
    # OOD: the reparameterised model does not care about the identity of y
    assert res.ood_excess == pytest.approx(res.excess, abs=1e-10)
    # the same seed gives the same sample; another seed another one
    again = Fi.run_finite_sample(TASK, 200, steps=2, lr=0.5, seed=3, batch_size=64, eval_size=64)
    other = Fi.run_finite_sample(TASK, 200, steps=2, lr=0.5, seed=4, batch_size=64, eval_size=64)
    assert again.alpha_hat == res.alpha_hat
    assert other.alpha_hat != res.alpha_hat


def test_run_finite_sample_epochs_and_bad_arguments():
    res = Fi.run_finite_sample(TASK, 100, epochs=3, lr=0.5, batch_size=32, eval_size=32)
    assert res.history.steps[-1] == 3 * 4  # ceil(100/32) = 4 mini-batches per epoch
    with pytest.raises(ValueError, match="noisy"):
        Fi.run_finite_sample(TASK.replace(alpha=0.0), 100, steps=2)
    with pytest.raises(ValueError, match="steps or epochs"):
        Fi.run_finite_sample(TASK, 100, steps=2, epochs=2)
    with pytest.raises(ValueError, match="m must"):
        Fi.run_finite_sample(TASK, 0, steps=2)
    with pytest.raises(ValueError, match="attention"):
        Fi.run_finite_sample(TASK, 100, steps=2, attention="tanh")
    with pytest.raises(ValueError, match="alpha_hat"):
        # 3 sequences at α = 0.01: almost surely no τ target, α̂ = 0
        Fi.run_finite_sample(TASK.replace(alpha=0.01), 3, steps=2, eval_size=8)


def test_sweep_shapes():
    out = Fi.finite_sample_sweep(TASK, [50, 100], [0, 1], steps=20, lr=1.0, batch_size=50,
                                 eval_size=32)
    assert out["excess"].shape == (2, 2)
    # identity: the excess is the closed form at the trained Λ and α̂ (float64 rounding)
    np.testing.assert_allclose(out["excess"], out["closed_form"], rtol=0, atol=1e-12)
    # and above the plug-in KL by less than the mass the other N - 2 tokens keep at Λ,
    # (N - 2) e^{-Λ} (log(1 + x) ≤ x); at Λ = 20 that is 1.2e-7, not a fixed 1e-7
    gap = out["excess"] - out["kl"]
    assert np.all(gap >= 0)
    assert np.all(gap <= (TASK.vocab_size - 2) * np.exp(-out["Lambda"]))
    with pytest.raises(ValueError, match="seeds"):
        Fi.finite_sample_sweep(TASK, [50], [])


def test_role_split_on_the_construction():
    """The construction: attention carries y, the feed-forward path τ (via Ẽ(q) in A)."""
    c = icl.construct(TASK, 5.0, dtype=torch.float64)
    net = icl.OneLayerTransformer.from_construction(c)
    batch = TASK.sample(64, seed=2)
    r = icl.roles.role_split(net, batch)
    assert r["A_y"] == pytest.approx(5.0) and r["A_rest"] == pytest.approx(0.0, abs=1e-12)
    assert r["A_tau"] == pytest.approx(0.0, abs=1e-12)
    gamma = math.log(0.2 / 0.8)
    assert r["F_tau"] == pytest.approx(gamma + 5.0)
    assert r["direct_tau"] == pytest.approx(gamma)  # U F x_H: the q → τ association
    assert r["via_attention_tau"] == pytest.approx(5.0)
    assert r["F_y"] == pytest.approx(0.0, abs=1e-12)


def test_loglog_slope_recovers_a_power_law():
    rng = np.random.default_rng(0)
    ms = np.array([64, 256, 1024, 4096])
    # chi-square(1) noise around 1/(2m): the law of the plug-in KL to leading order
    exc = rng.chisquare(1, size=(4, 400)) / (2 * ms[:, None])
    fit = Fi.loglog_slope(ms, exc)
    assert fit.agrees_with(-1.0, n_sigma=3)
    assert fit.stderr < 0.05
    # a wrong law is rejected
    assert not Fi.loglog_slope(ms, exc * ms[:, None] ** 0.5).agrees_with(-1.0, n_sigma=3)
    with pytest.raises(ValueError, match="shape"):
        Fi.loglog_slope(ms, exc[:, :1])


def test_quadratic_hoeffding_bound():
    """log(2/δ)/(4mα(1-α)): r²/(2α(1-α)) at Hoeffding's radius, close to the exact KL bound."""
    from icl.bayes import hoeffding_radius
    from icl.finite import hoeffding_kl_bound, quadratic_hoeffding_bound

    for a, m, d in ((0.2, 2048, 0.05), (0.5, 100, 0.01), (0.8, 10_000, 0.2)):
        r = hoeffding_radius(m, d)
        q = quadratic_hoeffding_bound(a, m, d)
        assert abs(q - r**2 / (2 * a * (1 - a))) < 1e-15
        assert abs(q / hoeffding_kl_bound(a, m, d) - 1) < 3 * r / min(a, 1 - a)  # second order
    assert np.allclose(quadratic_hoeffding_bound(0.2, [10, 100], 0.05),
                       [quadratic_hoeffding_bound(0.2, 10, 0.05),
                        quadratic_hoeffding_bound(0.2, 100, 0.05)])
    for kwargs, match in (({"alpha": 0.0}, "alpha"), ({"m": 0}, "m"), ({"delta": 0.0}, "delta")):
        args = {"alpha": 0.2, "m": 100, "delta": 0.05} | kwargs
        with pytest.raises(ValueError, match=match):
            quadratic_hoeffding_bound(**args)
