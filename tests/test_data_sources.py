"""Every data set and statistic the trainer and the estimators build comes from the right source.

Each test would fail if the quantity were built from a wrong source: the loss fitted to
the outputs instead of the targets, or to another stream; an evaluation set drawn from
the training stream or changed by the training data; an OOD set holding training outputs;
a standard error with the wrong degrees of freedom.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

import icl
from icl import bayes, finite, laws, montecarlo, shifts
from icl.task import make_generator

train_mod = importlib.import_module("icl.training")

TASK = icl.RecallTask(vocab_size=20, seq_len=16, alpha=0.2)
STEPS, LR, B, EVAL = 6, 0.3, 16, 32


def _model(task=TASK):
    return icl.OneLayerTransformer(task, family="reparam", d_model=40, dtype=torch.float64)


def _replay(task, steps, lr, *, seed, batch_size, data=None, target="targets"):
    """Normalised GD by hand: the per-step losses and the final ``Λ`` the trainer should give."""
    model = _model(task)
    params = [p for p in model.parameters() if p.requires_grad]
    g = make_generator(seed)
    order, cursor, out = torch.empty(0, dtype=torch.long), 0, []
    for _ in range(steps):
        if data is None:
            batch = task.sample(batch_size, generator=g)
        else:
            if cursor + batch_size > len(order):
                order, cursor = torch.randperm(data.batch_size, generator=g), 0
            batch = data[order[cursor : cursor + batch_size]]
            cursor += batch_size
        loss = torch.nn.functional.cross_entropy(model(batch.tokens).xi, getattr(batch, target))
        grads = torch.autograd.grad(loss, params)
        train_mod.normalized_step(params, list(grads), lr)
        out.append(float(loss.detach()))
    return np.array(out), float(model.Lambda.detach())


@pytest.fixture
def spy(monkeypatch):
    """Record the batches the trainer evaluates on, one entry per set per evaluation.

    ``icl.train`` moves its evaluation sets to the device once (``_to_device``) and then, at
    every evaluation, scores them in one forward pass (``icl.roles._metrics`` on their
    concatenated tokens, one group per set): each group is matched to the batch it came from.
    """
    seen: list[icl.RecallBatch] = []
    moved: list[icl.RecallBatch] = []
    real_move, real_metrics = train_mod._to_device, train_mod.roles._metrics

    def moving(batch, device):
        out = real_move(batch, device)
        moved.append(out)
        return out

    def recording(model, tokens, outputs, targets, alpha, groups=1):
        for chunk in tokens.chunk(groups):
            match = [b for b in moved if b.tokens.shape == chunk.shape
                     and torch.equal(b.tokens, chunk)]
            assert match, "an evaluated group is not one of the moved evaluation sets"
            seen.append(match[-1])
        return real_metrics(model, tokens, outputs, targets, alpha, groups)

    monkeypatch.setattr(train_mod, "_to_device", moving)
    monkeypatch.setattr(train_mod.roles, "_metrics", recording)
    return seen


# ------------------------------------------------------------------ what the loss is fitted to
def test_loss_is_fitted_to_the_targets_of_the_training_stream():
    hist = icl.train(_model(), TASK, STEPS, LR, batch_size=B, eval_size=EVAL, seed=3)
    losses, lam = _replay(TASK, STEPS, LR, seed=3, batch_size=B)
    np.testing.assert_allclose(hist.train_loss, losses, rtol=1e-12)
    assert hist.params["Lambda"][-1] == pytest.approx(lam, rel=1e-12)
    # the same stream scored against the clean outputs y instead: a different curve
    wrong, _ = _replay(TASK, STEPS, LR, seed=3, batch_size=B, target="outputs")
    assert np.max(np.abs(wrong - losses)) > 1e-3
    # another seed is another stream
    other, _ = _replay(TASK, STEPS, LR, seed=4, batch_size=B)
    assert np.max(np.abs(other - losses)) > 1e-6


def test_finite_sample_mode_fits_only_the_given_data():
    data = TASK.sample(24, seed=11)
    hist = icl.train(_model(), TASK, STEPS, LR, batch_size=8, eval_size=EVAL, seed=5, data=data)
    losses, lam = _replay(TASK, STEPS, LR, seed=5, batch_size=8, data=data)
    np.testing.assert_allclose(hist.train_loss, losses, rtol=1e-12)
    assert hist.params["Lambda"][-1] == pytest.approx(lam, rel=1e-12)
    # data whose targets are all tau pull Lambda the other way than the population would
    all_tau = icl.RecallBatch(data.tokens, torch.full_like(data.targets, TASK.noise_token),
                              data.outputs, data.pair_pos, data.noise_pos)
    h_tau = icl.train(_model(), TASK, STEPS, LR, batch_size=8, eval_size=EVAL, seed=5,
                      data=all_tau)
    assert h_tau.train_loss != hist.train_loss


# ------------------------------------------------------------------ evaluation sets
def test_evaluation_sets_are_fixed_held_out_and_of_the_right_kind(spy):
    seed = 7
    icl.train(_model(), TASK, STEPS, LR, batch_size=B, eval_size=EVAL, seed=seed, eval_every=2)
    n_evals = len(range(0, STEPS + 1, 2))
    assert len(spy) == 2 * n_evals  # pop and OOD at every evaluation
    pop, ood = spy[0], spy[1]
    for k in range(n_evals):  # the same two sets at every evaluation
        assert torch.equal(spy[2 * k].tokens, pop.tokens)
        assert torch.equal(spy[2 * k + 1].tokens, ood.tokens)
    assert len(pop) == EVAL and len(ood) == EVAL
    # pop: training outputs; OOD: unseen outputs, read off the context itself
    assert set(pop.outputs.tolist()) <= set(TASK.outputs.tolist())
    assert set(ood.outputs.tolist()) <= set(TASK.ood_outputs.tolist())
    assert torch.equal(bayes.recover_output(TASK, ood.tokens), ood.outputs)
    assert laws.check_structure(TASK, ood, ood=True) == dict.fromkeys(
        laws.check_structure(TASK, ood, ood=True), 0)
    # held out: no evaluation sequence is a sequence of the training stream
    g = make_generator(seed)
    train_rows = torch.cat([TASK.sample(B, generator=g).tokens for _ in range(STEPS)])
    for ev in (pop, ood):
        same = (ev.tokens[:, None, :] == train_rows[None, :, :]).all(-1)
        assert not bool(same.any())
    assert not torch.equal(pop.tokens, ood.tokens)


def test_evaluation_sets_do_not_depend_on_the_training_data(spy):
    icl.train(_model(), TASK, 2, LR, batch_size=8, eval_size=EVAL, seed=1)
    first = [b.tokens.clone() for b in spy[:2]]
    spy.clear()
    data = TASK.sample(40, seed=99)
    icl.train(_model(), TASK, 5, LR, batch_size=8, eval_size=EVAL, seed=1, data=data)
    assert torch.equal(spy[0].tokens, first[0]) and torch.equal(spy[1].tokens, first[1])
    spy.clear()
    icl.train(_model(), TASK, 2, LR, batch_size=8, eval_size=EVAL, seed=2)
    assert not torch.equal(spy[0].tokens, first[0])  # the seed does move them


def test_no_ood_set_when_ood_is_false(spy):
    hist = icl.train(_model(), TASK, 2, LR, batch_size=8, eval_size=EVAL, ood=False)
    assert hist.ood == {} and len(spy) == len(hist.steps)


# ------------------------------------------------------------------ standard errors
def _oracle_losses(task, n, seed, batch_size, **kwargs):
    g = make_generator(seed)
    out, done = [], 0
    while done < n:
        b = min(batch_size, n - done)
        out.append(bayes.oracle_losses(task, task.sample(b, generator=g, **kwargs)))
        done += b
    return torch.cat(out).numpy()


@pytest.mark.parametrize("batch_size", [7, 64])
def test_monte_carlo_standard_error_has_n_minus_1_degrees_of_freedom(batch_size):
    n, seed = 50, 12
    mean, se = montecarlo.mc_oracle_risk(TASK, n, seed=seed, batch_size=batch_size)
    losses = _oracle_losses(TASK, n, seed, batch_size)
    assert mean == pytest.approx(losses.mean(), rel=1e-12)
    assert se == pytest.approx(losses.std(ddof=1) / math.sqrt(n), rel=1e-9)
    assert se != pytest.approx(losses.std(ddof=0) / math.sqrt(n), rel=1e-6)


def test_shift_standard_errors_are_per_sequence_with_n_minus_1():
    task = icl.RecallTask(vocab_size=20, seq_len=16, alpha=0.2)
    model = icl.construct_model(task, 2.0, d_model=40)
    none, alpha_shift = shifts.standard_shifts(task)[0], None
    for s in shifts.standard_shifts(task):
        if set(s.kwargs) == {"alpha"}:
            alpha_shift = s
            break
    n = 40
    r = shifts.evaluate_shift(model, task, none, n=n, seed=3)
    assert r.se == pytest.approx(r.losses.std(ddof=1) / math.sqrt(n), rel=1e-12)
    rows = shifts.shift_table({"m": model}, task, [none, alpha_shift], n=n, seed=3, k=1.0,
                              atol=0.0)
    shifted = shifts.evaluate_shift(model, task, alpha_shift, n=n, seed=3)
    diff = shifted.losses - r.losses  # paired: same tokens, targets' law changed
    assert rows[1].tol == pytest.approx(diff.std(ddof=1) / math.sqrt(n), rel=1e-12)


def test_loglog_slope_error_uses_the_spread_over_seeds_with_n_minus_1():
    ms = np.array([10, 20, 40])
    excess = np.array([[0.05, 0.07, 0.06], [0.03, 0.02, 0.025], [0.012, 0.014, 0.011]])
    fit = finite.loglog_slope(ms, excess)
    x = np.log(ms)
    c = (x - x.mean()) / np.sum((x - x.mean()) ** 2)
    se_log = excess.std(1, ddof=1) / math.sqrt(3) / excess.mean(1)
    assert fit.stderr == pytest.approx(math.sqrt(np.sum(c**2 * se_log**2)), rel=1e-12)


def test_target_law_standard_error_is_the_binomial_one_of_the_batch():
    batch = TASK.sample(400, seed=0)
    check = laws.target_law(TASK, batch)
    assert check.n == 400
    assert check.se == pytest.approx(math.sqrt(0.2 * 0.8 / 400), rel=1e-12)
    assert check.rate == pytest.approx(float((batch.targets == TASK.noise_token).double().mean()))
