"""Training: the optimiser of spec 5.1, the two data modes, the history, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import icl
from icl.training import normalized_step


def test_normalised_gd_gives_lambda_equal_eta_t_exactly():
    """Every example's loss decreases in Λ, so normalised SGD moves Λ by exactly η per step."""
    task = icl.RecallTask(seq_len=64, alpha=0.3)
    model = icl.OneLayerTransformer(task, "linear", "reparam", dtype=torch.float64)
    hist = icl.train(model, task, 40, 0.25, batch_size=32, seed=5, eval_every=10, ood=False)
    lam = hist.array("Lambda", "params")
    np.testing.assert_allclose(lam, 0.25 * hist.step_array, rtol=0, atol=1e-12)
    # and the population loss follows the closed form along Λ_t = ηt
    np.testing.assert_allclose(hist.array("loss"), icl.closed_form_loss(task, lam), atol=1e-12)


def test_normalised_gd_relu_and_float32():
    """ReLU from zero: all scores are 0, where we take the subgradient σ'(0) = 1."""
    task = icl.RecallTask(seq_len=32, alpha=0.5)
    model = icl.OneLayerTransformer(task, "relu", "reparam")
    icl.train(model, task, 30, 0.1, batch_size=16, seed=0, ood=False)
    assert float(model.Lambda.detach()) == pytest.approx(3.0, abs=1e-5)


def test_plain_gd_is_slower_than_normalised():
    task = icl.RecallTask(seq_len=32, alpha=0.5)
    runs = {}
    for normalized in (True, False):
        model = icl.OneLayerTransformer(task, "linear", "reparam", dtype=torch.float64)
        runs[normalized] = icl.train(
            model, task, 100, 0.5, batch_size=64, normalized=normalized, seed=1, ood=False
        )
    assert runs[True].pop["loss"][-1] < runs[False].pop["loss"][-1]
    # plain GD's step is η |∂L/∂Λ| ≤ η (N-2)/(N-1): Λ grows more slowly than ηt
    assert runs[False].params["Lambda"][-1] < 0.5 * 100


def test_normalized_step_skips_zero_gradients_and_normalises_per_tensor():
    a = torch.zeros(3, dtype=torch.float64)
    b = torch.ones(2, 2, dtype=torch.float64)
    normalized_step(
        [a, b], [torch.tensor([3.0, 4.0, 0.0], dtype=torch.float64), torch.zeros(2, 2)], 0.5
    )
    torch.testing.assert_close(a, torch.tensor([-0.3, -0.4, 0.0], dtype=torch.float64))
    torch.testing.assert_close(b, torch.ones(2, 2, dtype=torch.float64))
    normalized_step(
        [a], [torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)], 0.5, normalized=False
    )
    assert float(a[0]) == pytest.approx(-0.8)


def test_history_contents_and_reproducibility():
    task = icl.RecallTask(seq_len=32, alpha=0.2)
    runs = []
    for _ in range(2):
        model = icl.OneLayerTransformer(task, "linear", "origin", d_model=120)
        runs.append(
            icl.train(model, task, 12, 0.05, batch_size=32, seed=3, eval_every=5, eval_size=64)
        )
    h = runs[0]
    assert h.steps == [0, 5, 10, 12]
    assert len(h.train_loss) == 12
    for split in (h.pop, h.ood):
        assert set(split) >= {
            "loss",
            "sampled_loss",
            "p_y",
            "p_tau",
            "xiA_y",
            "xiA_other",
            "xiF_tau",
            "xiF_other",
        }
        assert all(len(v) == 4 for v in split.values())
    assert set(h.params) == {"|F|", "|V|", "|W|"}
    assert h.bayes_risk == pytest.approx(icl.bayes_risk(0.2))
    # zero initialisation: uniform prediction at step 0
    assert h.pop["loss"][0] == pytest.approx(math.log(task.vocab_size), rel=1e-6)
    assert h.pop["p_y"][0] == pytest.approx(1 / task.vocab_size, rel=1e-5)
    # same seed, same run
    assert runs[0].train_loss == runs[1].train_loss
    assert runs[0].pop == runs[1].pop
    # training reduces the loss
    assert h.pop["loss"][-1] < h.pop["loss"][0]
    np.testing.assert_allclose(h.excess(), h.array("loss") - icl.bayes_risk(0.2))


def test_finite_sample_mode_cycles_through_the_data():
    task = icl.RecallTask(seq_len=32, alpha=0.5)
    data = task.sample(64, seed=9)
    model = icl.OneLayerTransformer(task, "linear", "reparam", alpha_hat=0.4, dtype=torch.float64)
    hist = icl.train(model, task, 8, 0.5, batch_size=16, data=data, seed=0, ood=False)
    assert len(hist.train_loss) == 8  # two epochs of four mini-batches
    # the training loss uses only sequences of the data set: with Λ known, it can be recomputed
    assert float(model.Lambda.detach()) == pytest.approx(4.0)
    # population excess tends to KL(Ber(α) ‖ Ber(α̂)) as Λ grows: at Λ = 4 it is above it
    assert hist.pop["loss"][-1] - hist.bayes_risk > icl.kl_bernoulli(0.5, 0.4)


