"""The general task of the paper's final version (icl.general_task): sampler, Bayes risk,
the construction's limit and the best count-linear logit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import icl
from icl import general_task as gt

BASE = icl.RecallTask(vocab_size=20, n_triggers=4, n_outputs=3, seq_len=32, alpha=0.2)


@pytest.mark.parametrize("prior", [None, (2.0, 3.0)])
def test_sampler_respects_the_rules(prior):
    task = gt.GeneralTask(BASE, max_occurrences=3, n_distractors=2, prior=prior)
    b = task.sample(500, seed=0)
    tok, y, tau = b.batch.tokens, b.batch.outputs, BASE.noise_token
    q = tok[:, -1]
    assert bool((q == 0).all())  # noisy: the trigger is 0
    prev_q = tok[:, :-2] == q[:, None]
    fol = tok[:, 1:-1]
    assert bool(((fol == y[:, None]) | (fol == tau) | ~prev_q).all())  # (q, x): x ∈ {y, τ}
    assert bool(((prev_q & (fol == y[:, None])).sum(1) == b.n_y).all())
    assert bool(((prev_q & (fol == tau)).sum(1) == b.n_tau).all())
    assert int(b.n_y.min()) >= 1 and int((b.n_y + b.n_tau).max()) <= 3
    assert bool((tok[:, -2] != q).all())
    # two distinct distractor triggers, never q, each once
    trig = (tok[:, :-1, None] == torch.arange(1, 4)).sum(1)  # [B, 3] counts of triggers 1..3
    assert bool((trig.sum(1) == 2).all()) and int(trig.max()) == 1
    assert bool((tok[torch.arange(500), b.batch.pair_pos + 1] == y).all())
    if prior is None:
        assert bool((b.theta == 0.2).all())
    same = task.sample(500, seed=0)
    assert torch.equal(same.batch.tokens, tok)


def test_noiseless_general_task_uses_every_trigger():
    task = gt.GeneralTask(BASE.replace(alpha=0.0), max_occurrences=2, n_distractors=1)
    b = task.sample(400, seed=1)
    assert len(set(b.batch.triggers.tolist())) == 4
    assert bool((b.n_tau == 0).all()) and bool((b.batch.targets == b.batch.outputs).all())
    assert gt.bayes_risk_general(task) == 0.0


def test_count_law_matches_the_sampler():
    task = gt.GeneralTask(BASE, max_occurrences=3, n_distractors=0, prior=(1.0, 2.0))
    ny, nt, prob = gt.count_distribution(task)
    assert math.isclose(prob.sum(), 1.0) and bool((ny >= 1).all())
    b = task.sample(20000, seed=2)
    for i in range(len(prob)):
        freq = float(((b.n_y == int(ny[i])) & (b.n_tau == int(nt[i]))).double().mean())
        se = math.sqrt(prob[i] * (1 - prob[i]) / 20000)
        assert abs(freq - prob[i]) < 5 * se


def test_posterior_and_bayes_risk():
    fixed = gt.GeneralTask(BASE)
    assert math.isclose(gt.bayes_risk_general(fixed), icl.bayes_risk(0.2), rel_tol=1e-12)
    assert np.allclose(gt.posterior_noise(fixed, [1, 2], [0, 3]), 0.2)
    task = gt.GeneralTask(BASE, prior=(2.0, 8.0))
    assert np.allclose(gt.posterior_noise(task, [1, 3], [2, 0]), [4 / 13, 2 / 13])
    d = gt.posterior_predictive_expr()
    assert (d["simplified"] - d["expected"]).simplify() == 0


def test_construction_limit_and_count_logit():
    task = gt.GeneralTask(BASE, prior=(2.0, 8.0))
    ny, nt, prob = gt.count_distribution(task)
    mean = float(np.sum(prob * gt.posterior_noise(task, ny, nt)))
    best_const = gt.construction_limit_loss(task, math.log(mean / (1 - mean)))
    bayes = gt.bayes_risk_general(task)
    assert best_const > bayes
    for g in (-2.0, -1.0, 0.0):  # σ(γ) = E[p*] is the best constant
        assert gt.construction_limit_loss(task, g) >= best_const - 1e-12
    beta, loss = gt.best_count_logit(task)
    assert bayes <= loss <= best_const and beta[1] > 0 > beta[2]
    fixed = gt.GeneralTask(BASE)
    assert math.isclose(gt.construction_limit_loss(fixed, BASE.gamma), icl.bayes_risk(0.2))


def test_general_task_bad_inputs():
    with pytest.raises(ValueError, match="max_occurrences"):
        gt.GeneralTask(BASE, max_occurrences=0)
    with pytest.raises(ValueError, match="n_distractors"):
        gt.GeneralTask(BASE, n_distractors=4)
    with pytest.raises(ValueError, match="prior"):
        gt.GeneralTask(BASE, prior=(1.0,))
    with pytest.raises(ValueError, match="prior"):
        gt.GeneralTask(BASE, prior=(0.0, 1.0))
    with pytest.raises(ValueError, match="seq_len"):
        gt.GeneralTask(BASE.replace(seq_len=8), max_occurrences=4, n_distractors=2)
    with pytest.raises(ValueError, match="task"):
        gt.GeneralTask("task")
    task = gt.GeneralTask(BASE)
    with pytest.raises(ValueError, match="batch_size"):
        task.sample(0)
    with pytest.raises(TypeError, match="task"):
        gt.posterior_noise("task", 1, 0)
    with pytest.raises(ValueError, match="counts"):
        gt.posterior_noise(task, -1, 0)


def test_excess_per_sequence():
    task = gt.GeneralTask(BASE, prior=(2.0, 8.0))
    b = task.sample(64, seed=3)
    p = torch.from_numpy(gt.posterior_noise(task, b.n_y.numpy(), b.n_tau.numpy()))
    # the Bayes-optimal logits have zero excess
    xi = torch.full((64, BASE.vocab_size), -60.0, dtype=torch.float64)
    xi[torch.arange(64), b.batch.outputs] = torch.log(1 - p)
    xi[:, BASE.noise_token] = torch.log(p)
    assert float(gt.excess_per_sequence(task, xi, b).abs().max()) < 1e-12
    assert float(gt.excess_per_sequence(task, torch.zeros(64, BASE.vocab_size), b).min()) > 0
    with pytest.raises(ValueError, match="xi"):
        gt.excess_per_sequence(task, torch.zeros(3, 3), b)
    with pytest.raises(TypeError, match="batch"):
        gt.excess_per_sequence(task, xi, b.batch)
