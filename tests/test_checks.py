"""The exercises' self-checks: each accepts the reference, rejects plausible mistakes with a
helpful message that does not give the answer away, and explains broken answers."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.stats import norm

import icl.checks.bayes as check_bayes
import icl.checks.classification as cls_check
import icl.checks.construction as check_construction
import icl.checks.generalization as gen_check
import icl.checks.lsa as check_lsa
import icl.checks.questions as check_q
import icl.checks.reproduction as rep_check
import icl.checks.task as check
import icl.checks.training as check_training
import icl.checks.transformer as check_tf
from icl import (
    bayes,
    checks,
    dynamics,
    finite,
    general_task,
    laws,
    losses,
    shifts,
    softmax_construction,
)
from icl.classification import data as cls_data
from icl.classification import model as cls_model
from icl.classification import theory as cls_theory
from icl.closed_forms import closed_form_loss as icl_closed_form_loss
from icl.lsa import theory as lsa_theory

H = sp.Symbol("H")
S = H - 2
LN, LD, LS2, LETA = sp.symbols("n d sigma2 eta", positive=True)  # chapter R1
QA, QB, QNY, QNT = sp.symbols("a b n_y n_tau", positive=True)  # chapter 7


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+\.\d{3,}", text))


def _first_after_q(task, tokens):
    """The classic mistake: the token after the *first* q (τ when the noise pair comes first)."""
    hit = tokens[:, :-2] == tokens[:, -1:]
    return tokens[:, 1:-1].gather(1, hit.int().argmax(1)[:, None]).squeeze(1)


def _noiseless_formula(task):
    """Forgets that the noisy task plants a second pair (two fewer filler positions)."""
    k = len(task.filler)
    return (task.seq_len - 3) / k, (1 - 1 / k) ** (task.seq_len - 3)


def _no_tau_excluded(task):
    """Forgets that τ never occurs as filler: 1/(N - |Q|) instead of 1/(N - 1 - |Q|)."""
    n = task.seq_len - 3 - 2 * int(task.noisy)
    k = task.vocab_size - task.n_triggers
    return n / k, (1 - 1 / k) ** n


# ------------------------------------------------ chapter 5, 6 and R2 references and mistakes
ALPHA, K, R = sp.Symbol("alpha", positive=True), sp.Symbol("K", positive=True), sp.Symbol("r")
H_B = -ALPHA * sp.log(ALPHA) - (1 - ALPHA) * sp.log(1 - ALPHA)


def _freeze(net):
    with torch.no_grad():
        net.V.copy_(torch.eye(net.d_model))
    net.V.requires_grad_(False)


def _freeze_but_trainable(net):
    """Sets V = I and forgets to exclude it from training."""
    with torch.no_grad():
        net.V.copy_(torch.eye(net.d_model))


def _softmax_bound(task):
    """The lower bound of chapter 6 (section 6.1) taken for the limit."""
    N, a = task.vocab_size, task.alpha
    if a == 0:
        return math.log1p((N - 1) / math.e)
    return bayes.bayes_risk(a) + (1 - a) * math.log1p((N - 2) / math.e)


def _stall_float64(task, lr):
    lam = math.log((task.vocab_size - 2) * (1 - task.alpha) / 2.0**-52)
    return lam, math.ceil(lam / lr)


def _stall_steps_times_lr(task, lr):
    lam, _ = dynamics.float32_stall(task, lr)
    return lam, lam * lr


def _predict(prompts, w):
    return cls_model.logits(cls_data.context_statistic(prompts), w, prompts.xq)


def _predict_01_labels(prompts, w):
    b = (prompts.labels.double().unsqueeze(-1) * prompts.x).mean(1)
    return torch.einsum("bi,ij,bj->b", b, w, prompts.xq)


def _predict_transposed(prompts, w):
    return _predict(prompts, w.T.contiguous())


def _predict_sum(prompts, w):
    return _predict(prompts, w) * prompts.length


def _accuracy_power_c(r, c):
    """Φ(z + r)^c instead of ^(c - 1): counts the true class among its competitors."""
    z, wts = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(wts * norm.cdf(z + r) ** c) / math.sqrt(2 * math.pi))


A1, A2 = sp.symbols("alpha_1 alpha_2", positive=True)


def _risk_numpy_literal(a):
    """H_b typed literally with NumPy: NaN at α = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(-a * np.log(a) - (1 - a) * np.log1p(-a))


