"""The book's theory of the training dynamics (icl/dynamics.py) against autograd and icl.train."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
import torch

import icl
from icl import dynamics as D

NOISY = icl.RecallTask(seq_len=48, alpha=0.3)
NOISELESS = icl.RecallTask(seq_len=48, alpha=0.0)


def _set_scale(model: icl.OneLayerTransformer, value) -> None:
    with torch.no_grad():
        scale = model.Lambda if model.task.noisy else model.lambdas
        scale.copy_(torch.as_tensor(value, dtype=torch.float64))


# ------------------------------------------------------------------ per-example gradient
@pytest.mark.parametrize("attention", ["linear", "relu"])
@pytest.mark.parametrize("Lambda", [0.0, 0.7, 3.0, 12.0])
def test_per_example_grad_matches_autograd_for_both_targets(attention, Lambda):
    model = icl.OneLayerTransformer(NOISY, attention, "reparam", dtype=torch.float64)
    _set_scale(model, Lambda)
    batch = NOISY.sample(6, seed=3)
    # force both targets to occur: the first three sequences predict y, the others τ
    targets = batch.outputs.clone()
    targets[3:] = NOISY.noise_token
    grads = D.autograd_per_example_grad(model, batch.tokens, targets)[:, 0].numpy()
    expected = D.per_example_grad(NOISY, Lambda)
    np.testing.assert_allclose(grads, expected, rtol=1e-10, atol=1e-14)
    assert expected < 0
    N = NOISY.vocab_size
    Z = math.exp(Lambda) * (1 + 0.3 / 0.7) + N - 2
    assert expected == pytest.approx(-(N - 2) / Z, rel=1e-12)


def test_per_example_grad_with_plug_in_gamma():
    a_hat = 0.41
    model = icl.OneLayerTransformer(
        NOISY, "linear", "reparam", alpha_hat=a_hat, dtype=torch.float64
    )
    _set_scale(model, 2.5)
    batch = NOISY.sample(5, seed=8)
    grads = D.autograd_per_example_grad(model, batch.tokens, batch.targets)[:, 0].numpy()
    np.testing.assert_allclose(grads, D.per_example_grad(NOISY, 2.5, alpha_hat=a_hat), rtol=1e-10)
    # another γ̂ gives another value: the test can tell them apart
    assert abs(D.per_example_grad(NOISY, 2.5) - grads[0]) > 1e-4


def test_per_example_grad_noiseless_touches_only_the_own_trigger():
    model = icl.OneLayerTransformer(NOISELESS, "linear", "reparam", dtype=torch.float64)
    lam = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    _set_scale(model, lam)
    batch = NOISELESS.sample(10, seed=1)
    grads = D.autograd_per_example_grad(model, batch.tokens, batch.targets).numpy()
    q = batch.triggers.numpy()
    expected = np.zeros_like(grads)
    expected[np.arange(10), q] = D.per_example_grad(NOISELESS, lam.numpy()[q])
    np.testing.assert_allclose(grads, expected, rtol=1e-10, atol=1e-14)


def test_sympy_derivative_is_common_to_both_targets():
    ex = D.per_example_derivative_expr()
    subs = {sp.Symbol("Lambda", real=True): 1.3, sp.Symbol("gamma", real=True): -0.8,
            sp.Symbol("N", positive=True): 60}
    for key in ("d_loss_y", "d_loss_tau", "common"):
        val = float(ex[key].subs(subs))
        assert val == pytest.approx(-58 / (math.exp(1.3) * (1 + math.exp(-0.8)) + 58), rel=1e-12)
    # and the losses themselves differ (by γ): only their derivatives coincide
    assert float((ex["loss_y"] - ex["loss_tau"]).subs(subs)) == pytest.approx(-0.8)


# ------------------------------------------------------------------ normalised GD
def test_normalised_sgd_gives_lambda_eta_t_with_stochastic_batches():
    """Small mini-batches (the mix of y/τ targets differs per step): still Λ_t = ηt."""
    model = icl.OneLayerTransformer(NOISY, "linear", "reparam")  # float32, Λ stays < 18
    hist = icl.train(model, NOISY, 60, 0.25, batch_size=8, seed=2, eval_every=5, ood=False)
    lam = hist.array("Lambda", "params")
    np.testing.assert_allclose(lam, D.normalized_gd_trajectory(NOISY, 0.25, hist.step_array),
                               atol=1e-5)
    np.testing.assert_allclose(hist.excess(), D.normalized_gd_excess(NOISY, 0.25, hist.step_array),
                               rtol=1e-4, atol=1e-9)
    assert np.all(D.excess_bound(NOISY, 0.25, hist.step_array) >= hist.excess() - 1e-9)


def test_float32_stall_is_where_training_stops():
    """In float32 the gradient vanishes at Λ* = log((N-2)(1-α)/ε): Λ stops at ⌈Λ*/η⌉ η, to
    within one step (the rounding of a mass between ε/2 and ε depends on the order of the
    operations), and never moves again."""
    for alpha, lr in ((0.5, 0.5), (0.2, 0.75)):
        task = icl.RecallTask(alpha=alpha, seq_len=16)
        lam_stop, steps = D.float32_stall(task, lr)
        assert lam_stop == pytest.approx(lr * steps) and 19 < lam_stop < 21
        model = icl.OneLayerTransformer(task, "linear", "reparam")  # float32
        icl.train(model, task, steps + 15, lr, batch_size=16, seed=0, eval_every=steps + 15,
                  eval_size=16, ood=False, progress=False)
        stop = float(model.Lambda.detach())
        assert lam_stop - lr - 1e-4 <= stop <= lam_stop + 1e-4, (alpha, lr, stop, lam_stop)
        assert min(abs(stop - k * lr) for k in (steps - 1, steps)) < 1e-4  # on the grid ηt
    with pytest.raises(ValueError, match="noisy"):
        D.float32_stall(NOISELESS, 0.1)


def test_noiseless_mean_lambda_at_most_eta_t_over_sqrt_q():
    model = icl.OneLayerTransformer(NOISELESS, "linear", "reparam", dtype=torch.float64)
    lr, steps = 0.1, 80
    hist = icl.train(model, NOISELESS, steps, lr, batch_size=64, seed=0, eval_every=1, ood=False)
    lam = np.stack([hist.array(f"lambdas[{k}]", "params") for k in range(5)], 1)
    pred = D.normalized_gd_trajectory(NOISELESS, lr, hist.step_array)
    # every step moves λ by a vector of norm η with positive components
    inc = np.diff(lam, axis=0)
    assert np.all(inc > 0)
    np.testing.assert_allclose(np.linalg.norm(inc, axis=1), lr, rtol=1e-12)
    # Cauchy-Schwarz: mean λ ≤ ηt/√|Q|; the deficit is the batch imbalance, 1 - (|Q|-1)/(2B)
    assert np.all(lam.mean(1) <= pred + 1e-12)
    eff = D.noiseless_balance_efficiency(5, 64)
    assert eff == pytest.approx(1 - 4 / 128)
    assert eff - 0.01 < lam.mean(1)[-1] / pred[-1] < 1
    # and far from the main text's ηt/|Q|
    assert lam.mean(1)[-1] > 2.0 * lr * steps / 5


def test_theory_fit_bias_is_bounded_by_half_x0():
    t = np.arange(0, 301, 5)
    lr = 0.05
    fit = D.theory_fit(NOISY, lr, t, window=(100, 300))
    x0 = D.excess_bound(NOISY, lr, 100)
    assert fit.slope < 0
    assert abs(fit.slope / -lr - 1) <= x0 / 2
    assert abs(fit.slope / -lr - 1) > 0  # there is a bias: log(1+x) is not x


# ------------------------------------------------------------------ plain GD
def test_plain_gd_recursion_matches_training_with_any_batch():
    """Plain SGD with batches of 4: identical per-example gradients make it deterministic."""
    lr, steps = 0.3, 40
    model = icl.OneLayerTransformer(NOISY, "linear", "reparam", dtype=torch.float64)
    hist = icl.train(model, NOISY, steps, lr, batch_size=4, normalized=False, seed=7,
                     eval_every=1, ood=False)
    pred = D.plain_gd_trajectory(NOISY, lr, steps)
    np.testing.assert_allclose(hist.array("Lambda", "params"), pred, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hist.excess(), D.plain_gd_excess(NOISY, lr, steps), atol=1e-12)


def test_plain_gd_flow_and_asymptotics():
    lr = 0.05
    steps = 100_000
    lam = D.plain_gd_trajectory(NOISY, lr, steps)
    t = np.array([100, 1_000, 10_000, 100_000])
    flow = D.plain_gd_flow(NOISY, lr, t)
    # the flow solves its implicit equation
    c, n = 1 / 0.7, NOISY.vocab_size - 2
    np.testing.assert_allclose(c * np.exp(flow) + n * flow, lr * n * t + c, rtol=1e-12)
    # gradient flow tracks the discrete recursion (steps in Λ are small)
    np.testing.assert_allclose(lam[t], flow, atol=0.02)
    # the leading-order log law: the gap shrinks as t grows
    a_lam, a_exc = D.plain_gd_asymptotics(NOISY, lr, t)
    gaps = np.abs(lam[t] - a_lam)
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 0.005
    # η t · excess → 1, with the first correction 1/(1 - Λ_t/(ηt))
    exc = D.plain_gd_excess(NOISY, lr, steps)[t]
    ratio = lr * t * exc
    np.testing.assert_allclose(a_exc, 1 / (lr * t))
    assert abs(ratio[-1] - 1) < 0.005
    corr = 1 / (1 - lam[t] / (lr * t))
    np.testing.assert_allclose(ratio[1:], corr[1:], rtol=0.02)
    assert D.plain_gd_excess_constant(NOISY, lr) == pytest.approx(1 / lr)


def test_plain_gd_noiseless_rate():
    lr = 0.1
    lam = D.plain_gd_trajectory(NOISELESS, lr, 50_000)
    exc = D.plain_gd_excess(NOISELESS, lr, 50_000)
    # shared λ: the noiseless closed form log(1 + (N-1) e^{-λ}), elementwise
    np.testing.assert_allclose(exc[[10, 100]], np.log1p(59 * np.exp(-lam[[10, 100]])))
    t = 50_000
    ratio = lr * t * exc[t] / NOISELESS.n_triggers  # → 1, first correction 1/(1 - λ|Q|/(ηt))
    assert ratio == pytest.approx(1 / (1 - lam[t] * 5 / (lr * t)), rel=2e-3)
    assert abs(ratio - 1) < 0.02
    assert D.plain_gd_excess_constant(NOISELESS, lr) == pytest.approx(5 / lr)
    np.testing.assert_allclose(lam[[1000, t]], D.plain_gd_flow(NOISELESS, lr, [1000, t]), atol=0.02)


def test_local_slope_linear_vs_sublinear():
    lr = 0.05
    t = np.arange(0, 601)  # Λ ≤ 30: the excess stays above float64 resolution
    _, s_lin = D.local_slope(t, D.normalized_gd_excess(NOISY, lr, t), span=50)
    assert s_lin[-1] == pytest.approx(-lr, rel=1e-5)
    t = np.arange(0, 2001)
    mid, s_plain = D.local_slope(t, D.plain_gd_excess(NOISY, lr, 2000), span=50)
    assert abs(s_plain[-1]) < 0.05 * lr
    assert s_plain[-1] == pytest.approx(-1 / mid[-1], rel=0.15)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: D.per_example_grad(NOISY, -1.0), "Lambda"),
        (lambda: D.per_example_grad("task", 1.0), "task"),
        (lambda: D.per_example_grad(NOISELESS, 1.0, gamma=0.3), "noisy"),
        (lambda: D.normalized_gd_trajectory(NOISY, 0.0, 3), "lr"),
        (lambda: D.normalized_gd_trajectory(NOISY, 0.1, -3), "t must"),
        (lambda: D.plain_gd_trajectory(NOISY, 0.1, 2.5), "steps"),
        (lambda: D.plain_gd_asymptotics(NOISY, 0.1, [0, 1]), "positive"),
        (lambda: D.local_slope([0, 1, 2], [1.0, 0.5, 0.0]), "positive"),
        (lambda: D.local_slope([0, 1, 2], [1.0, 0.5, 0.2], span=3), "span"),
        (lambda: D.local_slope([0, 1], [1.0]), "equal length"),
        (lambda: D.noiseless_balance_efficiency(5, 0), "batch_size"),
        (lambda: D.plain_gd_flow(NOISY, -0.1, 3), "lr"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
