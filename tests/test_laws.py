"""Tests of icl/laws.py: the empirical laws of the sampler and the tests that judge them.

Each law is checked twice: it accepts batches of the true sampler (p-value above
``P_MIN`` on a fixed seed) and rejects a batch drawn from a deliberately wrong law.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

from icl import laws
from icl.task import RecallTask, sample_sequences

P_MIN = 1e-4
P_REJECT = 1e-8


# ------------------------------------------------------------------------ chi_square
def test_chi_square_matches_scipy() -> None:
    counts = np.array([18, 25, 30, 27])
    probs = np.array([0.2, 0.3, 0.3, 0.2])
    res = laws.chi_square(counts, probs)
    ref = stats.chisquare(counts, probs * counts.sum())
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.dof == 3


def test_chi_square_exact_fit_and_zero_probability_categories() -> None:
    res = laws.chi_square([10, 20, 0, 10], [0.25, 0.5, 0.0, 0.25])
    assert res.statistic == 0.0 and res.p_value == pytest.approx(1.0) and res.dof == 2
    res = laws.chi_square([10, 20, 1, 10], [0.25, 0.5, 0.0, 0.25])
    assert math.isinf(res.statistic) and res.p_value == 0.0


def test_chi_square_rejects_a_non_uniform_sample() -> None:
    rng = np.random.default_rng(0)
    draws = rng.choice(10, size=5000, p=np.linspace(1, 2, 10) / 15)
    counts = np.bincount(draws, minlength=10)
    assert laws.chi_square(counts, np.full(10, 0.1)).p_value < P_REJECT
    assert laws.chi_square(counts, np.linspace(1, 2, 10) / 15).p_value > P_MIN


def test_chi_square_is_calibrated() -> None:
    # under the null, p-values are roughly uniform: about 10 % of them fall below 0.1
    rng = np.random.default_rng(1)
    pv = [laws.chi_square(np.bincount(rng.integers(0, 6, 600), minlength=6),
                          np.full(6, 1 / 6)).p_value for _ in range(400)]
    assert 0.05 < np.mean(np.array(pv) < 0.1) < 0.15


@pytest.mark.parametrize(
    "counts, probs, match",
    [
        ([1, 2], [0.5, 0.25, 0.25], "same length"),
        ([[1, 2]], [[0.5, 0.5]], "1-D"),
        ([-1, 2], [0.5, 0.5], "non-negative integers"),
        ([1.5, 2], [0.5, 0.5], "non-negative integers"),
        ([1, 2], [0.6, 0.6], "sum to 1"),
        ([1, 2], [-0.5, 1.5], "non-negative"),
        ([0, 0], [0.5, 0.5], "at least one draw"),
        ([3, 0], [1.0, 0.0], "two categories"),
    ],
)
def test_chi_square_errors(counts, probs, match) -> None:
    with pytest.raises(ValueError, match=match):
        laws.chi_square(counts, probs)


# ------------------------------------------------------------------------ position law
def test_position_law_accepts_the_sampler() -> None:
    task = RecallTask(seq_len=64)
    b = task.sample(20000, seed=0)
    check = laws.position_law(task, b)
    assert check.support.tolist() == list(range(62))
    assert check.n == 20000 and check.probs.sum() == pytest.approx(1.0)
    assert check.frequencies.sum() == pytest.approx(1.0)
    assert check.expected == pytest.approx(np.full(62, 20000 / 62))
    assert check.p_value > P_MIN


def test_position_law_rejects_wrong_laws() -> None:
    task = RecallTask(seq_len=64)
    end = sample_sequences(task, 5000, seed=0, pair_position="end")
    assert laws.position_law(task, end).p_value < P_REJECT
    # a triangular law of p (a sampler that favours late positions)
    b = task.sample(20000, seed=0)
    g = torch.Generator().manual_seed(0)
    tri = torch.maximum(torch.randint(62, (20000,), generator=g),
                        torch.randint(62, (20000,), generator=g))
    fake = dataclasses.replace(b, pair_pos=tri)
    assert laws.position_law(task, fake).p_value < P_REJECT


def test_position_law_skips_unplanted_rows_and_errors() -> None:
    task = RecallTask(seq_len=32)
    b = sample_sequences(task, 4000, seed=1, plant_prob=0.5)
    check = laws.position_law(task, b)
    assert check.n == int((b.pair_pos >= 0).sum()) < 4000
    with pytest.raises(ValueError, match="no planted"):
        laws.position_law(task, sample_sequences(task, 16, seed=1, plant_prob=0.0))
    with pytest.raises(ValueError, match="RecallBatch"):
        laws.position_law(task, b.tokens)


# ------------------------------------------------------------------------ noise position
def test_noise_position_law_accepts_the_sampler() -> None:
    task = RecallTask(seq_len=32, alpha=0.5)
    check = laws.noise_position_law(task, task.sample(20000, seed=2))
    assert check.n == 20000 and check.probs.sum() == pytest.approx(1.0)
    assert check.probs.min() > 0
    assert check.p_value > P_MIN


def test_noise_position_law_rejects_wrong_laws() -> None:
    task = RecallTask(seq_len=32, alpha=0.5)
    b = task.sample(20000, seed=2)
    p = b.pair_pos
    # p' uniform over the allowed starts of the first half only
    g = torch.Generator().manual_seed(3)
    cand = torch.randint(0, 15, (20000,), generator=g)
    cand = torch.where((cand - p).abs() < 2, (p + 2) % 15, cand)
    first_half = dataclasses.replace(b, noise_pos=cand)
    assert laws.noise_position_law(task, first_half).p_value < P_REJECT
    # overlapping pairs are impossible under the protocol
    overlap = dataclasses.replace(b, noise_pos=(p + 1).clamp(max=29))
    assert laws.noise_position_law(task, overlap).p_value == 0.0
    with pytest.raises(ValueError, match="noisy"):
        laws.noise_position_law(RecallTask(), RecallTask().sample(8, seed=0))
    with pytest.raises(ValueError, match="n_bins"):
        laws.noise_position_law(task, b, n_bins=1)


# ------------------------------------------------------------------------ filler law
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_filler_law_accepts_the_sampler(alpha: float) -> None:
    task = RecallTask(seq_len=64, alpha=alpha)
    b = task.sample(2000, seed=4)
    check = laws.filler_law(task, b)
    n_planted = 3 + 2 * int(task.noisy)  # the pair(s) and z_H
    assert check.n == 2000 * (64 - n_planted)
    assert int(laws.filler_mask(b).sum()) == check.n
    assert check.counts[task.triggers.numpy()].sum() == 0
    assert check.counts[task.noise_token] == 0
    assert check.p_value > P_MIN


def test_filler_law_rejects_wrong_laws() -> None:
    task = RecallTask(seq_len=64)
    probs = torch.zeros(60)
    probs[task.filler] = torch.linspace(1.0, 1.5, len(task.filler))
    b = sample_sequences(task, 2000, seed=4, filler_probs=probs)
    assert laws.filler_law(task, b).p_value < P_REJECT
    assert laws.filler_law(task, b, probs=probs.numpy()).p_value > P_MIN
    # distractor pairs put other triggers among the filler: impossible under the protocol
    d = sample_sequences(task, 64, seed=4, n_distractors=2)
    assert laws.filler_law(task, d).p_value == 0.0
    with pytest.raises(ValueError, match="probs"):
        laws.filler_law(task, b, probs=np.ones(5))


# ------------------------------------------------------------------------ trigger, output
def test_trigger_and_output_laws() -> None:
    task = RecallTask(seq_len=16)
    b = task.sample(10000, seed=5)
    assert laws.trigger_law(task, b).p_value > P_MIN
    assert laws.output_law(task, b).p_value > P_MIN
    ood = task.sample(10000, seed=5, ood=True)
    assert laws.output_law(task, ood, ood=True).p_value > P_MIN
    assert laws.output_law(task, ood).p_value == 0.0  # OOD outputs are not outputs in O
    assert laws.output_law(task, b, ood=True).p_value == 0.0
    noisy = RecallTask(seq_len=16, alpha=0.2)
    nb = noisy.sample(1000, seed=5)
    assert laws.trigger_law(noisy, nb).p_value == 1.0
    # a noisy task whose batches use several triggers is rejected
    assert laws.trigger_law(noisy, b).p_value == 0.0
    # a skewed trigger law is rejected
    skew = dataclasses.replace(b, tokens=b.tokens.clone())
    skew.tokens[:2000, -1] = 0
    assert laws.trigger_law(task, skew).p_value < P_REJECT


# ------------------------------------------------------------------------ target law
def test_target_law_accepts_the_sampler() -> None:
    task = RecallTask(seq_len=16, alpha=0.5)
    check = laws.target_law(task, task.sample(20000, seed=6))
    assert check.n == 20000 and check.n_other == 0
    assert check.se == pytest.approx(math.sqrt(0.25 / 20000))
    assert abs(check.z) < 3 and check.p_value > P_MIN
    assert check.rate == pytest.approx(check.k / 20000)


def test_target_law_rejects_wrong_rates_and_targets() -> None:
    task = RecallTask(seq_len=16, alpha=0.5)
    b = sample_sequences(task, 20000, seed=6, alpha=0.55)
    check = laws.target_law(task, b)
    assert check.p_value < P_REJECT and check.z > 5
    assert laws.target_law(task, b, alpha=0.55).p_value > P_MIN
    bad = dataclasses.replace(b, targets=b.targets.clone())
    bad.targets[0] = 0  # a trigger as target: neither y nor τ
    assert laws.target_law(task, bad).n_other == 1
    assert laws.target_law(task, bad).p_value == 0.0
    with pytest.raises(ValueError, match="alpha"):
        laws.target_law(task, b, alpha=1.0)


def test_target_law_noiseless() -> None:
    task = RecallTask(seq_len=16)
    check = laws.target_law(task, task.sample(500, seed=0))
    assert check.k == 0 and check.se == 0.0 and check.z == 0.0 and check.p_value == 1.0
    noisy = RecallTask(seq_len=16, alpha=0.5)
    wrong = laws.target_law(task, noisy.sample(500, seed=0))
    assert wrong.p_value == 0.0 and math.isinf(wrong.z)


# ------------------------------------------------------------------------ structure, usage
@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("ood", [False, True])
def test_check_structure_passes_the_sampler(alpha: float, ood: bool) -> None:
    task = RecallTask(seq_len=32, alpha=alpha)
    report = laws.check_structure(task, task.sample(2000, seed=8, ood=ood), ood=ood)
    assert len(report) == 8 and all(v == 0 for v in report.values()), report


def test_check_structure_catches_each_violation() -> None:
    task = RecallTask(seq_len=32, alpha=0.5)
    b = task.sample(64, seed=9)

    def broken(**fields) -> dict[str, int]:
        return laws.check_structure(task, dataclasses.replace(b, **fields))

    tok = b.tokens.clone()
    tok[0, b.pair_pos[0] + 1] = tok[0, b.pair_pos[0] + 1] + 10  # y replaced by a filler
    r = broken(tokens=tok)
    assert r["(q, y) pair at pair_pos, before z_H"] == 1
    tok = b.tokens.clone()
    free = int(laws.filler_mask(b)[1].nonzero()[0])
    tok[1, free] = 3  # another trigger among the filler
    assert broken(tokens=tok)["no trigger other than q"] == 1
    tok[2, int(laws.filler_mask(b)[2].nonzero()[0])] = 0  # an extra q
    assert broken(tokens=tok)["q only at the pair start(s) and z_H"] == 1
    tok = b.tokens.clone()
    tok[3, int(laws.filler_mask(b)[3].nonzero()[0])] = task.noise_token  # a stray τ
    assert broken(tokens=tok)["tau only right after q in the (q, tau) pair"] == 1
    assert broken(outputs=b.outputs + 20)["y in its output set"] == 64
    tgt = b.targets.clone()
    tgt[:5] = 30
    assert broken(targets=tgt)["target is y (noiseless) or y/tau (noisy)"] == 5
    assert broken(noise_pos=b.pair_pos)["pairs do not overlap"] == 64
    tok = b.tokens.clone()
    tok[4, -1] = 2
    assert broken(tokens=tok)["last token is an active trigger"] == 1


def test_token_usage_ood_outputs_are_filler_but_never_outputs() -> None:
    task = RecallTask()
    b = task.sample(512, seed=10)
    u = laws.token_usage(task, b)
    ood = task.ood_outputs.numpy()
    assert (u.as_filler[ood] > 0).all()
    assert (u.as_output[ood] == 0).all() and (u.as_target[ood] == 0).all()
    assert u.as_filler.sum() == 512 * (256 - 3)
    assert u.as_output.sum() == 512 and u.as_target.sum() == 512
    assert (u.seqs_with_filler <= 512).all()
    assert (u.seqs_with_filler[task.filler.numpy()] > 450).all()
    assert u.seqs_with_filler[task.noise_token] == 0 and u.seqs_with_filler[:5].sum() == 0
    # one sequence: seqs_with_filler is the indicator of its filler tokens
    one = laws.token_usage(task, b[0])
    fill = b.tokens[0][laws.filler_mask(b[0])[0]]
    assert set(np.flatnonzero(one.seqs_with_filler).tolist()) == set(fill.tolist())


# ------------------------------------------------------------------------ figures
def test_figures_of_chapter_1() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from icl.viz import task as vt

    task = RecallTask(seq_len=32, alpha=0.5)
    b = task.sample(200, seed=0)
    codes = vt.role_codes(task, b)
    assert (codes[:, -1] == 1).all()
    assert (codes[torch.arange(200), b.pair_pos + 1] == 2).all()
    assert (codes[torch.arange(200), b.noise_pos + 1] == 3).all()
    assert int((codes == 0).sum()) == int(laws.filler_mask(b).sum())
    figs = [
        vt.draw_sequences(task, b, n=4),
        vt.draw_sequences(task, b, n=3, columns=slice(-10, None)),
        vt.draw_sequence_panels([("a", task, b), ("b", task, b[:2])], n=3),
        vt.plot_laws(laws.position_law(task, b), laws.filler_law(task, b),
                     [laws.target_law(task, b)]),
        vt.plot_categorical_law(laws.noise_position_law(task, b)),
        vt.plot_token_usage(task, laws.token_usage(task, b)),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    md = vt.roles_markdown(task)
    assert md.count("\n") >= 6 and "59" in md and "0 … 4" in md
    with pytest.raises(ValueError, match="n must"):
        vt.draw_sequences(task, b, n=0)
    with pytest.raises(ValueError, match="columns"):
        vt.draw_sequences(task, b, columns=slice(5, 5))
    plt.close("all")