def _entropy_two(a1, a2):
    """The Bayes risk with two noise tokens: the entropy of (1 - a1 - a2, a1, a2)."""
    return bayes.categorical_entropy([1 - a1 - a2, a1, a2])


def _scores(task, tokens, lam):
    s = torch.zeros(tokens.shape, dtype=torch.float64)
    s[:, 1:] = lam * (tokens[:, :-1] == tokens[:, -1:]).double()
    if task.noisy:
        s -= lam * (tokens == task.noise_token).double()
    return s


def _scores_no_tau(task, tokens, lam):
    """Forgets the -Λ on τ's position (the noise pair then scores Λ as well)."""
    s = torch.zeros(tokens.shape, dtype=torch.float64)
    s[:, 1:] = lam * (tokens[:, :-1] == tokens[:, -1:]).double()
    return s


def _scores_same_position(task, tokens, lam):
    """Off by one: compares z_h (not z_{h-1}) with q."""
    s = lam * (tokens == tokens[:, -1:]).double()
    return s - lam * (tokens == task.noise_token).double() if task.noisy else s


def _equal_split(task, budget):
    return np.full(task.n_triggers, budget / task.n_triggers)


def _lambda_exact(task, eps):
    c = task.rate_constant if task.noisy else task.vocab_size - 1
    return math.log(c / math.expm1(eps))


def _lambda_from_bound(task, eps):
    """Inverts the bound (N-2)(1-α)e^{-Λ} ≤ ε instead of the exact excess."""
    return math.log((task.vocab_size - 2) * (1 - task.alpha) / eps)


def _lambda_noiseless_n2(task, eps):
    """The exact inversion, but N - 2 also in the noiseless task."""
    return math.log((task.vocab_size - 2) * (1 - task.alpha) / math.expm1(eps))


def _plain_gd_no_tau(task, lr, steps):
    """Forgets the τ logit in the partition function: Z = e^Λ + N - 2."""
    lam, out = 0.0, [0.0]
    for _ in range(steps):
        lam += lr * (task.vocab_size - 2) / (math.exp(lam) + task.vocab_size - 2)
        out.append(lam)
    return np.array(out)


def _plain_gd_no_start(task, lr, steps):
    """The right recursion without Λ_0 = 0 (one entry short)."""
    return dynamics.plain_gd_trajectory(task, lr, steps)[1:]


#: checks whose answer is a value (not a function): the "raises" case does not apply
VALUE_ANSWERS = {"final_lambdas"}

def _parameters(N, H, L, d, mlp):
    """Chapter 8's count, written out (2H positions, biases and layer-norm gains)."""
    block = 2 * d + 4 * d * d + 4 * d + ((2 * d + 8 * d * d + 5 * d) if mlp else 0)
    return N * d + 2 * H * d + L * block + 2 * d + d * N + N


def _log_of_mixture(logits, outputs, alpha, noise_token):
    """The cross-entropy of the averaged probability instead of the averaged cross-entropy."""
    p = torch.softmax(logits, -1)
    return -torch.log((1 - alpha) * p[torch.arange(len(outputs)), outputs]
                      + alpha * p[:, noise_token])


def _logits_not_normalised(logits, outputs, alpha, noise_token):
    """Forgets the log-partition function."""
    rows = torch.arange(len(outputs))
    return -(1 - alpha) * logits[rows, outputs] - alpha * logits[:, noise_token]