def test_expected_loss_integrates_the_target_noise():
    task = icl.RecallTask(seq_len=32, alpha=0.3)
    model = icl.construct_model(task, 2.0)
    batch = task.sample(20000, seed=2)
    xi = model(batch.tokens).xi.detach()
    exp = icl.expected_loss(xi, batch, task.alpha, task.noise_token)
    sampled = torch.nn.functional.cross_entropy(xi, batch.targets, reduction="none")
    se = float(sampled.std()) / math.sqrt(len(sampled))
    assert abs(float(exp.mean()) - float(sampled.mean())) < 4 * se
    assert float(exp.mean()) == pytest.approx(icl.closed_form_loss(task, 2.0), abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be a positive integer"),
        ({"steps": 2.5}, "steps must be a positive integer"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"eval_every": 0}, "eval_every must be a positive integer"),
        ({"data": "sequences"}, "data must be an icl.RecallBatch"),
    ],
)
def test_bad_training_arguments(kwargs, match):
    task = icl.RecallTask(seq_len=16)
    model = icl.OneLayerTransformer(task, family="reparam")
    args = {"steps": 2, "lr": 0.1} | kwargs
    steps, lr = args.pop("steps"), args.pop("lr")
    with pytest.raises(ValueError, match=match):
        icl.train(model, task, steps, lr, **args)


def test_model_and_task_must_match():
    model = icl.OneLayerTransformer(icl.RecallTask(seq_len=16), family="reparam")
    with pytest.raises(ValueError, match="model was built for"):
        icl.train(model, icl.RecallTask(seq_len=16, alpha=0.5), 2, 0.1)
    with pytest.raises(ValueError, match="model must be an icl.OneLayerTransformer"):
        icl.train(torch.nn.Linear(2, 2), icl.RecallTask(seq_len=16), 2, 0.1)


def test_recorded_metrics_equal_evaluate_on_the_evaluation_sets():
    """Consistency: ``train`` evaluates its held-out and unseen-output sets in one forward
    pass; the recorded numbers are those of :func:`icl.evaluate` on each set."""
    task = icl.RecallTask(alpha=0.3, seq_len=16)
    model = icl.OneLayerTransformer(task, "softmax", "origin")
    h = icl.train(model, task, 3, 0.1, batch_size=16, eval_size=24, eval_every=3, seed=5)
    pop = task.sample(24, seed=5 + 1_000_003)
    ood = task.sample(24, seed=5 + 2_000_003, ood=True)
    for split, batch in ((h.pop, pop), (h.ood, ood)):
        for name, value in icl.evaluate(model, batch).items():
            assert math.isclose(split[name][-1], value, rel_tol=1e-12, abs_tol=1e-12), name
# ------------------------------------------------------------------ options: weight decay, Adam
def _pair(task, family="origin"):
    a = icl.OneLayerTransformer(task, "linear", family, d_model=2 * task.vocab_size,
                                dtype=torch.float64)
    b = icl.OneLayerTransformer(task, "linear", family, d_model=2 * task.vocab_size,
                                dtype=torch.float64)
    return a, b


def test_default_options_leave_training_unchanged():
    """weight_decay=0 and adam=False give the same run, step for step, as leaving them out."""
    task = icl.RecallTask(vocab_size=12, n_triggers=2, n_outputs=3, seq_len=8, alpha=0.2)
    a, b = _pair(task)
    ha = icl.train(a, task, 6, 0.1, batch_size=8, eval_size=8, seed=3, eval_every=2)
    hb = icl.train(b, task, 6, 0.1, batch_size=8, eval_size=8, seed=3, eval_every=2,
                   weight_decay=0.0, adam=False)
    assert ha.train_loss == hb.train_loss and ha.pop == hb.pop and ha.normalized is True
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_weight_decay_is_decoupled():
    """One normalised step with decay ω from Λ = 2: Λ ← (1 - ηω)·2 + η (the gradient in Λ
    is negative for every sequence)."""
    task = icl.RecallTask(vocab_size=12, n_triggers=2, n_outputs=3, seq_len=8, alpha=0.2)
    m = icl.OneLayerTransformer(task, "linear", "reparam", d_model=24, dtype=torch.float64)
    with torch.no_grad():
        m.Lambda.fill_(2.0)
    icl.train(m, task, 1, 0.5, weight_decay=0.2, batch_size=8, eval_size=8, ood=False)
    assert math.isclose(float(m.Lambda), 2.0 * (1 - 0.1) + 0.5, rel_tol=1e-12)


def test_adam_option_is_torch_adamw():
    task = icl.RecallTask(vocab_size=12, n_triggers=2, n_outputs=3, seq_len=8)
    a, b = _pair(task)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            q.copy_(p)
    h = icl.train(a, task, 8, 0.05, adam=True, weight_decay=0.01, batch_size=16,
                  eval_size=16, seed=5)
    assert h.normalized is False and h.array("loss")[-1] < h.array("loss")[0]
    opt = torch.optim.AdamW(list(b.parameters()), lr=0.05, weight_decay=0.01)
    stream = icl.task.make_generator(5)
    for _ in range(8):
        batch = task.sample(16, generator=stream)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(b(batch.tokens).xi, batch.targets).backward()
        opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-10)


def test_bad_option_arguments():
    task = icl.RecallTask(seq_len=16)
    model = icl.OneLayerTransformer(task, family="reparam")
    with pytest.raises(ValueError, match="weight_decay"):
        icl.train(model, task, 2, 0.1, weight_decay=-0.1)
    with pytest.raises(TypeError, match="adam"):
        icl.train(model, task, 2, 0.1, adam="yes")
    with pytest.raises(ValueError, match="normalized"):
        icl.train(model, task, 2, 0.1, adam=True, normalized=False)
