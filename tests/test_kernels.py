"""Tests of the compiled CPU kernels (icl/kernels.py).

Each kernel is checked against the PyTorch path it replaces on the CPU (the path other
devices take, reached here with ``kernels.disabled()``): the same numbers, bit for bit
where the two add in the same order. Two exceptions in the training step: softmax
attention, whose exponential is the kernels' own (within two units in the last place of
the exact value, tested here), and the update of W, V, F straight from the step layout's
gradient (its norm summed in another order); there the paths agree to a tolerance
derived from those roundings.
The sampler's law is tested in tests/test_task.py, on both paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import icl
from icl import fastpath, kernels

M64 = 2**64 - 1


def test_splitmix64_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="count must be >= 0"):
        kernels.splitmix64(0, -1)
    with pytest.raises(TypeError, match="count must be an int"):
        kernels.splitmix64(0, 1.5)
    with pytest.raises(TypeError, match="key must be an int"):
        kernels.splitmix64("0", 1)


def _reference_splitmix64(seed: int, count: int) -> list[int]:
    """SplitMix64 written with Python's unbounded integers (an independent reference)."""
    out, x = [], seed
    for _ in range(count):
        x = (x + 0x9E3779B97F4A7C15) & M64
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        out.append(z ^ (z >> 31))
    return out


def test_splitmix64_known_answer_and_reference() -> None:
    """Verification: the published first output for seed 0, and a Python reference for
    other seeds (the kernel's unsigned 64-bit wrap-around and shifts)."""
    assert int(kernels.splitmix64(0, 1)[0]) == 0xE220A8397B1DCDAF
    for seed in (0, 1, 2**63 + 12345, M64):
        got = [int(v) for v in kernels.splitmix64(seed, 50)]
        assert got == _reference_splitmix64(seed, 50)


def _tables(B, H, n, dtype, seed, zeros=False):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(n, (B, H), generator=g)
    r = torch.randn(B, 2 * n, generator=g, dtype=dtype)
    if zeros:  # scores exactly 0 (ReLU's subgradient) and negative ones
        r = torch.round(r)
    grad = torch.randn(B, 2 * n, generator=g, dtype=dtype)
    return tokens, r, grad