# (check, reference answer, wrong answers: plausible student mistakes)
CASES = {
    "alpha_shift_limit": (gen_check.alpha_shift_limit,
                          lambda at, ae: bayes.bayes_risk(ae) + bayes.kl_bernoulli(ae, at),
                          [lambda at, ae: bayes.bayes_risk(ae),
                           lambda at, ae: bayes.bayes_risk(ae) + bayes.kl_bernoulli(at, ae)]),
    "freeze_value": (gen_check.freeze_value, _freeze,
                     [_freeze_but_trainable, lambda net: net.V.requires_grad_(False)]),
    "context_free_risk": (gen_check.context_free_risk, H_B + (1 - ALPHA) * sp.log(K),
                          [sp.log(K), (1 - ALPHA) * sp.log(K), H_B + sp.log(K)]),
    "rate_slope": (rep_check.rate_slope,
                   lambda task, lr: -float(dynamics.normalized_gd_trajectory(task, lr, 1.0)),
                   [lambda task, lr: -lr if task.noisy else -lr / task.n_triggers,
                    lambda task, lr: -lr, lambda task, lr: lr]),
    "softmax_limit": (rep_check.softmax_limit, softmax_construction.softmax_unscaled_floor,
                      [_softmax_bound, lambda task: bayes.bayes_risk(task.alpha)]),
    "float32_stall": (rep_check.float32_stall, dynamics.float32_stall,
                      [_stall_float64, _stall_steps_times_lr]),
    "prediction": (cls_check.prediction, _predict,
                   [_predict_01_labels, _predict_transposed, _predict_sum]),
    "squared_loss_scale": (cls_check.squared_loss_scale, 2 / (2 + R**2),
                           [2 / R**2, 1 / (1 + R**2)]),
    "bayes_accuracy": (cls_check.bayes_accuracy, cls_theory.bayes_accuracy,
                       [lambda r, c: norm.cdf(r / math.sqrt(2)), _accuracy_power_c]),
    "ood_exposure": (check.ood_exposure, laws.filler_exposure,
                     [_noiseless_formula, _no_tau_excluded]),
    "overlap_probability": (check.overlap_probability, (3 * S - 2) / S**2,
                            [3 / S, 3 * S / S**2 - 2 / S, (3 * S - 4) / S**2]),
    "recover_output": (check.recover_output, bayes.recover_output,
                       [_first_after_q, lambda task, tokens: tokens[:, -1]]),
    # chapter 2
    "bayes_risk": (check_bayes.bayes_risk, bayes.bayes_risk,
                   [lambda a: -a * math.log(a) - (1 - a) * math.log(1 - a),  # log(0) at 0
                    _risk_numpy_literal,  # NaN at 0
                    lambda a: bayes.bayes_risk(a) / math.log(2)]),  # bits, not nats
    "two_noise_risk": (check_bayes.two_noise_risk, _entropy_two,
                       [-(A1 + A2) * sp.log(A1 + A2) - (1 - A1 - A2) * sp.log(1 - A1 - A2),
                        lambda a1, a2: bayes.bayes_risk(a1) + bayes.bayes_risk(a2),
                        -A1 * sp.log(A1) - A2 * sp.log(A2)]),
    "plugin_bound": (check_bayes.plugin_bound, finite.quadratic_hoeffding_bound,
                     [lambda a, m, d: math.log(1 / d) / (4 * m * a * (1 - a)),
                      lambda a, m, d: bayes.hoeffding_radius(m, d) ** 2 / (a * (1 - a)),
                      lambda a, m, d: 0.5 / m]),
    # chapter 3
    "construction_scores": (check_construction.construction_scores, _scores,
                            [_scores_no_tau, _scores_same_position]),
    "best_split": (check_construction.best_split, _equal_split,
                   [lambda task, b: np.r_[b, np.zeros(task.n_triggers - 1)],
                    lambda task, b: b * np.arange(1, task.n_triggers + 1)
                    / np.arange(1, task.n_triggers + 1).sum()]),
    "plugin_limit": (check_construction.plugin_limit,
                     lambda a, ah: bayes.bayes_risk(a) + bayes.kl_bernoulli(a, ah),
                     [lambda a, ah: bayes.bayes_risk(ah),
                      lambda a, ah: bayes.bayes_risk(a) + bayes.kl_bernoulli(ah, a)]),
    "lambda_for_excess": (check_construction.lambda_for_excess, _lambda_exact,
                          [_lambda_from_bound, _lambda_noiseless_n2]),
    # chapter 4
    "final_lambdas": (check_training.final_lambdas, (19.5, 30.0),
                      [(30.0, 30.0), (18.0, 30.0), (19.5, 29.5)]),
    "growth_ratio": (check_training.growth_ratio,
                     lambda q, b: dynamics.noiseless_balance_efficiency(q, b) / math.sqrt(q),
                     [lambda q, b: 1 / math.sqrt(q), lambda q, b: 1 / q]),
    "plain_gd": (check_training.plain_gd, dynamics.plain_gd_trajectory,
                 [_plain_gd_no_tau, _plain_gd_no_start,
                  lambda task, lr, steps: lr * np.arange(steps + 1.0)]),
    # chapter R1
    "noiseless_query_optimum": (
        check_lsa.noiseless_query_optimum,
        lambda n, d, s2, t2: (lsa_theory.eta_star(n, d, s2, t2),
                              lsa_theory.loss_star(n, d, s2, t2) - s2),
        [lambda n, d, s2, t2: (lsa_theory.eta_star(n, d, s2, t2),
                               lsa_theory.loss_star(n, d, s2, t2)),  # query noise kept
         lambda n, d, s2, t2: (n / (n + d + 1), t2 * d * (1 - n / (n + d + 1)))]),  # no noise
    "prior_scale_step": (check_lsa.prior_scale_step, LN / (LN + LD + 1 + LD * LS2),
                         [LN / (LN + LD + 1 + LS2), LN / (LN + LD + 1 + LS2 / LD)]),
    "step_loss": (check_lsa.step_loss,
                  LS2 + LD * (1 - 2 * LETA + LETA**2 * (LN + LD + 1 + LS2) / LN),
                  [LS2 + LD * (1 - 2 * LETA + LETA**2 * (LN + 1 + LS2) / LN),
                   LD * (1 - 2 * LETA + LETA**2 * (LN + LD + 1 + LS2) / LN),
                   LS2 + LD * (1 - LETA + LETA**2 * (LN + LD + 1 + LS2) / LN)]),
    # chapter 8
    "parameter_count": (check_tf.parameter_count, _parameters,
                        [lambda N, H, L, d, mlp: _parameters(N, H // 2, L, d, mlp),
                         lambda N, H, L, d, mlp: _parameters(N, H, L, d, True),
                         lambda N, H, L, d, mlp: _parameters(N, H, L, d, mlp) - 2 * d * (L + 1)]),
    "noise_averaged_loss": (check_tf.noise_averaged_loss, losses.expected_loss,
                            [_log_of_mixture, _logits_not_normalised]),
    # chapter 7
    "sign_step_fraction": (check_q.sign_step_fraction, lambda Q, B: 1 - (1 - 1 / Q) ** B,
                           [lambda Q, B: min(1.0, B / Q), lambda Q, B: (1 - 1 / Q) ** B,
                            lambda Q, B: 1 - (1 - 1 / Q) ** (B - 1)]),
    "one_occurrence_risk": (check_q.one_occurrence_risk,
                            lambda a, b: bayes.binary_entropy(a / (a + b + 1)),
                            [lambda a, b: bayes.binary_entropy(a / (a + b)),
                             lambda a, b: bayes.binary_entropy((a + 1) / (a + b + 1))]),
    "posterior_predictive": (check_q.posterior_predictive,
                             (QA + QNT) / (QA + QB + QNY + QNT),
                             [QNT / (QNY + QNT), (QB + QNT) / (QA + QB + QNY + QNT),
                              QA / (QA + QB), (QA + QNT) / (QA + QB + QNY + QNT + 1)]),
}


@pytest.mark.parametrize("name", CASES)
def test_reference_is_correct(name, capsys):
    fn, reference, _ = CASES[name]
    assert fn(reference) is True
    assert fn(reference, strict=True) is True
    assert capsys.readouterr().out.strip().endswith("correct")


@pytest.mark.parametrize("name", CASES)
def test_mistakes_are_caught_without_the_answer(name, capsys):
    fn, reference, wrongs = CASES[name]
    for wrong in wrongs:
        assert fn(wrong) is False
        out = capsys.readouterr().out
        assert "not yet" in out and "Hint:" in out, out
        with pytest.raises(AssertionError, match="not yet") as info:
            fn(wrong, strict=True)
        assert str(info.value) in out  # the same message, raised
        capsys.readouterr()
    # the reference values never appear in a message about a number
    if name == "ood_exposure":
        fn(_noiseless_formula)
        out = capsys.readouterr().out
        mean, absent = laws.filler_exposure(icl_noisy := check.RecallTask(alpha=0.5))
        assert icl_noisy.noisy and f"{mean:.6g}" not in out and f"{absent:.6g}" not in out
        assert "too high" in out
    if name == "overlap_probability":
        fn(3 / S)
        out = capsys.readouterr().out
        assert "too high" in out and f"{laws.overlap_probability(6):.6g}" not in out
        assert "(3" not in out and "S - 2" not in out  # no formula


@pytest.mark.parametrize("name", CASES)
def test_broken_answers_are_explained(name, capsys):
    fn = CASES[name][0]
    if name in VALUE_ANSWERS:  # a value is handed in: a wrong type is explained
        assert fn("42") is False and "not yet" in capsys.readouterr().out
        return
    explained = {
        "raises": (lambda *a: 1 / 0, "raised ZeroDivisionError"),
        "not a function": ("42", None),
    }
    for label, (answer, phrase) in explained.items():
        assert fn(answer) is False, label
        out = capsys.readouterr().out
        assert "not yet" in out and (phrase is None or phrase in out), (label, out)


@pytest.mark.parametrize("name", ["ood_exposure", "recover_output"])
def test_a_stub_stays_not_implemented(name):
    def stub(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="write its body"):
        CASES[name][0](stub)


def test_wrong_types_shapes_and_nans(capsys):
    assert not check.ood_exposure(lambda t: float("nan"))
    assert "pair" in capsys.readouterr().out
    assert not check.ood_exposure(lambda t: (float("nan"), 0.1))
    assert "NaN" in capsys.readouterr().out
    assert not check.ood_exposure(lambda t: (None, 0.1))
    assert "None" in capsys.readouterr().out
    assert not check.ood_exposure(lambda t: (torch.ones(3), 0.1))
    assert "shape (3,)" in capsys.readouterr().out
    assert not check.overlap_probability(0.0118)
    assert "single number" in capsys.readouterr().out
    assert not check.overlap_probability(3 / sp.Symbol("S"))
    assert "symbol H" in capsys.readouterr().out
    assert check.overlap_probability(lambda h: sp.Rational(3 * (h - 2) - 2, (h - 2) ** 2))
    capsys.readouterr()
    assert not check.recover_output(lambda task, tokens: tokens[:, -2:])
    assert "shape (200,)" in capsys.readouterr().out
    assert not check.recover_output(lambda task, tokens: tokens[:, -1].float())
    assert "integer token ids" in capsys.readouterr().out


def test_seeds_and_options_are_validated():
    with pytest.raises(ValueError, match="seed"):
        check.ood_exposure(laws.filler_exposure, seed=-1)
    with pytest.raises(TypeError, match="strict"):
        check.recover_output(bayes.recover_output, strict="yes")
    with pytest.raises(ValueError, match="n_cases"):
        check.overlap_probability(3 / S, n_cases=0)


def test_other_seeds_pass_the_reference(capsys):
    for seed in (1, 7, 123):
        assert check.ood_exposure(laws.filler_exposure, seed=seed)
        assert check.overlap_probability((3 * S - 2) / S**2, seed=seed)
        assert check.recover_output(bayes.recover_output, seed=seed, batch_size=50)


def test_compare_numbers_messages():
    with pytest.raises(checks.Mismatch, match=r"too low by 50.0% \(relative\)"):
        checks.compare_numbers(1.0, 2.0, what="x", on="the input")
    with pytest.raises(checks.Mismatch, match="infinite"):
        checks.compare_numbers(float("inf"), 2.0, what="x", on="the input")
    checks.compare_numbers(sp.Rational(1, 3), 1 / 3, what="x", on="the input")
    with pytest.raises(checks.Mismatch, match="differs in 1 of 3 entries; the first is index 2"):
        checks.compare_tensors(torch.tensor([1, 2, 4]), torch.tensor([1, 2, 3]), what="x",
                               on="the input")
    with pytest.raises(checks.Mismatch, match="shape"):
        checks.compare_tensors(torch.zeros(2), torch.zeros(3), what="x", on="the input")


def test_references_against_the_sampler():
    """The references of the chapter-1 exercises agree with simulation (5 standard errors)."""
    task = check.RecallTask()
    B = 2000
    usage = laws.token_usage(task, task.sample(B, seed=60))
    mean, absent = laws.filler_exposure(task)
    assert round(mean, 2) == 4.69 and round(absent, 4) == 0.0088
    assert abs(usage.as_filler[9] / B - mean) < 5 * (mean / B) ** 0.5
    assert abs(1 - usage.seqs_with_filler[9] / B - absent) < 5 * (absent / B) ** 0.5
    noisy = check.RecallTask(alpha=0.5)
    n_mean, n_absent = laws.filler_exposure(noisy)
    assert round(n_mean, 2) == 4.65 and round(n_absent, 4) == 0.0092
    nu = laws.token_usage(noisy, noisy.sample(B, seed=61))
    assert abs(nu.as_filler[9] / B - n_mean) < 5 * (n_mean / B) ** 0.5

    p_lost = laws.overlap_probability(256)
    assert round(p_lost, 4) == 0.0118
    n = 200_000
    g = torch.Generator().manual_seed(70)
    p, p2 = torch.randint(254, (n,), generator=g), torch.randint(254, (n,), generator=g)
    lost = ((p - p2).abs() <= 1).double().mean().item()
    assert abs(lost - p_lost) < 5 * (p_lost * (1 - p_lost) / n) ** 0.5
    with pytest.raises(ValueError, match="seq_len"):
        laws.overlap_probability(3)


def test_chapters_5_6_r2_checks_do_not_leak_the_reference(capsys):
    """The wrong answers' messages hold neither the reference number nor the formula."""
    gen_check.alpha_shift_limit(lambda at, ae: bayes.bayes_risk(ae))
    ref = bayes.bayes_risk(0.5) + bayes.kl_bernoulli(0.5, 0.2)
    out = capsys.readouterr().out
    assert "too low" in out and f"{ref:.6g}" not in out and "KL" not in out
    gen_check.context_free_risk(sp.log(K))
    out = capsys.readouterr().out
    assert f"{shifts.context_free_risk(check.RecallTask(alpha=0.5)):.6g}" not in out
    assert "log" not in out.split("Hint:")[0]
    rep_check.softmax_limit(_softmax_bound)
    out = capsys.readouterr().out
    assert "too low" in out
    assert f"{softmax_construction.softmax_unscaled_floor(check.RecallTask(alpha=0.5)):.6g}" \
        not in out
    rep_check.float32_stall(_stall_float64)
    out = capsys.readouterr().out
    lam, steps = dynamics.float32_stall(check.RecallTask(alpha=0.5), 0.05)
    assert "too high" in out and f"{lam:.6g}" not in out and str(steps) not in out
    rep_check.rate_slope(lambda task, lr: -lr if task.noisy else -lr / task.n_triggers)
    out = capsys.readouterr().out
    assert "sqrt" not in out and "√" not in out
    cls_check.squared_loss_scale(2 / R**2)
    out = capsys.readouterr().out
    assert f"{cls_theory.squared_loss_scale(1.5):.6g}" not in out and "2 + r" not in out
    cls_check.bayes_accuracy(lambda r, c: norm.cdf(r / math.sqrt(2)))
    out = capsys.readouterr().out
    assert f"{cls_theory.bayes_accuracy(1.5, 4):.6g}" not in out
    cls_check.prediction(_predict_01_labels)
    out = capsys.readouterr().out
    assert "expected" not in out


# ------------------------------------------------------------------ chapters 2-4
@pytest.mark.parametrize("name", ["bayes_risk", "two_noise_risk", "plugin_bound", "best_split",
                                  "plugin_limit", "lambda_for_excess", "growth_ratio",
                                  "plain_gd", "construction_scores"])
def test_chapters_2_4_stubs_stay_not_implemented(name):
    def stub(*args):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError, match="write its body"):
        CASES[name][0](stub)


