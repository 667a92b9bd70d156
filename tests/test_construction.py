"""The construction of spec section 4 against its closed forms (icl.construct, chapter 3).

Closed-form logits and losses (the book's derivation) must equal what the network
computes, for linear and ReLU attention, noisy and noiseless tasks, κ = 1 and the κ = 0
variant, in float64; the OOD loss must equal the in-distribution loss exactly.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import sympy as sp
import torch

import icl
from icl.closed_forms import (
    closed_form_excess,
    closed_form_logits,
    closed_form_loss,
    kappa0_stalled_loss,
)
from icl.construction import construct
from icl.losses import expected_excess, expected_losses
from icl.softmax_construction import softmax_unscaled_floor
from icl.symbolic.construction import (
    GAMMA,
    LAMBDA,
    TINY,
    construction_derivation,
    kappa0_derivation,
    loss_derivation,
)

LAMBDAS = [0.0, 0.5, 2.0, 7.5, 15.0]
TASKS = {
    "noiseless": icl.RecallTask(alpha=0.0, seq_len=64),
    "noisy": icl.RecallTask(alpha=0.3, seq_len=64),
}


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def _batch(task, n=128, seed=3, ood=False):
    return task.sample(n, seed=seed, ood=ood)


@pytest.mark.parametrize("attention", ["linear", "relu"])
@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("kappa", [0, 1])
@pytest.mark.parametrize("Lambda", LAMBDAS)
def test_logits_match_network(attention, name, kappa, Lambda):
    task = TASKS[name]
    batch = _batch(task)
    net = icl.OneLayerTransformer.from_construction(
        construct(task, Lambda, attention=attention, kappa=kappa)
    )
    out = net(batch.tokens)
    cf = closed_form_logits(task, batch, Lambda)
    assert out.xi.dtype == torch.float64
    assert torch.allclose(out.xi, cf, atol=1e-10, rtol=0)
    # the dense reference path agrees too
    dense = net(batch.tokens, path="dense")
    assert torch.allclose(dense.xi, cf, atol=1e-10, rtol=0)


@pytest.mark.parametrize("attention", ["linear", "relu"])
@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("kappa", [0, 1])
def test_loss_matches_network(attention, name, kappa):
    task = TASKS[name]
    batch = _batch(task, n=256)
    for Lambda in LAMBDAS:
        net = icl.OneLayerTransformer.from_construction(
            construct(task, Lambda, attention=attention, kappa=kappa)
        )
        xi = net(batch.tokens).xi
        per_seq = expected_losses(task, xi, batch.outputs)
        # every context has the same expected loss: no Monte-Carlo noise at all
        assert float(per_seq.max() - per_seq.min()) < 1e-12
        assert abs(float(per_seq.mean()) - closed_form_loss(task, Lambda)) < 1e-10
        # and the sampled cross-entropy is an unbiased estimate of it
        ce = torch.nn.functional.cross_entropy(xi, batch.targets)
        tol = (
            1e-10
            if not task.noisy
            else 5
            * math.sqrt(task.alpha * (1 - task.alpha) / 256)
            * (abs(math.log(task.alpha / (1 - task.alpha))) + 1)
        )
        assert abs(float(ce) - closed_form_loss(task, Lambda)) < tol


def test_noiseless_unequal_lambdas():
    task = TASKS["noiseless"]
    lambdas = [0.5, 1.0, 2.0, 4.0, 8.0]
    batch = _batch(task, n=512)
    net = icl.OneLayerTransformer.from_construction(
        construct(task, lambdas=lambdas, attention="relu")
    )
    xi = net(batch.tokens).xi
    assert torch.allclose(xi, closed_form_logits(task, batch, lambdas), atol=1e-10)
    per = np.log1p((task.vocab_size - 1) * np.exp(-np.array(lambdas)))
    assert abs(closed_form_loss(task, lambdas) - per.mean()) < 1e-15
    # the per-trigger losses of the network match per[q]
    losses = expected_losses(task, xi, batch.outputs).numpy()
    assert np.allclose(losses, per[batch.triggers.numpy()], atol=1e-12)


def test_excess_is_positive_decreasing_and_exponential():
    for task in TASKS.values():
        lam = np.linspace(0, 20, 41)  # closed_form_excess subtracts H_b: keep excess >> 1e-16
        # noiseless: λ carries the triggers on its last axis (shared λ here)
        ex = np.asarray(closed_form_excess(task, lam if task.noisy else lam[:, None]))
        assert np.all(ex > 0) and np.all(np.diff(ex) < 0)
        c = (task.vocab_size - 2) * (1 - task.alpha) if task.noisy else task.vocab_size - 1
        assert abs(ex[-1] * math.exp(20) / c - 1) < 1e-6


def test_network_excess_slope_is_minus_one():
    task = TASKS["noisy"]
    batch = _batch(task, n=16)
    lams = np.array([12.0, 16.0, 20.0])
    ex = []
    for lam in lams:
        xi = icl.OneLayerTransformer.from_construction(construct(task, lam))(batch.tokens).xi
        ex.append(float(expected_excess(task, xi, batch.outputs).mean()))
    slope = np.polyfit(lams, np.log(ex), 1)[0]
    assert abs(slope + 1) < 1e-3


@pytest.mark.parametrize("attention", ["linear", "relu"])
@pytest.mark.parametrize("name", list(TASKS))
def test_ood_loss_equals_in_distribution(attention, name):
    task = TASKS[name]
    b_id = _batch(task, n=256, seed=11)
    b_ood = _batch(task, n=256, seed=11, ood=True)
    assert not set(b_ood.outputs.tolist()) & set(task.outputs.tolist())
    for Lambda in (0.5, 4.0, 12.0):
        net = icl.OneLayerTransformer.from_construction(
            construct(task, Lambda, attention=attention)
        )
        l_id = expected_losses(task, net(b_id.tokens).xi, b_id.outputs)
        l_ood = expected_losses(task, net(b_ood.tokens).xi, b_ood.outputs)
        assert torch.allclose(l_id, l_ood, atol=1e-12, rtol=0)
        ce_id = torch.nn.functional.cross_entropy(net(b_id.tokens).xi, b_id.targets)
        ce_ood = torch.nn.functional.cross_entropy(net(b_ood.tokens).xi, b_ood.targets)
        assert abs(float(ce_id - ce_ood)) < 1e-12


def test_kappa0_with_kappa1_F_stalls():
    task = TASKS["noisy"]
    batch = _batch(task)
    for Lambda in (1.0, 5.0, 20.0):
        # the κ = 0 model carrying the κ = 1 matrix F
        net = icl.OneLayerTransformer.from_construction(
            dataclasses.replace(construct(task, Lambda, kappa=1), kappa=0)
        )
        assert net.kappa == 0
        xi = net(batch.tokens).xi
        g = math.log(task.alpha / (1 - task.alpha))
        assert torch.allclose(xi[:, task.noise_token], torch.full((len(batch),), g, dtype=xi.dtype))
        loss = float(expected_losses(task, xi, batch.outputs).mean())
        assert abs(loss - kappa0_stalled_loss(task, Lambda)) < 1e-10
    # it grows like αΛ
    big = kappa0_stalled_loss(task, np.array([100.0, 200.0]))
    assert abs((big[1] - big[0]) / 100 - task.alpha) < 1e-12


def test_unscaled_floor_is_linear_formula_at_one():
    for task in TASKS.values():
        assert softmax_unscaled_floor(task) == closed_form_loss(task, 1.0)
        assert softmax_unscaled_floor(task) > icl.bayes_risk(task.alpha)


# ---------------------------------------------------------------- SymPy derivations


@pytest.mark.parametrize("attention", ["linear", "relu"])
@pytest.mark.parametrize("kappa", [0, 1])
def test_symbolic_logits_of_tiny_example(attention, kappa):
    d = construction_derivation(True, attention, kappa)
    xi = d["xi"]
    assert list(xi) == [0, LAMBDA, 0, 0, GAMMA + LAMBDA]
    assert list(d["xi_A"]) == [0, LAMBDA, 0, 0, 0]
    s = list(d["scores"])
    assert s.count(LAMBDA) == 1 and s[TINY["noisy_tokens"].index(4)] == 0


@pytest.mark.parametrize("attention", ["linear", "relu", "softmax"])
@pytest.mark.parametrize("noisy", [True, False])
def test_symbolic_tiny_example_matches_network(attention, noisy):
    tokens = TINY["noisy_tokens"] if noisy else TINY["noiseless_tokens"]
    task = icl.RecallTask(
        vocab_size=5, n_triggers=1, n_outputs=1, seq_len=8, alpha=0.2 if noisy else 0.0
    )
    lam, gam = 1.7, math.log(0.2 / 0.8)
    d = construction_derivation(noisy, attention, 1)
    xi_sym = d["xi"].subs({LAMBDA: lam, GAMMA: gam})
    xi_sym = torch.tensor([float(v) for v in xi_sym], dtype=torch.float64)
    net = icl.OneLayerTransformer.from_construction(
        construct(task, lam, attention=attention, d_model=10)
    )
    xi_net = net(torch.tensor([tokens])).xi[0]
    assert torch.allclose(xi_sym, xi_net, atol=1e-12)


def test_symbolic_stalled_and_role_table():
    d = construction_derivation(True, "linear", 0, None, True)
    assert list(d["xi"]) == [0, LAMBDA, 0, 0, GAMMA]
    table = d["role_scores"]  # row z_{h-1} in (q, y, f, τ), column z_h
    assert table[0, 1] == LAMBDA and table[0, 3] == 0 and table[1, 3] == -LAMBDA
    with pytest.raises(ValueError, match="attention"):
        construction_derivation(True, "gelu", 1)
    with pytest.raises(ValueError, match="kappa"):
        construction_derivation(True, "linear", 2)
    with pytest.raises(ValueError, match="stalled"):
        construction_derivation(True, "linear", 1, None, True)


def test_symbolic_loss_identities():
    L = loss_derivation()
    assert L["proved_simplified"] and L["proved_optimal"] and L["proved_noiseless"]
    a, N = sp.Symbol("alpha", positive=True), sp.Symbol("N", positive=True, integer=True)
    assert sp.simplify(L["rate_constant"] - (N - 2) * (1 - a)) == 0
    assert L["slope"] == -1 and sp.simplify(L["noiseless_rate_constant"] - (N - 1)) == 0
    # numerically equal to icl.construction.closed_form_loss
    task = TASKS["noisy"]
    f = sp.lambdify((LAMBDA, a, N), L["loss_optimal"])
    for lam in (0.3, 3.0, 9.0):
        assert abs(f(lam, task.alpha, task.vocab_size) - closed_form_loss(task, lam)) < 1e-12


def test_symbolic_kappa0():
    K = kappa0_derivation()
    assert K["proved_min"] and K["proved_star"] and K["p_tau_limit"] == 0
    assert K["growth"] == sp.Symbol("alpha", positive=True)
