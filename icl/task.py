"""The in-context recall task (the model page §1, the authors' protocol [E]).

Vocabulary ``{0, …, N-1}`` with roles

========================  ==========================================  ============
role                      tokens                                      default
========================  ==========================================  ============
triggers ``Q``            ``0 … |Q|-1``                               0…4
training outputs ``O``    ``|Q| … |Q|+|O|-1``                         5…8
OOD outputs               ``|Q|+|O| … N-2``                           9…58
noise token ``τ``         ``N-1``                                     59
filler                    uniform on ``|Q| … N-2``                    5…58
========================  ==========================================  ============

A sequence ``z_1 … z_H`` ends with the trigger ``q``; one ``(q, y)`` pair is planted at a
uniform position ``p`` with ``p + 1 ≤ H - 1``; in the noisy task (``α > 0``, single
trigger ``q = 0``) a ``(q, τ)`` pair is planted at ``p'`` with ``|p' - p| ≥ 2`` and the
target is ``τ`` with probability ``α``, else ``y``.

Positions in code are 0-based: the book's ``p`` is ``pair_pos + 1``.
Sampling is vectorised over the batch: no Python loop over sequences or positions.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

from . import kernels
from .constants import rate_constant as _rate_constant
from .constants import resolve_gamma
from .fastpath import scratch
from .validate import (
    DEFAULT_MAX_BYTES,
    InvalidTypeError,
    check_bool,
    check_budget,
    check_choice,
    check_finite_array,
    check_generator,
    check_instance,
    check_int,
    check_probability,
    check_real,
    check_seed,
    check_tensor,
)

__all__ = [
    "RecallBatch",
    "RecallTask",
    "check_batch",
    "check_sampler_arguments",
    "check_task",
    "make_generator",
    "sample_sequences",
]


def make_generator(
    seed: int | None = None, generator: torch.Generator | None = None
) -> torch.Generator:
    """Return ``generator`` if given, else a fresh CPU generator seeded with ``seed`` (default 0).

    Every random function of :mod:`icl` goes through this helper: there is no global
    random state.
    """
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either seed or generator, not both")
        return check_generator("generator", generator)
    if seed is not None:
        seed = check_seed("seed", seed)
    g = torch.Generator()
    g.manual_seed(0 if seed is None else seed)
    return g


@dataclass(frozen=True)
class RecallBatch:
    """A batch of sequences of the recall task.

    Attributes
    ----------
    tokens : LongTensor ``[B, H]``
        ``z_1 … z_H``; the last column is the trigger ``q``.
    targets : LongTensor ``[B]``
        ``z_{H+1}``: ``τ`` with probability ``α``, else ``y``.
    outputs : LongTensor ``[B]``
        The clean output ``y`` (the token after ``q`` in the planted pair).
    pair_pos : LongTensor ``[B]``
        0-based index of the ``q`` of the ``(q, y)`` pair (``-1`` where no pair was
        planted, possible only with ``plant_prob < 1``).
    noise_pos : LongTensor ``[B]``
        0-based index of the ``q`` of the ``(q, τ)`` pair, ``-1`` in the noiseless task.
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    outputs: torch.Tensor
    pair_pos: torch.Tensor
    noise_pos: torch.Tensor

    def __post_init__(self) -> None:
        tokens = check_tensor("tokens", self.tokens, ndim=2, kind="int")
        B = tokens.shape[0]
        for name in ("targets", "outputs", "pair_pos", "noise_pos"):
            check_tensor(name, getattr(self, name), shape=(B,), kind="int")

    @classmethod
    def _trusted(cls, tokens, targets, outputs, pair_pos, noise_pos) -> RecallBatch:
        """A batch the sampler made (valid by construction: the field checks are skipped)."""
        batch = object.__new__(cls)
        for name, value in (("tokens", tokens), ("targets", targets), ("outputs", outputs),
                            ("pair_pos", pair_pos), ("noise_pos", noise_pos)):
            object.__setattr__(batch, name, value)
        return batch

    @property
    def triggers(self) -> torch.Tensor:
        """The trigger ``q`` of each sequence (its last token), ``[B]``."""
        return self.tokens[:, -1]

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    def __len__(self) -> int:
        return self.batch_size

    def __getitem__(self, index) -> RecallBatch:
        """Sub-batch (a slice, an index tensor or a boolean mask over sequences); an integer
        ``i`` gives the one-sequence batch ``[i]`` (negative ``i`` counts from the end)."""
        if isinstance(index, (bool, float, str, bytes)) or index is None:
            raise InvalidTypeError(
                f"index must be an int, a slice, an index tensor or a boolean mask, got {index!r}"
            )
        if isinstance(index, int):
            B = self.batch_size
            if not -B <= index < B:
                raise IndexError(f"index {index} is out of range for a batch of {B} sequences")
            index = index % B
            index = slice(index, index + 1)
        return RecallBatch(
            tokens=self.tokens[index],
            targets=self.targets[index],
            outputs=self.outputs[index],
            pair_pos=self.pair_pos[index],
            noise_pos=self.noise_pos[index],
        )