def test_chapters_2_4_messages_do_not_give_the_answer(capsys):
    """A wrong number is reported as too high/low, never with the reference value."""
    check_bayes.bayes_risk(lambda a: bayes.bayes_risk(a) / math.log(2))
    out = capsys.readouterr().out
    assert "too high" in out and f"{math.log(2):.6g}" not in out
    check_bayes.two_noise_risk(-(A1 + A2) * sp.log(A1 + A2)
                               - (1 - A1 - A2) * sp.log(1 - A1 - A2))
    out = capsys.readouterr().out
    assert "too low" in out and f"{_entropy_two(0.1, 0.3):.6g}" not in out
    check_bayes.plugin_bound(lambda a, m, d: 0.5 / m)
    out = capsys.readouterr().out
    assert f"{finite.quadratic_hoeffding_bound(0.2, 2048, 0.05):.6g}" not in out
    check_construction.lambda_for_excess(_lambda_from_bound)
    out = capsys.readouterr().out
    task = check_construction.RecallTask(alpha=0.2)
    assert "too low" in out and f"{_lambda_exact(task, 0.5):.6g}" not in out
    check_construction.best_split(lambda task, b: np.r_[b, np.zeros(task.n_triggers - 1)])
    out = capsys.readouterr().out
    best = icl_closed_form_loss(check_construction.RecallTask(), np.full(5, 4.0))
    assert "too high" in out and f"{best:.6g}" not in out
    check_training.final_lambdas((30.0, 30.0))
    out = capsys.readouterr().out
    assert "too high" in out and "19.5" not in out
    check_training.plain_gd(_plain_gd_no_tau)
    out = capsys.readouterr().out
    assert "expected" not in out


