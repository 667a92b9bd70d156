"""Unit tests of icl.lsa: prompts, the LSA layer, the optimal steps, training, figures."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("agg")

from icl import lsa  # noqa: E402
from icl.lsa import theory, viz  # noqa: E402
from icl.validate import InvalidTypeError  # noqa: E402

SIGMA = lsa.spectrum_covariance([3.0, 1.0, 0.3], seed=0)


# ---------------------------------------------------------------- data


def test_sample_shapes_and_token_layout():
    task = lsa.RegressionTask(4, 7, sigma2=0.5)
    p = task.sample(11, seed=0)
    assert p.X.shape == (11, 7, 4) and p.y.shape == (11, 7)
    assert p.x_q.shape == (11, 4) and p.y_q.shape == (11,) and p.w.shape == (11, 4)
    Z = p.tokens()
    assert Z.shape == (11, 5, 8)
    assert torch.equal(Z[:, :4, :7], p.X.transpose(1, 2)) and torch.equal(Z[:, 4, :7], p.y)
    assert torch.equal(Z[:, :4, 7], p.x_q) and torch.all(Z[:, 4, 7] == 0)
    G = p.moment()
    assert torch.allclose(G[:, :4, 4], p.v(), atol=1e-6)
    q = task.sample(3, seed=0, models=2, sigma2=[0.0, 1.0])
    assert q.X.shape == (2, 3, 7, 4)


def test_sampling_is_seeded_and_has_no_global_state():
    task = lsa.RegressionTask(3, 5)
    a, b = task.sample(4, seed=3), task.sample(4, seed=3)
    assert torch.equal(a.X, b.X) and torch.equal(a.y_q, b.y_q)
    g = torch.Generator().manual_seed(3)
    c = task.sample(4, g)
    assert torch.equal(a.X, c.X)
    assert not torch.equal(task.sample(4, g).X, a.X)  # the generator advanced


def test_noiseless_linear_responses_and_per_model_noise():
    task = lsa.RegressionTask(3, 6)
    p = task.sample(50, seed=1, dtype=torch.float64)
    assert torch.allclose(p.y, torch.einsum("bnd,bd->bn", p.X, p.w))
    q = task.sample(2000, seed=2, models=2, sigma2=[0.0, 4.0], dtype=torch.float64)
    resid = q.y - torch.einsum("mbnd,mbd->mbn", q.X, q.w)
    assert float(resid[0].abs().max()) < 1e-12
    assert abs(float(resid[1].var()) - 4.0) < 0.2


@pytest.mark.parametrize("law", ["gaussian", "uniform", "laplace"])
def test_covariate_laws_have_unit_variance_and_their_kurtosis(law):
    task = lsa.RegressionTask(2, 1, covariates=law)
    x = task.sample(200_000, seed=4, dtype=torch.float64).X.flatten().numpy()
    assert abs(x.var() - 1) < 0.02
    assert abs((x**4).mean() - lsa.KURTOSIS[law]) < 0.1 * lsa.KURTOSIS[law]


def test_covariance_prior_mean_and_relu_target():
    task = lsa.RegressionTask(3, 4, cov=SIGMA, prior_mean=[1.0, 0.0, 0.0])
    p = task.sample(100_000, seed=5, dtype=torch.float64)
    assert np.allclose(np.cov(p.x_q.numpy().T), SIGMA, atol=0.05)
    assert np.allclose(p.w.mean(0).numpy(), [1, 0, 0], atol=0.02)
    r = lsa.RegressionTask(3, 4, target="relu").sample(100, seed=6)
    assert torch.all(r.y >= 0)


def test_task_helpers():
    task = lsa.RegressionTask(3, 4)
    assert task.isotropic and task.kurtosis == 3.0
    assert not task.with_(cov=SIGMA).isotropic
    assert task.same_up_to_noise(task.with_(sigma2=2.0))
    assert not task.same_up_to_noise(task.with_(n=5))
    with pytest.raises(ValueError, match="unknown field"):
        task.with_(noise=1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(d=0, n=3), "d must be >= 1"),
        (dict(d=True, n=3), "d must be an integer"),
        (dict(d=2, n="3"), "n must be an integer"),
        (dict(d=2, n=3, sigma2=-1.0), "sigma2 must be non-negative"),
        (dict(d=2, n=3, sigma2=float("nan")), "sigma2 must be a number"),
        (dict(d=2, n=3, tau2=0.0), "tau2 must be positive"),
        (dict(d=2, n=3, covariates="cauchy"), "covariates must be one of"),
        (dict(d=2, n=3, target="sine"), "target must be one of"),
        (dict(d=2, n=3, cov=np.eye(3)), r"cov must have shape \(2, 2\)"),
        (dict(d=2, n=3, cov=[[1.0, 2.0], [2.0, 1.0]]), "cov must be positive definite"),
        (dict(d=2, n=3, prior_cov=[[1.0, 0.5], [0.0, 1.0]]), "prior_cov must be symmetric"),
        (dict(d=2, n=3, prior_mean=[1.0]), r"prior_mean must have shape \(2,\)"),
        (dict(d=2, n=3, relu_cov="identity"), "relu_cov must hold real numbers"),
    ],
)
def test_task_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lsa.RegressionTask(**kwargs)


def test_sample_rejects_bad_inputs():
    task = lsa.RegressionTask(2, 3)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        task.sample(0)
    with pytest.raises(InvalidTypeError, match="seed must be an integer"):
        task.sample(2, seed=1.5)
    with pytest.raises(ValueError, match="needs models"):
        task.sample(2, sigma2=[1.0])
    with pytest.raises(ValueError, match="one entry per model"):
        task.sample(2, models=2, sigma2=[1.0])
    with pytest.raises(TypeError, match="dtype"):
        task.sample(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="above the limit"):
        task.sample(10**9)
    with pytest.raises(ValueError, match="eigenvalues"):
        lsa.spectrum_covariance([1.0, -1.0])


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("family", lsa.FAMILIES)
@pytest.mark.parametrize("mask", [True, False])
def test_fast_forward_equals_dense_reference(family, mask):
    p = lsa.RegressionTask(3, 6, sigma2=0.5).sample(32, seed=0, dtype=torch.float64)
    m = lsa.LinearSelfAttention(3, family, models=2, init_std=0.7, seed=1, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(m(p, mask=mask), m.dense_forward(p, mask=mask), atol=1e-12)
    # prompts with their own model axis give the same as broadcast prompts
    both = lsa.Prompts(*(t.unsqueeze(0).expand(2, *t.shape) for t in
                         (p.X, p.y, p.x_q, p.y_q, p.w)))
    with torch.no_grad():
        assert torch.allclose(m(both, mask=mask), m(p, mask=mask), atol=1e-12)


def test_gamma_and_the_gd_step():
    p = lsa.RegressionTask(3, 6, sigma2=0.5).sample(64, seed=2, dtype=torch.float64)
    gamma = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    m = lsa.LinearSelfAttention.from_gamma(gamma)
    assert torch.allclose(m.gamma()[0], gamma)
    with torch.no_grad():
        assert torch.allclose(m(p)[0], lsa.gd_step_prediction(p, gamma), atol=1e-12)
    # u_1 = Γ^T v: one explicit GD step on (1/2n) Σ (u^T x_i - y_i)^2 from u = 0
    u1 = torch.einsum("kj,bk->bj", gamma, p.v())  # rows: (Γ^T v)_j = Σ_k Γ_kj v_k
    assert torch.allclose((u1 * p.x_q).sum(-1), lsa.gd_step_prediction(p, gamma), atol=1e-12)
    full = lsa.LinearSelfAttention(3, "full", models=1, init_std=0.3, seed=4, dtype=torch.float64)
    b, A = full.b[0].double(), full.A[0].double()
    expected = b[-1] * A[:-1] + torch.outer(b[:-1], A[-1])
    assert torch.allclose(full.gamma()[0], expected)


def test_decomposition_and_relaxation_layout():
    p = lsa.RegressionTask(3, 6, sigma2=0.5).sample(32, seed=3, dtype=torch.float64)
    m = lsa.LinearSelfAttention(3, "full", models=2, init_std=0.5, seed=5, dtype=torch.float64)
    parts = m.decompose(p)
    with torch.no_grad():
        assert torch.allclose(sum(parts.values()), m(p), atol=1e-12)
    gamma = np.arange(9.0).reshape(3, 3)
    coef = lsa.relaxation_coefficients(gamma)
    features = lsa.fit_relaxation(lsa.RegressionTask(3, 6).sample(50, seed=0)).features
    pred = features(p) @ torch.as_tensor(coef)
    assert torch.allclose(pred, lsa.gd_step_prediction(p, gamma), atol=1e-12)
    fit = lsa.LeastSquares(coef=coef, se=np.ones_like(coef), train_loss=0.0, features=features)
    assert np.allclose(lsa.relaxation_gamma(fit, 3), gamma)
    with pytest.raises(ValueError, match="square"):
        lsa.relaxation_coefficients(np.ones((2, 3)))


def test_initialisation():
    m = lsa.LinearSelfAttention(4, models=3, seed=0)
    assert torch.all(m.W_pv[:, -1, -1] == 1.0)
    assert float(m.W_kq.detach().std()) < 0.02
    z = lsa.LinearSelfAttention(4, models=3, seed=0, pv_last=None)
    assert float(z.W_pv.detach()[:, -1, -1].abs().max()) < 0.05
    r = lsa.LinearSelfAttention(4, "reduced", seed=0)
    pv, kq = r.weights()
    assert pv.shape == kq.shape == (1, 5, 5) and pv[0, -1, -1] == 1 and pv.abs().sum() == 1


def test_model_rejects_bad_inputs():
    with pytest.raises(ValueError, match="family must be one of"):
        lsa.LinearSelfAttention(3, "half")
    with pytest.raises(ValueError, match="models must be >= 1"):
        lsa.LinearSelfAttention(3, models=0)
    with pytest.raises(ValueError, match="init_std must be non-negative"):
        lsa.LinearSelfAttention(3, init_std=-0.1)
    with pytest.raises(TypeError, match="dtype"):
        lsa.LinearSelfAttention(3, dtype=torch.int32)
    m = lsa.LinearSelfAttention(3, models=2)
    p = lsa.RegressionTask(3, 4).sample(5, seed=0, models=3)
    with pytest.raises(ValueError, match="the module has 2"):
        m(p)
    with pytest.raises(TypeError, match="Prompts"):
        m(torch.zeros(5, 4, 3))
    with pytest.raises(TypeError, match="mask must be True or False"):
        m(lsa.RegressionTask(3, 4).sample(5), mask=1)
    with pytest.raises(ValueError, match="gamma must have shape"):
        lsa.gd_step_prediction(lsa.RegressionTask(3, 4).sample(5), np.eye(2))


# ---------------------------------------------------------------- theory


@pytest.mark.parametrize(
    ("n", "s2", "eta", "loss"),
    [(20, 0, 0.7692, 1.1538), (20, 0.25, 0.7619, 1.4405), (20, 1, 0.7407, 2.2963),
     (20, 4, 0.6667, 5.6667), (5, 1, 0.4167, 3.9167), (10, 1, 0.5882, 3.0588),
     (40, 1, 0.8511, 1.7447)],
)
def test_isotropic_closed_forms(n, s2, eta, loss):
    assert theory.eta_star(n, 5, s2) == pytest.approx(eta, abs=5e-5)
    assert theory.loss_star(n, 5, s2) == pytest.approx(loss, abs=5e-5)
    task = lsa.RegressionTask(5, n, sigma2=s2)
    assert np.allclose(theory.gamma_star(task), theory.eta_star(n, 5, s2) * np.eye(5))
    assert theory.gd_loss(task, theory.gamma_star(task)) == pytest.approx(loss, abs=5e-5)
    e = theory.eta_star(n, 5, s2)
    assert theory.isotropic_loss(e, n, 5, s2) == pytest.approx(theory.loss_star(n, 5, s2))


def test_tau_scaling_and_noiseless_optimum():
    d, n = 4, 10
    assert theory.eta_star(n, d, 0.0, tau2=1 / d) == pytest.approx(n / (n + d + 1))
    assert theory.eta_star(n, d, 0.5, tau2=1 / d) == pytest.approx(n / (n + d + 1 + d * 0.5))


def test_non_isotropic_predictions():
    matched = lsa.RegressionTask(3, 8, sigma2=0.3, cov=SIGMA, prior_cov=np.linalg.inv(SIGMA))
    g = theory.gamma_star(matched)
    assert np.allclose(g, theory.eta_star(8, 3, 0.3) * np.linalg.inv(SIGMA))
    assert theory.gd_loss(matched, g) == pytest.approx(1.3488, abs=5e-5)
    unmatched = matched.with_(prior_cov=None)
    gu = theory.gamma_star(unmatched)
    assert theory.gd_loss(unmatched, gu) == pytest.approx(1.6347, abs=5e-5)
    closed = np.linalg.inv(9 / 8 * SIGMA + (np.trace(SIGMA) + 0.3) / 8 * np.eye(3))
    assert np.allclose(gu, closed)
    assert np.linalg.norm(gu - g) / np.linalg.norm(g) == pytest.approx(0.47, abs=0.005)
    # Γ* minimises the exact quadratic loss
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert theory.gd_loss(unmatched, gu + 0.01 * rng.normal(size=(3, 3))) > \
            theory.gd_loss(unmatched, gu)


def test_relu_kurtosis_mean_and_anisotropic_predictions():
    for s2, eta, loss in ((0.0, 0.4706, 1.1471), (0.4, 0.4301, 1.5774)):
        task = lsa.RegressionTask(3, 8, sigma2=s2, target="relu")
        assert theory.eta_relu(8, 3, s2) == pytest.approx(eta, abs=5e-5)
        assert theory.loss_relu(8, 3, s2) == pytest.approx(loss, abs=5e-5)
        assert np.allclose(theory.gamma_star(task), theory.eta_relu(8, 3, s2) * np.eye(3))
        assert theory.gd_loss(task, theory.gamma_star(task)) == pytest.approx(loss, abs=5e-5)
    for law, eta, loss in (("uniform", 0.8065, 0.9677), ("laplace", 0.6897, 1.5517)):
        task = lsa.RegressionTask(5, 20, covariates=law)
        assert theory.kurtosis_eta_star(20, 5, task.kurtosis) == pytest.approx(eta, abs=5e-5)
        assert theory.gamma_star(task)[0, 0] == pytest.approx(eta, abs=5e-5)
        assert theory.gd_loss(task, theory.gamma_star(task)) == pytest.approx(loss, abs=5e-5)
    assert theory.kurtosis_eta_star(20, 5, 3.0) == pytest.approx(theory.eta_star(20, 5))
    mean = lsa.RegressionTask(3, 6, sigma2=0.5, prior_mean=[1.0, 0, 0])
    assert theory.gd_loss(mean, theory.gamma_star(mean)) == pytest.approx(2.1592, abs=5e-5)
    aniso = lsa.RegressionTask(3, 8, target="relu", relu_cov=np.diag([3.0, 1.0, 0.3]))
    assert np.allclose(np.diag(theory.gamma_star(aniso)), [0.5769, 0.4082, 0.2017], atol=5e-5)
    e = theory.eta_star(20, 5)
    assert theory.isotropic_loss(e, 5, 5) == pytest.approx(3.817, abs=5e-4)
    assert theory.isotropic_loss(e, 80, 5) == pytest.approx(0.488, abs=5e-4)


def test_sympy_derivations():
    assert theory.moment_identity_sympy(2)["difference"].is_zero_matrix
    iso = theory.isotropic_optimum_sympy(2)
    assert iso["Evv_difference"].is_zero_matrix and iso["loss_star_check"] == 0
    assert theory.matched_prior_sympy()["difference"].is_zero_matrix
    relu = theory.relu_step_sympy()
    assert relu["eta_f_difference"] == 0 and relu["loss_f_difference"] == 0


def test_monte_carlo_agrees_with_the_closed_forms():
    A = np.arange(9.0).reshape(3, 3) / 9
    est, se = theory.mc_moment_identity(A, n_samples=50_000, seed=0)
    assert np.all(np.abs(est - (np.trace(A) * np.eye(3) + A + A.T)) < 4.5 * se)
    task = lsa.RegressionTask(4, 10, sigma2=0.5)
    mc, mc_se = theory.mc_gd_loss(task, theory.eta_star(10, 4, 0.5) * np.eye(4), 50_000, seed=1)
    assert abs(mc - theory.loss_star(10, 4, 0.5)) < 4 * mc_se
    bayes, bse = theory.bayes_risk_mc(task, 20_000, seed=2)
    assert 0.5 < bayes < theory.loss_star(10, 4, 0.5)


def test_theory_rejects_bad_inputs():
    with pytest.raises(ValueError, match="n must be >= 1"):
        theory.eta_star(0, 3)
    with pytest.raises(ValueError, match="sigma2 must be non-negative"):
        theory.loss_star(5, 3, -1.0)
    with pytest.raises(ValueError, match="kappa must be >= 1"):
        theory.kurtosis_eta_star(5, 3, 0.5)
    with pytest.raises(ValueError, match="cov = I"):
        theory.gamma_star(lsa.RegressionTask(3, 4, target="relu", cov=SIGMA))
    with pytest.raises(ValueError, match="cov = I"):
        theory.gamma_star(lsa.RegressionTask(3, 4, covariates="uniform", cov=SIGMA))
    with pytest.raises(ValueError, match="sigma2 must be > 0"):
        theory.bayes_risk_mc(lsa.RegressionTask(3, 4))
    with pytest.raises(ValueError, match="gamma must have shape"):
        theory.gd_loss(lsa.RegressionTask(3, 4), np.eye(2))
    with pytest.raises(TypeError, match="RegressionTask"):
        theory.gamma_star("task")
    with pytest.raises(ValueError, match="square"):
        theory.mc_moment_identity(np.ones((2, 3)))


# ---------------------------------------------------------------- training


def test_training_reaches_the_predicted_step_quickly():
    task = lsa.RegressionTask(2, 6, sigma2=0.25)
    res = lsa.train_lsa([task, task.with_(sigma2=1.0)], 300, runs=1, batch=256, lr=1e-2,
                        milestones=((0.5, 0.3), (0.8, 0.1)), seed=0, record_every=100)
    assert res.loss.shape == (2, 3) and list(res.steps) == [100, 200, 300]
    assert np.allclose(res.sigma2, [0.25, 1.0])
    etas = np.array([theory.eta_star(6, 2, 0.25), theory.eta_star(6, 2, 1.0)])
    ev = lsa.evaluate(res.model, [task, task.with_(sigma2=1.0)],
                      etas[:, None, None] * np.eye(2), n_prompts=5_000, chunk=2_000)
    assert np.all(np.abs(ev.eta_hat - etas) < 0.05)
    assert np.all(ev.excess < 0.05 * np.array([theory.loss_star(6, 2, 0.25),
                                               theory.loss_star(6, 2, 1.0)]))
    assert ev.gamma.shape == (2, 2, 2) and np.all(ev.loss_se > 0)
    # the recorded weights: the last record is the trained model
    assert res.gamma.shape == (2, 3, 2, 2) and res.b_x_norm.shape == res.a_y_norm.shape == (2, 3)
    assert np.allclose(res.gamma[:, -1], ev.gamma) and np.allclose(res.b_x_norm[:, -1],
                                                                   ev.b_x_norm)
    ref = etas[:, None, None] * np.eye(2)
    assert np.allclose(res.gamma_error(ref, step=300), ev.gamma_error(ref))
    assert res.gamma_error(ref).shape == (2, 3) and res.index(200) == 1
    assert np.allclose(res.gamma_error(np.eye(2))[:, 0], res.gamma_error(np.eye(2), step=100))
    with pytest.raises(ValueError, match="step must be a recorded step.*got 150"):
        res.gamma_error(ref, step=150)
    with pytest.raises(ValueError, match="gamma_star must have"):
        res.gamma_error(np.eye(3))


def test_training_tasks_of_different_laws_together():
    a = lsa.RegressionTask(2, 4, cov=np.diag([2.0, 0.5]))
    b = a.with_(prior_cov=np.diag([0.5, 2.0]))
    res = lsa.train_lsa([a, b], 5, runs=2, batch=8, record_every=5)
    assert res.model.models == 4 and res.loss.shape == (4, 1)


def test_evaluate_against_the_exact_step_is_zero_excess():
    task = lsa.RegressionTask(3, 5, sigma2=0.5)
    g = theory.eta_star(5, 3, 0.5) * np.eye(3)
    m = lsa.LinearSelfAttention.from_gamma(g, dtype=torch.float32)
    ev = lsa.evaluate(m, task, g, n_prompts=2_000)
    assert abs(ev.excess[0]) < 1e-5 and ev.gd_gap[0] < 1e-6
    assert ev.gamma_error(g)[0] < 1e-6 and ev.b_x_norm[0] == 0


def test_least_squares_fits():
    task = lsa.RegressionTask(2, 6, sigma2=0.5)
    train_p = task.sample(50_000, seed=0, dtype=torch.float64)
    fit = lsa.fit_gd_step(train_p)
    eta = theory.eta_star(6, 2, 0.5)
    assert np.all(np.abs(fit.coef.reshape(2, 2) - eta * np.eye(2)) < 4.5 * fit.se.reshape(2, 2))
    red = lsa.fit_reduced(train_p)
    assert red.coef.shape == (6,) and np.all(np.abs(red.coef[4:]) < 4.5 * red.se[4:])
    for mask in (True, False):
        rel = lsa.fit_relaxation(train_p, mask=mask)
        assert rel.coef.shape == (6 * 2,)
        assert rel.train_loss <= red.train_loss + 1e-12 <= fit.train_loss + 2e-12
        G = lsa.relaxation_gamma(rel, 2)
        assert np.all(np.abs(np.diag(G) - eta) < 0.05)
    loss, se = fit.loss(task.sample(10_000, seed=1))
    assert abs(loss - theory.loss_star(6, 2, 0.5)) < 4 * se + 0.01


def test_training_rejects_bad_inputs():
    task = lsa.RegressionTask(2, 4)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        lsa.train_lsa(task, 0)
    with pytest.raises(ValueError, match="share d and n"):
        lsa.train_lsa([task, task.with_(n=5)], 1)
    with pytest.raises(ValueError, match="at least one"):
        lsa.train_lsa([], 1)
    with pytest.raises(TypeError, match="RegressionTask"):
        lsa.train_lsa(["task"], 1)
    with pytest.raises(ValueError, match="lr must be positive"):
        lsa.train_lsa(task, 1, lr=0.0)
    with pytest.raises(ValueError, match=r"milestones\[0\] must be"):
        lsa.train_lsa(task, 1, milestones=(0.5,))
    with pytest.raises(ValueError, match=r"milestones\[0\]\[0\] must lie in \[0, 1\]"):
        lsa.train_lsa(task, 1, milestones=((1.5, 0.1),))
    m = lsa.LinearSelfAttention(2, models=3)
    with pytest.raises(ValueError, match="not a multiple"):
        lsa.evaluate(m, [task, task], np.eye(2))
    with pytest.raises(ValueError, match="model.d"):
        lsa.evaluate(m, lsa.RegressionTask(3, 4), np.eye(3))
    with pytest.raises(ValueError, match="gamma_ref must have"):
        lsa.evaluate(m, task, np.eye(3))
    with pytest.raises(TypeError, match="LinearSelfAttention"):
        lsa.evaluate("model", task, np.eye(2))
    with pytest.raises(ValueError, match=r"\[B, n, d\] prompts"):
        lsa.fit_gd_step(task.sample(4, models=2))


# ---------------------------------------------------------------- figures


def test_figures_draw():
    import matplotlib.pyplot as plt

    f1 = viz.plot_eta_sweeps([0, 1], np.array([[0.7, 0.6], [0.71, 0.61]]),
                             (np.array([0, 1]), np.array([0.7, 0.6])), [5, 10],
                             np.array([[0.4, 0.6]]), (np.array([5, 10]), np.array([0.4, 0.6])))
    f2 = viz.plot_gamma({"learned": np.eye(2), "predicted": np.eye(2)})
    f3 = viz.plot_training({"runs": (np.arange(3), np.ones((2, 3)))}, {"L*": 0.5})
    f4 = viz.plot_shift([5, 10], [1.0, 0.5], ([5, 10], [1.0, 0.5], [0.8, 0.4]), xlabel="n'",
                        log=True)
    assert all(len(f.axes) >= 1 for f in (f1, f2, f3, f4))
    plt.close("all")
    with pytest.raises(ValueError, match="at least one"):
        viz.plot_gamma({})
    assert math.isfinite(1.0)
