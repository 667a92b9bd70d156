"""Compiled CPU kernels of the sampler and the structured fast path (Numba).

Two kinds of work in this package touch every one of the ``B·H`` tokens of a batch:
drawing the batch (:mod:`icl.task`) and the attention sums of the structured fast path
(:mod:`icl.fastpath`). In PyTorch each is a chain of whole-tensor operations (a gather,
an addition, a copy, a scatter), each one more pass over ``B·H`` entries and one more
dispatch. The kernels here do each job in **one pass** per sequence, in compiled loops
(``numba.njit``), on the CPU tensors' memory (``Tensor.numpy()`` shares it, nothing is
copied). The PyTorch versions stay: they are used on other devices (CUDA) and are what
``tests/test_kernels.py`` checks these kernels against.

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
import threading
from collections.abc import Iterator

import numpy as np
import torch
from numba import njit

__all__ = [
    "attend_backward",
    "attend_forward",
    "available",
    "disabled",
    "draw_key",
    "from_layout",
    "nll_seed",
    "pair_gather",
    "pair_scatter",
    "runs_on",
    "sample_default",
    "splitmix64",
    "step_rows",
    "step_rows_grad",
    "to_layout",
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
@njit(cache=True, nogil=True, boundscheck=False)
def _pair_gather(tokens, table, out):  # pragma: no cover - compiled
    B, H = tokens.shape
    for b in range(B):
        tb, rb, ob = tokens[b], table[b], out[b]
        prev = tb[0]
        ob[0] = rb[2 * prev]
        for h in range(1, H):
            z = tb[h]
            ob[h] = rb[2 * z] + rb[2 * prev + 1]
            prev = z


@njit(cache=True, nogil=True, boundscheck=False)
def _pair_scatter(tokens, w, out):  # pragma: no cover - compiled
    B, H = tokens.shape
    out[:] = 0
    for b in range(B):
        tb, wb, ob = tokens[b], w[b], out[b]
        prev = tb[0]
        ob[2 * prev] += wb[0]
        for h in range(1, H):
            z = tb[h]
            ob[2 * z] += wb[h]
            ob[2 * prev + 1] += wb[h]
            prev = z


@njit(cache=True, nogil=True, boundscheck=False)
def _attend(tokens, r, relu, zero, out):  # pragma: no cover - compiled
    """``A = pair_scatter(σ(pair_gather(r)))`` for σ the identity or ReLU, one pass
    (``zero``: 0 in the dtype of ``r``, so that every sum stays in that dtype)."""
    B, H = tokens.shape
    out[:] = 0
    for b in range(B):
        tb, rb, ob = tokens[b], r[b], out[b]
        prev = tb[0]
        s = rb[2 * prev]
        if relu and s < zero:
            s = zero
        ob[2 * prev] += s
        for h in range(1, H):
            z = tb[h]
            s = rb[2 * z] + rb[2 * prev + 1]
            if relu and s < zero:
                s = zero
            ob[2 * z] += s
            ob[2 * prev + 1] += s
            prev = z


@njit(cache=True, nogil=True, boundscheck=False)
def _attend_grad(tokens, grad_A, r, relu, zero, out):  # pragma: no cover - compiled
    """``∂L/∂r = pair_scatter(σ'(s) ⊙ pair_gather(∂L/∂A))``, ``s = pair_gather(r)``, one
    pass; ``σ'(s) = [s ≥ 0]`` for ReLU (the subgradient 1 at 0), ``1`` for linear."""
    B, H = tokens.shape
    out[:] = 0
    for b in range(B):
        tb, gb, rb, ob = tokens[b], grad_A[b], r[b], out[b]
        prev = tb[0]
        g = gb[2 * prev]
        if relu and rb[2 * prev] < zero:
            g = zero
        ob[2 * prev] += g
        for h in range(1, H):
            z = tb[h]
            g = gb[2 * z] + gb[2 * prev + 1]
            if relu and rb[2 * z] + rb[2 * prev + 1] < zero:
                g = zero
            ob[2 * z] += g
            ob[2 * prev + 1] += g
            prev = z


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


@njit(cache=True, nogil=True, boundscheck=False)
def _step_rows(tokens, Q, n2, r, direct):  # pragma: no cover - compiled
    B, H = tokens.shape
    for b in range(B):
        j1 = 2 * tokens[b, H - 2] + 1
        j2 = 2 * tokens[b, H - 1]
        q1, q2 = Q[j1], Q[j2]
        for c in range(n2):
            r[b, c] = q1[c] + q2[c]
        for c in range(direct.shape[1]):
            direct[b, c] = q1[n2 + c] + q2[n2 + c]


@njit(cache=True, nogil=True, boundscheck=False)
def _step_rows_grad(tokens, dr, G, dQ):  # pragma: no cover - compiled
    B, H = tokens.shape
    n2 = dr.shape[1]
    dQ[:] = 0
    for last in (1, 0):  # all rows j_1 first, then all rows j_2 (index_add_'s order)
        for b in range(B):
            j = 2 * tokens[b, H - 2] + 1 if last else 2 * tokens[b, H - 1]
            qj = dQ[j]
            for c in range(n2):
                qj[c] += dr[b, c]
            for c in range(G.shape[1]):
                qj[n2 + c] += G[b, c]


@njit(inline="always")
def _iota(a, n):  # pragma: no cover - compiled
    """The interleaved order: ``ι(2k) = k``, ``ι(2k+1) = N + k``."""
    return a // 2 + n * (a % 2)


@njit(cache=True, nogil=True, boundscheck=False)
def _to_layout(W, V, F, n, kappa, P):  # pragma: no cover - compiled
    n2, n3 = 2 * n, 3 * n
    for a in range(n2):
        ia = _iota(a, n)
        row = a * n3
        for b in range(n2):
            P[row + b] = W[ia, _iota(b, n)]
        for c in range(n):
            P[row + n2 + c] = F[c, ia]
    off = 6 * n * n
    for c in range(n):
        for b in range(n2):
            ib = _iota(b, n)
            if kappa:
                P[off + c * n2 + b] = V[c, ib] + F[c, ib]
            else:
                P[off + c * n2 + b] = V[c, ib]


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


def to_layout(W: torch.Tensor, V: torch.Tensor, F: torch.Tensor, n: int, kappa: int,
              P: torch.Tensor) -> torch.Tensor:
    """The step layout ``P = (Q, M)`` of ``(W, V, F)`` (:func:`icl.fastpath.step_layout_index`),
    written into ``P``: ``Q = [W_{ιι} | (F_{:N, ι})^T]``, ``M = (V + κF)_{:N, ι}``."""
    _to_layout(W.detach().numpy(), V.detach().numpy(), F.detach().numpy(), n, bool(kappa),
               P.numpy())
    return P


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
def _nll_seed(logp, targets, value, dlogp):  # pragma: no cover - compiled
    B = logp.shape[0]
    dlogp[:] = 0
    total = 0.0
    for b in range(B):
        t = targets[b]
        total += logp[b, t]
        dlogp[b, t] = value
    return -total / B


def nll_seed(logp: torch.Tensor, targets: torch.Tensor, dlogp: torch.Tensor) -> float:
    """The mean negative log-likelihood ``-mean_b logp[b, t_b]`` (summed in float64), and
    its gradient with respect to ``logp`` written into ``dlogp``: ``-1/B`` at each target,
    0 elsewhere (the value PyTorch's ``nll_loss`` passes back, ``-1`` times ``1/B`` rounded
    to the dtype)."""
    a = logp.numpy()
    value = a.dtype.type(-1) * a.dtype.type(1.0 / logp.shape[0])
    return _nll_seed(a, targets.numpy(), value, dlogp.numpy())


def step_rows(tokens: torch.Tensor, Q: torch.Tensor, n: int,
              out: tuple[torch.Tensor, torch.Tensor] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r, ξ_direct) = Q_{j_1} + Q_{j_2}`` split after ``2N`` columns, with
    ``j = (2 z_{H-1} + 1, 2 z_H)`` (the step layout of :mod:`icl.fastpath`): ``[B, 2N]``
    and ``[B, N]`` (into ``out`` if given)."""
    B = tokens.shape[0]
    if out is None:
        out = (torch.empty(B, 2 * n, dtype=Q.dtype),
               torch.empty(B, Q.shape[1] - 2 * n, dtype=Q.dtype))
    r, direct = out
    _step_rows(_np(tokens), _np(Q), 2 * n, _np(r), _np(direct))
    return r, direct


def step_rows_grad(tokens: torch.Tensor, dr: torch.Tensor, G: torch.Tensor, dQ: torch.Tensor
                   ) -> None:
    """``∂L/∂Q`` into ``dQ``: the row ``(∂L/∂r, G)`` of each sequence added at ``j_1`` and
    ``j_2`` (the adjoint of :func:`step_rows`)."""
    _step_rows_grad(_np(tokens), _np(dr), _np(G), _np(dQ))


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
    for b in range(B):
        base = key + np.uint64(b) * per_row * _GAMMA
        tb = tokens[b]
        # filler: two tokens per 64-bit output (its low and high 32 bits)
        for i in range(half):
            x = _mix(base + np.uint64(i + 1) * _GAMMA)
            tb[2 * i] = low + _below(x & _LOW32, R)
            if 2 * i + 1 < H:
                tb[2 * i + 1] = low + _below(x >> _S32, R)
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
    ``tokens``: a contiguous int64 ``[B, H]`` buffer to write the tokens into (the
    training loop reuses one: a fresh megabyte per step costs page faults).
    """
    N, nq = vocab_size, n_triggers
    if tokens is None:
        tokens = torch.empty(B, H, dtype=torch.int64)
    rows = [torch.empty(B, dtype=torch.int64) for _ in range(4)]
    targets, outputs, pair_pos, noise_pos = rows
    _sample(draw_key(generator), nq, N - 1 - nq, nq, pool_lo, pool_n, bool(noisy), N - 1,
            float(alpha), tokens.numpy(), *(t.numpy() for t in rows))
    return tokens, targets, outputs, pair_pos, noise_pos