@pytest.mark.parametrize("attention", icl.ATTENTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("zeros", [False, True])
def test_attend_kernels_equal_the_torch_path(attention, dtype, zeros) -> None:
    """Verification: A and ∂L/∂r of the kernels equal PyTorch's gather/scatter bit for bit."""
    tokens, r, grad = _tables(16, 33, 7, dtype, seed=3, zeros=zeros)
    A, saved = fastpath._attend_forward(tokens, r, attention)
    dr = fastpath._attend_backward(grad, tokens, attention, saved)
    with kernels.disabled():
        A_t, saved_t = fastpath._attend_forward(tokens, r, attention)
        dr_t = fastpath._attend_backward(grad, tokens, attention, saved_t)
    assert torch.equal(A, A_t)
    assert torch.equal(dr, dr_t)


@pytest.mark.parametrize("attention", icl.ATTENTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_step_equals_the_torch_path(attention, dtype) -> None:
    """Verification: the loss and ∂L/∂P of a whole fused step, compiled and PyTorch."""
    task = icl.RecallTask(alpha=0.3, seq_len=20)
    n = task.vocab_size
    batch = task.sample(40, seed=2)
    g = torch.Generator().manual_seed(5)
    P = torch.randn(fastpath.step_layout_size(n), generator=g, dtype=dtype)
    dP, dP_t = torch.empty_like(P), torch.empty_like(P)
    loss = fastpath.fused_step_grads(batch.tokens, batch.targets, P, dP, n, attention)
    with kernels.disabled():
        loss_t = fastpath.fused_step_grads(batch.tokens, batch.targets, P, dP_t, n, attention)
    # the loss is summed in float64 by the kernel, by PyTorch's mean in the dtype otherwise
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(loss, loss_t, rtol=4 * eps, atol=0)
    if attention != "softmax":
        assert torch.equal(dP, dP_t)
        return
    # softmax: the paths round differently (the exponential, and <a, g> summed over 2N
    # entries instead of H). An empirical bound, not a derived one: 16 eps · max |dP|,
    # against under 1 eps · max |dP| observed on these inputs; a wrong formula (a missing
    # term, a wrong sign) would miss it by orders of magnitude.
    torch.testing.assert_close(dP, dP_t, rtol=0, atol=16 * eps * float(dP_t.abs().max()))


@pytest.mark.parametrize("kappa", [0, 1])
def test_layout_maps_equal_the_index_maps(kappa) -> None:
    """Verification: ``to_layout`` builds the step layout that ``step_layout_index``
    describes, and ``from_layout`` is its adjoint (the index_add_ of that description)."""
    n, d = 5, 13
    g = torch.Generator().manual_seed(0)
    W, V, F = (torch.randn(d, d, generator=g, dtype=torch.float64) for _ in range(3))
    dst, src = fastpath.step_layout_index(n, d, kappa)
    size = fastpath.step_layout_size(n)
    flat = torch.cat([W.reshape(-1), V.reshape(-1), F.reshape(-1)])
    P = kernels.to_layout(W, V, F, n, kappa, torch.empty(size, dtype=torch.float64))
    assert torch.equal(P, torch.zeros(size, dtype=torch.float64).index_add_(0, dst, flat[src]))
    dP = torch.randn(size, generator=g, dtype=torch.float64)
    grads = [torch.full((d, d), float("nan"), dtype=torch.float64) for _ in range(3)]
    kernels.from_layout(dP, n, kappa, *grads)
    expected = torch.zeros(3 * d * d, dtype=torch.float64).index_add_(0, src, dP[dst])
    assert torch.equal(torch.cat([m.reshape(-1) for m in grads]), expected)
    only_w = torch.empty(d, d, dtype=torch.float64)
    kernels.from_layout(dP, n, kappa, only_w, None, None)
    assert torch.equal(only_w, grads[0])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kappa", [0, 1])
@pytest.mark.parametrize("normalized", [True, False, "per_coordinate"])
@pytest.mark.parametrize("trainable", [(True, True, True), (True, False, False),
                                       (False, True, True)])
def test_update_from_layout_is_the_update_of_the_gradients(kappa, normalized, trainable,
                                                           dtype):
    """Verification: the update straight from ∂L/∂P moves W, V, F as ``_apply_update``
    moves them with the gradients of ``from_layout``, and leaves a matrix that is not
    trainable alone; a zero gradient gives no normalised step. The two sum the norm in
    different orders: float64 to 1e-14; float32 to 2 ulp of the largest entry (the
    norm, the step and the entry each rounded once to float32)."""
    from icl.training import _apply_update

    n, d = 5, 13
    g = torch.Generator().manual_seed(1)
    mats = [torch.randn(d, d, generator=g, dtype=dtype) for _ in range(3)]
    dP = torch.randn(fastpath.step_layout_size(n), generator=g, dtype=dtype)
    dP[::7] = 0  # some zeros, for the sign
    grads = [torch.empty(d, d, dtype=dtype) for _ in range(3)]
    kernels.from_layout(dP, n, kappa, *grads)
    expected = [m.clone() for m in mats]
    chosen = [k for k in range(3) if trainable[k]]
    _apply_update([expected[k] for k in chosen], [grads[k] for k in chosen], 0.3, normalized)
    got = [m.clone() for m in mats]
    kernels.update_from_layout(dP, n, kappa, [m.numpy() for m in got], trainable, 0.3,
                               normalized)
    atol = 1e-14 if dtype == torch.float64 else 2 * torch.finfo(dtype).eps * max(
        float(m.abs().max()) for m in expected)
    for k in range(3):
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=atol)
        if not trainable[k]:
            assert torch.equal(got[k], mats[k])
    still = [m.clone() for m in mats]
    kernels.update_from_layout(torch.zeros_like(dP), n, kappa, [m.numpy() for m in still],
                               trainable, 0.3, normalized)
    assert all(torch.equal(a, b) for a, b in zip(still, mats, strict=True))


@pytest.mark.parametrize(("family", "attention", "kappa"), [
    ("origin", "relu", 1), ("origin", "softmax", 0), ("reparam_w", "linear", 1),
    ("reparam", "relu", 1),
])
def test_training_is_the_same_on_both_paths(family, attention, kappa) -> None:
    """Verification: ten steps of icl.train give the same parameters either way (the
    batches drawn by the compiled sampler in both runs): bit for bit where both paths
    round alike, else within a bound derived from the roundings that differ."""
    task = icl.RecallTask(alpha=0.2, seq_len=24)
    data = task.sample(256, seed=4)
    runs = []
    for off in (False, True):
        model = icl.OneLayerTransformer(task, attention, family, kappa=kappa)
        if off:
            with kernels.disabled():
                icl.train(model, task, 10, 0.1, data=data, batch_size=64, progress=False,
                          eval_every=10, eval_size=32)
        else:
            icl.train(model, task, 10, 0.1, data=data, batch_size=64, progress=False,
                      eval_every=10, eval_size=32)
        runs.append([p.detach().clone() for p in model.parameters()])
    exact = family == "reparam" and attention != "softmax"
    for a, b in zip(*runs, strict=True):
        if exact:  # the same operations in the same order: the same numbers
            assert torch.equal(a, b)
        else:
            # Two roundings differ: the compiled path updates W, V, F straight from
            # ∂L/∂P with the norm summed in float64 (PyTorch's float32 norm sums in
            # another order), and softmax's exponential is the kernels' own. Each moves
            # a step by a few float32 ulp. The bound 1e-5 is empirical (observed: under
            # 1e-6 after these ten steps of length 0.1); a step that went wrong would
            # move entries by up to 0.1.
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("dtype", "lo"), [(np.float32, -87.0), (np.float64, -708.0)])
def test_exp_is_within_two_ulp(dtype, lo) -> None:
    """Verification: the kernels' exponential (softmax attention in the training step)
    is within 2 units in the last place of e^x (the spacing of the dtype's numbers at
    e^x), on a grid of [lo, 0] (every argument the softmax gives it, ``s_h - max s ≤ 0``,
    down to the underflow), against NumPy's exponential in float64 (float32) or in
    extended precision (float64, where the platform has it)."""
    wide = np.longdouble if dtype is np.float64 else np.float64
    if np.finfo(wide).eps >= np.finfo(dtype).eps:
        pytest.skip("no floating-point type wider than float64 on this platform")
    x = np.linspace(lo, 0.0, 400_001).astype(dtype)
    x[-5:] = [-1e-30, -0.34657359, -0.34657360, -2.0**-24, 0.0]
    out = np.empty_like(x)
    kernels.exp(x, out)
    exact = np.exp(x.astype(wide))
    ulps = np.abs(out.astype(wide) - exact) / np.spacing(exact.astype(dtype)).astype(wide)
    assert ulps.max() <= 2, ulps.max()


