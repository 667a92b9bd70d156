"""Tests of icl.shifts: shifted test sets and the construction's predicted losses."""

from __future__ import annotations

import math

import pytest
import torch

import icl
from icl import shifts as S

NOISY = icl.RecallTask(alpha=0.2, seq_len=64)
NOISELESS = icl.RecallTask(alpha=0.0, seq_len=64)


def by_name(task):
    return {s.name: s for s in S.standard_shifts(task)}


def test_standard_shifts_registry():
    names = [s.name for s in S.standard_shifts(NOISY)]
    assert names[0] == "none" and names[-1] == "unseen outputs"
    assert len(set(names)) == len(names)
    assert {
        "H=16",
        "H=256",
        "pair at start",
        "pair at end",
        "3 distractors",
        "10 distractors",
    } <= set(names)
    assert {"alpha_test=0.8"} <= set(names) and "alpha_test=0.2" not in names  # 0.2 is training
    assert not any(n.startswith("alpha_test") for n in by_name(NOISELESS))
    one_trigger = icl.RecallTask(alpha=0.5, n_triggers=1)
    assert not any("distractor" in n for n in by_name(one_trigger))


@pytest.mark.parametrize("task", [NOISY, NOISELESS], ids=["noisy", "noiseless"])
def test_shift_batches_are_valid(task):
    n = 64
    base = S.shift_batch(task, by_name(task)["none"], n, seed=3)
    for s in S.standard_shifts(task):
        b = S.shift_batch(task, s, n, seed=3)
        H = s.kwargs.get("seq_len", task.seq_len)
        assert b.tokens.shape == (n, H)
        rows = torch.arange(n)
        q = b.tokens[:, -1]
        assert bool((b.tokens[rows, b.pair_pos] == q).all())
        assert bool((b.tokens[rows, b.pair_pos + 1] == b.outputs).all())
        # y is readable from the context (no other q followed by a non-tau token)
        assert torch.equal(icl.bayes.recover_output(task, b.tokens), b.outputs)
        pool = task.ood_outputs if s.kwargs.get("ood") else task.outputs
        assert bool(torch.isin(b.outputs, pool).all())
        if s.kwargs.get("pair_position") == "start":
            assert bool((b.pair_pos == 0).all())
        if s.kwargs.get("pair_position") == "end":
            assert bool((b.pair_pos == H - 3).all())
        if "n_distractors" in s.kwargs:
            k = s.kwargs["n_distractors"]
            other = (b.tokens < task.n_triggers) & (b.tokens != q[:, None])
            assert bool((other.sum(1) == k).all())
        if s.name == "OOD-only filler":
            mask = torch.ones_like(b.tokens, dtype=torch.bool)
            mask[:, -1] = False
            for pos in (b.pair_pos, b.noise_pos):
                ok = pos >= 0
                mask[rows[ok], pos[ok]] = False
                mask[rows[ok], pos[ok] + 1] = False
            assert bool(torch.isin(b.tokens[mask], task.ood_outputs).all())
        if set(s.kwargs) <= {"alpha", "ood"}:  # paired with the unshifted set
            differs = (b.tokens != base.tokens).sum(1)
            assert bool((differs <= (1 if s.kwargs.get("ood") else 0)).all())


def test_relabel_changes_only_y():
    b = NOISY.sample(512, seed=0)
    r = S.relabel_outputs(NOISY, b, seed=1)
    rows = torch.arange(512)
    assert bool(torch.isin(r.outputs, NOISY.ood_outputs).all())
    diff = r.tokens != b.tokens
    assert bool((diff.sum(1) == 1).all()) and bool(diff[rows, b.pair_pos + 1].all())
    is_tau = b.targets == NOISY.noise_token
    assert torch.equal(r.targets[is_tau], b.targets[is_tau])
    assert torch.equal(r.targets[~is_tau], r.outputs[~is_tau])


def test_alpha_shift_targets_follow_alpha_test():
    s = by_name(NOISY)["alpha_test=0.8"]
    b = S.shift_batch(NOISY, s, 20_000, seed=0)
    frac = float((b.targets == NOISY.noise_token).double().mean())
    assert abs(frac - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 20_000)


