"""Compiled CPU kernels of the sampler and the structured fast path (Numba).

Two kinds of work in this package touch every one of the ``B·H`` tokens of a batch:
drawing the batch (:mod:`icl.task`) and the attention sums of the structured fast path
(:mod:`icl.fastpath`). In PyTorch each is a chain of whole-tensor operations (a gather,
an addition, a copy, a scatter), each one more pass over ``B·H`` entries and one more
dispatch. The kernels here do each job in **one pass** per sequence, in compiled loops
(``numba.njit``), on the CPU tensors' memory (``Tensor.numpy()`` shares it, nothing is
copied). The PyTorch versions stay: they are used on other devices (CUDA) and are what
``tests/test_kernels.py`` checks these kernels against.

The training step calls the array-level kernels, with buffers made once:
:func:`icl.fastpath.cpu_step_grads` calls :func:`step_forward` / :func:`step_softmax`
(the rows of the step layout and the attention sum) and :func:`step_backward` /
:func:`step_softmax_grad` (the backward pass over the tokens and the gradient of the
layout); the training plan around it reads ``W, V, F`` into the layout
(:data:`to_layout_arrays`) and updates them from its gradient (:func:`update_from_layout`).
The training loop hands the kernels its tokens as ``uint8`` (:func:`token_dtype`).

These are inner loops, not entry points: apart from :func:`splitmix64` they check
nothing (a token outside ``0 … N-1`` would be read outside its table), because the
public functions that call them (:meth:`icl.RecallTask.sample`, :func:`icl.train`, the
model's forward pass) have validated every argument before.

Notation as in :mod:`icl.fastpath`: a table ``t`` of ``2N`` entries per sequence is stored
*interleaved*, ``t[2k] = t_k`` (the ``E`` coordinate of token ``k``) and
``t[2k+1] = t_{N+k}`` (the ``Ẽ`` coordinate: token ``k`` one position earlier). With
``z_0 … z_{H-1}`` the tokens of a sequence (0-based),

    pair gather:   s_h = t[2 z_h] + t[2 z_{h-1} + 1]        (s_0 = t[2 z_0]),
    pair scatter:  T[2 z_h] += w_h,  T[2 z_{h-1} + 1] += w_h   (h ≥ 1 for the second).

The sums run over ``h`` in increasing order, the order of PyTorch's CPU ``scatter_add_``,
so the kernels return the same floating-point numbers as the PyTorch path (tested).

The random numbers of :func:`sample_default` come from **SplitMix64** (Steele, Lea and
Flood, *Fast splittable pseudorandom number generators*, OOPSLA 2014): the ``n``-th
output of the stream with seed ``key`` is ``mix(key + n·γ)`` with ``γ = 0x9E3779B97F4A7C15``,
so any output can be computed on its own, and each sequence of a batch reads its own
block of the stream. The ``key`` is one 64-bit draw of the caller's ``torch.Generator``:
the generator alone decides the batch, as everywhere in the package.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import numpy as np
import torch
from numba import literal_unroll, njit, types
from numba.extending import overload

__all__ = [
    "attend_backward",
    "attend_forward",
    "available",
    "disabled",
    "draw_key",
    "exp",
    "from_layout",
    "nll_grad",
    "pair_gather",
    "pair_scatter",
    "runs_on",
    "sample_default",
    "splitmix64",
    "step_backward",
    "step_forward",
    "step_softmax",
    "step_softmax_grad",
    "to_layout",
    "to_layout_arrays",
    "token_dtype",
    "update_from_layout",
]

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31, _S32, _S11 = (np.uint64(k) for k in (27, 30, 31, 32, 11))
_LOW32 = np.uint64(0xFFFFFFFF)
_MODES = {"linear": 0, "relu": 1}
_SWITCH = threading.local()
#: float64 spacing of the 53-bit uniforms of the flip, ``2^-53``
_TWO_M53 = 2.0**-53


def token_dtype(vocab_size: int) -> torch.dtype:
    """The dtype in which the training loop hands tokens to these kernels: ``uint8`` when
    every token fits (``N ≤ 256``), else ``int64``. The kernels read any integer dtype;
    a batch of ``uint8`` tokens is an eighth of the ``int64`` one, and the three passes of
    a training step over it (drawing it, the attention sum forward and backward) then
    stay in the core's cache."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    return torch.uint8 if vocab_size <= 256 else torch.int64


def available(*tensors: torch.Tensor) -> bool:
    """Whether the kernels run on ``tensors``: all on the CPU (and not :func:`disabled`)."""
    return all(runs_on(t.device) for t in tensors)


