"""The one-layer transformer: the dense reference and the structured fast path agree."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import icl
from icl.architecture import embed

TASKS = {"noiseless": icl.RecallTask(seq_len=32), "noisy": icl.RecallTask(seq_len=32, alpha=0.3)}
GRID = list(itertools.product(TASKS, icl.ATTENTIONS, icl.FAMILIES, (0, 1)))


def randomise(model: icl.OneLayerTransformer, seed: int, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            value = scale * torch.randn(p.shape, generator=g, dtype=p.dtype)
            # Λ, λ scale the construction; a negative one switches ReLU attention off
            p.copy_(value.abs() + 0.5 if p.dim() < 2 else value)


@pytest.mark.parametrize(("task_name", "attention", "family", "kappa"), GRID)
def test_dense_and_fast_paths_agree(task_name, attention, family, kappa):
    task = TASKS[task_name]
    model = icl.OneLayerTransformer(task, attention, family, kappa)
    randomise(model, seed=hash((attention, family, kappa)) % 1000)
    batch = task.sample(16, seed=3)
    fast = model(batch.tokens)
    dense = model(batch.tokens, path="dense")
    for f, d in zip(fast, dense, strict=True):
        assert f.shape == (16, task.vocab_size)
        torch.testing.assert_close(f, d, atol=1e-5, rtol=1e-5)
    # the logits are not trivially zero, so the comparison means something
    assert fast.xi.abs().max() > 1e-3
    torch.testing.assert_close(fast.xi, fast.xi_A + fast.xi_F)


@pytest.mark.parametrize(("task_name", "attention", "family", "kappa"), GRID)
def test_dense_and_fast_gradients_agree(task_name, attention, family, kappa):
    task = TASKS[task_name]
    model = icl.OneLayerTransformer(task, attention, family, kappa, dtype=torch.float64)
    randomise(model, seed=7)
    batch = task.sample(16, seed=4)
    grads = {}
    for path in ("fast", "dense"):
        loss = torch.nn.functional.cross_entropy(model(batch.tokens, path=path).xi, batch.targets)
        grads[path] = torch.autograd.grad(loss, list(model.parameters()))
    for gf, gd in zip(grads["fast"], grads["dense"], strict=True):
        torch.testing.assert_close(gf, gd, atol=1e-10, rtol=1e-8)
    assert any(float(g.abs().max()) > 0 for g in grads["fast"])


def test_dense_path_reads_the_equations():
    """Independent check of the dense path on one sequence, written as the spec reads."""
    task = icl.RecallTask(vocab_size=12, n_triggers=2, n_outputs=2, seq_len=8, alpha=0.4)
    model = icl.OneLayerTransformer(task, "relu", "origin", 1, d_model=26, dtype=torch.float64)
    randomise(model, seed=11)
    batch = task.sample(1, seed=0)
    z = batch.tokens[0].tolist()
    N, d = task.vocab_size, 26
    e = torch.eye(d, dtype=torch.float64)
    x = [e[z[0]]] + [e[z[h]] + e[N + z[h - 1]] for h in range(1, len(z))]
    W, V, F = model.W.detach(), model.V.detach(), model.F.detach()
    s = torch.stack([x[-1] @ W @ xh for xh in x])
    a = torch.relu(s)
    A = sum(ah * xh for ah, xh in zip(a, x, strict=True))
    xi = (V @ A)[:N] + (F @ (x[-1] + A))[:N]
    torch.testing.assert_close(model(batch.tokens).xi[0].detach(), xi)
    torch.testing.assert_close(embed(task, batch.tokens, d, torch.float64)[0], torch.stack(x))


def test_parameters_carry_the_paper_names_and_start_at_zero():
    noisy, clean = TASKS["noisy"], TASKS["noiseless"]
    names = lambda m: sorted(n for n, _ in m.named_parameters())  # noqa: E731
    assert names(icl.OneLayerTransformer(noisy, family="origin")) == ["F", "V", "W"]
    assert names(icl.OneLayerTransformer(noisy, family="reparam")) == ["Lambda"]
    assert names(icl.OneLayerTransformer(clean, family="reparam")) == ["lambdas"]
    assert names(icl.OneLayerTransformer(noisy, family="reparam_w")) == ["W"]
    m = icl.OneLayerTransformer(clean, family="reparam")
    assert m.lambdas.shape == (clean.n_triggers,)
    for family in icl.FAMILIES:
        for p in icl.OneLayerTransformer(noisy, family=family).parameters():
            assert float(p.detach().abs().max()) == 0.0


def test_orientation_of_W():
    """``s_h = x_H^T W x_h``: row index = query coordinate, column = key coordinate."""
    task = icl.RecallTask(seq_len=16, alpha=0.5)
    model = icl.OneLayerTransformer(task, "linear", "origin", dtype=torch.float64)
    batch = task.sample(4, seed=1)
    N = task.vocab_size
    with torch.no_grad():
        model.W[0, N + 0] = 2.0  # query holds E(q = 0); key holds Ẽ(q): after a trigger
    s, _ = model.scores(batch.tokens)
    after_q = torch.zeros_like(batch.tokens, dtype=torch.bool)
    after_q[:, 1:] = batch.tokens[:, :-1] == 0
    torch.testing.assert_close(s, 2.0 * after_q.double())


def test_gamma_and_alpha_hat():
    task = icl.RecallTask(alpha=0.2)
    import math

    assert icl.OneLayerTransformer(task, family="reparam").gamma == pytest.approx(math.log(0.25))
    m = icl.OneLayerTransformer(task, family="reparam", alpha_hat=0.5)
    assert m.gamma == pytest.approx(0.0)
    assert icl.OneLayerTransformer(task, family="reparam", gamma=1.5).gamma == 1.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attention": "gelu"}, "attention must be one of"),
        ({"family": "full"}, "family must be one of"),
        ({"kappa": 2}, "kappa must be 0 or 1"),
        ({"d_model": 100}, "d_model must be >= 2 \\* vocab_size = 120"),
        ({"d_model": 128.0}, "d_model must be an integer"),
        ({"alpha_hat": 0.0}, "alpha_hat must lie in \\(0, 1\\)"),
        ({"alpha_hat": 1.2}, "alpha_hat must lie in \\(0, 1\\)"),
        ({"alpha_hat": 0.3, "gamma": 0.1}, "not both"),
        ({"gamma": float("inf")}, "gamma must be a finite number"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        icl.OneLayerTransformer(icl.RecallTask(alpha=0.2), **kwargs)


def test_bad_tokens():
    task = icl.RecallTask(seq_len=8)
    model = icl.OneLayerTransformer(task)
    with pytest.raises(ValueError, match="shape \\[B, H\\]"):
        model(torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="shape \\[B, H\\]"):
        model(torch.zeros(2, 8, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="token ids must lie in \\[0, 59\\]"):
        model(torch.full((2, 8), 60))
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        model([[0, 1, 2]])
    with pytest.raises(ValueError, match="path must be"):
        model(task.sample(2, seed=0).tokens, path="sparse")
    with pytest.raises(ValueError, match="task must be an icl.RecallTask"):
        icl.OneLayerTransformer("task")


def test_relu_subgradient_at_zero_is_one():
    """From the zero initialisation every score is 0; ReLU attention must still learn."""
    task = icl.RecallTask(seq_len=16, alpha=0.5)
    model = icl.OneLayerTransformer(task, "relu", "reparam")
    batch = task.sample(8, seed=0)
    loss = torch.nn.functional.cross_entropy(model(batch.tokens).xi, batch.targets)
    (grad,) = torch.autograd.grad(loss, [model.Lambda])
    assert float(grad) < 0


@settings(max_examples=25, deadline=None)
@given(
    vocab=st.integers(6, 14),
    n_triggers=st.integers(1, 3),
    seq_len=st.integers(6, 20),
    noisy=st.booleans(),
    extra_d=st.integers(0, 5),
    attention=st.sampled_from(icl.ATTENTIONS),
    family=st.sampled_from(icl.FAMILIES),
    kappa=st.sampled_from((0, 1)),
    seed=st.integers(0, 10_000),
)
def test_paths_agree_on_random_small_tasks(
    vocab, n_triggers, seq_len, noisy, extra_d, attention, family, kappa, seed
):
    n_outputs = max(1, min(3, vocab - n_triggers - 2))
    task = icl.RecallTask(vocab, n_triggers, n_outputs, seq_len, alpha=0.3 if noisy else 0.0)
    d = 2 * vocab + extra_d
    model = icl.OneLayerTransformer(task, attention, family, kappa, d, dtype=torch.float64)
    randomise(model, seed)
    batch = task.sample(5, seed=seed)
    for f, dn in zip(model(batch.tokens), model(batch.tokens, path="dense"), strict=True):
        torch.testing.assert_close(f, dn, atol=1e-9, rtol=1e-9)