@pytest.mark.parametrize("Lambda", [2.0, 40.0])
@pytest.mark.parametrize("attention", ["linear", "relu"])
def test_construction_invariant_under_shifts(Lambda, attention):
    """Every shift but alpha leaves the construction's loss at its closed form, at every Λ;
    the alpha shift moves it by exactly H_b(α_t) + KL(α_t‖α) - H_b(α)."""
    net = icl.OneLayerTransformer.from_construction(
        icl.construct(NOISY, Lambda, attention=attention)
    )
    closed = icl.closed_form_loss(NOISY, Lambda)
    for s in S.standard_shifts(NOISY):
        r = S.evaluate_shift(net, NOISY, s, n=256, seed=5)
        assert r.loss == pytest.approx(s.predicted_loss(NOISY, Lambda), abs=1e-10), s.name
        assert r.loss == pytest.approx(closed + s.predicted_change(NOISY), abs=1e-10), s.name
        assert r.se < 1e-10  # the loss does not depend on the sequence at all
        if s.name.startswith("alpha_test"):
            a_t = s.alpha_test(NOISY)
            assert r.bayes_risk == pytest.approx(icl.binary_entropy(a_t))
            assert r.loss - closed == pytest.approx(-(a_t - NOISY.alpha) * net.gamma, abs=1e-10)
            if Lambda == 40.0:  # the limit H_b(α_t) + KL(Ber(α_t) ‖ Ber(α))
                lim = icl.binary_entropy(a_t) + icl.kl_bernoulli(a_t, NOISY.alpha)
                assert abs(r.loss - lim) < 58 * math.exp(-40) + 1e-12
                assert s.limit_loss(NOISY) == pytest.approx(lim)
        else:
            assert r.loss == pytest.approx(closed, abs=1e-10), s.name


def test_noiseless_construction_invariant():
    net = icl.construct_model(NOISELESS, 30.0)
    closed = icl.closed_form_loss(NOISELESS, 30.0)
    for s in S.standard_shifts(NOISELESS):
        assert S.evaluate_shift(net, NOISELESS, s, n=128, seed=2).loss == pytest.approx(
            closed, abs=1e-12
        )


def test_construction_loss_formula():
    for a_t in (0.0, 0.2, 0.5, 0.9):
        for lam in (0.0, 3.0):
            net = icl.construct_model(NOISY, lam)
            b = NOISY.sample(64, seed=0)
            meas = icl.evaluate(net, b, alpha=a_t)["loss"]
            assert icl.closed_form_loss(NOISY, lam, alpha_test=a_t) == pytest.approx(
                meas, abs=1e-10
            )
    # alpha_test defaults to the training alpha (noiseless: 0)
    assert icl.closed_form_loss(NOISY, 5.0, alpha_test=NOISY.alpha) == pytest.approx(
        icl.closed_form_loss(NOISY, 5.0)
    )
    assert icl.closed_form_loss(NOISELESS, 5.0, alpha_test=0.0) == pytest.approx(
        icl.closed_form_loss(NOISELESS, 5.0)
    )
    assert icl.closed_form_loss(NOISY, [1.0, 2.0], alpha_test=0.5).shape == (2,)


def test_shift_table_passes_for_construction_and_can_fail():
    shifts = S.standard_shifts(NOISY)
    good = icl.construct_model(NOISY, 10.0)
    rows = S.shift_table({"construction": good}, NOISY, shifts, n=128, seed=0)
    assert len(rows) == len(shifts) and all(r.passed for r in rows)
    # A model at zero predicts uniformly: its loss ignores α_t, so the α shift's predicted
    # change -(α_t - α)γ ≠ 0 is missed.
    zero = icl.OneLayerTransformer(NOISY, family="origin", dtype=torch.float64)
    rows = S.shift_table({"zero": zero}, NOISY, shifts, n=128, seed=0, atol=0.0)
    failed = {r.shift for r in rows if not r.passed}
    assert failed == {"alpha_test=0.8"}


