"""icl.classification: sampler, layer, Bayes classifier, α_N, training, errors, bad inputs."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from icl.classification import COMPARISON_ROW, data, model, theory, training
from icl.validate import InvalidTypeError

matplotlib.use("agg")

F64 = torch.float64
PKG = Path(__file__).resolve().parent.parent / "icl" / "classification"


@pytest.fixture(scope="module")
def task():
    return data.default_task()


@pytest.fixture(scope="module")
def task3():
    return data.default_task(n_classes=3)


# ------------------------------------------------------------------ data


def test_default_task_covariance(task):
    assert task.d == 3 and task.n_classes == 2 and task.r == 1.5
    np.testing.assert_allclose(task.eigenvalues.numpy(), [0.5, 1.25, 2.0], atol=1e-12)
    eye = torch.eye(3, dtype=F64)
    assert torch.allclose(task.cov_sqrt @ task.cov_sqrt, task.cov, atol=1e-12)
    assert torch.allclose(task.cov_inv @ task.cov, eye, atol=1e-12)
    assert torch.allclose(task.cov_inv_sqrt @ task.cov_sqrt, eye, atol=1e-12)


def test_haar_columns_are_orthonormal():
    u = data.haar_orthogonal(4, 50, seed=0, columns=2)
    gram = u.transpose(1, 2) @ u
    assert torch.allclose(gram, torch.eye(2, dtype=F64).expand(50, 2, 2), atol=1e-12)


def test_means_have_the_whitened_geometry(task3):
    means = data.sample_means(task3, 100, seed=1)
    lm = means @ task3.cov_inv
    gram = lm @ means.transpose(1, 2)  # μ_k^T Λ^{-1} μ_l = v_k^T v_l = r² δ_kl
    assert torch.allclose(gram, (1.5**2 * torch.eye(3, dtype=F64)).expand(100, 3, 3), atol=1e-10)


def test_seeds_reproduce_and_generators_are_accepted(task):
    a = data.sample_prompts(task, 5, 4, seed=3)
    b = data.sample_prompts(task, 5, 4, seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    g = torch.Generator().manual_seed(3)
    c = data.sample_prompts(task, 5, 4, seed=g)
    assert torch.equal(a.x, c.x)


@pytest.mark.parametrize("explicit", [True, False])
def test_b_n_moments_given_the_task(task, explicit):
    # With the task fixed: E b_N = (μ_1 - μ_0)/2, Cov b_N = (Λ + m mᵀ)/N, m = (μ_0 + μ_1)/2.
    n, batch = 6, 60_000
    mu = data.sample_means(task, 1, seed=4)
    if explicit:
        g = torch.Generator().manual_seed(5)
        labels = torch.randint(2, (batch, n), generator=g)
        z = torch.randn(batch, n, 3, generator=g, dtype=F64) @ task.cov_sqrt
        x = mu[0][labels] + z
        b = torch.einsum("bn,bnd->bd", 2.0 * labels.to(F64) - 1.0, x) / n
    else:
        b = data.sample_statistics(task, n, batch, seed=5, means=mu.expand(batch, 2, 3)).b
    delta, m = 0.5 * (mu[0, 1] - mu[0, 0]), 0.5 * (mu[0, 0] + mu[0, 1])
    cov = (task.cov + torch.outer(m, m)) / n
    se_mean = torch.sqrt(torch.diag(cov) / batch)
    assert torch.all((b.mean(0) - delta).abs() <= 5 * se_mean)
    emp = torch.cov(b.T)
    se_cov = torch.sqrt((torch.diag(cov)[:, None] * torch.diag(cov)[None, :] + cov**2) / batch)
    assert torch.all((emp - cov).abs() <= 5 * se_cov)


@pytest.mark.parametrize("explicit", [True, False])
def test_c_class_statistic_moments(task3, explicit):
    # Row k of B_N: mean μ_k/c, covariance (Λ/c + μ_k μ_kᵀ (c-1)/c²)/N given the task.
    n, batch, c = 6, 40_000, 3
    mu = data.sample_means(task3, 1, seed=6)
    if explicit:
        g = torch.Generator().manual_seed(7)
        labels = torch.randint(c, (batch, n), generator=g)
        x = mu[0][labels] + torch.randn(batch, n, 3, generator=g, dtype=F64) @ task3.cov_sqrt
        b = torch.einsum("bnk,bnd->bkd", data.label_rows(labels, c), x) / n
    else:
        b = data.sample_statistics(task3, n, batch, seed=7, means=mu.expand(batch, c, 3)).b
    for k in range(c):
        mean = mu[0, k] / c
        cov = (task3.cov / c + torch.outer(mu[0, k], mu[0, k]) * (c - 1) / c**2) / n
        assert torch.all((b[:, k].mean(0) - mean).abs() <= 5 * torch.sqrt(torch.diag(cov) / batch))
        se = torch.sqrt((torch.diag(cov)[:, None] * torch.diag(cov)[None, :] + cov**2) / batch)
        assert torch.all((torch.cov(b[:, k].T) - cov).abs() <= 5 * se)


def test_fast_sampler_matches_explicit_prompts(task):
    p = data.compare_samplers(task, 8, 4000, seed=11)
    assert min(p.values()) >= 0.0025


def test_c_class_statistic_limit(task3):
    st = data.sample_statistics(task3, None, 10, seed=0)
    assert torch.allclose(st.b, st.means / 3)


def test_multinomial_counts_sum_to_n(task3):
    g = torch.Generator().manual_seed(0)
    probs = torch.full((1000, 3), 1 / 3, dtype=F64)
    counts = data._multinomial_counts(probs, 12, g)
    assert torch.all(counts.sum(1) == 12) and torch.all(counts >= 0)
    assert abs(float(counts.mean()) - 4.0) < 0.2


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(cov=torch.ones(2, 3, dtype=F64)), ValueError),
        (dict(cov=torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64)), ValueError),
        (dict(cov=-torch.eye(2, dtype=F64)), ValueError),
        (dict(cov=torch.eye(2, dtype=F64), r=0.0), ValueError),
        (dict(cov=torch.eye(2, dtype=F64), r="1"), InvalidTypeError),
        (dict(cov=torch.eye(2, dtype=F64), n_classes=3), ValueError),
        (dict(cov=torch.eye(2, dtype=F64), n_classes=True), InvalidTypeError),
        (dict(cov=torch.eye(2, dtype=F64), scales=(1.0,)), ValueError),
        (dict(cov=torch.eye(2, dtype=F64), scales=(1.0, -1.0)), ValueError),
        (dict(cov=np.eye(2)), InvalidTypeError),
        (dict(cov=torch.tensor([[float("nan"), 0], [0, 1.0]])), ValueError),
    ],
)
def test_bad_tasks(kwargs, err):
    with pytest.raises(err):
        data.MixtureTask(**kwargs)


def test_bad_sampler_inputs(task):
    with pytest.raises(ValueError, match="length"):
        data.sample_prompts(task, 0, 4, seed=0)
    with pytest.raises(InvalidTypeError, match="batch"):
        data.sample_prompts(task, 4, "4", seed=0)
    with pytest.raises(ValueError, match="seed"):
        data.sample_prompts(task, 4, 4, seed=-1)
    with pytest.raises(InvalidTypeError, match="task"):
        data.sample_prompts("task", 4, 4, seed=0)
    with pytest.raises(ValueError, match="batch"):
        data.sample_prompts(task, 10**6, 10**4, seed=0)
    with pytest.raises(ValueError, match="means"):
        data.sample_statistics(task, 4, 3, seed=0, means=torch.zeros(2, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match="eigenvalues"):
        data.default_task(eigenvalues=(1.0, 2.0))
    with pytest.raises(ValueError, match="labels"):
        data.label_rows(torch.tensor([[0, 3]]), 3)


# ------------------------------------------------------------------ model


@pytest.mark.parametrize("c", [2, 3])
def test_layer_equals_closed_form(c):
    t = data.default_task(n_classes=c, d=4)
    p = data.sample_prompts(t, 7, 64, seed=1)
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    z = model.embed(p)
    assert z.shape == (64, 4 + (1 if c == 2 else c), 8)
    gap = (model.attention_logits(p, w) - model.logits(data.context_statistic(p), w, p.xq))
    assert float(gap.abs().max()) <= 1e-12
    # f(Z) leaves the input rows of Z unchanged
    out = model.attention_layer(z, w, 1 if c == 2 else c)
    assert torch.equal(out[:, :4], z[:, :4])  # only the label rows change


def test_probabilities():
    y = torch.tensor([0.0, 2.0], dtype=F64)
    assert torch.allclose(model.probabilities(y), torch.sigmoid(y))
    assert torch.allclose(model.probabilities(y[None]).sum(1), torch.ones(1, dtype=F64))
    with pytest.raises(ValueError):
        model.probabilities(torch.zeros(1, 1, 1))


def test_bad_model_inputs(task):
    st = data.sample_statistics(task, 4, 5, seed=0)
    with pytest.raises(ValueError, match="W"):
        model.logits(st.b, torch.zeros(2, 2, dtype=F64), st.xq)
    with pytest.raises(ValueError, match="b must"):
        model.logits(st.b[:3], torch.zeros(3, 3, dtype=F64), st.xq)
    with pytest.raises(InvalidTypeError):
        model.embed(st)
    with pytest.raises(ValueError, match="Z"):
        model.attention_layer(torch.zeros(2, 1, 3, dtype=F64), torch.zeros(1, 1), 1)
    with pytest.raises(ValueError, match="finite"):
        model.logits(st.b, torch.full((3, 3), float("inf"), dtype=F64), st.xq)


# ------------------------------------------------------------------ theory


@pytest.mark.parametrize("c", [2, 3])
def test_bayes_posterior_equals_density_ratio(c):
    t = data.default_task(n_classes=c)
    st = data.sample_statistics(t, 4, 500, seed=3)
    priors = [0.25, 0.75] if c == 2 else [0.2, 0.3, 0.5]
    closed = theory.bayes_posterior(st.means, t.cov_inv, st.xq, priors)
    dens = theory.density_posterior(st.means, t.cov, st.xq, priors)
    assert float((closed - dens).abs().max()) <= 1e-13


def test_bayes_constants():
    assert theory.bayes_accuracy(1.5) == pytest.approx(0.5 * (1 + math.erf(1.5 / 2)), abs=1e-12)
    for c, (acc, ce) in theory.BAYES_REFERENCE.items():
        assert theory.bayes_accuracy(1.5, c) == pytest.approx(acc, abs=1e-4)
        assert theory.bayes_cross_entropy(1.5, c) == pytest.approx(ce, abs=1.5e-3)
    with pytest.raises(ValueError, match="priors"):
        t = data.default_task()
        st = data.sample_statistics(t, 4, 5, seed=0)
        theory.bayes_posterior(st.means, t.cov_inv, st.xq, [0.5, 0.6])


def test_squared_loss_scale_minimises_the_squared_loss():
    """β = 2/(2 + r²) is where the closed-form squared loss is smallest; least squares agrees."""
    for r in (0.5, 1.5, 3.0):
        beta = theory.squared_loss_scale(r)
        loss = lambda b, r=r: 1 - b * r * r + b * b / 4 * (2 * r * r + r**4)  # noqa: E731
        assert loss(beta) < min(loss(beta - 1e-3), loss(beta + 1e-3))
    t = data.default_task(r=1.5, seed=0)
    f = training.features(data.sample_statistics(t, None, 50_000, seed=31))
    w = torch.linalg.lstsq(f.phi, f.y.unsqueeze(1)).solution.reshape(t.d, t.d)
    assert float(torch.trace(w @ t.cov)) / t.d == pytest.approx(theory.squared_loss_scale(1.5),
                                                                abs=0.006)
    with pytest.raises(ValueError, match="r"):
        theory.squared_loss_scale(0.0)


def test_optimal_scale_against_reference():
    assert theory.optimal_scale(None) == 2.0
    for n in (4, 32):
        assert theory.optimal_scale(n) == pytest.approx(theory.ALPHA_REFERENCE[n], abs=0.005)
    # quadrature converged: a finer rule moves it by < 1e-4
    assert theory.optimal_scale(8, nodes=30) == pytest.approx(theory.optimal_scale(8), abs=1e-5)
    assert 0 < theory.optimal_scale(8, d=2) < theory.optimal_scale(64, d=2) < 2


def test_scale_coefficient():
    value, prec = theory.SCALE_COEFFICIENT_REFERENCE
    assert abs(theory.scale_coefficient() - value) <= prec


def test_errors_vanish_at_the_limit():
    assert theory.error_limit(2.0) == pytest.approx(0.0, abs=1e-15)
    assert theory.ce_excess_limit(2.0) == pytest.approx(0.0, abs=1e-15)
    assert theory.error_limit(1.5) > 0 and theory.ce_excess_limit(1.5) > 0
    assert theory.bias_free_error_limit(1.5, 1.0) == pytest.approx(0.0, abs=1e-15)
    model_acc, bayes_acc = theory.bias_free_accuracy(1.5, 1.0)
    assert model_acc == pytest.approx(bayes_acc, abs=1e-12)
    assert theory.bias_free_accuracy(1.5, 1.8) == pytest.approx((0.8789, 0.9387), abs=1e-4)
    assert theory.unequal_norm_bias(1.5, 1.8) == pytest.approx(-2.52)


def test_fixed_rule_is_bayes_on_its_own_covariance(task):
    acc, se = theory.fixed_rule_accuracy(task, task.cov_inv, 200, seed=0)
    assert acc == pytest.approx(theory.bayes_accuracy(1.5), abs=1e-12) and se < 1e-12


def test_evaluate_at_the_limit(task):
    ev = theory.evaluate(task, 2 * task.cov_inv, None, 2000, seed=0)
    assert ev.error[0] < 1e-12 and abs(ev.ce_excess[0]) < 1e-12
    assert ev.accuracy == ev.bayes_accuracy
    ev3 = theory.evaluate(data.default_task(n_classes=3), 3 * task.cov_inv, 5, 500, seed=0)
    assert 0 < ev3.error[0] < 1


def test_bad_theory_inputs():
    with pytest.raises(ValueError, match="length"):
        theory.optimal_scale(0)
    with pytest.raises(InvalidTypeError, match="length"):
        theory.optimal_scale(8.0)
    with pytest.raises(ValueError, match="r"):
        theory.error_limit(1.0, r=-1)
    with pytest.raises(ValueError, match="n_classes"):
        theory.bayes_cross_entropy(1.5, 5)
    with pytest.raises(ValueError, match="lr"):
        theory.rate_factor(0.0, torch.eye(2, dtype=F64))
    with pytest.raises(InvalidTypeError, match="task"):
        theory.evaluate(None, torch.eye(3, dtype=F64), 4, 10, seed=0)


# ------------------------------------------------------------------ training


@pytest.fixture(scope="module", params=[2, 3])
def pool(request):
    t = data.default_task(n_classes=request.param)
    return t, training.features(data.sample_statistics(t, 8, 3000, seed=request.param))


def test_gradient_and_hessian_match_autograd(pool):
    t, f = pool
    w = 0.3 * torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=F64)

    def loss_fn(v):
        z = f.phi @ v
        if f.phi.dim() == 2:
            return torch.nn.functional.softplus(-f.y * z).mean()
        return torch.nn.functional.cross_entropy(z, f.y)

    v = w.reshape(-1).clone().requires_grad_(True)
    loss_fn(v).backward()
    assert torch.allclose(training.gradient(w, f).reshape(-1), v.grad, atol=1e-13)
    h_auto = torch.autograd.functional.hessian(loss_fn, w.reshape(-1))
    assert torch.allclose(training.hessian(w, f), h_auto, atol=1e-12)
    assert training.loss(w, f) == pytest.approx(float(loss_fn(w.reshape(-1))), abs=1e-14)


def test_smoothness_bounds_the_hessian(pool):
    _, f = pool
    ell = training.smoothness(f)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        ev = torch.linalg.eigvalsh(training.hessian(torch.randn(3, 3, generator=g, dtype=F64), f))
        assert 0 < float(ev[0]) and float(ev[-1]) <= ell * (1 + 1e-12)


def test_newton_gd_and_rate(pool):
    t, f = pool
    w_hat = training.newton(f)
    assert float(training.gradient(w_hat, f).abs().max()) < 1e-10
    lr = 1 / training.smoothness(f)
    hist = training.gradient_descent(f, lr, 300, w_ref=w_hat)
    assert np.all(np.diff(hist.losses) <= 1e-15)
    rho = theory.rate_factor(lr, training.hessian(w_hat, f))
    fitted, fit = training.fit_contraction(hist, (150, 300))
    assert abs(fitted - rho) <= 1e-3
    cov = training.sandwich_covariance(w_hat, f)
    assert cov.shape == (9, 9) and float(torch.linalg.eigvalsh(cov)[0]) > 0


def test_fit_scale_recovers_alpha(task):
    st = data.sample_statistics(task, 16, 60_000, seed=9)
    sc = training.fit_scale(st, task.cov_inv)
    assert abs(sc.alpha - theory.optimal_scale(16)) <= 4 * sc.stderr
    assert sc.n == 60_000


def test_bad_training_inputs(task):
    f = training.features(data.sample_statistics(task, 4, 50, seed=0))
    with pytest.raises(InvalidTypeError, match="stats"):
        training.features(f)
    with pytest.raises(ValueError, match="W"):
        training.loss(torch.zeros(2, 2, dtype=F64), f)
    with pytest.raises(InvalidTypeError, match="feats"):
        training.gradient(torch.zeros(3, 3, dtype=F64), "f")
    with pytest.raises(ValueError, match="lr"):
        training.gradient_descent(f, 0.0, 10)
    with pytest.raises(ValueError, match="steps"):
        training.gradient_descent(f, 0.1, 0)
    with pytest.raises(ValueError, match="steps"):
        training.gradient_descent(f, 0.1, 100, max_steps=10)
    hist = training.gradient_descent(f, 0.1, 3)
    with pytest.raises(ValueError, match="w_ref"):
        training.fit_contraction(hist, (0, 3))
    with pytest.raises(ValueError, match="tol"):
        training.newton(f, tol=0)
    with pytest.raises(ValueError, match="tol"):
        training.fit_scale(data.sample_statistics(task, 4, 50, seed=0), task.cov_inv, tol=-1.0)
    f_ref = training.features(data.sample_statistics(task, 4, 50, seed=0))
    hist_ref = training.gradient_descent(f_ref, 0.1, 5, w_ref=torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="window"):
        training.fit_contraction(hist_ref, (3, 1))
    with pytest.raises(InvalidTypeError, match="window"):
        training.fit_contraction(hist_ref, ("a", 3))
    with pytest.raises(ValueError, match="floor"):
        training.fit_contraction(hist_ref, (0, 5), floor=0.0)


def test_bad_inputs_of_the_checks_and_figures(task):
    with pytest.raises(ValueError, match="hess"):
        theory.rate_factor(0.5, torch.zeros(2, 3, dtype=F64))
    with pytest.raises(InvalidTypeError, match="task"):
        theory.fixed_rule_accuracy("task", torch.eye(3, dtype=F64), 10, seed=0)
    with pytest.raises(ValueError, match="two classes"):
        theory.fixed_rule_accuracy(data.default_task(n_classes=3), torch.eye(3, dtype=F64), 10,
                                   seed=0)
    with pytest.raises(ValueError, match="batch"):
        theory.evaluate(task, torch.eye(3, dtype=F64), 4, 1, seed=0)
    with pytest.raises(ValueError, match="two classes"):
        data.compare_samplers(data.default_task(n_classes=3), 4, 10, seed=0)
    st = data.sample_statistics(task, 4, 5, seed=0)
    with pytest.raises(ValueError, match="xq"):
        data.invariant_statistics(st.b, st.xq[:3], st.means, task)
    from icl.classification import viz

    with pytest.raises(ValueError, match="p_model"):
        viz.reliability([0.2, 1.5], [0.2, 0.3])
    with pytest.raises(ValueError, match="equal length"):
        viz.reliability([0.2, 0.5], [0.2])
    with pytest.raises(InvalidTypeError, match="bins"):
        viz.reliability([0.2, 0.5], [0.2, 0.4], bins=2.5)


# ------------------------------------------------------------------ package


def test_only_shared_icl_modules_are_imported():
    allowed = {"icl.validate", "icl.config", "icl.rates", "icl.viz.style"}
    for path in PKG.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.startswith("icl"):
                    assert node.module in allowed, f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("icl"), f"{path.name}: {alias.name}"


def test_comparison_row():
    keys = {"result", "task", "model", "optimum", "gd_converges_to", "rate", "generalises"}
    assert set(COMPARISON_ROW) == keys
    assert all(isinstance(v, str) and v for v in COMPARISON_ROW.values())


def test_figures_draw():
    from icl.classification import viz

    t = np.arange(50.0)
    viz.plot_rate({"a": (t, 3 * 0.9**t, 0.9)})
    viz.plot_scales([8, 32], [1.19, 1.73], [8], [1.2], [0.01], -9.5)
    runs = np.array([[0.1, 0.05, 0.025], [0.11, 0.051, 0.024]])
    viz.plot_errors([10, 40, 160], runs, (0.0, -0.5), [8, 16, 32], runs, [0.1, 0.05, 0.025],
                    (0.0, -1.0))
    p = np.linspace(0.01, 0.99, 100)
    pred, true = viz.reliability(p, p)
    np.testing.assert_allclose(pred, true)
    viz.plot_calibration([4, 16], [0.85, 0.85], 0.8556, [0.08, 0.01], {4: (pred, true, 0.8)})
    import matplotlib.pyplot as plt

    plt.close("all")
