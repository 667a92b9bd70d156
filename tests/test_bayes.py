"""Tests of the numeric Bayes functions (icl/bayes.py) and the Monte-Carlo checks
(icl/montecarlo.py): spec section 2 [D]."""

from __future__ import annotations

import math

import pytest
import torch

import icl
from icl.montecarlo import (
    agrees,
    mc_oracle_risk,
    mc_planted_variant_risk,
    n_candidate_outputs,
    planted_variant_log_probs,
    planted_variant_losses,
)

# ----------------------------------------------------------------- binary entropy / risk


def test_binary_entropy_reference_values():
    assert icl.binary_entropy(0.2) == pytest.approx(0.500402, abs=1e-6)
    assert icl.binary_entropy(0.8) == pytest.approx(0.500402, abs=1e-6)
    assert icl.binary_entropy(0.5) == pytest.approx(math.log(2), abs=1e-15)
    assert icl.binary_entropy(0.0) == 0.0
    assert icl.binary_entropy(1.0) == 0.0


def test_binary_entropy_symmetric_and_maximal_at_half():
    for a in (0.01, 0.1, 0.3, 0.45):
        assert icl.binary_entropy(a) == pytest.approx(icl.binary_entropy(1 - a), rel=1e-12)
        assert icl.binary_entropy(a) < math.log(2)


def test_bayes_risk_values_and_domain():
    assert icl.bayes_risk(0.2) == pytest.approx(0.500402, abs=1e-6)
    assert icl.bayes_risk(0.8) == pytest.approx(0.500402, abs=1e-6)
    assert icl.bayes_risk(0.5) == pytest.approx(math.log(2))
    assert icl.bayes_risk(0.0) == 0.0
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            icl.bayes_risk(bad)
    with pytest.raises(ValueError, match="alpha"):
        icl.bayes_risk("x")
    with pytest.raises(ValueError, match="alpha"):
        icl.binary_entropy(1.2)


# ------------------------------------------------------------------------- KL, Hoeffding


def test_kl_bernoulli_zero_positive_infinite():
    for a in (0.0, 0.2, 0.5, 0.9):
        assert icl.kl_bernoulli(a, a) == 0.0
    for a, b in ((0.2, 0.3), (0.5, 0.1), (0.8, 0.79), (0.0, 0.4)):
        assert icl.kl_bernoulli(a, b) > 0
    # explicit value: KL(Ber(1/2) || Ber(1/4)) = (1/2) log 2 + (1/2) log(2/3)
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert icl.kl_bernoulli(0.5, 0.25) == pytest.approx(expected, rel=1e-12)
    for a in (0.1, 0.5, 0.9):
        assert icl.kl_bernoulli(a, 0.0) == math.inf
        assert icl.kl_bernoulli(a, 1.0) == math.inf
    with pytest.raises(ValueError, match="alpha_hat"):
        icl.kl_bernoulli(0.2, 1.1)
    with pytest.raises(ValueError, match="alpha"):
        icl.kl_bernoulli(-0.2, 0.5)


def test_hoeffding_radius_values_and_errors():
    assert icl.bayes.hoeffding_radius(1, 0.5) == pytest.approx(math.sqrt(math.log(4) / 2))
    assert icl.bayes.hoeffding_radius(2048, 0.05) == pytest.approx(
        math.sqrt(math.log(40) / 4096), rel=1e-12
    )
    assert icl.bayes.hoeffding_radius(400, 0.1) == pytest.approx(
        icl.bayes.hoeffding_radius(100, 0.1) / 2
    )
    with pytest.raises(ValueError, match="m"):
        icl.bayes.hoeffding_radius(0, 0.1)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="delta"):
            icl.bayes.hoeffding_radius(10, bad)


# ------------------------------------------------------------------------ recover_output


@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("ood", [False, True])
def test_recover_output_reads_y(alpha, ood):
    task = icl.RecallTask(alpha=alpha, seq_len=32)
    batch = task.sample(500, seed=3, ood=ood)
    assert torch.equal(icl.bayes.recover_output(task, batch.tokens), batch.outputs)


def test_recover_output_missing_pair_and_bad_tokens():
    task = icl.RecallTask(alpha=0.2, seq_len=16)
    batch = icl.task.sample_sequences(task, 400, seed=1, plant_prob=0.5)
    y = icl.bayes.recover_output(task, batch.tokens)
    missing = batch.pair_pos < 0
    assert bool(missing.any()) and bool((~missing).any())
    assert bool((y[missing] == -1).all())
    assert torch.equal(y[~missing], batch.outputs[~missing])
    with pytest.raises(ValueError, match="token ids"):
        icl.bayes.recover_output(task, torch.full((2, 8), 99))


