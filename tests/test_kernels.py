"""Tests of the compiled CPU kernels (icl/kernels.py).

Each kernel is checked against the PyTorch path it replaces on the CPU (the path other
devices take, reached here with ``kernels.disabled()``): the same numbers, bit for bit
where the two add in the same order. The sampler's law is tested in tests/test_task.py,
on both paths.
"""

from __future__ import annotations

import pytest
import torch

import icl
from icl import fastpath, kernels

M64 = 2**64 - 1


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
    assert torch.equal(loss, loss_t)
    assert torch.equal(dP, dP_t)


def test_gather_add_and_its_adjoint() -> None:
    """Verification: the step layout's maps equal index_add_ (and are adjoint)."""
    g = torch.Generator().manual_seed(0)
    base, flat = torch.randn(50, generator=g), torch.randn(80, generator=g)
    dst, src = torch.randint(50, (120,), generator=g), torch.randint(80, (120,), generator=g)
    out = kernels.gather_add(base, dst, flat, src, torch.empty(50))
    assert torch.equal(out, base.clone().index_add_(0, dst, flat[src]))
    dP = torch.randn(50, generator=g)
    back = kernels.scatter_from(dP, dst, src, torch.empty(80))
    assert torch.equal(back, torch.zeros(80).index_add_(0, src, dP[dst]))
    # adjoint: <gather_add(0, x), y> = <x, scatter_from(y)>
    lhs = torch.dot(kernels.gather_add(torch.zeros(50), dst, flat, src, torch.empty(50)), dP)
    torch.testing.assert_close(lhs, torch.dot(flat, back))


def test_training_is_the_same_on_both_paths() -> None:
    """Verification: ten steps of icl.train give the same parameters either way (the
    batches drawn by the compiled sampler in both runs)."""
    task = icl.RecallTask(alpha=0.2, seq_len=24)
    data = task.sample(256, seed=4)
    runs = []
    for off in (False, True):
        model = icl.OneLayerTransformer(task, "relu", "origin")
        if off:
            with kernels.disabled():
                icl.train(model, task, 10, 0.1, data=data, batch_size=64, progress=False,
                          eval_every=10, eval_size=32)
        else:
            icl.train(model, task, 10, 0.1, data=data, batch_size=64, progress=False,
                      eval_every=10, eval_size=32)
        runs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


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