def test_chapters_5_6_r2_checks_explain_wrong_types(capsys):
    assert not gen_check.context_free_risk(1.386)
    assert "single number" in capsys.readouterr().out
    assert not gen_check.context_free_risk(sp.log(sp.Symbol("O")))
    assert "alpha and K" in capsys.readouterr().out
    assert gen_check.context_free_risk(shifts.context_free_risk)  # a function of the task
    capsys.readouterr()
    assert not gen_check.freeze_value(lambda net: icl_model_copy(net))
    assert "in place" in capsys.readouterr().out
    assert not rep_check.float32_stall(lambda task, lr: 19.3)
    assert "pair" in capsys.readouterr().out
    assert not rep_check.softmax_limit(lambda task: float("nan"))
    assert "NaN" in capsys.readouterr().out
    assert not cls_check.prediction(lambda p, w: _predict(p, w)[:, None])
    assert "squeeze" in capsys.readouterr().out
    assert not cls_check.prediction(lambda p, w: _predict(p, w)[:-1])
    assert "shape" in capsys.readouterr().out
    assert not cls_check.squared_loss_scale(0.47)
    assert "single number" in capsys.readouterr().out
    assert cls_check.squared_loss_scale(cls_theory.squared_loss_scale)  # a function of r
    capsys.readouterr()
    for stub_check in (gen_check.freeze_value, rep_check.rate_slope, cls_check.prediction):
        with pytest.raises(NotImplementedError, match="write its body"):
            stub_check(_stub)