# ---------------------------------------------------------------------------- Monte Carlo


def test_agrees():
    assert agrees(1.0, 0.1, 1.29)
    assert not agrees(1.0, 0.1, 1.31)
    assert agrees(math.log(2), 0.0, math.log(2))
    assert not agrees(0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match="se"):
        agrees(1.0, -1.0, 1.0)


@pytest.mark.parametrize(
    ("alpha", "seed"), [(0.05, 11), (0.2, 12), (0.35, 13), (0.65, 14), (0.8, 15), (0.95, 16)]
)
@pytest.mark.parametrize("ood", [False, True])
def test_mc_oracle_risk_matches_binary_entropy(alpha, seed, ood):
    task = icl.RecallTask(alpha=alpha, seq_len=48)
    mean, se = mc_oracle_risk(task, 6000, seed=seed + 100 * ood, ood=ood, batch_size=2500)
    assert se > 0
    assert agrees(mean, se, icl.bayes_risk(alpha)), (mean, se, icl.bayes_risk(alpha))


def test_mc_oracle_risk_detects_wrong_theory():
    """The 3-s.e. check has power: it rejects a value 0.05 nats off."""
    task = icl.RecallTask(alpha=0.2, seq_len=32)
    mean, se = mc_oracle_risk(task, 8000, seed=5)
    assert se < 0.01
    assert not agrees(mean, se, icl.bayes_risk(0.2) + 0.05)


@pytest.mark.parametrize("ood", [False, True])
def test_mc_oracle_risk_exact_cases(ood):
    # alpha = 0: every loss is exactly 0; alpha = 1/2: every loss is exactly log 2
    assert mc_oracle_risk(icl.RecallTask(seq_len=16), 300, seed=0, ood=ood) == (0.0, 0.0)
    mean, se = mc_oracle_risk(icl.RecallTask(alpha=0.5, seq_len=16), 300, seed=0, ood=ood)
    assert se == pytest.approx(0.0, abs=1e-12)
    assert mean == pytest.approx(math.log(2), abs=1e-12)


@pytest.mark.parametrize(
    ("N", "H", "nq", "no", "alpha"),
    [(20, 12, 2, 3, 0.3), (100, 64, 10, 8, 0.7), (12, 8, 1, 1, 0.15), (200, 100, 3, 40, 0.0)],
)
@pytest.mark.parametrize("ood", [False, True])
def test_mc_oracle_risk_independent_of_task_size(N, H, nq, no, alpha, ood):
    task = icl.RecallTask(vocab_size=N, seq_len=H, n_triggers=nq, n_outputs=no, alpha=alpha)
    mean, se = mc_oracle_risk(task, 4000, seed=N + H, ood=ood)
    assert agrees(mean, se, icl.bayes_risk(alpha)), (task, mean, se)


@pytest.mark.parametrize("alpha_hat", [0.1, 0.35, 0.6])
def test_mc_plugin_predictor_excess_is_kl(alpha_hat):
    task = icl.RecallTask(alpha=0.2, seq_len=24)
    mean, se = mc_oracle_risk(task, 6000, seed=21, alpha_hat=alpha_hat)
    theory = icl.bayes_risk(0.2) + icl.kl_bernoulli(0.2, alpha_hat)
    assert agrees(mean, se, theory), (mean, se, theory)
    assert not agrees(mean, se, icl.bayes_risk(0.2))
    for bad in (0.0, 1.0, "x"):
        with pytest.raises(ValueError, match="alpha_hat"):
            mc_oracle_risk(task, 10, seed=0, alpha_hat=bad)


def test_mc_seed_determinism():
    task = icl.RecallTask(alpha=0.3, seq_len=16)
    assert mc_oracle_risk(task, 1000, seed=4) == mc_oracle_risk(task, 1000, seed=4)
    assert mc_oracle_risk(task, 1000, seed=4) != mc_oracle_risk(task, 1000, seed=5)


