"""Package pieces behind the checks of chapters 2–5 (issue 14): the bag-of-context
predictor, the paper's V = I softmax model, per-coordinate normalisation, networks
trained on m sequences and the role-split sweep."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import icl
from icl import finite, montecarlo
from icl.validate import InvalidTypeError

SMALL = icl.RecallTask(seq_len=32, alpha=0.2)


# ---------------------------------------------------------------- bag of context (chapter 2)
@pytest.mark.parametrize("alpha", [0.0, 0.2])
@pytest.mark.parametrize("ood", [False, True])
def test_bag_of_context_risk_matches_monte_carlo(alpha, ood):
    task = icl.RecallTask(vocab_size=20, seq_len=16, n_triggers=2, n_outputs=3, alpha=alpha)
    mean, se = montecarlo.mc_bag_of_context_risk(task, 3000, seed=3, ood=ood)
    assert montecarlo.agrees(mean, se, montecarlo.bag_of_context_risk(task), k=4)


def test_bag_of_context_risk_sees_n_and_h_but_not_o():
    base = icl.RecallTask(alpha=0.2, seq_len=64)
    r = montecarlo.bag_of_context_risk(base)
    assert r > icl.bayes_risk(0.2) + 1.0
    assert montecarlo.bag_of_context_risk(base.replace(seq_len=128)) > r
    assert montecarlo.bag_of_context_risk(base.replace(vocab_size=200)) > r  # fewer repeats of y
    assert montecarlo.bag_of_context_risk(base.replace(n_outputs=8)) == pytest.approx(r)


def test_bag_of_context_log_probs_is_a_law():
    task = SMALL
    b = task.sample(50, seed=0)
    p = montecarlo.bag_of_context_log_probs(task, b.tokens).exp()
    assert torch.allclose(p.sum(1), torch.ones(50, dtype=torch.float64))
    assert torch.all(p[torch.arange(50), b.outputs] > 0)
    with pytest.raises(ValueError):
        montecarlo.mc_bag_of_context_risk(task, 1, seed=0)
    with pytest.raises(ValueError):
        montecarlo.bag_of_context_risk("task")


# ---------------------------------------------------------------- V = I softmax (chapter 5)
def test_reparam_softmax_unscaled_is_the_paper_model():
    task = SMALL
    net = icl.OneLayerTransformer(task, "softmax", "reparam", scaled=False, dtype=torch.float64)
    assert net.scaled is False
    assert icl.OneLayerTransformer(task, "softmax", "reparam").scaled is True
    assert icl.OneLayerTransformer(task, "linear", "reparam").scaled is False
    with torch.no_grad():
        net.Lambda.fill_(3.0)
    _, V, _ = net.matrices()
    assert torch.equal(V, torch.eye(net.d_model, dtype=torch.float64))
    with pytest.raises(ValueError, match="scaled"):
        icl.OneLayerTransformer(task, "softmax", "origin", scaled=False)
    with pytest.raises(InvalidTypeError, match="scaled"):
        icl.OneLayerTransformer(task, "softmax", "reparam", scaled="no")


# ---------------------------------------------------------------- per-coordinate (chapter 4)
def test_per_coordinate_normalisation_moves_every_lambda_by_eta():
    task = icl.RecallTask(seq_len=32, alpha=0.0)
    net = icl.OneLayerTransformer(task, "linear", "reparam", dtype=torch.float64)
    icl.train(net, task, 20, 0.1, batch_size=256, normalized="per_coordinate",
              eval_every=20, eval_size=16, ood=False, progress=False)
    assert torch.allclose(net.lambdas.detach(), torch.full((5,), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="normalized"):
        icl.train(net, task, 1, 0.1, normalized="l3", progress=False)
    with pytest.raises(ValueError, match="normalized"):
        icl.train(net, task, 1, 0.1, normalized=1, progress=False)


# ---------------------------------------------------------------- networks on m sequences
def test_train_on_sample_and_sweeps_shapes():
    run = finite.train_on_sample(SMALL, 64, epochs=2, lr=0.1, eval_size=32)
    assert run.m == 64 and 0 <= run.alpha_hat <= 1 and len(run.history.train_loss) == 2
    assert run.kl == pytest.approx(icl.kl_bernoulli(0.2, run.alpha_hat))
    out = finite.network_finite_sweep(SMALL, [32, 64], [0, 1], epochs=1, eval_size=16)
    assert out["excess"].shape == (2, 2) and np.all(np.isfinite(out["excess"]))
    roles_out = finite.role_split_sweep([0.2, 0.5], [0], m=64, epochs=1, seq_len=32,
                                        eval_size=16)
    assert roles_out["holds"].shape == (2, 1) and set(np.unique(roles_out["holds"])) <= {0, 1}
    assert "via_attention_tau" in roles_out


def test_finite_sample_inputs_are_validated():
    with pytest.raises(ValueError, match="m"):
        finite.train_on_sample(SMALL, 1)
    with pytest.raises(ValueError, match="alpha"):
        finite.train_on_sample(SMALL.replace(alpha=0.0), 64)
    with pytest.raises(ValueError, match="alphas"):
        finite.role_split_sweep([0.0], [0])
    with pytest.raises(ValueError, match="seeds"):
        finite.role_split_sweep([0.2], [])
    with pytest.raises(ValueError, match="lr"):
        finite.train_on_sample(SMALL, 64, lr=-1.0)
    assert math.isfinite(finite.train_on_sample(SMALL, 64, epochs=1, eval_size=8).kl)
