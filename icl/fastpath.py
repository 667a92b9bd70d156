"""The structured fast path of the one-layer transformer, with a closed-form backward ([D]).

Every input ``x_h = E(z_h) + Ẽ(z_{h-1})`` has two non-zero coordinates, ``z_h`` and
``N + z_{h-1}``, so with ``r = x_H^T W`` (two rows of ``W``)

    s_h = r_{z_h} + r_{N + z_{h-1}},        A_k = Σ_{h: z_h = k} a_h,
    A_{N+k} = Σ_{h: z_{h-1} = k} a_h          (k < N; A is zero beyond 2N).

The two halves of ``r`` (and of ``A``) are stored *interleaved*, ``(r_0, r_N, r_1,
r_{N+1}, …)``, and read as ``N`` complex numbers ``r_k + i r_{N+k}``: one gather at the
tokens then returns both ``r_{z_h}`` and ``r_{N+z_h}`` (the second is the ``Ẽ`` part of
position ``h+1``), and one complex scatter-add at the tokens accumulates both halves of
``A`` (real part ``a_h``, imaginary part ``a_{h+1}``). That halves the number of indexed
memory accesses, which dominate the cost on a CPU.

The backward pass is written out (:class:`Attend`): with ``ḡ = ∂L/∂A`` (interleaved),

    ∂L/∂a_h = ḡ_{z_h} + ḡ_{N+z_{h-1}}                      (the same gather),
    ∂L/∂s_h = σ'(s_h) ∂L/∂a_h  (linear, ReLU with σ'(0) = 1),
    ∂L/∂s   = a ⊙ (∂L/∂a - ⟨a, ∂L/∂a⟩)                      (softmax),
    ∂L/∂r   = the scatter-add of ∂L/∂s                        (as A from a).

``tests/test_fastpath.py`` checks it against autograd through the dense reference.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from . import kernels

__all__ = [
    "Attend",
    "StepLogits",
    "StepViews",
    "StepWork",
    "attend",
    "cpu_step_grads",
    "fused_step_grads",
    "interleave",
    "keep_freed_memory",
    "pair_scores",
    "scratch",
    "step_layout_index",
    "step_layout_size",
    "structured_logits",
]

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}
_LOCAL = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    """A work buffer reused from call to call (one per ``name``, dtype, device and thread).

    Large temporaries allocated afresh at every step cost page faults (the C allocator
    returns freed megabytes to the system and takes them back); the fast path and the
    sampler draw theirs from here instead. The contents are garbage; a buffer is only
    valid until the next request of the same ``name``, so it must never escape.
    """
    pool = getattr(_LOCAL, "pool", None)
    if pool is None:
        pool = _LOCAL.pool = {}
    key = (name, dtype, torch.device(device))
    n = 1
    for k in shape:
        n *= k
    buf = pool.get(key)
    if buf is None or buf.numel() < n:
        buf = pool[key] = torch.empty(n, dtype=dtype, device=device)
    return buf[:n].view(shape)


#: glibc's ``mallopt`` parameters ``M_TRIM_THRESHOLD`` and ``M_MMAP_THRESHOLD``, and the
#: values :func:`keep_freed_memory` gives them (bytes)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_BYTES, _MMAP_BYTES = 64 << 20, 16 << 20
_KEPT: list[bool] = []


def keep_freed_memory() -> bool:
    """Ask the C library to keep freed memory in the process (glibc only; once per
    process): blocks below 16 MB come from the heap, and the heap is returned to the
    system only when more than 64 MB of it is free. Returns whether it did.

    Why: an evaluation of :func:`icl.train` allocates and frees about 9 MB of temporaries
    (forward pass, float64 metrics). By default glibc hands such blocks back to the
    system at every free, and the next evaluation takes them again, one page fault per
    4 kB: measured at paper scale, 500–2,200 page faults and half of an evaluation's
    time. This is what the memory allocators PyTorch's CPU tuning guide recommends
    (jemalloc, tcmalloc) do by default; it changes only when memory goes back to the
    system, and costs at most 64 MB of memory the process keeps.
    """
    if _KEPT:
        return _KEPT[0]
    done = False
    try:
        import ctypes
        import platform

        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)
            done = bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES)) and bool(
                libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BYTES))
    except (OSError, AttributeError):  # no C library to ask: nothing changes
        done = False
    _KEPT.append(done)
    return done


def interleave(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The column order ``(0, n, 1, n+1, …, n-1, 2n-1)`` of the interleaved layout, ``[2n]``."""
    k = torch.arange(n, device=device)
    return torch.stack([k, k + n], dim=1).reshape(-1)