def icl_model_copy(net):
    """Returns a frozen copy instead of changing the model it is given."""
    import copy

    other = copy.deepcopy(net)
    _freeze(other)
    return other


def _stub(*args):
    raise NotImplementedError()


def test_chapters_5_6_r2_checks_other_seeds_and_options(capsys):
    for seed in (1, 7):
        assert gen_check.alpha_shift_limit(CASES["alpha_shift_limit"][1], seed=seed)
        assert gen_check.context_free_risk(CASES["context_free_risk"][1], seed=seed)
        assert rep_check.rate_slope(CASES["rate_slope"][1], seed=seed)
        assert rep_check.softmax_limit(softmax_construction.softmax_unscaled_floor, seed=seed)
        assert rep_check.float32_stall(dynamics.float32_stall, seed=seed)
        assert cls_check.prediction(_predict, seed=seed, batch_size=16)
        assert cls_check.squared_loss_scale(2 / (2 + R**2), seed=seed)
        assert cls_check.bayes_accuracy(cls_theory.bayes_accuracy, seed=seed)
    assert gen_check.freeze_value(_freeze, seed=5, n_cases=1)
    with pytest.raises(ValueError, match="seed"):
        rep_check.rate_slope(CASES["rate_slope"][1], seed=-1)
    with pytest.raises(TypeError, match="strict"):
        cls_check.bayes_accuracy(cls_theory.bayes_accuracy, strict="yes")
    with pytest.raises(ValueError, match="n_cases"):
        gen_check.freeze_value(_freeze, n_cases=0)


