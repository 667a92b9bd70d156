"""Property-based tests (hypothesis): the Bayes law and KL, the closed forms, the sampler.

Each property is checked on random inputs (random ``α``, ``α̂``, ``Λ`` and random task
sizes); the example counts are small so that the file runs in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import icl
from icl import closed_forms, laws, losses

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])

probs = st.floats(min_value=1e-6, max_value=1 - 1e-6)
alphas = st.floats(min_value=0.01, max_value=0.9)


@st.composite
def tasks(draw, noisy=None):
    nq = draw(st.integers(1, 4))
    no = draw(st.integers(1, 4))
    n_ood = draw(st.integers(1, 6))
    N = nq + no + n_ood + 1
    H = draw(st.integers(8, 24))
    is_noisy = draw(st.booleans()) if noisy is None else noisy
    a = draw(alphas) if is_noisy else 0.0
    return icl.RecallTask(vocab_size=N, n_triggers=nq, n_outputs=no, seq_len=H, alpha=a)


# ------------------------------------------------------------------ Bayes law and KL
@FAST
@given(probs, probs)
def test_kl_is_non_negative_and_zero_iff_equal(a, b):
    kl = icl.kl_bernoulli(a, b)
    assert kl >= 0.0
    assert icl.kl_bernoulli(a, a) == 0.0
    if abs(a - b) > 1e-3:
        assert kl > 0.0


@FAST
@given(probs, probs)
def test_kl_is_not_symmetric_except_on_the_two_lines(a, b):
    """``KL(a‖b) = KL(b‖a)`` only where ``a = b`` or ``a + b = 1`` (the book's [D]:
    the difference is ``(a+b) log(a/b) + (2-a-b) log((1-a)/(1-b))``, which is odd about
    both lines and has no other zero)."""
    assume(abs(a - b) > 0.05 and abs(a + b - 1) > 0.05)
    assert abs(icl.kl_bernoulli(a, b) - icl.kl_bernoulli(b, a)) > 1e-6
    kl_ab, kl_ba = icl.kl_bernoulli(a, 1 - a), icl.kl_bernoulli(1 - a, a)
    assert abs(kl_ab - kl_ba) <= 1e-9 * kl_ab  # 1 - (1 - a) is a only to rounding


@FAST
@given(probs)
def test_binary_entropy_bounds_and_symmetry(a):
    h = icl.binary_entropy(a)
    assert 0.0 < h <= math.log(2) + 1e-15
    assert abs(h - icl.binary_entropy(1 - a)) < 1e-12


@FAST
@given(alphas, st.lists(st.floats(-30, 30), min_size=6, max_size=6), st.integers(0, 4))
def test_bayes_law_is_optimal_and_excess_is_kl_plus_rest(a, logits, y):
    """Expected loss of any logits ``≥ H_b(α)``, with equality at the Bayes law; the
    stable excess agrees with ``loss - H_b(α)``."""
    task = icl.RecallTask(vocab_size=6, n_triggers=1, n_outputs=1, seq_len=8, alpha=a)
    y = torch.tensor([min(y, 4)])
    xi = torch.tensor([logits], dtype=torch.float64)
    loss = float(losses.expected_losses(task, xi, y))
    excess = float(losses.expected_excess(task, xi, y))
    assert loss >= icl.bayes_risk(a) - 1e-12
    assert excess >= -1e-12
    assert abs(excess - (loss - icl.bayes_risk(a))) < 1e-9 * max(1.0, loss)
    bayes = torch.full((1, 6), -math.inf, dtype=torch.float64)
    bayes[0, y] = math.log1p(-a)
    bayes[0, task.noise_token] = math.log(a)
    bayes = bayes.clamp(min=-800.0)
    assert abs(float(losses.expected_losses(task, bayes, y)) - icl.bayes_risk(a)) < 1e-12


@FAST
@given(alphas, st.floats(0.0, 2000.0))
def test_expected_excess_is_finite_for_any_logit_gap(a, gap):
    task = icl.RecallTask(vocab_size=8, n_triggers=1, n_outputs=2, seq_len=8, alpha=a)
    xi = torch.full((1, 8), gap, dtype=torch.float64)
    xi[0, 1] = 0.0
    got = float(losses.expected_excess(task, xi, torch.tensor([1])))
    want = float(losses.expected_losses(task, xi, torch.tensor([1]))) - icl.bayes_risk(a)
    assert math.isfinite(got) and abs(got - want) <= 1e-9 * max(1.0, abs(want))


# ------------------------------------------------------------------ closed forms
@FAST
@given(tasks(), st.lists(st.floats(-50, 200), min_size=2, max_size=6))
def test_closed_form_is_decreasing_in_lambda(task, lams):
    lam = np.sort(np.array(lams))
    grid = lam if task.noisy else lam[:, None]
    loss = np.asarray(icl.closed_form_loss(task, grid))
    assert np.all(np.isfinite(loss))
    assert np.all(np.diff(loss) <= 1e-12)


@FAST
@given(tasks())
def test_closed_form_limits_at_zero_and_infinity(task):
    N, a = task.vocab_size, task.alpha
    hb = icl.bayes_risk(a)
    at_zero = hb + math.log1p(task.rate_constant)
    assert abs(icl.closed_form_loss(task, 0.0) - at_zero) < 1e-12
    assert abs(icl.closed_form_loss(task, 1e4) - hb) < 1e-12
    assert icl.closed_form_excess(task, 1e4) == 0.0 or icl.closed_form_excess(task, 1e4) < 1e-300
    # large negative Λ: the loss grows like -Λ + log(N - 2) (noisy) / log(N - 1)
    big = icl.closed_form_loss(task, -1000.0)
    c = N - 2 if task.noisy else N - 1
    assert abs(big - (1000.0 + math.log(c) - a * task.gamma)) < 1e-9 * 1000


@SLOW
@given(tasks(), st.floats(0.0, 12.0))
def test_closed_form_agrees_with_float64_brute_force(task, lam):
    """The closed form against the float64 network built from the construction, sequence
    by sequence (linear attention; every context has the same loss)."""
    batch = task.sample(16, seed=0)
    net = icl.construct_model(task, lam, d_model=2 * task.vocab_size)
    with torch.no_grad():
        xi = net(batch.tokens, path="dense").xi
    per = losses.expected_losses(task, xi, batch.outputs).numpy()
    assert np.allclose(per, icl.closed_form_loss(task, lam), rtol=1e-10, atol=1e-12)
    xi_cf = closed_forms.closed_form_logits(task, batch, lam)
    assert torch.allclose(xi, xi_cf, atol=1e-10)


# ------------------------------------------------------------------ the sampler
@SLOW
@given(tasks(), st.integers(1, 64), st.integers(0, 2**31), st.booleans())
def test_sampler_invariants_on_random_sizes(task, B, seed, ood):
    batch = task.sample(B, seed=seed, ood=ood)
    H, N = task.seq_len, task.vocab_size
    assert batch.tokens.shape == (B, H)
    assert int(batch.tokens.min()) >= 0 and int(batch.tokens.max()) < N
    assert laws.check_structure(task, batch, ood=ood) == dict.fromkeys(
        laws.check_structure(task, batch, ood=ood), 0
    )
    pool = task.ood_outputs if ood else task.outputs
    assert set(batch.outputs.tolist()) <= set(pool.tolist())
    rows = torch.arange(B)
    assert torch.equal(batch.tokens[rows, batch.pair_pos], batch.triggers)
    assert torch.equal(batch.tokens[rows, batch.pair_pos + 1], batch.outputs)
    ok = (batch.targets == batch.outputs) | (batch.targets == task.noise_token)
    assert bool(ok.all())
    if not task.noisy:
        assert torch.equal(batch.targets, batch.outputs)
    # the same seed gives the same batch
    assert torch.equal(task.sample(B, seed=seed, ood=ood).tokens, batch.tokens)
