"""Tests of the fast path (icl/fastpath.py), the vectorised sampler's helpers, the device
plumbing and the timing helpers (icl/perf.py).

The closed-form gradients are checked against autograd through the dense reference path
(every attention × family × κ, noisy and noiseless, at zero and at random parameters) and
against finite differences (``torch.autograd.gradcheck``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import icl
from icl import fastpath, perf
from icl.task import _noise_starts, _uniform_tokens

P_MIN = 1e-4  # p-value threshold of the statistical tests (fixed seeds: deterministic)
CASES = [
    (alpha, family, attention, kappa)
    for alpha in (0.0, 0.3)
    for family in icl.FAMILIES
    for attention in icl.ATTENTIONS
    for kappa in (0, 1)
]


def _model(task, attention, family, kappa, random: bool, seed: int = 0):
    model = icl.OneLayerTransformer(task, attention, family, kappa=kappa, dtype=torch.float64)
    if random:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


@pytest.mark.parametrize(("alpha", "family", "attention", "kappa"), CASES)
@pytest.mark.parametrize("random", [False, True], ids=["zero", "random"])
def test_closed_form_step_matches_autograd_through_dense(alpha, family, attention, kappa, random):
    """Verification: ξ and ∂L/∂θ of the fused step equal those of the dense reference."""
    task = icl.RecallTask(alpha=alpha, seq_len=24)
    batch = task.sample(48, seed=1)
    model = _model(task, attention, family, kappa, random)
    params = list(model.parameters())
    dense = model(batch.tokens, path="dense").xi
    g_dense = torch.autograd.grad(torch.nn.functional.cross_entropy(dense, batch.targets), params)
    fast = model._forward_fast(batch.tokens, *model.matrices(), parts=False).xi
    g_fast = torch.autograd.grad(torch.nn.functional.cross_entropy(fast, batch.targets), params)
    torch.testing.assert_close(fast, dense, rtol=0, atol=1e-12)
    for a, b in zip(g_fast, g_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("alpha", "family", "attention", "kappa"), CASES)
@pytest.mark.parametrize("random", [False, True], ids=["zero", "random"])
def test_fused_step_matches_autograd_through_dense(alpha, family, attention, kappa, random):
    """Verification: the loss and ∂L/∂θ of the training step without autograd
    (``icl.training._FusedStep``, every family's parameters θ) equal autograd's through the
    dense reference; and one fused update equals ``normalized_step`` on those gradients."""
    from icl.training import _FusedStep

    task = icl.RecallTask(alpha=alpha, seq_len=24)
    batch = task.sample(48, seed=1)
    model = _model(task, attention, family, kappa, random)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = torch.nn.functional.cross_entropy(model(batch.tokens, path="dense").xi,
                                             batch.targets)
    g_dense = torch.autograd.grad(loss, params)
    plan = _FusedStep.of(model, params)
    fused_loss, g_fused = plan.gradients(batch.tokens, batch.targets)
    torch.testing.assert_close(fused_loss, loss.detach(), rtol=0, atol=1e-12)
    for a, b in zip(g_fused, g_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    expected = [(p - 0.1 * g / torch.linalg.vector_norm(g)) if float(g.abs().sum()) else p
                for p, g in zip((p.detach().clone() for p in params), g_dense, strict=True)]
    plan.step(batch.tokens, batch.targets, 0.1, True)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-12)


def test_fused_step_stalls_where_autograd_stalls_in_float32():
    """Verification: in float32 the fused step's gradient is autograd's bit for bit on the
    noisy ``reparam`` model, so normalised GD stops at the same ``Λ`` near the float32
    resolution (the model page §5; chapter 4 asserts where) instead of moving on
    rounding noise."""
    from icl.training import _apply_update, _FusedStep

    task = icl.RecallTask(vocab_size=20, seq_len=16, alpha=0.2)
    runs = []
    for fused in (True, False):
        model = icl.OneLayerTransformer(task, "linear", "reparam")
        params = [model.Lambda]
        g = torch.Generator().manual_seed(0)
        for _ in range(30):
            b = task.sample(8, generator=g)
            if fused:
                _FusedStep.of(model, params).step(b.tokens, b.targets, 1.0, True)
            else:
                xi = model(b.tokens).xi
                grads = torch.autograd.grad(
                    torch.nn.functional.cross_entropy(xi, b.targets), params)
                _apply_update(params, list(grads), 1.0, True)
        runs.append(float(model.Lambda))
    assert runs[0] == runs[1] < 30.0


def test_fused_step_follows_the_parameters_and_their_device_copies():
    """Consistency: the plan kept on a model is rebuilt when its parameters are replaced
    (``model.to(dtype)``) and reads their current values at every step."""
    from icl.training import _FusedStep

    task = icl.RecallTask(alpha=0.3, seq_len=12)
    model = icl.OneLayerTransformer(task, "softmax", "origin")
    params = list(model.parameters())
    plan = _FusedStep.of(model, params)
    assert _FusedStep.of(model, params) is plan
    model.double()
    params = list(model.parameters())
    assert _FusedStep.of(model, params) is not plan


@pytest.mark.parametrize(("alpha", "family", "attention", "kappa"), CASES)
def test_fast_parts_match_dense(alpha, family, attention, kappa):
    """Verification: the three logits of the fast path and their gradients (through every
    part, not only ξ) equal the dense ones."""
    task = icl.RecallTask(alpha=alpha, seq_len=24)
    batch = task.sample(32, seed=2)
    model = _model(task, attention, family, kappa, True, seed=3)
    params = list(model.parameters())
    outs = {}
    for path in ("fast", "dense"):
        lg = model(batch.tokens, path=path)
        loss = lg.xi.logsumexp(1).mean() + (lg.xi_A**2).mean() + lg.xi_F.sin().mean()
        outs[path] = (lg, torch.autograd.grad(loss, params))
    for a, b in zip(outs["fast"][0], outs["dense"][0], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    for a, b in zip(outs["fast"][1], outs["dense"][1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("attention", icl.ATTENTIONS)
def test_step_logits_gradcheck(attention):
    """Verification against finite differences (small sizes, float64, random W, V, F)."""
    task = icl.RecallTask(vocab_size=6, n_triggers=2, n_outputs=2, seq_len=6)
    tokens = task.sample(3, seed=4).tokens
    g = torch.Generator().manual_seed(5)
    d = 12
    W, V, F = (torch.randn(d, d, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    # ReLU is not differentiable where a score is 0: random weights keep scores away from 0
    assert torch.autograd.gradcheck(
        lambda W, V, F: fastpath.StepLogits.apply(tokens, W, V, F, 6, attention, 1),
        (W, V, F),
    )
    assert torch.autograd.gradcheck(
        lambda r: fastpath.attend(tokens, r, attention),
        (torch.randn(3, 12, generator=g, dtype=torch.float64, requires_grad=True),),
    )


def test_relu_subgradient_at_zero_is_one():
    """Consistency: from the zero initialisation every ReLU score is 0 and the fused step
    uses σ'(0) = 1, like the model's ``clamp`` (so a ReLU model started at 0 moves)."""
    task = icl.RecallTask(alpha=0.3, seq_len=16)
    batch = task.sample(16, seed=6)
    model = icl.OneLayerTransformer(task, "relu", "origin", dtype=torch.float64)
    xi = model._forward_fast(batch.tokens, *model.matrices(), parts=False).xi
    gW, gV, gF = torch.autograd.grad(torch.nn.functional.cross_entropy(xi, batch.targets),
                                     [model.W, model.V, model.F])
    assert float(gV.abs().sum()) == 0.0  # A = 0 at zero
    assert float(gF.abs().sum()) > 0


def test_scores_match_dense():
    task = icl.RecallTask(alpha=0.3, seq_len=20)
    batch = task.sample(8, seed=7)
    model = _model(task, "softmax", "origin", 1, True, seed=8)
    s, a = model.scores(batch.tokens)
    X = icl.model.embed(task, batch.tokens, model.d_model, dtype=torch.float64)
    s_dense = torch.einsum("bd,de,bhe->bh", X[:, -1], model.W, X)
    torch.testing.assert_close(s, s_dense, rtol=0, atol=1e-12)
    torch.testing.assert_close(a, torch.softmax(s_dense, -1), rtol=0, atol=1e-12)


def test_float16_falls_back_to_dense():
    task = icl.RecallTask(seq_len=12)
    model = icl.OneLayerTransformer(task, dtype=torch.bfloat16)
    assert not fastpath.supports(torch.bfloat16)
    out = model(task.sample(4, seed=0).tokens)
    assert out.xi.shape == (4, task.vocab_size) and out.xi.dtype == torch.bfloat16


def test_interleave_and_scratch():
    assert fastpath.interleave(3).tolist() == [0, 3, 1, 4, 2, 5]
    a = fastpath.scratch("t", (2, 3), torch.float32, "cpu")
    b = fastpath.scratch("t", (3,), torch.float32, "cpu")
    assert a.data_ptr() == b.data_ptr()  # reused
    c = fastpath.scratch("t", (10, 10), torch.float32, "cpu")
    assert c.shape == (10, 10)


# ------------------------------------------------------------------ sampler helpers
@pytest.mark.parametrize("R", [2, 3, 7, 54, 1000])
def test_uniform_tokens_law_and_independence_of_digits(R):
    """Verification: each token is uniform on R values, and the digits drawn from one
    64-bit word (positions i and i + m of the flat output) are independent (chi-square on
    the R x R table of pairs, or on a 10 x 10 coarsening for large R)."""
    g = torch.Generator().manual_seed(R)
    shape = (400, 250)
    tok = _uniform_tokens(5, 5 + R, shape, g, torch.device("cpu"))
    assert tok.dtype == torch.long and tok.shape == shape
    assert int(tok.min()) >= 5 and int(tok.max()) < 5 + R
    flat = (tok.view(-1) - 5).numpy()
    counts = np.bincount(flat, minlength=R)
    assert stats.chisquare(counts).pvalue > P_MIN
    k = max(1, int(math.floor(32 * math.log(2) / math.log(R))))
    m = -(-flat.size // k)
    if k > 1:
        first, second = flat[: flat.size - m], flat[m:]
        bins = min(R, 10)
        table = np.histogram2d(first * bins // R, second * bins // R, bins=bins)[0]
        assert stats.chi2_contingency(table)[1] > P_MIN


def test_uniform_tokens_single_value():
    g = torch.Generator().manual_seed(0)
    tok = _uniform_tokens(4, 5, (3, 4), g, torch.device("cpu"))
    assert (tok == 4).all()


@pytest.mark.parametrize("planted", [False, True])
def test_noise_starts_uniform_on_the_allowed_starts(planted):
    """Verification: given p, p' is uniform over the starts with |p' - p| ≥ 2 (over all
    starts where the pair is not planted), at every p of a short sequence."""
    H, reps = 9, 4000
    g = torch.Generator().manual_seed(11)
    p = torch.arange(H - 2).repeat(reps)
    mask = torch.rand(p.shape, generator=g) < 0.5 if planted else None
    pn = _noise_starts(p, mask, H, g)
    for value in range(H - 2):
        for has in ([True, False] if planted else [True]):
            rows = p == value
            if planted:
                rows &= mask if has else ~mask
            allowed = [j for j in range(H - 2) if abs(j - value) >= 2 or not has]
            got = pn[rows]
            assert torch.isin(got, torch.tensor(allowed)).all()
            counts = torch.bincount(got, minlength=H - 2)[allowed].numpy()
            assert stats.chisquare(counts).pvalue > P_MIN


# ------------------------------------------------------------------ devices
def test_sampler_device_argument_on_cpu():
    task = icl.RecallTask(alpha=0.3)
    a = task.sample(16, seed=3)
    b = task.sample(16, seed=3, device="cpu")
    assert torch.equal(a.tokens, b.tokens) and b.tokens.device.type == "cpu"
    with pytest.raises(ValueError, match="generator is on"):
        icl.task.sample_sequences(task, 4, generator=torch.Generator(), device="meta")


def test_model_and_fast_path_on_the_meta_device():
    """The device plumbing without a GPU: parameters, the matrices and the fast path's
    shapes on the ``meta`` device (``reparam`` builds its construction from the values of
    its scalars, which a meta tensor does not have)."""
    for alpha in (0.0, 0.3):
        task = icl.RecallTask(alpha=alpha)
        tokens = torch.zeros(4, task.seq_len, dtype=torch.long, device="meta")
        for family in ("origin", "reparam_w"):
            model = icl.OneLayerTransformer(task, "softmax", family, device="meta")
            assert model.device.type == "meta"
            W, V, F = model.matrices()
            assert {W.device.type, V.device.type, F.device.type} == {"meta"}
            xi = model._forward_fast(tokens, W, V, F, parts=False).xi
            assert xi.device.type == "meta" and xi.shape == (4, task.vocab_size)
            parts = model._forward_fast(tokens, W, V, F)
            assert all(t.shape == (4, task.vocab_size) for t in parts)


def test_train_device_argument_on_cpu():
    task = icl.RecallTask(alpha=0.3, seq_len=16)
    runs = []
    for device in (None, "cpu"):
        model = icl.OneLayerTransformer(task, "linear", "origin")
        runs.append(icl.train(model, task, 5, 0.1, batch_size=32, eval_size=32, device=device))
    assert runs[0].train_loss == runs[1].train_loss
    with pytest.raises(ValueError, match="model is on"):
        icl.train(icl.OneLayerTransformer(task), task, 2, 0.1, device="meta")


def test_default_evaluation_schedule_is_light_for_short_runs():
    """Consistency: 50 steps with two evaluation sets of twice the batch each (as 1024 and
    1024 against B = 512) evaluate at the start and the end only (⌈12.5·4⌉ = 50 steps
    apart); 200 steps every 50; long runs with small sets about 50 times."""
    task = icl.RecallTask(alpha=0.3, seq_len=8)
    model = icl.OneLayerTransformer(task, "linear", "reparam")
    h = icl.train(model, task, 50, 0.1, batch_size=16, eval_size=32)
    assert h.steps == [0, 50] and len(h.train_loss) == 50
    h = icl.train(model, task, 200, 0.1, batch_size=16, eval_size=32)
    assert h.steps == [0, 50, 100, 150, 200]
    h = icl.train(icl.OneLayerTransformer(task, "linear", "reparam"), task, 200, 0.1,
                  batch_size=16, eval_size=2)
    assert len(h.steps) == 51


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_end_to_end():  # pragma: no cover - CI has no GPU
    task = icl.RecallTask(alpha=0.3)
    batch = task.sample(64, seed=0, device="cuda")
    assert batch.tokens.device.type == "cuda"
    for family in icl.FAMILIES:
        model = icl.OneLayerTransformer(task, "softmax", family, device="cuda")
        torch.testing.assert_close(model(batch.tokens).xi, model(batch.tokens, path="dense").xi)
        h = icl.train(model, task, 3, 0.1, batch_size=64, eval_size=64)
        assert len(h.train_loss) == 3


# ------------------------------------------------------------------ timing helpers
def test_perf_helpers_validate_and_run():
    with pytest.raises(ValueError, match="number"):
        perf.best_time(lambda: None, number=0)
    with pytest.raises(ValueError, match="clock"):
        perf.best_time(lambda: None, clock="sundial")
    with pytest.raises(ValueError, match="size"):
        perf.scaling("Q", [1, 2])
    task = icl.RecallTask(alpha=0.3, seq_len=16)
    assert perf.sampling_time(task, 8, number=2, repeats=1) > 0
    assert perf.step_time(task, "softmax", "reparam_w", batch_size=8, number=2, repeats=1) > 0
    assert perf.dense_step_time(task, batch_size=4, number=1, repeats=1) > 0
    assert perf.finite_step_time(task, 16, batch_size=8, number=1, repeats=1) >= 0
    passes = perf.token_pass_time(8, 16, 6, number=2, repeats=1)
    assert set(passes) == {"forward", "backward", "sampling", "floor"}
    assert passes["floor"] == pytest.approx(
        passes["forward"] + passes["backward"] + passes["sampling"])
    with pytest.raises(ValueError, match="seq_len"):
        perf.token_pass_time(8, 1)
    rows = perf.step_profile(task, "softmax", batch_size=8, steps=2, top=3)
    assert len(rows) == 4 and rows[-1][0] == "(everything else)"
    assert all(ms >= 0 for _, ms in rows)
    for bad, name in (({"steps": 0}, "steps"), ({"top": 0}, "top"),
                      ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=name):
            perf.step_profile(task, **bad)
    with pytest.raises(ValueError, match="attention"):
        perf.step_profile(task, "cosine")
    fit = perf.fit_exponent([1, 2, 4, 8], [3.0, 6.0, 12.0, 24.0])
    assert abs(fit.slope - 1.0) < 1e-12
    counts = perf.op_counts(**perf.PAPER_SIZES)
    assert counts["token passes (4·B·H)"] == 4 * 512 * 256


def test_keep_freed_memory_is_applied_once() -> None:
    """Consistency: the allocator setting is asked for once per process and its answer
    kept; on Linux with glibc (this CI) it is applied."""
    import platform

    first = fastpath.keep_freed_memory()
    assert fastpath.keep_freed_memory() is first
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first is True