@dataclass(frozen=True)
class RecallTask:
    """The in-context recall task of the paper's experiments (the model page §1).

    Parameters
    ----------
    vocab_size : int
        ``N``, the vocabulary size (default 60).
    n_triggers : int
        ``|Q|`` (default 5). In the noisy task only ``q = 0`` is used.
    n_outputs : int
        ``|O|``, the number of training outputs (default 4).
    seq_len : int
        ``H``, the context length (default 256; at least 4, at least 6 when noisy).
    alpha : float
        ``α ∈ [0, 1)``, the probability that the target is the noise token ``τ``.
    """

    vocab_size: int = 60
    n_triggers: int = 5
    n_outputs: int = 4
    seq_len: int = 256
    alpha: float = 0.0
    _filler_low: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        N = check_int("vocab_size", self.vocab_size, minimum=1)
        nq = check_int("n_triggers", self.n_triggers, minimum=1)
        no = check_int("n_outputs", self.n_outputs, minimum=1)
        check_int("seq_len", self.seq_len, minimum=4)
        check_probability("alpha", self.alpha)
        if N < nq + no + 2:
            raise ValueError(
                f"vocab_size={N} is too small for the roles: it needs |Q| + |O| + 2 = "
                f"{nq + no + 2} tokens (triggers, training outputs, at least one OOD "
                "output, the noise token)"
            )
        if self.alpha > 0 and self.seq_len < 6:
            raise ValueError(
                f"seq_len={self.seq_len} is too short for the noisy task (alpha > 0): two "
                "non-overlapping pairs before the last token need seq_len >= 6"
            )
        for name, v in (("vocab_size", N), ("n_triggers", nq), ("n_outputs", no)):
            object.__setattr__(self, name, v)
        object.__setattr__(self, "seq_len", int(self.seq_len))
        object.__setattr__(self, "alpha", check_probability("alpha", self.alpha))
        object.__setattr__(self, "_filler_low", nq)

    # ------------------------------------------------------------------ roles
    @property
    def noisy(self) -> bool:
        """``True`` when ``α > 0`` (single trigger, planted ``(q, τ)`` pair)."""
        return self.alpha > 0

    @property
    def gamma(self) -> float:
        """``γ = log(α/(1-α))``, the log-odds of the noise (``0`` for the noiseless task)."""
        return resolve_gamma(self.alpha)

    @property
    def rate_constant(self) -> float:
        """``C`` in ``L(Λ) - H_b(α) = log(1 + C e^{-Λ})``: ``(N-2)(1-α)``, or ``N-1`` noiseless."""
        return _rate_constant(self.vocab_size, self.alpha)

    @property
    def triggers(self) -> torch.Tensor:
        """``Q = {0, …, |Q|-1}``."""
        return torch.arange(self.n_triggers)

    @property
    def active_triggers(self) -> torch.Tensor:
        """The triggers that occur (all of ``Q`` when noiseless, ``{0}`` when noisy)."""
        return torch.arange(1) if self.noisy else self.triggers

    @property
    def outputs(self) -> torch.Tensor:
        """Training outputs ``O = {|Q|, …, |Q|+|O|-1}``."""
        return torch.arange(self.n_triggers, self.n_triggers + self.n_outputs)

    @property
    def ood_outputs(self) -> torch.Tensor:
        """The outputs never seen as outputs in training, ``{|Q|+|O|, …, N-2}``."""
        return torch.arange(self.n_triggers + self.n_outputs, self.vocab_size - 1)

    @property
    def noise_token(self) -> int:
        """``τ = N - 1``."""
        return self.vocab_size - 1

    @property
    def filler(self) -> torch.Tensor:
        """The filler support ``{|Q|, …, N-2}`` (outputs included; no trigger, no ``τ``)."""
        return torch.arange(self.n_triggers, self.vocab_size - 1)

    def roles(self) -> dict[str, list[int]]:
        """Token roles as plain lists (for tables and plots)."""
        return {
            "triggers": self.triggers.tolist(),
            "outputs": self.outputs.tolist(),
            "ood_outputs": self.ood_outputs.tolist(),
            "noise_token": [self.noise_token],
            "filler": self.filler.tolist(),
        }

    def replace(self, **changes) -> RecallTask:
        """A copy with some fields changed (validated again)."""
        kwargs = {
            "vocab_size": self.vocab_size,
            "n_triggers": self.n_triggers,
            "n_outputs": self.n_outputs,
            "seq_len": self.seq_len,
            "alpha": self.alpha,
        }
        kwargs.update(changes)
        return RecallTask(**kwargs)

    # --------------------------------------------------------------- sampling
    def sample(
        self,
        batch_size: int,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        ood: bool = False,
        device: torch.device | str | None = None,
    ) -> RecallBatch:
        """Draw ``batch_size`` sequences following the model page §1 to the letter.

        ``ood=True`` draws the clean output ``y`` from the OOD outputs instead of ``O``.
        Pass a ``seed`` (an int) or a ``torch.Generator``; the same seed gives the same
        batch. ``device`` (default: the generator's, CPU for a seed) is where the batch
        is drawn.
        """
        check_bool("ood", ood)
        return sample_sequences(
            self, batch_size, seed=seed, generator=generator, ood=ood, device=device
        )

    def check_tokens(self, tokens: torch.Tensor, name: str = "tokens") -> None:
        """Raise ``ValueError`` unless ``tokens`` is an integer ``[B, H]`` tensor over ``0…N-1``
        (``name`` is the parameter the message names)."""
        if not isinstance(tokens, torch.Tensor):
            raise InvalidTypeError(f"{name} must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dim() != 2:
            raise ValueError(f"{name} must have shape [B, H], got shape {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
            raise ValueError(f"{name} must be an integer tensor, got dtype {tokens.dtype}")
        if tokens.shape[1] < 2:
            raise ValueError(f"{name} must have at least 2 positions, got H={tokens.shape[1]}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(
                f"{name}: token ids must lie in [0, {self.vocab_size - 1}] for vocab_size="
                f"{self.vocab_size}, got range [{int(tokens.min())}, {int(tokens.max())}]"
            )


def check_task(task: object) -> RecallTask:
    """Return ``task`` if it is a :class:`RecallTask`, else raise a ``ValueError`` saying so."""
    return check_instance("task", task, RecallTask, "an icl.RecallTask")


def _free_starts(occupied: torch.Tensor) -> torch.Tensor:
    """Allowed start positions ``j`` of a new pair: ``j, j+1 ≤ H-2`` both unoccupied."""
    H = occupied.shape[1]
    free = ~occupied[:, : H - 1]
    return free[:, :-1] & free[:, 1:]  # [B, H-2]: starts 0 … H-3


def _draw_start(allowed: torch.Tensor, g: torch.Generator, what: str) -> torch.Tensor:
    """One uniform allowed start per row (rows with no allowed start raise)."""
    weights = allowed.to(torch.float64)
    if bool((weights.sum(1) == 0).any()):
        raise ValueError(f"seq_len too short to place {what} without overlap")
    return torch.multinomial(weights, 1, generator=g).squeeze(1)


def _generator_on(
    seed: int | None, generator: torch.Generator | None, device: torch.device | str | None
) -> tuple[torch.Generator, torch.device]:
    """The generator of a draw and the device it draws on (the generator's by default)."""
    if device is None:
        if generator is not None:
            return make_generator(seed, generator), generator.device
        return make_generator(seed, None), torch.device("cpu")
    dev = torch.device(device)
    if generator is not None:
        g = make_generator(seed, generator)
        if g.device.type != dev.type:
            raise ValueError(
                f"generator is on {g.device}, but device={str(dev)!r}: pass a generator of "
                "that device, or a seed"
            )
        return g, dev
    if seed is not None and not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    if dev.type == "cpu":
        return make_generator(seed, None), dev
    g = torch.Generator(device=dev)
    g.manual_seed(0 if seed is None else seed)
    return g, dev


def _uniform_tokens(
    low: int, high: int, shape: tuple[int, int], g: torch.Generator, device: torch.device
) -> torch.Tensor:
    """I.i.d. tokens uniform on ``{low, …, high-1}``, ``shape``, a few vectorised ops.

    One 64-bit draw ``x`` uniform on ``{0, …, c·R^k - 1}`` (``R = high - low``, ``R^k ≤ 2^32
    < c·R^k``) gives ``k`` tokens: its ``k`` lowest base-``R`` digits, which are exactly
    i.i.d. uniform on ``{0, …, R-1}`` because ``c·R^k`` is a multiple of ``R^k``. The
    digits are extracted in float64, exact since ``x < 2^53``. The only departure from the
    uniform law is that of the 64-bit draw itself (``torch.randint`` reduces a 64-bit word
    modulo the range): at most ``c·R^k / 2^64 < 2^-30`` in total variation per draw,
    smaller than ``torch.randint``'s own modulo bias ``R / 2^32`` per token.
    """
    return _tokens_and_words(low, high, shape, 0, g, device)[0]


def _word_span(R: int) -> tuple[int, int]:
    """``(k, c·R^k)`` of :func:`_uniform_tokens`: digits per draw and the range of a draw."""
    if R == 1:
        return 1, 2**33
    k = max(1, int(math.floor(32 * math.log(2) / math.log(R))))
    while R**k > 2**32:  # guard the floating-point logarithm
        k -= 1
    k = max(k, 1)
    return k, R**k * (2**32 // R**k + 1)  # c·R^k with 2^32 < c·R^k ≤ 2^33


def _tokens_and_words(
    low: int, high: int, shape: tuple[int, int], n_words: int, g: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_uniform_tokens`, and ``n_words`` more draws of the same call, each uniform on
    ``{0, …, S-1}`` with ``S = c·R^k > 2^32`` (``[n_words]``, a work buffer: read it before
    the next draw). A small variable ``w mod r`` or ``[w < ⌈a S⌉]`` made from one of
    them departs from its law by at most ``r / S < r / 2^32`` (or ``1/S``), the size of
    ``torch.randint``'s own modulo bias."""
    R = high - low
    n = shape[0] * shape[1]
    k, span = _word_span(R)
    m = -(-n // k) if R > 1 else 0
    x = scratch("tokens_x", (1, m + n_words), torch.int64, device)
    x.random_(0, span, generator=g)
    words = x[0, m:]
    if R == 1:
        return torch.full(shape, low, dtype=torch.long, device=device), words
    xs = x[:, :m]
    powers = _powers(R, k, device)
    f = scratch("tokens_f", (k + 1, m), torch.float64, device)
    torch.div(xs, powers, out=f).floor_()  # [k+1, m]: ⌊x / R^j⌋, exact
    digits = scratch("tokens_d", (k, m), torch.float64, device)
    torch.sub(f[:k], f[1:], alpha=R, out=digits)  # row j: the base-R digit j of each x
    small = scratch("tokens_i", (k * m,), torch.int32, device)
    small.copy_(digits.view(-1))
    if low:
        small.add_(low)
    out = torch.empty(shape, dtype=torch.long, device=device)
    out.view(-1).copy_(small[:n])
    return out, words


@functools.lru_cache(maxsize=64)
def _powers(R: int, k: int, device: torch.device) -> torch.Tensor:
    """``(R^0, …, R^k)`` as a float64 column ``[k+1, 1]`` (cached: built once per device)."""
    return torch.tensor([[float(R**j)] for j in range(k + 1)], dtype=torch.float64,
                        device=device)


def _noise_starts(
    p: torch.Tensor, planted: torch.Tensor | None, H: int, g: torch.Generator
) -> torch.Tensor:
    """``p'`` uniform over the starts ``0 … H-3`` with ``|p' - p| ≥ 2`` (all starts where
    ``planted`` is ``False``), by inverting the count instead of a masked multinomial.

    The excluded starts form the interval ``[lo, hi] = [max(p-1, 0), min(p+1, H-3)]`` of
    ``k = hi - lo + 1`` starts; ``u`` uniform on the ``H - 2 - k`` others maps to
    ``p' = u`` below ``lo`` and ``u + k`` from ``lo`` on. ``u = ⌊v·n/2^{31}⌋``-free: drawn
    as a 64-bit word modulo ``n`` (bias ``< n/2^64``).
    """
    lo = (p - 1).clamp(min=0)
    k = (p + 1).clamp(max=H - 3) - lo + 1
    if planted is not None:
        k = torch.where(planted, k, torch.zeros_like(k))
    n = (H - 2) - k
    u = torch.randint(2**62, p.shape, generator=g, device=p.device) % n
    return u + k * (u >= lo)


@functools.lru_cache(maxsize=64)
def _noise_table(H: int, device: torch.device) -> torch.Tensor:
    """``(lo, k, H - 2 - k)`` of :func:`_noise_starts` for every ``p = 0 … H-3``, ``[H-2, 3]``."""
    p = torch.arange(H - 2)
    lo = (p - 1).clamp(min=0)
    k = (p + 1).clamp(max=H - 3) - lo + 1
    return torch.stack([lo, k, (H - 2) - k], dim=1).to(device)


def _noise_starts_from(p: torch.Tensor, w: torch.Tensor, H: int) -> torch.Tensor:
    """:func:`_noise_starts` (pair planted in every row) with ``u = w mod n`` from given
    words ``w`` (see :func:`_tokens_and_words`) and ``(lo, k, n)`` read from a table."""
    lo, k, n = _noise_table(H, p.device).index_select(0, p).unbind(1)
    u = w % n
    return u.add_(k.mul_(u >= lo))


def sample_sequences(
    task: RecallTask,
    batch_size: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    ood: bool = False,
    alpha: float | None = None,
    filler_probs: torch.Tensor | None = None,
    pair_position: str | int = "uniform",
    n_distractors: int = 0,
    plant_prob: float = 1.0,
    seq_len: int | None = None,
    device: torch.device | str | None = None,
    max_bytes: float = DEFAULT_MAX_BYTES,
) -> RecallBatch:
    """The sampler behind :meth:`RecallTask.sample`, with the knobs of the shift tests.

    With the defaults it follows the model page §1 exactly. The extra keywords build the
    book's own variants (the model page §6, [D]):

    alpha
        the test-time noise level (the task's ``α`` when ``None``); needs a noisy task.
    filler_probs
        a length-``N`` probability vector for the filler (zero outside ``{|Q|…N-2}``).
    pair_position
        ``"uniform"`` (default), ``"start"`` (``p = 1``), ``"end"`` (``p = H-2``: the
        pair right before the last token), or a 0-based int.
    n_distractors
        extra ``(q', x)`` pairs with ``q'`` a trigger other than ``q`` and ``x`` a
        filler token, placed without overlap.
    plant_prob
        probability ``ρ`` that the ``(q, y)`` pair is planted at all.
    seq_len
        another context length ``H`` (the task's when ``None``).
    max_bytes
        refuse a batch whose tokens and bookkeeping (about ``17·B·H`` bytes) need more
        memory than this (default 2 GiB).
    device
        where the batch is drawn and stored (default: the generator's device, CPU for a
        seed). A seed on a non-CPU device seeds a generator of that device.

    The whole batch is drawn with a few vectorised integer operations (the filler by
    ``_uniform_tokens``, ``p'`` by ``_noise_starts``); the law is the one above.
    """
    check_sampler_arguments(
        task, batch_size, seed=seed, generator=generator, ood=ood, alpha=alpha,
        filler_probs=filler_probs, pair_position=pair_position, n_distractors=n_distractors,
        plant_prob=plant_prob, seq_len=seq_len, max_bytes=max_bytes,
    )
    B = int(batch_size)
    if (filler_probs is None and pair_position == "uniform" and not n_distractors
            and float(plant_prob) == 1.0):
        g, dev = _generator_on(seed, generator, device)
        a = task.alpha if alpha is None else float(alpha)
        H = task.seq_len if seq_len is None else int(seq_len)
        return _sample_default(task, B, H, a, ood, g, dev)
    H = task.seq_len if seq_len is None else check_int("seq_len", seq_len, minimum=4)
    N = task.vocab_size
    g, dev = _generator_on(seed, generator, device)
    a = task.alpha if alpha is None else float(alpha)
    plant_prob = float(plant_prob)

    # 1. trigger
    if task.noisy:
        q = torch.zeros(B, dtype=torch.long, device=dev)
    else:
        q = torch.randint(task.n_triggers, (B,), generator=g, device=dev)
    # 2. clean output (the pool is a contiguous range of token ids)
    pool_lo = task.n_triggers + (task.n_outputs if ood else 0)
    pool_n = (N - 1 - pool_lo) if ood else task.n_outputs
    y = torch.randint(pool_n, (B,), generator=g, device=dev).add_(pool_lo)
    # 3. filler, then z_H = q
    if filler_probs is None:
        tokens = _uniform_tokens(task.n_triggers, N - 1, (B, H), g, dev)
    else:
        probs = torch.as_tensor(filler_probs, dtype=torch.float64)
        if probs.shape != (N,) or bool((probs < 0).any()) or float(probs.sum()) <= 0:
            raise ValueError(f"filler_probs must be a non-negative vector of length {N}")
        bad = torch.ones(N, dtype=torch.bool)
        bad[task.filler] = False
        if bool((probs[bad] > 0).any()):
            raise ValueError("filler_probs must vanish on the triggers and the noise token")
        probs = probs.to(dev)
        tokens = torch.multinomial(probs / probs.sum(), B * H, replacement=True, generator=g)
        tokens = tokens.view(B, H)
    tokens[:, -1] = q
    rows = torch.arange(B, device=dev)

    # 4. plant (q, y) at p (0-based start in 0 … H-3)
    if pair_position == "uniform":
        p = torch.randint(H - 2, (B,), generator=g, device=dev)
    elif pair_position == "start":
        p = torch.zeros(B, dtype=torch.long, device=dev)
    elif pair_position == "end":
        p = torch.full((B,), H - 3, dtype=torch.long, device=dev)
    elif isinstance(pair_position, int) and not isinstance(pair_position, bool):
        if not 0 <= pair_position <= H - 3:
            raise ValueError(f"pair_position must lie in [0, {H - 3}], got {pair_position}")
        p = torch.full((B,), pair_position, dtype=torch.long, device=dev)
    else:
        raise ValueError(
            f"pair_position must be 'uniform', 'start', 'end' or an int, got {pair_position!r}"
        )
    if plant_prob < 1.0:
        planted = torch.rand(B, generator=g, device=dev) < plant_prob
        pr, pp = rows[planted], p[planted]
        tokens[pr, pp] = q[planted]
        tokens[pr, pp + 1] = y[planted]
        pair_pos = torch.where(planted, p, torch.full_like(p, -1))
    else:
        planted = None
        tokens[rows, p] = q
        tokens[rows, p + 1] = y
        pair_pos = p

    # 5. noisy: plant (q, τ) at p' uniform over the starts with |p' - p| >= 2
    # (rows without the (q, y) pair: uniform over all starts)
    noise_pos = torch.full((B,), -1, dtype=torch.long, device=dev)
    if task.noisy:
        noise_pos = _noise_starts(p, planted, H, g)
        tokens[rows, noise_pos] = q
        tokens[rows, noise_pos + 1] = task.noise_token

    # distractor pairs (q', x): q' a trigger other than q, x a filler token
    if n_distractors:
        occupied = torch.zeros(B, H, dtype=torch.bool, device=dev)
        occupied[:, -1] = True
        for start in (pair_pos, noise_pos):
            has = start >= 0
            occupied[rows[has], start[has]] = True
            occupied[rows[has], start[has] + 1] = True
    for _ in range(n_distractors):
        start = _draw_start(_free_starts(occupied), g, f"{n_distractors} distractor pairs")
        shift = torch.randint(1, task.n_triggers, (B,), generator=g, device=dev)
        q_other = (q + shift) % task.n_triggers
        filler = task.filler.to(dev)
        x = filler[torch.randint(len(filler), (B,), generator=g, device=dev)]
        tokens[rows, start] = q_other
        tokens[rows, start + 1] = x
        occupied[rows, start] = True
        occupied[rows, start + 1] = True

    # 6. target
    if a > 0:
        flip = torch.rand(B, generator=g, device=dev) < a
        targets = torch.where(flip, torch.full_like(y, task.noise_token), y)
    else:
        targets = y.clone()
    return RecallBatch(
        tokens=tokens, targets=targets, outputs=y, pair_pos=pair_pos, noise_pos=noise_pos
    )


def _sample_default(
    task: RecallTask, B: int, H: int, a: float, ood: bool, g: torch.Generator,
    dev: torch.device, tokens: torch.Tensor | None = None,
) -> RecallBatch:
    """:func:`sample_sequences` with the default knobs, from one random draw.

    On the CPU: :func:`icl.kernels.sample_default`, one compiled pass per sequence whose
    random numbers come from one 64-bit draw of ``g`` (writing into ``tokens`` if given:
    the batch then shares that buffer). Elsewhere (CUDA) as follows.
    The filler and the per-sequence variables come from one call
    (:func:`_tokens_and_words`): the trigger ``q = w mod |Q|`` (noiseless), ``y``, the pair
    start ``p = w mod (H-2)``, the noise start by :func:`_noise_starts_from`, and the flip
    ``[w < ⌈α S⌉]``; the pairs are written by one scatter. The law is that of the general
    path (the model page §1).
    """
    N, nq = task.vocab_size, task.n_triggers
    noisy = task.noisy
    pool_lo = nq + (task.n_outputs if ood else 0)
    pool_n = (N - 1 - pool_lo) if ood else task.n_outputs
    if kernels.runs_on(dev):  # one compiled pass (icl.kernels)
        out = kernels.sample_default(g, B, H, n_triggers=nq, vocab_size=N, pool_lo=pool_lo,
                                     pool_n=pool_n, noisy=noisy, alpha=a, tokens=tokens)
        tokens, targets, y, p, noise_pos = out
        return RecallBatch._trusted(tokens, targets, y, p, noise_pos)
    R = N - 1 - nq
    _, span = _word_span(R)
    n_words = 4 if noisy else 3
    tokens, words = _tokens_and_words(nq, N - 1, (B, H), n_words * B, g, dev)
    w = words.view(n_words, B)
    if noisy:
        y = torch.remainder(w[0], pool_n).add_(pool_lo)
        p = torch.remainder(w[1], H - 2)
        noise_pos = _noise_starts_from(p, w[2], H)
        flip = w[3] < math.ceil(a * span)
        tokens[:, -1] = 0
        starts = torch.stack([p, noise_pos], dim=1)  # [B, 2]
        values = _pair_values(B, task.noise_token, dev).clone()
        values[:, 1] = y
        targets = torch.where(flip, task.noise_token, y)
    else:
        q = torch.remainder(w[0], nq)
        y = torch.remainder(w[1], pool_n).add_(pool_lo)
        p = torch.remainder(w[2], H - 2)
        tokens[:, -1] = q
        starts = p.view(B, 1)
        values = torch.stack([q, y], dim=1)
        noise_pos = torch.full((B,), -1, dtype=torch.long, device=dev)
        targets = y.clone()
    index = (starts.unsqueeze(2) + _zero_one(dev)).view(B, -1)  # (p, p+1[, p', p'+1])
    tokens.scatter_(1, index, values)
    return RecallBatch._trusted(tokens, targets, y, p, noise_pos)


@functools.lru_cache(maxsize=8)
def _zero_one(device: torch.device) -> torch.Tensor:
    return torch.tensor([0, 1], device=device)


@functools.lru_cache(maxsize=16)
def _pair_values(B: int, tau: int, device: torch.device) -> torch.Tensor:
    """``(q, ·, q, τ)`` per row with ``q = 0`` (the noisy task), ``[B, 4]``; never written."""
    v = torch.zeros(B, 4, dtype=torch.long, device=device)
    v[:, 3] = tau
    return v


#: bytes per token the sampler holds at once (int64 tokens, a bool mask, float weights)
_SAMPLER_BYTES_PER_TOKEN = 17


def check_sampler_arguments(
    task: RecallTask,
    batch_size: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    ood: bool = False,
    alpha: float | None = None,
    filler_probs: torch.Tensor | None = None,
    pair_position: str | int = "uniform",
    n_distractors: int = 0,
    plant_prob: float = 1.0,
    seq_len: int | None = None,
    max_bytes: float = DEFAULT_MAX_BYTES,
) -> None:
    """Check every argument of :func:`sample_sequences` before anything is drawn.

    Raises ``ValueError`` (``InvalidTypeError`` for a wrong type) naming the parameter; a
    batch whose ``B·H`` tokens would not fit in ``max_bytes`` is refused up front.
    """
    task = check_task(task)
    B = check_int("batch_size", batch_size, minimum=1)
    H = task.seq_len if seq_len is None else check_int("seq_len", seq_len, minimum=4)
    max_bytes = check_real("max_bytes", max_bytes, low=0.0, low_open=True, finite=False)
    check_budget("batch_size x seq_len", _SAMPLER_BYTES_PER_TOKEN * B * H, max_bytes)
    if generator is not None:
        check_generator("generator", generator)
        if seed is not None:
            raise ValueError("pass either seed or generator, not both")
    elif seed is not None:
        check_seed("seed", seed)
    check_bool("ood", ood)
    if alpha is not None:
        check_probability("alpha", alpha)
        if not task.noisy:
            raise ValueError("alpha: a test-time alpha needs a noisy task (alpha > 0 at training)")
    if task.noisy and H < 6:
        raise ValueError(f"seq_len={H} is too short for the noisy task: need seq_len >= 6")
    check_probability("plant_prob", plant_prob, allow_one=True)
    if isinstance(pair_position, str):
        check_choice("pair_position", pair_position, ("uniform", "start", "end"))
    elif isinstance(pair_position, bool) or not isinstance(pair_position, int):
        raise InvalidTypeError(
            f"pair_position must be 'uniform', 'start', 'end' or an int, got {pair_position!r}"
        )
    else:
        check_int("pair_position", pair_position, minimum=0, maximum=H - 3)
    n_distractors = check_int("n_distractors", n_distractors, minimum=0)
    if n_distractors and task.n_triggers < 2:
        raise ValueError(
            "n_distractors: distractor pairs need at least two triggers (n_triggers >= 2)"
        )
    # pairs are disjoint, inside positions 0 … H-2: (H-1)//2 of them at most
    room = (H - 1) // 2 - (1 if float(plant_prob) > 0 else 0) - (1 if task.noisy else 0)
    if n_distractors > room:
        raise ValueError(
            f"n_distractors must be <= {room} for seq_len={H} (each pair takes two positions "
            f"before the last token), got {n_distractors}"
        )
    if filler_probs is not None:
        N = task.vocab_size
        if not isinstance(filler_probs, torch.Tensor):
            filler_probs = torch.as_tensor(
                check_finite_probs("filler_probs", filler_probs), dtype=torch.float64
            )
        check_tensor("filler_probs", filler_probs, shape=(N,), kind="float", low=0.0, finite=True)


def check_finite_probs(name: str, value) -> list[float]:
    """A sequence of finite non-negative reals (as a list), for weight vectors."""
    return check_finite_array(name, value, low=0.0).tolist()


def check_batch(name: str, batch: object, task: RecallTask | None = None) -> RecallBatch:
    """``batch`` if it is a :class:`RecallBatch` (whose tokens fit ``task``'s vocabulary when a
    task is given)."""
    check_instance(name, batch, RecallBatch, "an icl.RecallBatch")
    if task is not None:
        check_task(task).check_tokens(batch.tokens, name=f"{name}.tokens")
        N = task.vocab_size
        for field_name in ("targets", "outputs"):
            t = getattr(batch, field_name)
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= N):
                raise ValueError(
                    f"{name}.{field_name} must lie in [0, {N - 1}] for vocab_size={N}, got "
                    f"range [{int(t.min())}, {int(t.max())}]"
                )
    return batch