def test_mc_argument_validation():
    task = icl.RecallTask(alpha=0.2, seq_len=16)
    with pytest.raises(ValueError, match="task"):
        mc_oracle_risk("task", 10, seed=0)
    with pytest.raises(ValueError, match="n must"):
        mc_oracle_risk(task, 1, seed=0)
    with pytest.raises(ValueError, match="n must"):
        mc_oracle_risk(task, 10.5, seed=0)
    with pytest.raises(ValueError, match="seed"):
        mc_oracle_risk(task, 10, seed=None)
    with pytest.raises(ValueError, match="batch_size"):
        mc_oracle_risk(task, 10, seed=0, batch_size=0)
    with pytest.raises(ValueError, match="ood"):
        mc_oracle_risk(task, 10, seed=0, ood="yes")
    for bad in (-0.1, 1.1, "half", True):
        with pytest.raises(ValueError, match="rho"):
            mc_planted_variant_risk(task, bad, 10, seed=0)
    with pytest.raises(ValueError, match="n must"):
        mc_planted_variant_risk(task, 0.5, 0, seed=0)


# ---------------------------------------------------------------- planted variant (ours)


def test_n_candidate_outputs():
    task = icl.RecallTask()  # N=60, |Q|=5, |O|=4
    assert n_candidate_outputs(task) == 4
    assert n_candidate_outputs(task, ood=True) == 60 - 1 - 5 - 4
    with pytest.raises(ValueError, match="task"):
        n_candidate_outputs(None)


@pytest.mark.parametrize("alpha", [0.0, 0.25])
@pytest.mark.parametrize("ood", [False, True])
def test_planted_variant_log_probs_is_a_law(alpha, ood):
    task = icl.RecallTask(alpha=alpha, seq_len=20)
    batch = icl.task.sample_sequences(task, 300, seed=2, plant_prob=0.5, ood=ood)
    logp = planted_variant_log_probs(task, batch.tokens, ood=ood)
    assert torch.allclose(logp.exp().sum(1), torch.ones(300, dtype=torch.float64))
    found = batch.pair_pos >= 0
    k = n_candidate_outputs(task, ood)
    # found: mass 1-alpha on y; missing: (1-alpha)/K on each candidate
    rows = found.nonzero().squeeze(1)
    assert torch.allclose(
        logp[rows, batch.outputs[rows]].exp(),
        torch.full((len(rows),), 1 - alpha, dtype=torch.float64),
    )
    miss = (~found).nonzero().squeeze(1)
    assert torch.allclose(
        logp[miss, batch.outputs[miss]].exp(),
        torch.full((len(miss),), (1 - alpha) / k, dtype=torch.float64),
    )
    assert bool(torch.isfinite(planted_variant_losses(task, batch, ood=ood)).all())


@pytest.mark.parametrize(
    ("alpha", "rho", "ood"),
    [(0.2, 0.5, False), (0.2, 0.3, True), (0.0, 0.6, True), (0.6, 0.0, False)],
)
def test_mc_planted_variant_risk_formula(alpha, rho, ood):
    task = icl.RecallTask(alpha=alpha, seq_len=24)
    k = n_candidate_outputs(task, ood)
    theory = icl.bayes_risk(alpha) + (1 - rho) * (1 - alpha) * math.log(k)
    mean, se = mc_planted_variant_risk(task, rho, 6000, seed=7, ood=ood)
    assert agrees(mean, se, theory), (mean, se, theory)
    # and the check has power: the base risk H_b(alpha) is rejected when rho < 1
    assert not agrees(mean, se, icl.bayes_risk(alpha))


def test_mc_planted_variant_rho_one_is_base_task():
    task = icl.RecallTask(alpha=0.3, seq_len=24)
    mean, se = mc_planted_variant_risk(task, 1.0, 3000, seed=9)
    assert agrees(mean, se, icl.bayes_risk(0.3))


def test_categorical_entropy():
    """The entropy of a law: H_b for two outcomes, log K when uniform, 0 log 0 = 0."""
    from icl.bayes import categorical_entropy

    for a in (0.0, 0.2, 0.5, 0.9):
        assert abs(categorical_entropy([1 - a, a]) - icl.binary_entropy(a)) < 1e-15
    assert abs(categorical_entropy([0.25] * 4) - math.log(4)) < 1e-15
    assert categorical_entropy([1.0, 0.0, 0.0]) == 0.0
    # grouping: H(0.6, 0.1, 0.3) = H_b(0.4) + 0.4 H(1/4, 3/4)
    assert abs(categorical_entropy([0.6, 0.1, 0.3])
               - icl.binary_entropy(0.4) - 0.4 * icl.binary_entropy(0.25)) < 1e-15
    for bad, match in (([0.5, 0.6], "sum to 1"), ([], "non-empty"), ([[0.5, 0.5]], "1-d"),
                       ([1.2, -0.2], ">= 0"), (["a"], "real numbers")):
        with pytest.raises(ValueError, match=match):
            categorical_entropy(bad)