def test_sampler_reads_one_draw_of_the_generator() -> None:
    """Consistency: a batch is decided by the generator's state; the generator moves on by
    one 64-bit draw per batch, so two batches in a row differ."""
    task = icl.RecallTask(alpha=0.5, seq_len=16)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = task.sample(8, generator=g1)
    kernels.draw_key(g2)
    assert torch.equal(g1.get_state(), g2.get_state())
    b = task.sample(8, generator=g1)
    assert not torch.equal(a.tokens, b.tokens)


def test_sampler_rows_read_their_own_block_of_the_stream() -> None:
    """Consistency: the first filler tokens of row b come from output b·(⌈H/2⌉+3) + 1 of
    the stream (low, then high 32 bits, by multiply-shift)."""
    task = icl.RecallTask(vocab_size=20, n_triggers=2, n_outputs=2, seq_len=10)
    g = torch.Generator().manual_seed(11)
    key = int(kernels.draw_key(torch.Generator().manual_seed(11)))
    batch = task.sample(3, generator=g)
    H, R, low = 10, 20 - 1 - 2, 2
    stream = kernels.splitmix64(key, 3 * (H // 2 + 3))
    for b in range(3):
        x = int(stream[b * (H // 2 + 3)])
        first = low + ((x & 0xFFFFFFFF) * R >> 32)
        second = low + ((x >> 32) * R >> 32)
        planted = {int(batch.pair_pos[b]), int(batch.pair_pos[b]) + 1}
        if 0 not in planted:
            assert int(batch.tokens[b, 0]) == first
        if 1 not in planted:
            assert int(batch.tokens[b, 1]) == second


def test_disabled_is_scoped_to_the_block() -> None:
    t = torch.zeros(1)
    assert kernels.available(t)
    with kernels.disabled():
        assert not kernels.available(t)
        assert not kernels.runs_on(torch.device("cpu"))
    assert kernels.available(t)
    assert not kernels.available(torch.zeros(1, device="meta"))


def test_update_from_layout_overflowing_step_is_inf() -> None:
    """Consistency: a normalised step too long for float32 (a gradient of norm ~1e-44,
    below float32's normal numbers) is inf, without a warning, where the gradient is
    non-zero. (PyTorch's float32 norm of such a gradient underflows to 0, so the other
    path skips the step instead: the two differ only below float32's normal range.)"""
    import warnings

    n, d = 3, 7
    dP = torch.full((fastpath.step_layout_size(n),), 1e-45, dtype=torch.float32)
    got = torch.zeros(d, d)
    grads = [torch.empty(d, d) for _ in range(3)]
    kernels.from_layout(dP, n, 0, *grads)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels.update_from_layout(dP, n, 0, [got.numpy(), np.zeros((d, d), np.float32),
                                              np.zeros((d, d), np.float32)],
                                   (True, False, False), 0.5, True)
    assert torch.equal(torch.isinf(got), grads[0] != 0)


def test_token_dtype_is_the_narrowest_and_rejects_bad_sizes() -> None:
    """Verification: uint8 exactly while every token fits (N ≤ 256), int64 beyond; a
    vocabulary size that is not a positive int is refused, naming the parameter."""
    assert kernels.token_dtype(256) == torch.uint8
    assert kernels.token_dtype(257) == torch.int64
    with pytest.raises(TypeError, match="vocab_size"):
        kernels.token_dtype(60.0)
    with pytest.raises(TypeError, match="vocab_size"):
        kernels.token_dtype(True)
    with pytest.raises(ValueError, match="vocab_size"):
        kernels.token_dtype(0)
    with pytest.raises(ValueError, match="vocab_size"):
        kernels.sample_default(torch.Generator(), 2, 8, n_triggers=1, vocab_size=300,
                               pool_lo=1, pool_n=2, noisy=False, alpha=0.0,
                               tokens=torch.empty(2, 8, dtype=torch.uint8))