def test_chapters_2_4_wrong_shapes_and_types(capsys):
    assert not check_construction.best_split(lambda task, b: [b])
    assert "one per trigger" in capsys.readouterr().out
    assert not check_construction.best_split(lambda task, b: np.full(task.n_triggers, b))
    assert "sum to" in capsys.readouterr().out
    assert not check_construction.lambda_for_excess(lambda task, e: float("nan"))
    assert "NaN" in capsys.readouterr().out
    assert not check_training.plain_gd(lambda task, lr, steps: None)
    assert "None" in capsys.readouterr().out
    assert not check_training.final_lambdas(19.5)
    assert "pair" in capsys.readouterr().out
    assert not check_bayes.two_noise_risk(sp.Symbol("alpha") * 2)
    assert "alpha_1 and alpha_2" in capsys.readouterr().out
    assert not check_bayes.two_noise_risk(0.898)
    assert "single number" in capsys.readouterr().out
    assert check_bayes.two_noise_risk(lambda a1, a2: _entropy_two(a1, a2))
    capsys.readouterr()


def test_chapters_2_4_options_are_validated():
    with pytest.raises(ValueError, match="seed"):
        check_bayes.bayes_risk(bayes.bayes_risk, seed=-1)
    with pytest.raises(TypeError, match="strict"):
        check_construction.plugin_limit(None, strict="yes")
    with pytest.raises(ValueError, match="n_cases"):
        check_training.growth_ratio(None, n_cases=0)