def supports(dtype: torch.dtype) -> bool:
    """Whether the fast path handles ``dtype`` (float32 and float64)."""
    return dtype in _COMPLEX


def _pair_gather(table: torch.Tensor, tokens: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out_h = table_{z_h} + table_{N + z_{h-1}}`` (``out_1 = table_{z_1}``), ``[B, H]``.

    ``table`` is ``[B, 2N]`` interleaved; the result is written into ``out``.
    """
    B, H = tokens.shape
    ct = torch.view_as_complex(table.view(B, -1, 2))
    pairs = scratch("pairs", (B, H), ct.dtype, ct.device)
    torch.gather(ct, 1, tokens, out=pairs)
    pr = torch.view_as_real(pairs)  # [B, H, 2]: (table_{z_h}, table_{N+z_h})
    out[:, 0] = pr[:, 0, 0]
    torch.add(pr[:, 1:, 0], pr[:, :-1, 1], out=out[:, 1:])
    return out


def _weights(B: int, H: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The ``[B, H, 2]`` buffer of :func:`_scatter_weights`; ``[..., 0]`` takes ``w_h``."""
    return scratch("pair_weights", (B, H, 2), dtype, device)


def _scatter_weights(w: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """``Σ_h w_h x_h`` (first ``2N`` coordinates, interleaved, ``[B, 2N]``) from the buffer
    ``w`` of :func:`_weights` whose ``[..., 0]`` holds ``w_h``.

    The pair ``(w_h, w_{h+1})`` read as one complex number is added at ``z_h``: its real
    part is ``E``'s coordinate ``z_h`` of position ``h``, its imaginary part ``Ẽ``'s
    coordinate ``N + z_h`` of position ``h + 1``.
    """
    B = tokens.shape[0]
    w[:, :-1, 1] = w[:, 1:, 0]
    w[:, -1, 1] = 0
    out = torch.zeros(B, n, dtype=_COMPLEX[w.dtype], device=w.device)
    out.scatter_add_(1, tokens, torch.view_as_complex(w))
    return torch.view_as_real(out).view(B, 2 * n)


def _pair_scatter(weights: torch.Tensor, tokens: torch.Tensor, n: int) -> torch.Tensor:
    """``Σ_h w_h x_h`` restricted to its first ``2N`` coordinates, interleaved, ``[B, 2N]``."""
    B, H = tokens.shape
    w = _weights(B, H, weights.dtype, weights.device)
    w[:, :, 0] = weights
    return _scatter_weights(w, tokens, n)


def _attend_forward(tokens: torch.Tensor, r: torch.Tensor, attention: str):
    """``A`` (interleaved ``[B, 2N]``) and what the backward pass needs.

    On the CPU the compiled kernels of :mod:`icl.kernels` do it (saved: ``a`` for softmax,
    ``r`` for linear and ReLU); elsewhere PyTorch operations, where linear and ReLU
    attention write the scores straight into the scatter's buffer (saved: the ReLU mask).
    """
    B, H = tokens.shape
    n = r.shape[1] // 2
    if kernels.available(tokens, r):  # compiled, one pass (icl.kernels)
        tokens = tokens.contiguous()
        A = r.new_empty(B, 2 * n)
        if attention == "softmax":
            a = r.new_empty(B, H)
            torch._softmax(kernels.pair_gather(tokens, r, r.new_empty(B, H)), -1, False, out=a)
            return kernels.pair_scatter(tokens, a, n, out=A), a
        return kernels.attend_forward(tokens, r, attention, out=A), r
    if attention == "softmax":
        a = torch.softmax(_pair_gather(r, tokens, r.new_empty(B, H)), dim=-1)
        return _pair_scatter(a, tokens, n), a
    w = _weights(B, H, r.dtype, r.device)
    s = _pair_gather(r, tokens, w[:, :, 0])
    saved = None
    if attention == "relu":
        saved = s >= 0  # σ'(s) with the subgradient σ'(0) = 1 (see icl.model.activate)
        s.clamp_(min=0)
    return _scatter_weights(w, tokens, n), saved


def _attend_backward(grad_A, tokens, attention: str, saved) -> torch.Tensor:
    """``∂L/∂r`` (interleaved) from ``∂L/∂A`` (interleaved), closed form."""
    B, H = tokens.shape
    n = grad_A.shape[1] // 2
    if kernels.available(tokens, grad_A):  # saved: a (softmax) or r (linear, ReLU)
        tokens = tokens.contiguous()
        dr = grad_A.new_empty(B, 2 * n)
        if attention == "softmax":
            g = kernels.pair_gather(tokens, grad_A, grad_A.new_empty(B, H))
            ds = torch._softmax_backward_data(g, saved, -1, saved.dtype)
            return kernels.pair_scatter(tokens, ds, n, out=dr)
        return kernels.attend_backward(tokens, grad_A, saved, attention, out=dr)
    if attention == "softmax":
        a = saved
        g = _pair_gather(grad_A, tokens, grad_A.new_empty(B, H))  # ∂L/∂a
        # a ⊙ (g - ⟨a, g⟩) by torch's softmax-backward kernel (one call, autograd's own)
        return _pair_scatter(torch._softmax_backward_data(g, a, -1, a.dtype), tokens, n)
    w = _weights(B, H, grad_A.dtype, grad_A.device)
    g = _pair_gather(grad_A, tokens, w[:, :, 0])  # ∂L/∂a = ∂L/∂s for linear attention
    if attention == "relu":
        g.mul_(saved)
    return _scatter_weights(w, tokens, n)


class Attend(torch.autograd.Function):
    """``(tokens, r) ↦ A = Σ_h σ(s)_h x_h`` (interleaved ``[B, 2N]``), closed-form backward."""

    @staticmethod
    def forward(ctx, tokens: torch.Tensor, r: torch.Tensor, attention: str):  # noqa: D102
        A, saved = _attend_forward(tokens, r.detach().contiguous(), attention)
        ctx.attention = attention
        ctx.save_for_backward(tokens, *(() if saved is None else (saved,)))
        return A

    @staticmethod
    def backward(ctx, grad_A: torch.Tensor):  # noqa: D102
        tokens, *saved = ctx.saved_tensors
        saved = saved[0] if saved else None
        grad_r = _attend_backward(grad_A.detach().contiguous(), tokens, ctx.attention, saved)
        return None, grad_r, None


def _to_interleaved(M: torch.Tensor, n: int) -> torch.Tensor:
    """Columns ``0 … 2N-1`` of ``M`` in the interleaved order (a contiguous copy)."""
    rows = M.shape[0]
    return M[:, : 2 * n].reshape(rows, 2, n).transpose(1, 2).reshape(rows, 2 * n)


def _from_interleaved(Mi: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """The ``[rows, d]`` matrix whose columns ``0 … 2N-1`` are ``Mi`` un-interleaved."""
    rows = Mi.shape[0]
    out = Mi.new_zeros(rows, d)
    out[:, : 2 * n] = Mi.view(rows, n, 2).transpose(1, 2).reshape(rows, 2 * n)
    return out


class StepLogits(torch.autograd.Function):
    """``(tokens, W, V, F) ↦ ξ``, ``[B, N]``, forward and backward in closed form.

    What a training step needs: ``ξ = A (V + κF)_{:N}^T + U F x_H`` with ``A`` of
    :class:`Attend`. The gradients, with ``G = ∂L/∂ξ`` and ``M = (V + κF)_{:N}``:

    * ``∂L/∂V_{:N} = Gᵀ A`` and ``∂L/∂F_{:N} = κ Gᵀ A + Gᵀ x_H`` (the last term adds each
      row of ``G`` to the columns ``z_H`` and ``N + z_{H-1}``);
    * ``∂L/∂A = G M``, then ``∂L/∂r`` by ``_attend_backward``, and ``∂L/∂W`` adds
      ``∂L/∂r`` (as a row) to the rows ``z_H`` and ``N + z_{H-1}`` of ``W``.

    Rows of ``V, F`` beyond ``N`` and columns beyond ``2N`` get zero gradient, as in the
    model. Checked against autograd in ``tests/test_fastpath.py``.
    """

    @staticmethod
    def forward(ctx, tokens, W, V, F, n: int, attention: str, kappa: int):  # noqa: D102
        d = W.shape[0]
        last, before = tokens[:, -1], tokens[:, -2] + n
        Wi = _to_interleaved(W, n)
        r = Wi.index_select(0, last).add_(Wi.index_select(0, before))
        A, saved = _attend_forward(tokens, r, attention)
        M = V[:n] + F[:n] if kappa else V[:n]
        Mi = _to_interleaved(M, n)
        FT = F[:n].T.contiguous()  # [d, N]
        xi = torch.addmm(FT.index_select(0, last).add_(FT.index_select(0, before)), A, Mi.T)
        ctx.dims = (n, d, attention, kappa)
        ctx.save_for_backward(tokens, A, Mi, *(() if saved is None else (saved,)))
        return xi

    @staticmethod
    def backward(ctx, G):  # noqa: D102
        n, d, attention, kappa = ctx.dims
        tokens, A, Mi, *saved = ctx.saved_tensors
        saved = saved[0] if saved else None
        G = G.contiguous()
        last, before = tokens[:, -1], tokens[:, -2] + n
        dW = dV = dF = None
        _, need_W, need_V, need_F, *_ = ctx.needs_input_grad
        if need_V or need_F:
            dM = _from_interleaved(G.T @ A, n, d)  # [N, d]
            if need_V:
                dV = G.new_zeros(d, d)
                dV[:n] = dM
            if need_F:
                dFT = G.new_zeros(d, n).index_add_(0, last, G).index_add_(0, before, G)
                dF = G.new_zeros(d, d)
                dF[:n] = dFT.T
                if kappa:
                    dF[:n] += dM
        if need_W:
            dr = _attend_backward(G @ Mi, tokens, attention, saved)
            dWi = G.new_zeros(d, 2 * n).index_add_(0, last, dr).index_add_(0, before, dr)
            dW = _from_interleaved(dWi, n, d)
        return None, dW, dV, dF, None, None, None


def attend(tokens: torch.Tensor, r: torch.Tensor, attention: str) -> torch.Tensor:
    """``A`` (interleaved ``[B, 2N]``) from the tokens ``[B, H]`` and ``r`` (interleaved)."""
    return Attend.apply(tokens, r, attention)


def pair_scores(tokens: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The scores ``s_h = r_{z_h} + r_{N + z_{h-1}}``, ``[B, H]`` (``r`` interleaved).

    Differentiable by autograd (used for inspection, not by the training step).
    """
    B = tokens.shape[0]
    pr = torch.view_as_real(torch.view_as_complex(r.view(B, -1, 2)).gather(1, tokens))
    return torch.cat([pr[:, :1, 0], pr[:, 1:, 0] + pr[:, :-1, 1]], dim=1)


def structured_logits(
    tokens: torch.Tensor,
    W: torch.Tensor,
    V: torch.Tensor,
    F: torch.Tensor,
    *,
    n: int,
    attention: str,
    kappa: int,
    perm: torch.Tensor,
    parts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(ξ, ξ_A, ξ_F)`` of the model on ``tokens`` (``[B, H]``, ``H ≥ 2``), each ``[B, N]``.

    ``perm`` is :func:`interleave` ``(N)`` on the tokens' device. With ``parts=False`` only
    ``ξ = A (V + κF)_{:N}^T + U F x_H`` is formed (one matrix product instead of two: what
    a training step needs), and ``ξ_A``, ``ξ_F`` are ``None``.
    """
    if not parts:
        return StepLogits.apply(tokens, W, V, F, n, attention, kappa), None, None
    last, before = tokens[:, -1], tokens[:, -2] + n
    Wp = W.index_select(1, perm)  # [d, 2N]: the columns that can meet an input
    r = Wp.index_select(0, last) + Wp.index_select(0, before)  # x_H^T W, interleaved
    A = attend(tokens, r, attention)
    FU = F[:n]
    xi_F0 = FU.T.index_select(0, last) + FU.T.index_select(0, before)  # U F x_H
    xi_A = A @ V[:n].index_select(1, perm).T
    xi_F = torch.addmm(xi_F0, A, FU.index_select(1, perm).T) if kappa else xi_F0
    return xi_A + xi_F, xi_A, xi_F


# ------------------------------------------------------------------ the fused training step
def step_layout_index(n: int, d: int, kappa: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the *step layout* of ``(W, V, F)`` reads its entries, ``(dst, src)``.

    The step layout is one flat vector ``P = (Q, M)`` with

    * ``Q = [W_{ιι} | (F_{:N, ι})^T]``, ``[2N, 3N]``: the first ``2N`` rows and columns
      of ``W`` and the first ``N`` rows of ``F``, all interleaved
      (``ι(2k) = k, ι(2k+1) = N + k``, the order of :func:`interleave`);
    * ``M = (V + κF)_{:N, ι}``, ``[N, 2N]``.

    ``P[dst[i]] += cat(W, V, F).view(-1)[src[i]]`` for every ``i`` builds ``P`` (``M`` has
    two sources when ``κ = 1``). Nothing else of the ``d × d`` matrices meets a one-hot
    input, so the gradient of every other entry is zero.
    """
    iota = interleave(n, device=device)
    a2 = iota[:, None]  # rows/cols of Q by interleaved index
    w_src = (a2 * d + iota[None, :]).reshape(-1)  # Q[a, b] = W[ι(a), ι(b)], b < 2N
    c = torch.arange(n, device=device)
    f_src = 2 * d * d + c[None, :] * d + iota[:, None]  # Q[a, 2N + c] = F[c, ι(a)]
    rows_q = torch.arange(2 * n, device=device)[:, None] * (3 * n)
    w_dst = (rows_q + torch.arange(2 * n, device=device)[None, :]).reshape(-1)
    f_dst = (rows_q + 2 * n + c[None, :]).reshape(-1)
    f_src = f_src.reshape(-1)
    off = 6 * n * n
    m_dst = (off + c[:, None] * (2 * n) + torch.arange(2 * n, device=device)[None, :]).reshape(-1)
    v_src = (d * d + c[:, None] * d + iota[None, :]).reshape(-1)
    dst = [w_dst, f_dst, m_dst]
    src = [w_src, f_src, v_src]
    if kappa:
        dst.append(m_dst)
        src.append(v_src + d * d)
    return torch.cat(dst), torch.cat(src)


def step_layout_size(n: int) -> int:
    """Length ``8N²`` of the step layout ``P = (Q, M)`` of :func:`step_layout_index`."""
    return 8 * n * n


class StepViews:
    """The blocks of the step layout ``P`` and of its gradient ``dP`` as matrices (made
    once per training run): ``Q``, ``M``, ``Mᵀ``, ``∂L/∂Q``, ``∂L/∂M``; on the CPU also
    ``Q`` and ``∂L/∂Q`` as NumPy arrays and the work buffers of each batch shape
    (:class:`StepWork`)."""

    __slots__ = ("P", "dP", "Q", "M", "MT", "dQ", "dM", "n", "Q_np", "dQ_np", "_work")

    def __init__(self, P: torch.Tensor, dP: torch.Tensor, n: int) -> None:
        q_len = 6 * n * n
        self.P, self.dP, self.n = P, dP, n
        self.Q = P[:q_len].view(2 * n, 3 * n)
        self.M = P[q_len:].view(n, 2 * n)
        self.MT = self.M.T
        self.dQ = dP[:q_len].view(2 * n, 3 * n)
        self.dM = dP[q_len:].view(n, 2 * n)
        self.Q_np = self.dQ_np = None
        if P.device.type == "cpu" and not P.requires_grad and not dP.requires_grad:
            self.Q_np, self.dQ_np = self.Q.numpy(), self.dQ.numpy()
        self._work: dict[tuple[int, int, bool], StepWork] = {}

    def work(self, B: int, H: int, softmax: bool) -> StepWork:
        """The CPU step's work buffers for ``[B, H]`` batches (made on first use, kept)."""
        key = (B, H, softmax)
        w = self._work.get(key)
        if w is None:
            w = self._work[key] = StepWork(B, H, self.n, self.P.dtype, softmax)
        return w


class StepWork:
    """Every intermediate of the CPU training step for ``[B, H]`` batches, allocated once
    (fresh megabytes at every step cost page faults), each as a tensor and as a NumPy
    array on the same memory (``<name>_np``, what the kernels take): ``r``, ``ξ_direct``
    (``d``), ``A``, ``ξ``, ``log p``, its seed, ``G``, ``∂L/∂A``, ``∂L/∂r`` and, for
    softmax attention, the unnormalised weights ``e`` and ``1 / Σ e`` of each sequence
    (:func:`icl.kernels.step_softmax`)."""

    def __init__(self, B: int, H: int, n: int, dtype: torch.dtype, softmax: bool) -> None:
        shapes = {"r": (B, 2 * n), "d": (B, n), "A": (B, 2 * n), "xi": (B, n),
                  "logp": (B, n), "dlogp": (B, n), "G": (B, n), "gA": (B, 2 * n),
                  "dr": (B, 2 * n)}
        if softmax:
            shapes.update({"e": (B, H), "inv": (B,)})
        for name, shape in shapes.items():
            t = torch.empty(shape, dtype=dtype)
            setattr(self, name, t)
            setattr(self, name + "_np", t.numpy())
        self.zero = np.zeros((), dtype=self.r_np.dtype)[()]
        # the seed's entry at each target: -1 times 1/B, each rounded to the dtype (the
        # value PyTorch's nll_loss passes back)
        self.seed = self.zero.dtype.type(-1) * self.zero.dtype.type(1.0 / B)


def fused_step_grads(
    tokens: torch.Tensor, targets: torch.Tensor, P: torch.Tensor, dP: torch.Tensor,
    n: int, attention: str, views: StepViews | None = None,
) -> torch.Tensor:
    """Loss of one batch and its gradient with respect to the step layout ``P``, no autograd.

    ``P`` is the flat step layout of :func:`step_layout_index`; ``∂L/∂P`` is written into
    ``dP`` (same shape). With ``j = (2 z_H, 2 z_{H-1} + 1)`` (the interleaved rows of the
    last input's two coordinates) the forward pass is

        (r, ξ_direct) = Q_{j_1} + Q_{j_2},     A = Σ_h σ(s)_h x_h  (:class:`Attend`),
        ξ = ξ_direct + A Mᵀ,                  L = mean_b (logsumexp ξ_b - ξ_{b, target}),

    and the backward pass ``G = (softmax ξ - onehot)/B`` (as autograd computes it),
    ``∂L/∂M = Gᵀ A``, ``∂L/∂A = G M``, ``∂L/∂r`` by ``_attend_backward``, and ``∂L/∂Q`` adds the row
    ``(∂L/∂r, G)`` at rows ``j_1`` and ``j_2``. Returns the loss (a 0-d tensor).
    ``views`` (:class:`StepViews` of ``P, dP``) saves remaking the blocks at every step.
    Checked against autograd through the dense reference in ``tests/test_fastpath.py``.
    """
    v = StepViews(P, dP, n) if views is None else views
    if kernels.available(tokens, P) and v.Q_np is not None:
        return torch.tensor(cpu_step_grads(tokens.contiguous(), targets.contiguous(), v,
                                            attention), dtype=P.dtype)
    tokens = tokens.long()  # PyTorch's gathers index with int64
    B = tokens.shape[0]
    Q, M, dQ, dM = v.Q, v.M, v.dQ, v.dM
    j = tokens[:, -2:].mul(2)
    j[:, 0].add_(1)  # (2 z_{H-1} + 1, 2 z_H)
    rows = Q.index_select(0, j.view(-1)).view(B, 2, 3 * n)
    RD = torch.add(rows[:, 0], rows[:, 1])  # [B, 3N]: (r interleaved, U F x_H)
    r, direct = RD[:, : 2 * n].contiguous(), RD[:, 2 * n :]
    A, saved = _attend_forward(tokens, r, attention)
    xi = torch.addmm(direct, A, M.T)
    logp = torch.log_softmax(xi, dim=1)
    t = targets.view(B, 1)
    loss = logp.gather(1, t).mean().neg_()
    # G by the kernel autograd's cross-entropy uses (bit for bit the same gradient: where
    # the gradient is at float32's resolution, as near the stall of the model page §5,
    # a different rounding would decide differently whether a step moves)
    dlogp = torch.zeros_like(logp).scatter_(1, t, _minus_ones(B, logp.dtype, logp.device))
    G = torch._log_softmax_backward_data(dlogp.mul_(1.0 / B), logp, 1, logp.dtype)
    torch.mm(G.T, A, out=dM)
    dr = _attend_backward(G @ M, tokens, attention, saved)
    dRG = torch.cat([dr, G], dim=1)
    dQ.zero_()
    dQ.index_add_(0, j[:, 0], dRG).index_add_(0, j[:, 1], dRG)
    return loss


def cpu_step_grads(tokens: torch.Tensor, targets: torch.Tensor, v: StepViews,
                   attention: str) -> float:
    """:func:`fused_step_grads` with the compiled kernels (:mod:`icl.kernels`); returns the
    loss as a float. The same operations in fewer calls: the rows of ``Q`` and the
    attention sum are one kernel, the backward attention sum and the scatter into
    ``∂L/∂Q`` another, and every intermediate lives in the buffers of
    :meth:`StepViews.work`, made once. Linear and ReLU attention add in the same order
    as the PyTorch path (the same numbers); softmax attention exponentiates with the
    kernels' own exponential and sums ``⟨a, g⟩`` as ``⟨A, ∂L/∂A⟩`` (the same numbers up
    to rounding)."""
    n, dt = v.n, v.P.dtype
    B, H = tokens.shape
    softmax = attention == "softmax"
    w = v.work(B, H, softmax)
    tk = tokens.numpy()
    if softmax:
        kernels.step_softmax(tk, v.Q_np, 2 * n, w.r_np, w.d_np, w.e_np, w.inv_np, w.A_np)
    else:
        kernels.step_forward(tk, v.Q_np, 2 * n, attention == "relu", w.zero, w.r_np, w.d_np,
                             w.A_np)
    torch.addmm(w.d, w.A, v.MT, out=w.xi)
    torch._log_softmax(w.xi, 1, False, out=w.logp)
    loss = kernels.nll_grad(w.logp_np, targets.numpy(), w.seed, w.dlogp_np)
    # G by the kernel autograd's cross-entropy uses (see fused_step_grads)
    torch.ops.aten._log_softmax_backward_data.out(w.dlogp, w.logp, 1, dt, out=w.G)
    torch.mm(w.G.T, w.A, out=v.dM)
    torch.mm(w.G, v.M, out=w.gA)
    if softmax:
        kernels.step_softmax_grad(tk, w.gA_np, w.e_np, w.inv_np, w.A_np, w.dr_np, w.G_np,
                                  v.dQ_np)
    else:
        kernels.step_backward(tk, w.gA_np, w.r_np, attention == "relu", w.zero, w.dr_np,
                              w.G_np, v.dQ_np)
    return loss


def _minus_ones(B: int, dtype: torch.dtype, device) -> torch.Tensor:
    """A ``[B, 1]`` column of ``-1`` (reused; never written)."""
    key = ("minus_ones", B, dtype, torch.device(device))
    pool = getattr(_LOCAL, "consts", None)
    if pool is None:
        pool = _LOCAL.consts = {}
    t = pool.get(key)
    if t is None:
        t = pool[key] = torch.full((B, 1), -1.0, dtype=dtype, device=device)
    return t
