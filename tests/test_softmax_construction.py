"""The book's softmax analysis (icl.softmax) against the network and against itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import icl
from icl.closed_forms import closed_form_loss, kappa0_stalled_loss, kappa0_stalled_minimum
from icl.construction import construct
from icl.losses import expected_excess, expected_losses
from icl.softmax_construction import (
    sequence_counts,
    softmax_excess,
    softmax_excess_bounds,
    softmax_excess_limit,
    softmax_logits,
    softmax_loss,
    softmax_unscaled_floor,
    softmax_weights,
    unscaled_logit_bound,
    unscaled_lower_bound,
)

NOISY = icl.RecallTask(alpha=0.3, seq_len=64)
NOISELESS = icl.RecallTask(alpha=0.0, seq_len=64)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.mark.parametrize("task", [NOISY, NOISELESS], ids=["noisy", "noiseless"])
@pytest.mark.parametrize("scaled", [True, False])
@pytest.mark.parametrize("kappa", [0, 1])
@pytest.mark.parametrize("Lambda", [-1.5, 0.0, 0.8, 4.0, 12.0, 30.0])
@pytest.mark.parametrize("ood", [False, True])
def test_closed_form_matches_network(task, scaled, kappa, Lambda, ood):
    batch = task.sample(96, seed=5, ood=ood)
    net = icl.OneLayerTransformer.from_construction(
        construct(task, Lambda, attention="softmax", kappa=kappa, scaled=scaled)
    )
    out = net(batch.tokens)
    cf = softmax_logits(task, batch.tokens, Lambda, scaled=scaled, kappa=kappa)
    for got, want in zip(out, cf, strict=True):
        assert torch.allclose(got, want, atol=1e-10, rtol=0)


def test_closed_form_noiseless_vector_lambdas():
    lambdas = [0.5, 1.0, 3.0, 6.0, 9.0]
    batch = NOISELESS.sample(128, seed=2)
    net = icl.OneLayerTransformer.from_construction(
        construct(NOISELESS, lambdas=lambdas, attention="softmax")
    )
    cf = softmax_logits(NOISELESS, batch.tokens, lambdas)
    assert torch.allclose(net(batch.tokens).xi, cf.xi, atol=1e-10)


def test_weights():
    a, e = softmax_weights(torch.tensor([0.0, 3.0, 800.0]), 10)
    assert torch.allclose(a + 9 * e, torch.ones(3, dtype=torch.float64))
    assert float(a[0]) == pytest.approx(0.1) and float(a[2]) == 1.0
    assert float(e[1]) == pytest.approx(1 / (math.exp(3) + 9))


def test_excess_decreases_and_rate():
    for task in (NOISY, NOISELESS):
        lams = np.array([4.0, 8.0, 12.0, 16.0, 20.0, 26.0])
        ex = softmax_excess(task, lams, n_samples=256, seed=1)
        loss = softmax_loss(task, lams[:3], n_samples=256, seed=1)
        assert np.allclose(loss - icl.bayes_risk(task.alpha), ex[:3], atol=1e-13)
        assert np.all(ex > 0) and np.all(np.diff(ex) < 0)
        ratio = ex * np.exp(lams) / softmax_excess_limit(task)
        assert abs(ratio[-1] - 1) < 1e-6
        assert np.all(np.diff(np.abs(ratio[2:] - 1)) < 0)  # the ratio's error shrinks
        lo, up = softmax_excess_bounds(task, lams)
        assert np.all(lo <= ex) and np.all(ex <= up)
        assert abs(lo[-1] * math.exp(26) / softmax_excess_limit(task) - 1) < 1e-6
        assert abs(up[-1] * math.exp(26) / softmax_excess_limit(task) - 1) < 1e-6


def test_bounds_hold_per_sequence():
    task = NOISY
    batch = task.sample(256, seed=9)
    for lam in (0.5, 3.0, 9.0):
        xi = softmax_logits(task, batch.tokens, lam).xi
        ex = expected_excess(task, xi, batch.outputs)
        lo, up = softmax_excess_bounds(task, lam)
        assert float(ex.min()) >= lo and float(ex.max()) <= up


def test_expected_excess_is_loss_minus_bayes():
    task = NOISY
    g = torch.Generator().manual_seed(0)
    xi = torch.randn(50, task.vocab_size, generator=g, dtype=torch.float64) * 3
    y = torch.randint(5, 9, (50,), generator=g)
    a = expected_excess(task, xi, y)
    b = expected_losses(task, xi, y) - icl.bayes_risk(task.alpha)
    assert torch.allclose(a, b, atol=1e-12)


def test_unscaled_stays_above_floor_and_approaches_it():
    for task in (NOISY, NOISELESS):
        lams = np.array([2.0, 5.0, 10.0, 15.0, 25.0])
        loss = softmax_loss(task, lams, scaled=False, n_samples=256)
        floor = softmax_unscaled_floor(task)
        assert np.all(loss > floor) and np.all(np.diff(loss) < 0)
        assert loss[-1] - floor < 1e-8
        assert np.all(loss >= unscaled_lower_bound(task))
        assert unscaled_lower_bound(task) > icl.bayes_risk(task.alpha)
        assert unscaled_lower_bound(task) <= floor
        batch = task.sample(128, seed=4)
        bound = unscaled_logit_bound(task)
        for lam in (0.0, 10.0, 1e3):
            xi = softmax_logits(task, batch.tokens, lam, scaled=False).xi
            assert float(xi.abs().max()) <= bound


def test_kappa0_stalled_minimum():
    lam_star, lmin = kappa0_stalled_minimum(NOISY)
    grid = np.linspace(0, 20, 20001)
    vals = kappa0_stalled_loss(NOISY, grid)
    assert abs(grid[vals.argmin()] - lam_star) < 2e-3
    assert abs(vals.min() - lmin) < 1e-6
    assert kappa0_stalled_loss(NOISY, lam_star) == pytest.approx(lmin, abs=1e-12)
    assert lmin > icl.bayes_risk(NOISY.alpha)
    # at Λ = 0 both models have ξ_y = 0, ξ_τ = γ
    assert kappa0_stalled_loss(NOISY, 0.0) == pytest.approx(closed_form_loss(NOISY, 0.0))


def test_ood_relabelling_softmax():
    """Swapping y with an OOD token in the context swaps the two logits, nothing else."""
    task = NOISY
    batch = task.sample(64, seed=6)
    y_new = task.ood_outputs[torch.arange(64) % len(task.ood_outputs)]
    tok = batch.tokens.clone()
    is_y, is_new = tok == batch.outputs[:, None], tok == y_new[:, None]
    tok[is_y] = y_new[:, None].expand_as(tok)[is_y]
    tok[is_new] = batch.outputs[:, None].expand_as(tok)[is_new]
    net = icl.OneLayerTransformer.from_construction(construct(task, 7.0, attention="softmax"))
    xi, xi_sw = net(batch.tokens).xi, net(tok).xi
    rows = torch.arange(64)
    perm = xi_sw.clone()
    perm[rows, batch.outputs], perm[rows, y_new] = xi_sw[rows, y_new], xi_sw[rows, batch.outputs]
    assert torch.allclose(perm, xi, atol=1e-12)


def test_bad_inputs():
    batch = NOISY.sample(8, seed=0)
    with pytest.raises(ValueError, match="scalar Lambda"):
        softmax_logits(NOISY, batch.tokens, [1.0, 2.0])
    with pytest.raises(ValueError, match="lambdas of shape"):
        softmax_logits(NOISELESS, NOISELESS.sample(4).tokens, [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        softmax_logits(NOISY, batch.tokens, float("nan"))
    with pytest.raises(ValueError, match="scaled"):
        softmax_logits(NOISY, batch.tokens, 1.0, scaled=1)
    with pytest.raises(ValueError, match="kappa"):
        softmax_logits(NOISY, batch.tokens, 1.0, kappa=2)
    with pytest.raises(ValueError, match="Lambda must be finite and > 0"):
        softmax_excess_bounds(NOISY, 0.0)
    with pytest.raises(ValueError, match="seq_len"):
        softmax_weights(1.0, 1)
    with pytest.raises(ValueError, match="n_samples"):
        softmax_loss(NOISY, 1.0, n_samples=0)
    with pytest.raises(ValueError, match="noisy task"):
        kappa0_stalled_loss(NOISELESS, 1.0)
    with pytest.raises(ValueError, match="noisy task"):
        kappa0_stalled_minimum(NOISELESS)
    with pytest.raises(ValueError, match="xi must have shape"):
        expected_losses(NOISY, torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="outputs must have shape"):
        expected_excess(NOISY, torch.zeros(3, 60), torch.zeros(4))
    # sequences off the sampler's structure
    unplanted = icl.task.sample_sequences(NOISELESS, 16, seed=0, plant_prob=0.0)
    with pytest.raises(ValueError, match="no \\(q, y\\) pair"):
        sequence_counts(NOISELESS, unplanted.tokens)
    extra = batch.tokens.clone()
    extra[:, 0], extra[:, 1] = 0, 7  # a second (q, y') pair
    with pytest.raises(ValueError, match="exactly 2"):
        sequence_counts(NOISY, extra)


# ------------------------------------------------------------------ key-query gap bound
def _smallest_gap(task, W):
    """The smallest gap s_y - s_h over every (f, p, y) of the two position kinds, enumerated."""
    N, d = task.vocab_size, W.shape[0]
    E = torch.eye(d, dtype=torch.float64)
    q = int(task.active_triggers[0])
    filler = task.filler.tolist()
    gaps = []
    for f in filler:
        xH = E[q] + E[N + f]
        gaps += [float(xH @ W @ (E[N + q] - E[N + p])) for p in filler]
        if task.noisy:
            gaps += [float(xH @ W @ (E[y] - E[task.noise_token])) for y in task.outputs.tolist()]
    return min(gaps)


@pytest.mark.parametrize("alpha", [0.0, 0.2])
def test_keyquery_gap_bound_holds_for_every_W(alpha):
    from icl.softmax_construction import keyquery_gap_bound

    task = icl.RecallTask(vocab_size=14, n_triggers=2, n_outputs=3, seq_len=16, alpha=alpha)
    c = keyquery_gap_bound(task)
    n_f = task.filler.numel()
    if task.noisy:
        assert math.isclose(c, 0.5 * math.sqrt((1 + 1 / n_f) * (2 + 1 / n_f + 1 / 3)))
    else:
        assert math.isclose(c, 1 + 1 / n_f)
    g = torch.Generator().manual_seed(0)
    construction = construct(task, 1.0).W.double()
    for W in [construction] + [torch.randn(28, 28, generator=g, dtype=torch.float64)
                               for _ in range(20)]:
        assert _smallest_gap(task, W) <= c * float(W.norm()) + 1e-12
    # the construction's direction (noisy: E(q)(Ẽ(q) - E(τ))^T, norm √2) has gap 1: 1/√2 ≤ c
    if task.noisy:
        assert math.isclose(_smallest_gap(task, construction), 1.0)
    with pytest.raises(TypeError):
        keyquery_gap_bound("task")


def test_keyquery_gap_bound_default_value():
    from icl.softmax_construction import keyquery_gap_bound

    assert abs(keyquery_gap_bound(icl.RecallTask(alpha=0.2)) - 0.760) < 1e-3