def test_zipf_and_ood_filler_laws():
    z = S.zipf_filler(NOISY, 1.0)
    assert z.sum().item() == pytest.approx(1.0)
    assert float(z[NOISY.triggers].sum()) == 0 and float(z[NOISY.noise_token]) == 0
    f = NOISY.filler
    assert bool((z[f][:-1] > z[f][1:]).all())
    o = S.ood_only_filler(NOISY)
    assert float(o[NOISY.outputs].sum()) == 0 and o.sum().item() == pytest.approx(1.0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="plant_prob"):
        S.Shift("x", "x", "x", {"plant_prob": 0.5})
    with pytest.raises(ValueError, match="name"):
        S.Shift("", "x", "x")
    with pytest.raises(ValueError, match="n must"):
        S.shift_batch(NOISY, S.standard_shifts(NOISY)[0], 0)
    with pytest.raises(ValueError, match="shift must"):
        S.shift_batch(NOISY, "none", 4)
    with pytest.raises(ValueError, match="model must"):
        S.evaluate_shift("model", NOISY, S.standard_shifts(NOISY)[0])
    with pytest.raises(ValueError, match="built for"):
        S.evaluate_shift(
            icl.construct_model(NOISELESS, 1.0),
            NOISY,
            S.standard_shifts(NOISY)[0],
        )
    with pytest.raises(ValueError, match="alpha_test"):
        icl.closed_form_loss(NOISELESS, 1.0, alpha_test=0.3)
    with pytest.raises(ValueError, match="alpha_test"):
        icl.closed_form_loss(NOISY, 1.0, alpha_test=1.0)
    with pytest.raises(ValueError, match="exponent"):
        S.zipf_filler(NOISY, 0.0)
    with pytest.raises(ValueError, match="pair"):
        S.relabel_outputs(
            NOISY, icl.task.sample_sequences(NOISY, 8, seed=0, plant_prob=0.0), seed=0
        )
    with pytest.raises(ValueError, match="'none'"):
        S.shift_table(
            {"m": icl.construct_model(NOISY, 1.0)},
            NOISY,
            S.standard_shifts(NOISY)[1:],
        )
    with pytest.raises(ValueError, match="task must"):
        S.standard_shifts("task")


def test_probability_attention_and_context_free():
    lam = 5.0
    net = icl.construct_model(NOISY, lam)
    b = NOISY.sample(128, seed=0)
    p = icl.roles.probability_by_role(net, b)
    assert sum(p.values()) == pytest.approx(1.0)
    g = net.gamma
    Z = math.exp(lam) * (1 + math.exp(g)) + NOISY.vocab_size - 2
    assert p["y"] == pytest.approx(math.exp(lam) / Z)
    assert p["τ"] == pytest.approx(math.exp(lam + g) / Z)
    assert p["O∖y"] == pytest.approx((NOISY.n_outputs - 1) / Z)
    # linear construction: the score of the position holding y is Λ, for seen and unseen y
    assert icl.roles.attention_on_output(net, b) == pytest.approx(lam)
    assert icl.roles.attention_on_output(net, S.relabel_outputs(NOISY, b, seed=1)) == pytest.approx(
        lam
    )
    # the context-free predictor (1-α)/|O| on each output, α on τ, has risk H_b + (1-α) log|O|
    assert S.context_free_risk(NOISY) == pytest.approx(icl.binary_entropy(0.2) + 0.8 * math.log(4))
    assert S.context_free_risk(NOISELESS) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="batch"):
        icl.roles.attention_on_output(net, b.tokens)
    with pytest.raises(ValueError, match="model"):
        icl.roles.probability_by_role(None, b)


def test_markdown_table_and_figures():
    import matplotlib

    matplotlib.use("agg")
    from matplotlib.figure import Figure

    from icl.viz import generalization as viz

    shifts = S.standard_shifts(NOISY)
    rows = S.shift_table(
        {"c": icl.construct_model(NOISY, 10.0)},
        NOISY,
        shifts,
        n=32,
    )
    text = S.shift_table_markdown(rows, shifts)
    assert text.count("\n") == len(shifts) + 1 and "✓" in text and "✗" not in text
    assert isinstance(viz.plot_shift_deviations(rows), Figure)
    fig = viz.plot_alpha_shift(
        [0.1, 0.5],
        {"c": [0.5, 0.7]},
        alpha_train=0.2,
        bayes_fn=icl.binary_entropy,
        limit_fn=lambda a: icl.binary_entropy(a) + icl.kl_bernoulli(a, 0.2),
    )
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="rows"):
        S.shift_table_markdown([], shifts)