def runs_on(device: torch.device) -> bool:
    """Whether the kernels run on ``device`` (the CPU, and not :func:`disabled`)."""
    return not getattr(_SWITCH, "off", False) and device.type == "cpu"


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within the block (this thread only), the callers take their PyTorch path, the one
    other devices use: how ``tests/test_kernels.py`` compares the two on the CPU."""
    before = getattr(_SWITCH, "off", False)
    _SWITCH.off = True
    try:
        yield
    finally:
        _SWITCH.off = before


# ----------------------------------------------------------------------------- the fast path
# One sequence's share of each sum (``tb`` its tokens, the other arguments its rows),
# inlined into the kernels below: each formula is written once.
@njit(inline="always")
def _gather_row(tb, rb, ob):  # pragma: no cover - compiled
    """``ob_h = rb[2 z_h] + rb[2 z_{h-1} + 1]`` (``ob_0 = rb[2 z_0]``)."""
    prev = tb[0]
    ob[0] = rb[2 * prev]
    for h in range(1, tb.shape[0]):
        z = tb[h]
        ob[h] = rb[2 * z] + rb[2 * prev + 1]
        prev = z


@njit(inline="always")
def _scatter_row(tb, wb, ob):  # pragma: no cover - compiled
    """``ob[2 z_h] += wb_h``, ``ob[2 z_{h-1} + 1] += wb_h`` (``ob`` zeroed before)."""
    prev = tb[0]
    ob[2 * prev] += wb[0]
    for h in range(1, tb.shape[0]):
        z = tb[h]
        ob[2 * z] += wb[h]
        ob[2 * prev + 1] += wb[h]
        prev = z


@njit(inline="always")
def _attend_row(tb, rb, relu, zero, ob):  # pragma: no cover - compiled
    """``_scatter_row`` of ``σ(_gather_row(rb))`` without storing the scores (σ the
    identity, or ReLU if ``relu``); ``ob`` zeroed before."""
    prev = tb[0]
    s = rb[2 * prev]
    if relu and s < zero:
        s = zero
    ob[2 * prev] += s
    for h in range(1, tb.shape[0]):
        z = tb[h]
        s = rb[2 * z] + rb[2 * prev + 1]
        if relu and s < zero:
            s = zero
        ob[2 * z] += s
        ob[2 * prev + 1] += s
        prev = z


@njit(inline="always")
def _attend_grad_row(tb, gb, rb, relu, zero, ob):  # pragma: no cover - compiled
    """``_scatter_row`` of ``σ'(s) ⊙ _gather_row(gb)``, ``s = _gather_row(rb)``, with
    ``σ'(s) = [s ≥ 0]`` for ReLU (the subgradient 1 at 0), ``1`` for linear; ``ob`` zeroed
    before."""
    prev = tb[0]
    g = gb[2 * prev]
    if relu and rb[2 * prev] < zero:
        g = zero
    ob[2 * prev] += g
    for h in range(1, tb.shape[0]):
        z = tb[h]
        g = gb[2 * z] + gb[2 * prev + 1]
        if relu and rb[2 * z] + rb[2 * prev + 1] < zero:
            g = zero
        ob[2 * z] += g
        ob[2 * prev + 1] += g
        prev = z


@njit(inline="always")
def _rows_row(tb, Q, n2, rb, db):  # pragma: no cover - compiled
    """``(rb, db) = Q_{j_1} + Q_{j_2}`` split after ``n2`` columns,
    ``j = (2 z_{H-1} + 1, 2 z_H)``."""
    H = tb.shape[0]
    q1, q2 = Q[2 * tb[H - 2] + 1], Q[2 * tb[H - 1]]
    for c in range(n2):
        rb[c] = q1[c] + q2[c]
    for c in range(db.shape[0]):
        db[c] = q1[n2 + c] + q2[n2 + c]


@njit(inline="always")
def _rows_grad(tokens, dr, G, dQ):  # pragma: no cover - compiled
    """``dQ = 0``, then the row ``(dr_b, G_b)`` added at ``j_1`` of every sequence, then
    at every ``j_2`` (``index_add_``'s order)."""
    B, H = tokens.shape
    n2 = dr.shape[1]
    dQ[:] = 0
    for last in (1, 0):
        for b in range(B):
            j = 2 * tokens[b, H - 2] + 1 if last else 2 * tokens[b, H - 1]
            qj = dQ[j]
            for c in range(n2):
                qj[c] += dr[b, c]
            for c in range(G.shape[1]):
                qj[n2 + c] += G[b, c]


@njit(cache=True, nogil=True, boundscheck=False)
def _pair_gather(tokens, table, out):  # pragma: no cover - compiled
    for b in range(tokens.shape[0]):
        _gather_row(tokens[b], table[b], out[b])


@njit(cache=True, nogil=True, boundscheck=False)
def _pair_scatter(tokens, w, out):  # pragma: no cover - compiled
    out[:] = 0
    for b in range(tokens.shape[0]):
        _scatter_row(tokens[b], w[b], out[b])


@njit(cache=True, nogil=True, boundscheck=False)
def _attend(tokens, r, relu, zero, out):  # pragma: no cover - compiled
    """``A = pair_scatter(σ(pair_gather(r)))`` for σ the identity or ReLU, one pass
    (``zero``: 0 in the dtype of ``r``, so that every sum stays in that dtype)."""
    out[:] = 0
    for b in range(tokens.shape[0]):
        _attend_row(tokens[b], r[b], relu, zero, out[b])


@njit(cache=True, nogil=True, boundscheck=False)
def _attend_grad(tokens, grad_A, r, relu, zero, out):  # pragma: no cover - compiled
    """``∂L/∂r = pair_scatter(σ'(s) ⊙ pair_gather(∂L/∂A))``, ``s = pair_gather(r)``, one
    pass."""
    out[:] = 0
    for b in range(tokens.shape[0]):
        _attend_grad_row(tokens[b], grad_A[b], r[b], relu, zero, out[b])


def _np(t: torch.Tensor) -> np.ndarray:
    """The memory of a CPU tensor that needs no gradient, as a NumPy array (no copy)."""
    return t.numpy()


def pair_gather(tokens: torch.Tensor, table: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out_h = t[2 z_h] + t[2 z_{h-1} + 1]`` (``out_0 = t[2 z_0]``), ``[B, H]``.

    ``tokens`` ``[B, H]`` int64, ``table`` ``[B, 2N]`` interleaved, ``out`` ``[B, H]`` of
    the table's dtype; all contiguous CPU tensors. Returns ``out``.
    """
    _pair_gather(_np(tokens), _np(table), _np(out))
    return out


def pair_scatter(tokens: torch.Tensor, w: torch.Tensor, n: int,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_h w_h x_h`` on the first ``2N`` coordinates, interleaved, ``[B, 2N]`` (into
    ``out`` if given, else new)."""
    if out is None:
        out = torch.empty(tokens.shape[0], 2 * n, dtype=w.dtype)
    _pair_scatter(_np(tokens), _np(w), _np(out))
    return out


def attend_forward(tokens: torch.Tensor, r: torch.Tensor, attention: str,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """``A = Σ_h σ(s_h) x_h`` (interleaved ``[B, 2N]``) for linear or ReLU attention (into
    ``out`` if given)."""
    if out is None:
        out = torch.empty_like(r)
    a = _np(r)
    _attend(_np(tokens), a, _MODES[attention] == 1, a.dtype.type(0), _np(out))
    return out


def attend_backward(
    tokens: torch.Tensor, grad_A: torch.Tensor, r: torch.Tensor, attention: str,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``∂L/∂r`` (interleaved) from ``∂L/∂A`` for linear or ReLU attention; ``r`` is the
    forward pass's (the ReLU's derivative is read off its scores). Into ``out`` if given."""
    if out is None:
        out = torch.empty_like(grad_A)
    g = _np(grad_A)
    _attend_grad(_np(tokens), g, _np(r), _MODES[attention] == 1, g.dtype.type(0), _np(out))
    return out


# The training step's kernels (array level: NumPy arrays sharing the tensors' memory, all
# C-contiguous; called by icl.fastpath's CPU step with buffers it made once). Each does two
# jobs in one call, with the same sums in the same order as the PyTorch path.
@njit(cache=True, nogil=True, boundscheck=False)
def step_forward(tokens, Q, n2, relu, zero, r, direct, A):  # pragma: no cover - compiled
    """The rows ``(r, ξ_direct) = Q_{j_1} + Q_{j_2}`` of the step layout (split after
    ``2N`` columns, ``j = (2 z_{H-1} + 1, 2 z_H)``) and ``A`` of :func:`attend_forward`
    (linear, or ReLU if ``relu``), sequence by sequence."""
    A[:] = 0
    for b in range(tokens.shape[0]):
        _rows_row(tokens[b], Q, n2, r[b], direct[b])
        _attend_row(tokens[b], r[b], relu, zero, A[b])


@njit(cache=True, nogil=True, boundscheck=False)
def step_backward(tokens, grad_A, r, relu, zero, dr, G, dQ):  # pragma: no cover - compiled
    """``∂L/∂r`` of :func:`attend_backward` into ``dr``, then ``∂L/∂Q`` into ``dQ``: the
    row ``(∂L/∂r, G)`` of each sequence added at ``j_1`` and ``j_2``."""
    dr[:] = 0
    for b in range(tokens.shape[0]):
        _attend_grad_row(tokens[b], grad_A[b], r[b], relu, zero, dr[b])
    _rows_grad(tokens, dr, G, dQ)


# Softmax attention in the training step. The exponential is evaluated here, not by
# PyTorch, so that the scores, the softmax and the sum over the tokens are one pass per
# sequence (the scores never leave the core's cache). ``_exp`` is the textbook method:
# ``x = n ln2 + f`` with ``n`` the nearest integer to ``x / ln2`` (the "shifter" trick
# rounds it and leaves it in the low bits), ``f`` by a two-part ``ln2`` (Cody and Waite),
# ``e^f`` by its Taylor polynomial (degree 7 in float32, 13 in float64; ``|f| ≤ ln2/2``),
# and ``2^n`` written into the exponent bits. Relative error: within two units in the
# last place (tests/test_kernels.py checks it on a grid; about one is measured);
# arguments below the smallest normal number's logarithm give about that number instead
# of an underflow to 0, which only ever meets ``x = s_h - max s ≤ 0`` in a sum with a
# term 1. PyTorch's softmax rounds differently, so this step's softmax weights are not
# bit for bit those of the model's forward pass (which keeps PyTorch's).
#: multiply-adds fused (FMA) in the kernels that call ``_exp``: its polynomial then costs
#: one rounding per coefficient instead of two
_CONTRACT = {"contract"}


def _cast(x, c):  # pragma: no cover - the numba implementation is _cast_overload's
    raise NotImplementedError("compiled only")


@overload(_cast)
def _cast_overload(x, c):  # pragma: no cover - compiled
    """``c`` in the float type of ``x`` (Numba would otherwise widen ``float32 · 0`` to
    float64)."""
    if x == types.float32:
        return lambda x, c: np.float32(c)
    if x == types.float64:
        return lambda x, c: np.float64(c)
    return None


def _exp(x):  # pragma: no cover - the numba implementation is _exp_overload's
    raise NotImplementedError("compiled only")


@overload(_exp)
def _exp_overload(x):  # pragma: no cover - compiled
    if x == types.float32:
        f32 = np.float32
        lo, shift, log2e = f32(-87.33), f32(1.5 * 2**23), f32(1.4426950408889634)
        hi_ln2, lo_ln2 = f32(0.693359375), f32(-2.12194440e-4)
        bias = np.int32(127 << 23)
        c7, c6, c5, c4, c3, c2, c1, c0 = (f32(1 / k) for k in (5040, 720, 120, 24, 6, 2, 1, 1))

        def exp32(x):
            x = max(x, lo)
            t = x * log2e + shift
            n = t - shift
            f = x - n * hi_ln2 - n * lo_ln2
            p = ((((((c7 * f + c6) * f + c5) * f + c4) * f + c3) * f + c2) * f + c1) * f + c0
            k = f32(t).view(np.int32)
            return p * np.int32((k << np.int32(23)) + bias).view(np.float32)

        return exp32
    if x == types.float64:
        coefficients = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))
        lo, shift, log2e = -708.0, 1.5 * 2.0**52, 1.4426950408889634
        hi_ln2, lo_ln2 = 6.93145751953125e-1, 1.42860682030941723212e-6
        bias = np.int64(1023 << 52)

        def exp64(x):
            x = max(x, lo)
            t = x * log2e + shift
            n = t - shift
            f = x - n * hi_ln2 - n * lo_ln2
            p = 0.0
            for c in literal_unroll(coefficients):
                p = p * f + c
            k = np.float64(t).view(np.int64)
            return p * np.int64((k << np.int64(52)) + bias).view(np.float64)

        return exp64
    return None


@njit(cache=True, nogil=True, boundscheck=False, fastmath=_CONTRACT)
def exp(x, out):  # pragma: no cover - compiled
    """``out = e^x`` elementwise by this module's exponential (1-D arrays; for its tests)."""
    for i in range(x.shape[0]):
        out[i] = _exp(x[i])


@njit(inline="always")
def _row_sum(x):  # pragma: no cover - compiled
    """``Σ_h x_h`` in eight interleaved partial sums (a fixed order, vectorised), in the
    dtype of ``x``."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = _cast(x[0], 0.0)
    H = x.shape[0]
    h = 0
    while h + 8 <= H:
        s0 += x[h]
        s1 += x[h + 1]
        s2 += x[h + 2]
        s3 += x[h + 3]
        s4 += x[h + 4]
        s5 += x[h + 5]
        s6 += x[h + 6]
        s7 += x[h + 7]
        h += 8
    while h < H:
        s0 += x[h]
        h += 1
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@njit(inline="always")
def _row_dot(x, y):  # pragma: no cover - compiled
    """``Σ_k x_k y_k`` in four interleaved partial sums (a fixed order), in the dtype of
    ``x``."""
    s0 = s1 = s2 = s3 = _cast(x[0], 0.0)
    K = x.shape[0]
    k = 0
    while k + 4 <= K:
        s0 += x[k] * y[k]
        s1 += x[k + 1] * y[k + 1]
        s2 += x[k + 2] * y[k + 2]
        s3 += x[k + 3] * y[k + 3]
        k += 4
    while k < K:
        s0 += x[k] * y[k]
        k += 1
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True, boundscheck=False, fastmath=_CONTRACT)
def step_softmax(tokens, Q, n2, r, direct, e, inv, A):  # pragma: no cover - compiled
    """The rows ``(r, ξ_direct)`` of the step layout (as :func:`step_forward`) and
    ``A = Σ_h a_h x_h`` for softmax
    attention, with ``a_h = e_h / Σ_h' e_h'``; ``e_h = exp(s_h - max s)`` is kept in
    ``e`` and ``1 / Σ e`` in ``inv`` (for the backward pass). Per sequence: the scores and
    their maximum (one loop over the tokens), ``e`` and its sum (two vectorised loops
    over the row), the scatter of ``e`` (a second loop over the tokens), then ``A``'s
    ``2N`` entries times ``1 / Σ e``."""
    A[:] = 0
    H = tokens.shape[1]
    for b in range(tokens.shape[0]):
        tb, eb, rb, ob = tokens[b], e[b], r[b], A[b]
        _rows_row(tb, Q, n2, rb, direct[b])
        prev = tb[0]
        m = eb[0] = rb[2 * prev]
        for h in range(1, H):
            z = tb[h]
            s = eb[h] = rb[2 * z] + rb[2 * prev + 1]
            m = max(m, s)
            prev = z
        for h in range(H):
            eb[h] = _exp(eb[h] - m)
        total = _row_sum(eb)
        inv[b] = scale = _cast(total, 1.0) / total
        _scatter_row(tb, eb, ob)
        for k in range(ob.shape[0]):
            ob[k] *= scale


@njit(cache=True, nogil=True, boundscheck=False, fastmath=_CONTRACT)
def step_softmax_grad(tokens, grad_A, e, inv, A, dr, G, dQ):  # pragma: no cover - compiled
    """``∂L/∂r`` for softmax attention into ``dr`` (``e``, ``inv``, ``A`` from
    :func:`step_softmax`), then ``∂L/∂Q`` into ``dQ`` (as :func:`step_backward`).

    With ``g = ∂L/∂a = pair_gather(∂L/∂A)``, the softmax's ``∂L/∂s = a ⊙ (g - ⟨a, g⟩)``;
    ``⟨a, g⟩ = ⟨A, ∂L/∂A⟩`` (``A = Σ_h a_h x_h`` and ``g_h = ⟨x_h, ∂L/∂A⟩``) is a sum over
    ``2N`` entries, not ``H``, and since every ``g_h`` has exactly one ``E`` coordinate,
    ``(g_h - ⟨a, g⟩) / Σ e`` is the pair gather of the table ``t = (∂L/∂A - ⟨a, g⟩ on the
    E coordinates) / Σ e``: one loop over the tokens per sequence, which gathers from
    ``t`` and scatters ``e_h t``-sums into ``dr``."""
    dr[:] = 0
    t = np.empty(grad_A.shape[1], dtype=grad_A.dtype)
    for b in range(tokens.shape[0]):
        tb, eb, gb, ob = tokens[b], e[b], grad_A[b], dr[b]
        dot = _row_dot(A[b], gb)
        scale = inv[b]
        for k in range(0, t.shape[0], 2):
            t[k] = (gb[k] - dot) * scale
            t[k + 1] = gb[k + 1] * scale
        prev = tb[0]
        d = eb[0] * t[2 * prev]
        ob[2 * prev] += d
        for h in range(1, tb.shape[0]):
            z = tb[h]
            d = eb[h] * (t[2 * z] + t[2 * prev + 1])
            ob[2 * z] += d
            ob[2 * prev + 1] += d
            prev = z
    _rows_grad(tokens, dr, G, dQ)


@njit(inline="always")
def _iota(a, n):  # pragma: no cover - compiled
    """The interleaved order: ``ι(2k) = k``, ``ι(2k+1) = N + k``."""
    return a // 2 + n * (a % 2)


@njit(cache=True, nogil=True, boundscheck=False)
def _to_layout(W, V, F, n, kappa, P):  # pragma: no cover - compiled
    # row by row through slices (contiguous loops, no negative-index checks)
    n2, n3, off = 2 * n, 3 * n, 6 * n * n
    for a in range(n2):
        wa = W[_iota(a, n)]
        q = P[a * n3 : (a + 1) * n3]
        for k in range(n):
            q[2 * k] = wa[k]
            q[2 * k + 1] = wa[n + k]
        ia = _iota(a, n)
        for c in range(n):
            q[n2 + c] = F[c, ia]
    for c in range(n):
        vc, fc = V[c], F[c]
        m = P[off + c * n2 : off + (c + 1) * n2]
        for k in range(n):
            if kappa:
                m[2 * k] = vc[k] + fc[k]
                m[2 * k + 1] = vc[n + k] + fc[n + k]
            else:
                m[2 * k] = vc[k]
                m[2 * k + 1] = vc[n + k]


@njit(cache=True, nogil=True, boundscheck=False)
def _from_layout(dP, n, kappa, need_w, need_v, need_f, dW, dV, dF):  # pragma: no cover
    n2, n3 = 2 * n, 3 * n
    if need_w:
        dW[:] = 0
    if need_v:
        dV[:] = 0
    if need_f:
        dF[:] = 0
    for a in range(n2):
        ia = _iota(a, n)
        row = a * n3
        if need_w:
            for b in range(n2):
                dW[ia, _iota(b, n)] = dP[row + b]
        if need_f:
            for c in range(n):
                dF[c, ia] = dP[row + n2 + c]
    off = 6 * n * n
    for c in range(n):
        for b in range(n2):
            ib = _iota(b, n)
            g = dP[off + c * n2 + b]
            if need_v:
                dV[c, ib] = g
            if need_f and kappa:
                dF[c, ib] += g


@njit(inline="always")
def _sign(g):  # pragma: no cover - compiled
    """``sign(g)`` in the dtype of ``g``, 0 for 0 and for NaN (as ``torch.sign``)."""
    return _cast(g, (g > 0) - (g < 0))


@njit(cache=True, nogil=True, boundscheck=False, fastmath={"reassoc"})
def _layout_sq_norms(dP, n, kappa, out):  # pragma: no cover - compiled
    """``out = (|∂L/∂W|², |∂L/∂V|², |∂L/∂F|²)``, each entry squared and summed in
    float64 (the entries outside the layout are zero); the sums may be reordered
    (vectorised), so they are exact to a relative ``~10⁻¹⁵``, in the same order at every
    call. ``∂L/∂F[c, ι(a)]`` is ``Q``'s entry ``(a, 2N + c)`` plus, if ``κ = 1``, ``M``'s
    ``(c, a)``."""
    n2, n3, off = 2 * n, 3 * n, 6 * n * n
    sw = sv = sf = 0.0
    for a in range(n2):
        q = dP[a * n3 : (a + 1) * n3]
        for b in range(n2):
            g = np.float64(q[b])
            sw += g * g
        for c in range(n):
            g = q[n2 + c]
            if kappa:
                g += dP[off + c * n2 + a]
            g = np.float64(g)
            sf += g * g
    m = dP[off : off + n * n2]
    for k in range(n * n2):
        g = np.float64(m[k])
        sv += g * g
    out[0], out[1], out[2] = sw, sv, sf


@njit(inline="always")
def _move_row(row, g, n, step, sign):  # pragma: no cover - compiled
    """``row ← row - step·g`` (or ``step·sign(g)``) for a row of ``W`` or ``V`` and its
    gradient ``g`` in the interleaved order (``g[2k]`` is column ``k``, ``g[2k+1]``
    column ``N + k``)."""
    for k in range(n):
        g0, g1 = g[2 * k], g[2 * k + 1]
        if sign:
            g0, g1 = _sign(g0), _sign(g1)
        row[k] -= step * g0
        row[n + k] -= step * g1


@njit(cache=True, nogil=True, boundscheck=False, fastmath=_CONTRACT)
def _layout_update(dP, n, kappa, W, V, F, steps, sign):  # pragma: no cover - compiled
    """``θ ← θ - steps[i]·∂L/∂θ`` (or its sign) for ``θ = W, V, F`` (``i = 0, 1, 2``),
    on the entries of the layout, row by row of each matrix; a matrix whose step is 0 is
    not touched."""
    n2, n3, off = 2 * n, 3 * n, 6 * n * n
    sw, sv, sf = steps[0], steps[1], steps[2]
    if sw != 0:
        for a in range(n2):
            _move_row(W[_iota(a, n)], dP[a * n3 : a * n3 + n2], n, sw, sign)
    if sv != 0:
        for c in range(n):
            _move_row(V[c], dP[off + c * n2 : off + (c + 1) * n2], n, sv, sign)
    if sf != 0:
        for c in range(n):
            fc = F[c]
            for a in range(n2):
                g = dP[a * n3 + n2 + c]
                if kappa:
                    g += dP[off + c * n2 + a]
                if sign:
                    g = _sign(g)
                fc[_iota(a, n)] -= sf * g


def update_from_layout(dP: torch.Tensor, n: int, kappa: int, mats: list[np.ndarray],
                       trainable: tuple[bool, bool, bool], lr: float,
                       normalized: bool | str) -> None:
    """One step of :func:`icl.training.normalized_step`'s rule (``normalized`` True, False
    or ``"per_coordinate"``) on the trainable ones of ``mats = (W, V, F)`` (NumPy arrays
    on the parameters' memory), from ``∂L/∂P`` of the step layout, without forming the
    ``d × d`` gradients: only the entries of the layout move (every other gradient is 0).

    As ``_apply_update`` computes it: a normalised step is ``lr / |g|`` with the norm
    ``|g|`` summed in float64 and rounded to the parameters' dtype (as PyTorch's CPU norm
    returns it), skipped when ``|g| = 0``; the step is then rounded to the dtype. The
    parameters are written through NumPy, so autograd's version counter does not see the
    step (the training loop keeps no graph across steps).
    """
    dp = dP.numpy()
    dt = dp.dtype.type
    if normalized is True:
        sq = np.empty(3)
        _layout_sq_norms(dp, n, bool(kappa), sq)
        norms = [float(dt(math.sqrt(v))) for v in sq]
        steps = [lr / m if t and m > 0 else 0.0 for t, m in zip(trainable, norms, strict=True)]
    else:
        steps = [lr if t else 0.0 for t in trainable]
    if max(steps) <= float(np.finfo(dp.dtype).max):
        steps = np.array(steps, dtype=dp.dtype)
    else:  # a step beyond the dtype's range (a gradient norm below its normal numbers) is inf
        with np.errstate(over="ignore"):
            steps = np.array(steps, dtype=dp.dtype)
    _layout_update(dp, n, bool(kappa), *mats, steps, normalized == "per_coordinate")


def to_layout(W: torch.Tensor, V: torch.Tensor, F: torch.Tensor, n: int, kappa: int,
              P: torch.Tensor) -> torch.Tensor:
    """The step layout ``P = (Q, M)`` of ``(W, V, F)`` (:func:`icl.fastpath.step_layout_index`),
    written into ``P``: ``Q = [W_{ιι} | (F_{:N, ι})^T]``, ``M = (V + κF)_{:N, ι}``."""
    _to_layout(W.detach().numpy(), V.detach().numpy(), F.detach().numpy(), n, bool(kappa),
               P.numpy())
    return P


#: :func:`to_layout` on NumPy arrays (the training step's, made once):
#: ``(W, V, F, n, kappa: bool, P)``
to_layout_arrays = _to_layout


def from_layout(dP: torch.Tensor, n: int, kappa: int, dW: torch.Tensor | None,
                dV: torch.Tensor | None, dF: torch.Tensor | None) -> None:
    """The adjoint of :func:`to_layout`: ``∂L/∂W, ∂L/∂V, ∂L/∂F`` (``d × d``, zero outside
    the entries that meet a one-hot input) from ``∂L/∂P``, into those of ``dW, dV, dF``
    that are given."""
    empty = np.zeros((0, 0), dtype=dP.numpy().dtype)
    arrays = [empty if t is None else t.numpy() for t in (dW, dV, dF)]
    _from_layout(dP.numpy(), n, bool(kappa), dW is not None, dV is not None, dF is not None,
                 *arrays)


@njit(cache=True, nogil=True, boundscheck=False)
def nll_grad(logp, targets, value, dlogp):  # pragma: no cover - compiled
    """The mean negative log-likelihood ``-mean_b logp[b, t_b]`` (summed in float64), and
    its gradient with respect to ``logp`` written into ``dlogp``: ``value`` at each
    target, 0 elsewhere (PyTorch's ``nll_loss`` passes back ``-1`` times ``1/B`` rounded
    to the dtype). Array level, as the training step's kernels."""
    B = logp.shape[0]
    dlogp[:] = 0
    total = 0.0
    for b in range(B):
        t = targets[b]
        total += logp[b, t]
        dlogp[b, t] = value
    return -total / B


# ----------------------------------------------------------------------------- the sampler
@njit(inline="always")
def _mix(z):  # pragma: no cover - compiled
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def _below(x32, n):  # pragma: no cover - compiled
    """``⌊x·n / 2^32⌋``: a 32-bit uniform ``x`` mapped to ``{0, …, n-1}`` (multiply-shift)."""
    return np.int64((x32 * np.uint64(n)) >> _S32)


@njit(cache=True, nogil=True, boundscheck=False)
def _sample(key, low, R, nq, pool_lo, pool_n, noisy, tau, alpha,
            tokens, targets, outputs, pair_pos, noise_pos):  # pragma: no cover - compiled
    B, H = tokens.shape
    half = (H + 1) // 2
    per_row = np.uint64(half + 3)
    words = np.empty(half, dtype=np.uint64)
    for b in range(B):
        base = key + np.uint64(b) * per_row * _GAMMA
        tb = tokens[b]
        # filler: two tokens per 64-bit output (its low and high 32 bits); the outputs
        # first, then the tokens: two loops without branches, each vectorised
        for i in range(half):
            words[i] = _mix(base + np.uint64(i + 1) * _GAMMA)
        for i in range(H // 2):
            x = words[i]
            tb[2 * i] = low + _below(x & _LOW32, R)
            tb[2 * i + 1] = low + _below(x >> _S32, R)
        if H % 2:
            tb[H - 1] = low + _below(words[half - 1] & _LOW32, R)
        u = _mix(base + np.uint64(half + 1) * _GAMMA)  # y (low bits), p (high bits)
        v = _mix(base + np.uint64(half + 2) * _GAMMA)  # p' (noisy) or q (noiseless)
        y = pool_lo + _below(u & _LOW32, pool_n)
        p = _below(u >> _S32, H - 2)
        outputs[b] = y
        pair_pos[b] = p
        if noisy:
            q = 0
            lo = max(p - 1, 0)
            k = min(p + 1, H - 3) - lo + 1
            j = _below(v & _LOW32, H - 2 - k)
            if j >= lo:
                j += k
            noise_pos[b] = j
            tb[j] = q
            tb[j + 1] = tau
            w = _mix(base + np.uint64(half + 3) * _GAMMA)
            flip = np.float64(w >> _S11) * _TWO_M53 < alpha  # a 53-bit uniform
            targets[b] = tau if flip else y
        else:
            q = _below(v & _LOW32, nq)
            noise_pos[b] = -1
            targets[b] = y
        tb[p] = q
        tb[p + 1] = y
        tb[H - 1] = q


@njit(cache=True, nogil=True)
def _stream(key, out):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        out[i] = _mix(key + np.uint64(i + 1) * _GAMMA)


def splitmix64(key: int, count: int) -> np.ndarray:
    """The first ``count`` outputs of the SplitMix64 stream with seed ``key`` (``uint64``):
    the numbers :func:`sample_default` reads, row ``b`` from output ``b·(⌈H/2⌉ + 3) + 1``
    on. Checked against the reference implementation's outputs in the tests."""
    for name, value in (("key", key), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    out = np.empty(count, dtype=np.uint64)
    _stream(np.uint64(int(key) % 2**64), out)
    return out


def draw_key(generator: torch.Generator) -> np.uint64:
    """One 64-bit seed of a SplitMix64 stream, drawn from ``generator`` (advances it)."""
    x = torch.randint(-(2**63), 2**63 - 1, (1,), dtype=torch.int64, generator=generator)
    return np.uint64(int(x) % 2**64)


def sample_default(
    generator: torch.Generator, B: int, H: int, *, n_triggers: int, vocab_size: int,
    pool_lo: int, pool_n: int, noisy: bool, alpha: float, tokens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """``(tokens, targets, outputs, pair_pos, noise_pos)`` of a default batch (the task's
    law, the model page §1), on the CPU, from one draw of ``generator``.

    Per sequence, in one pass: the filler uniform on ``{|Q|, …, N-2}`` (two tokens per
    64-bit output); ``y`` uniform on the pool; the pair start ``p`` uniform on
    ``{0, …, H-3}``; noisy: ``p'`` uniform on the starts with ``|p' - p| ≥ 2`` (drawn
    among the ``H-2-k`` allowed starts and shifted past the ``k`` excluded ones), the
    target ``τ`` with probability ``α``; noiseless: ``q`` uniform on the triggers. A
    32-bit uniform ``x`` becomes ``⌊x·n/2^32⌋``, within ``2^-32`` of ``1/n`` for each
    value; the flip compares a 53-bit uniform with ``α``. The caller validates the sizes.
    ``tokens``: a contiguous ``[B, H]`` buffer to write the tokens into, int64 or the
    training loop's :func:`token_dtype` (it reuses one: a fresh megabyte per step costs
    page faults).
    """
    N, nq = vocab_size, n_triggers
    if tokens is None:
        tokens = torch.empty(B, H, dtype=torch.int64)
    elif tokens.dtype == torch.uint8 and N > 256:
        raise ValueError(f"tokens: a uint8 buffer holds at most 256 tokens, got vocab_size={N}")
    rows = [torch.empty(B, dtype=torch.int64) for _ in range(4)]
    targets, outputs, pair_pos, noise_pos = rows
    _sample(draw_key(generator), nq, N - 1 - nq, nq, pool_lo, pool_n, bool(noisy), N - 1,
            float(alpha), tokens.numpy(), *(t.numpy() for t in rows))
    return tokens, targets, outputs, pair_pos, noise_pos
