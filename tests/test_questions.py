"""Chapter 7's package code: the family ladder, the optimiser variants, the sweeps, the
power-law fit and the figures."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import icl
from icl import dynamics, families, rates, sweeps
from icl.viz import questions as viz

SMALL = icl.RecallTask(vocab_size=12, n_triggers=2, n_outputs=3, seq_len=8)
NOISY = icl.RecallTask(vocab_size=12, n_triggers=2, n_outputs=3, seq_len=8, alpha=0.2)


# ------------------------------------------------------------------ families
@pytest.mark.parametrize("rung", families.LADDER)
def test_ladder_trainable_parameters(rung):
    m = families.LadderTransformer(SMALL, rung, d_model=24)
    names = {n for n, _ in m.named_parameters()}
    expected = {
        "reparam": {"lambdas"},
        "reparam_w": {"W"},
        "lambda_v": {"lambdas", "V"},
        "w_v": {"W", "V"},
        "origin": {"W", "V", "F"},
    }[rung]
    assert names == expected
    assert set(families.free_matrices(rung)) == expected - {"lambdas"}
    assert isinstance(m, icl.OneLayerTransformer)
    out = m(SMALL.sample(4, seed=0).tokens)
    assert out.xi.shape == (4, SMALL.vocab_size)


def test_ladder_matches_base_families():
    """reparam / reparam_w / origin rungs compute what the base families compute."""
    batch = SMALL.sample(6, seed=1)
    for rung in ("reparam", "reparam_w", "origin"):
        torch.manual_seed(0)
        a = families.LadderTransformer(SMALL, rung, d_model=24, dtype=torch.float64)
        b = icl.OneLayerTransformer(SMALL, "linear", rung, d_model=24, dtype=torch.float64)
        b.load_state_dict(a.state_dict())
        assert torch.allclose(a(batch.tokens).xi, b(batch.tokens).xi)


def test_lambda_v_uses_its_free_V():
    m = families.LadderTransformer(SMALL, "lambda_v", d_model=24, dtype=torch.float64)
    with torch.no_grad():
        m.lambdas.fill_(2.0)
        m.V.copy_(torch.eye(24, dtype=torch.float64))
    ref = icl.OneLayerTransformer(SMALL, "linear", "reparam", d_model=24, dtype=torch.float64)
    with torch.no_grad():
        ref.lambdas.fill_(2.0)
    batch = SMALL.sample(5, seed=2)
    assert torch.allclose(m(batch.tokens).xi, ref(batch.tokens).xi)
    assert m.matrices()[1] is m.V


def test_init_scale_draws_seeded_matrices():
    a = families.LadderTransformer(SMALL, "origin", d_model=24, init_scale=1.0, seed=3)
    b = families.LadderTransformer(SMALL, "origin", d_model=24, init_scale=1.0, seed=3)
    c = families.LadderTransformer(SMALL, "origin", d_model=24, init_scale=1.0, seed=4)
    assert torch.equal(a.W, b.W) and not torch.equal(a.W, c.W)
    # entries N(0, σ²/d): the mean square is close to 1/d
    ms = float((a.W.detach().double() ** 2).mean())
    assert abs(ms * 24 - 1.0) < 0.2
    z = families.LadderTransformer(SMALL, "origin", d_model=24)
    assert all(float(p.abs().max()) == 0.0 for p in z.parameters())
    assert families.n_trainable(z) == 3 * 24 * 24


def test_families_bad_inputs():
    with pytest.raises(ValueError, match="rung"):
        families.LadderTransformer(SMALL, "free")
    with pytest.raises(ValueError, match="init_scale"):
        families.LadderTransformer(SMALL, "origin", d_model=24, init_scale=-1.0)
    with pytest.raises(TypeError, match="init_scale"):
        families.LadderTransformer(SMALL, "origin", d_model=24, init_scale="big")
    with pytest.raises(ValueError, match="seed"):
        families.LadderTransformer(SMALL, "origin", d_model=24, seed=-1)
    with pytest.raises(ValueError, match="rung"):
        families.free_matrices("all")
    with pytest.raises(TypeError, match="model"):
        families.n_trainable("model")


# ------------------------------------------------------------------ train_with
def test_zero_is_stationary_for_free_value_rungs():
    for rung in ("lambda_v", "w_v"):
        m = families.LadderTransformer(SMALL, rung, d_model=24)
        sweeps.train_with(m, SMALL, 3, 0.1, batch_size=8, eval_size=8, ood=False)
        assert all(float(p.abs().max()) == 0.0 for p in m.parameters())


def test_normalized_matches_icl_train():
    a = icl.OneLayerTransformer(SMALL, "linear", "origin", d_model=24)
    b = icl.OneLayerTransformer(SMALL, "linear", "origin", d_model=24)
    ha = sweeps.train_with(a, SMALL, 5, 0.1, batch_size=8, eval_size=16, seed=2, eval_every=1)
    hb = icl.train(
        b, SMALL, 5, 0.1, batch_size=8, eval_size=16, seed=2, eval_every=1, progress=False
    )
    assert np.allclose(ha.train_loss, hb.train_loss, rtol=1e-5)
    assert np.allclose(ha.array("loss", "ood"), hb.array("loss", "ood"), rtol=1e-5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_noisy_reparam_moves_eta_per_step_under_every_normalisation():
    """Noisy construction: every sequence's gradient in Λ is negative (chapter 4), so a
    normalised or a sign step moves Λ by exactly η."""
    for opt in ("normalized", "coordinate"):
        m = families.LadderTransformer(NOISY, "reparam", d_model=24, dtype=torch.float64)
        h = sweeps.train_with(m, NOISY, 6, 0.25, optimizer=opt, batch_size=8, eval_size=8,
                              eval_every=1, ood=False)
        assert np.allclose(h.array("Lambda", "params"), 0.25 * np.arange(7))


def test_plain_and_weight_decay_rules():
    m = families.LadderTransformer(NOISY, "reparam", d_model=24, dtype=torch.float64)
    h = sweeps.train_with(m, NOISY, 1, 0.5, optimizer="plain", batch_size=8, eval_size=8,
                          eval_every=1, ood=False)
    g = dynamics.per_example_grad(NOISY, 0.0)
    assert math.isclose(h.params["Lambda"][-1], -0.5 * g, rel_tol=1e-9)
    # decoupled weight decay: θ ← (1 - ηω)θ - η g/|g|
    m = families.LadderTransformer(NOISY, "reparam", d_model=24, dtype=torch.float64)
    with torch.no_grad():
        m.Lambda.fill_(2.0)
    sweeps.train_with(m, NOISY, 1, 0.5, weight_decay=0.2, batch_size=8, eval_size=8, ood=False)
    assert math.isclose(float(m.Lambda), 2.0 * (1 - 0.1) + 0.5, rel_tol=1e-12)


def test_adam_is_torch_adamw():
    a = families.LadderTransformer(SMALL, "origin", d_model=24, init_scale=0.1, seed=1,
                                   dtype=torch.float64)
    b = families.LadderTransformer(SMALL, "origin", d_model=24, init_scale=0.1, seed=1,
                                   dtype=torch.float64)
    h = sweeps.train_with(a, SMALL, 8, 0.05, optimizer="adam", weight_decay=0.01,
                          batch_size=16, eval_size=32, seed=5)
    assert h.array("loss")[-1] < h.array("loss")[0] and not h.normalized
    opt = torch.optim.AdamW(list(b.parameters()), lr=0.05, weight_decay=0.01)
    g = torch.Generator().manual_seed(5)
    for _ in range(8):
        batch = SMALL.sample(16, generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(b(batch.tokens).xi, batch.targets).backward()
        opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-10)


def test_train_with_bad_inputs():
    m = families.LadderTransformer(SMALL, "reparam", d_model=24)
    with pytest.raises(ValueError, match="optimizer"):
        sweeps.train_with(m, SMALL, 2, 0.1, optimizer="sgd")
    with pytest.raises(ValueError, match="lr"):
        sweeps.train_with(m, SMALL, 2, 0.0)
    with pytest.raises(ValueError, match="steps"):
        sweeps.train_with(m, SMALL, 0, 0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        sweeps.train_with(m, SMALL, 2, 0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="built for"):
        sweeps.train_with(m, NOISY, 2, 0.1)
    with pytest.raises(TypeError, match="model"):
        sweeps.train_with("m", SMALL, 2, 0.1)


def test_train_in_segments_is_one_run_with_snapshots():
    m = families.LadderTransformer(NOISY, "reparam_w", "softmax", d_model=24)
    h, snaps = sweeps.train_in_segments(m, NOISY, 6, 0.1, segments=3, batch_size=8,
                                        eval_size=8, eval_every=1, ood=False)
    assert h.steps == list(range(7)) and len(h.train_loss) == 6
    assert all(len(v) == 7 for v in h.pop.values()) and len(h.params["|W|"]) == 7
    assert len(snaps) == 3 and set(snaps[0]) == {"W"}
    assert torch.equal(snaps[-1]["W"], m.W.detach())
    norms = [float(s["W"].norm()) for s in snaps]
    assert np.allclose(norms, h.params["|W|"][2::2], rtol=1e-6)
    # segment k is train_with on seed k, continued from the previous parameters
    a = families.LadderTransformer(NOISY, "reparam_w", "softmax", d_model=24)
    sweeps.train_with(a, NOISY, 2, 0.1, seed=0, batch_size=8, eval_size=8, ood=False)
    sweeps.train_with(a, NOISY, 2, 0.1, seed=1, batch_size=8, eval_size=8, ood=False)
    assert torch.allclose(a.W.detach(), snaps[1]["W"])
    with pytest.raises(ValueError, match="segments"):
        sweeps.train_in_segments(m, NOISY, 7, 0.1, segments=3)
    with pytest.raises(ValueError, match="segments"):
        sweeps.train_in_segments(m, NOISY, 6, 0.1, segments=0)


# ------------------------------------------------------------------ sweeps
def test_run_and_one_factor_sweep():
    base = sweeps.RunConfig(vocab_size=12, seq_len=8, n_outputs=3, steps=4, batch_size=8,
                            eval_size=16)
    out = sweeps.one_factor_sweep(base, "init", ["zero", "small"])
    assert [r.config.init for r in out] == ["zero", "small"]
    row = out[0].row()
    assert {"ood_loss", "pop_loss", "copy_O", "copy_OOD", "rung"} <= set(row)
    assert out[0].history.steps[-1] == 4
    with pytest.raises(ValueError, match="factor"):
        sweeps.one_factor_sweep(base, "colour", [1])
    with pytest.raises(ValueError, match="values"):
        sweeps.one_factor_sweep(base, "init", [])
    with pytest.raises(TypeError, match="config"):
        sweeps.run({"rung": "origin"})


def test_run_config_validates():
    with pytest.raises(ValueError, match="init"):
        sweeps.RunConfig(init="huge")
    with pytest.raises(ValueError, match="optimizer"):
        sweeps.RunConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="rung"):
        sweeps.RunConfig().replace(rung="x")
    assert sweeps.RunConfig(n_outputs=7).task().n_outputs == 7


def test_copy_summary_of_the_construction():
    m = icl.construct_model(SMALL, 3.0, d_model=24)
    c = sweeps.copy_summary(m)
    assert c == {"copy_O": 1.0, "copy_OOD": 1.0, "copy_gap": 0.0}
    assert math.isclose(sweeps.chance_loss(SMALL), math.log(12))
    with pytest.raises(TypeError):
        sweeps.copy_summary("m")


# ------------------------------------------------------------------ fit_power
def test_fit_power_recovers_an_exponent():
    t = np.arange(1, 200)
    fit = rates.fit_power(t, 0.5 + 3.0 * t**-1.5, 0.5)
    assert math.isclose(fit.slope, -1.5, abs_tol=1e-9)
    assert math.isclose(math.exp(fit.intercept), 3.0, rel_tol=1e-9)
    fit = rates.fit_power(np.arange(0, 200), 1.0 / np.maximum(np.arange(0, 200), 1), 0.0,
                          window=(10, 100))
    assert math.isclose(fit.slope, -1.0, abs_tol=1e-9) and math.isclose(fit.t_min, 10)


def test_fit_power_bad_inputs():
    with pytest.raises(ValueError, match="window"):
        rates.fit_power(np.arange(1, 10), np.ones(9), 0.0, window=(0, 5))
    with pytest.raises(ValueError, match="equal length"):
        rates.fit_power(np.arange(1, 10), np.ones(8), 0.0)


# ------------------------------------------------------------------ figures
def test_figures_build():
    t = np.arange(10)
    f1 = viz.plot_optimizer_curves({("reparam", "plain"): (t, 1.0 / (t + 1))},
                                   {("reparam", "plain"): (t, 1.0 / (t + 1))})
    f2 = viz.plot_ladder(["a", "b"], [0.1, 0.2], [1.0, 2.0], [1.0, 2.0], [0.0, 0.1], chance=3.0)
    f3 = viz.plot_sweeps({"x": ([1, 2], [0.1, 0.2], [3.0, 4.0])}, chance=3.0)
    f4 = viz.plot_constants([2, 5], {"normalized": [0.7, 0.45]})
    f5 = viz.plot_softmax_limits({"a": (t, 1.0 + np.exp(-t), 1.0)}, {"floor": 1.0}, title="x")
    assert len(f5.axes) == 2
    for f in (f1, f2, f3, f4, f5):
        assert len(f.axes) >= 1
    import matplotlib.pyplot as plt

    plt.close("all")


def test_unscaled_softmax_reparam_is_the_papers_V_identity():
    m = families.LadderTransformer(NOISY, "reparam", "softmax", d_model=24, scaled=False,
                                   dtype=torch.float64)
    s = families.LadderTransformer(NOISY, "reparam", "softmax", d_model=24, dtype=torch.float64)
    with torch.no_grad():
        m.Lambda.fill_(3.0)
        s.Lambda.fill_(3.0)
    assert torch.equal(m.matrices()[1], torch.eye(24, dtype=torch.float64))
    assert torch.allclose(s.matrices()[1], 3.0 * torch.eye(24, dtype=torch.float64))
    with pytest.raises(TypeError, match="scaled"):
        families.LadderTransformer(NOISY, "reparam", "softmax", d_model=24, scaled=1)
