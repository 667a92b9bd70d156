"""The exercises' self-checks: each accepts the reference, rejects plausible mistakes with a
helpful message that does not give the answer away, and explains broken answers."""

from __future__ import annotations

import re

import pytest
import sympy as sp
import torch

import icl.checks.lsa as check_lsa
import icl.checks.questions as check_q
import icl.checks.task as check
import icl.checks.transformer as check_tf
from icl import bayes, checks, general_task, laws, losses
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
    "ood_exposure": (check.ood_exposure, laws.filler_exposure,
                     [_noiseless_formula, _no_tau_excluded]),
    "overlap_probability": (check.overlap_probability, (3 * S - 2) / S**2,
                            [3 / S, 3 * S / S**2 - 2 / S, (3 * S - 4) / S**2]),
    "recover_output": (check.recover_output, bayes.recover_output,
                       [_first_after_q, lambda task, tokens: tokens[:, -1]]),
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