def test_chapters_2_4_other_seeds_pass_the_reference(capsys):
    for seed in (1, 7, 123):
        for name in ("bayes_risk", "two_noise_risk", "plugin_bound", "best_split",
                     "plugin_limit", "lambda_for_excess", "growth_ratio", "plain_gd",
                     "construction_scores"):
            fn, reference, _ = CASES[name]
            assert fn(reference, seed=seed), (name, seed)
    assert check_training.final_lambdas((19.5, 30.0), seed=5)


def test_lsa_checks_explain_expressions(capsys):
    """Chapter R1: a stray symbol, a bare number and a function of the sizes."""
    assert not check_lsa.prior_scale_step(LN / (LN + LD + 1 + sp.Symbol("tau2")))
    assert "tau2" in capsys.readouterr().out
    assert not check_lsa.step_loss(1.5)
    assert "single number" in capsys.readouterr().out
    assert check_lsa.step_loss(lsa_theory.isotropic_loss)
    assert not check_lsa.noiseless_query_optimum(lambda n, d, s2, t2: 0.5)
    assert "pair" in capsys.readouterr().out


def test_attention_only_check(capsys):
    """Chapter 8: the experiment's check rejects what is not a trained attention-only net."""
    from icl.standard_transformer import StandardTransformer

    task = check.RecallTask(vocab_size=20, seq_len=16, alpha=0.5)
    net = StandardTransformer(task, n_layers=2, d_model=16, n_heads=2, mlp=False, seed=0)
    assert not check_tf.attention_only(net)
    assert "nats above the Bayes risk" in capsys.readouterr().out
    assert not check_tf.attention_only(StandardTransformer(task, n_layers=2, d_model=16))
    assert "without MLPs" in capsys.readouterr().out
    assert not check_tf.attention_only("net")
    assert "StandardTransformer" in capsys.readouterr().out
    noiseless = check.RecallTask(vocab_size=20, seq_len=16)
    assert not check_tf.attention_only(StandardTransformer(noiseless, d_model=16, mlp=False))
    assert "noiseless" in capsys.readouterr().out
    # the reference (the chapter's training) passes: tests/test_course_kit.py autogrades it


def test_general_task_references_agree(capsys):
    """Chapter 7: the K = 1 risk is H_b of the constant predictive probability."""
    task = general_task.GeneralTask(check.RecallTask(alpha=0.5), max_occurrences=1,
                                    n_distractors=0, prior=(1.0, 1.0))
    assert abs(general_task.bayes_risk_general(task) - bayes.binary_entropy(1 / 3)) < 1e-12
    assert check_q.posterior_predictive(
        lambda a, b, ny, nt: sp.Rational(1, 1) * (a + nt) / (a + b + ny + nt))
    assert not check_q.posterior_predictive(QA / (QA + sp.Symbol("c")))
    assert "['c']" in capsys.readouterr().out
