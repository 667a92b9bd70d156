"""Tests of the recall-task sampler (icl/task.py) and of icl.bayes.recover_output.

The structural invariants of spec section 1 are checked on every batch by
``assert_invariants``; the laws of the random choices by chi-square and binomial tests
with fixed seeds (written directly with scipy, independently of :mod:`icl.laws`).

Every test runs twice: on the compiled CPU sampler (:mod:`icl.kernels`) and on the
PyTorch sampler that other devices (CUDA) use, so both are held to the same law.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import icl
from icl import kernels
from icl.bayes import recover_output
from icl.task import RecallBatch, RecallTask, make_generator, sample_sequences

P_MIN = 1e-4  # p-value threshold of the statistical tests (fixed seeds: deterministic)


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def sampler_path(request):
    """The sampler under test: the compiled one, or PyTorch's (``kernels.disabled``)."""
    if request.param == "torch":
        with kernels.disabled():
            yield request.param
    else:
        yield request.param


# --------------------------------------------------------------------------- helpers
def assert_invariants(task: RecallTask, batch: RecallBatch, *, ood: bool = False,
                      planted: bool = True) -> None:
    """Every structural promise of spec section 1, row by row (vectorised)."""
    tok, B, H = batch.tokens, batch.batch_size, batch.seq_len
    N, nq, tau = task.vocab_size, task.n_triggers, task.noise_token
    rows = torch.arange(B)
    assert tok.dtype == torch.long and tok.shape == (B, H)
    assert int(tok.min()) >= 0 and int(tok.max()) < N
    q = tok[:, -1]
    # the last token is the trigger q, an active trigger
    assert torch.isin(q, task.active_triggers).all()
    if task.noisy:
        assert (q == 0).all()
    y = batch.outputs
    # outputs: training outputs in distribution, OOD outputs otherwise; the two are disjoint
    pool, other = (task.ood_outputs, task.outputs) if ood else (task.outputs, task.ood_outputs)
    assert torch.isin(y, pool).all()
    assert not torch.isin(y, other).any()
    assert not torch.isin(task.ood_outputs, task.outputs).any()
    # the (q, y) pair
    p = batch.pair_pos
    if planted:
        assert ((p >= 0) & (p <= H - 3)).all(), "the pair never touches the last token"
    has = p >= 0
    assert (tok[rows[has], p[has]] == q[has]).all()
    assert (tok[rows[has], p[has] + 1] == y[has]).all()
    # trigger occurrences: exactly the pair start(s) and the end, all equal to q
    is_trig = tok < nq
    expected = torch.zeros(B, H, dtype=torch.bool)
    expected[:, -1] = True
    expected[rows[has], p[has]] = True
    pn = batch.noise_pos
    if task.noisy:
        assert ((pn >= 0) & (pn <= H - 3)).all()
        assert ((pn - p).abs() >= 2)[has].all(), "the two pairs must not overlap"
        assert (tok[rows, pn] == q).all()
        assert (tok[rows, pn + 1] == tau).all()
        expected[rows, pn] = True
    else:
        assert (pn == -1).all()
    assert torch.equal(is_trig, expected), "a trigger occurs outside the planted pairs"
    assert (tok[is_trig] == q[:, None].expand(B, H)[is_trig]).all()
    # τ: only right after q in the noisy pair
    tau_expected = torch.zeros(B, H, dtype=torch.bool)
    if task.noisy:
        tau_expected[rows, pn + 1] = True
    assert torch.equal(tok == tau, tau_expected)
    # exactly one (q, y) bigram, and when noisy exactly one (q, τ) bigram
    bigram_qy = (tok[:, :-1] == q[:, None]) & (tok[:, 1:] == y[:, None])
    assert torch.equal(bigram_qy.sum(1), has.long())
    if task.noisy:
        bigram_qt = (tok[:, :-1] == q[:, None]) & (tok[:, 1:] == tau)
        assert (bigram_qt.sum(1) == 1).all()
    # targets
    if task.noisy:
        assert ((batch.targets == y) | (batch.targets == tau)).all()
    else:
        assert torch.equal(batch.targets, y)
    # y is recoverable from the context alone
    rec = recover_output(task, tok)
    assert torch.equal(rec[has], y[has])
    assert (rec[~has] == -1).all()


def joint_counts(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(a * n + b, minlength=n * n).reshape(n, n)


# --------------------------------------------------------------------------- structure
@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("ood", [False, True])
def test_default_task_invariants(alpha: float, ood: bool) -> None:
    task = RecallTask(alpha=alpha)
    batch = task.sample(512, seed=3, ood=ood)
    assert batch.seq_len == 256 and len(batch) == 512
    assert_invariants(task, batch, ood=ood)


def test_roles_partition_the_vocabulary() -> None:
    task = RecallTask()
    r = task.roles()
    assert r["triggers"] == [0, 1, 2, 3, 4]
    assert r["outputs"] == [5, 6, 7, 8]
    assert r["ood_outputs"] == list(range(9, 59))
    assert r["noise_token"] == [59]
    assert r["filler"] == list(range(5, 59))
    parts = r["triggers"] + r["outputs"] + r["ood_outputs"] + r["noise_token"]
    assert sorted(parts) == list(range(60))


def test_targets_mix_y_and_tau_when_noisy() -> None:
    task = RecallTask(alpha=0.5, seq_len=32)
    b = task.sample(2000, seed=0)
    tau = task.noise_token
    assert (b.targets == tau).any() and (b.targets != tau).any()
    assert torch.equal(b.targets[b.targets != tau], b.outputs[b.targets != tau])


def test_recover_output_finds_y_not_tau_and_reports_missing() -> None:
    task = RecallTask(vocab_size=12, n_triggers=2, n_outputs=2, seq_len=8, alpha=0.5)
    tau = task.noise_token
    tokens = torch.tensor([
        [0, tau, 5, 0, 7, 6, 9, 0],  # (q, τ) first, then (q, y=7)
        [6, 0, 8, 9, 0, tau, 5, 0],  # (q, y=8) first, then (q, τ)
        [6, 5, 9, 0, tau, 5, 5, 0],  # no (q, y) pair
    ])
    assert recover_output(task, tokens).tolist() == [7, 8, -1]


# --------------------------------------------------------------------------- laws
def test_pair_position_is_uniform() -> None:
    task = RecallTask(vocab_size=20, seq_len=24)
    b = task.sample(20000, seed=11)
    counts = np.bincount(b.pair_pos.numpy(), minlength=22)
    assert counts.size == 22, "pair start outside 0 … H-3"
    assert stats.chisquare(counts).pvalue > P_MIN


def test_pair_position_uniform_test_can_fail() -> None:
    # the same test rejects a sampler that never uses the first start
    task = RecallTask(vocab_size=20, seq_len=24)
    p = task.sample(20000, seed=11).pair_pos.numpy()
    p = np.where(p == 0, 1, p)
    assert stats.chisquare(np.bincount(p, minlength=22)).pvalue < 1e-10


def test_noise_position_given_pair_position_is_uniform_over_allowed_starts() -> None:
    H = 12
    task = RecallTask(vocab_size=20, n_triggers=2, n_outputs=2, seq_len=H, alpha=0.3)
    b = task.sample(30000, seed=5)
    S = H - 2
    starts = np.arange(S)
    allowed = np.abs(starts[None, :] - starts[:, None]) >= 2  # [p, p']
    expected = allowed / allowed.sum(1, keepdims=True) / S  # joint law of (p, p')
    counts = joint_counts(b.pair_pos.numpy(), b.noise_pos.numpy(), S)
    assert counts[~allowed].sum() == 0
    res = stats.chisquare(counts[allowed], expected[allowed] * counts.sum())
    assert res.pvalue > P_MIN


@pytest.mark.parametrize("p", [0, 4, 9])
def test_noise_position_at_fixed_pair(p: int) -> None:
    H = 12
    task = RecallTask(vocab_size=20, n_triggers=2, n_outputs=2, seq_len=H, alpha=0.3)
    b = sample_sequences(task, 6000, seed=p, pair_position=p)
    counts = np.bincount(b.noise_pos.numpy(), minlength=H - 2)
    allowed = np.abs(np.arange(H - 2) - p) >= 2
    assert counts[~allowed].sum() == 0
    assert stats.chisquare(counts[allowed]).pvalue > P_MIN


@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_filler_is_uniform_on_filler_support(alpha: float) -> None:
    task = RecallTask(vocab_size=30, n_triggers=3, n_outputs=3, seq_len=40, alpha=alpha)
    b = task.sample(3000, seed=2)
    B, H = b.tokens.shape
    mask = torch.ones(B, H, dtype=torch.bool)
    mask[:, -1] = False
    rows = torch.arange(B)
    mask[rows, b.pair_pos] = False
    mask[rows, b.pair_pos + 1] = False
    if task.noisy:
        mask[rows, b.noise_pos] = False
        mask[rows, b.noise_pos + 1] = False
    counts = np.bincount(b.tokens[mask].numpy(), minlength=30)
    support = task.filler.numpy()
    assert counts.sum() == counts[support].sum(), "filler outside {|Q|, …, N-2}"
    assert stats.chisquare(counts[support]).pvalue > P_MIN


def test_trigger_and_output_laws_are_uniform() -> None:
    task = RecallTask(vocab_size=20, seq_len=8)
    b = task.sample(10000, seed=4)
    assert stats.chisquare(np.bincount(b.triggers.numpy(), minlength=5)).pvalue > P_MIN
    y = b.outputs.numpy() - task.n_triggers
    assert stats.chisquare(np.bincount(y, minlength=4)).pvalue > P_MIN
    bo = task.sample(10000, seed=4, ood=True)
    y = bo.outputs.numpy() - int(task.ood_outputs[0])
    assert stats.chisquare(np.bincount(y, minlength=len(task.ood_outputs))).pvalue > P_MIN


@pytest.mark.parametrize("alpha", [0.2, 0.5, 0.8])
def test_noise_rate_is_alpha(alpha: float) -> None:
    task = RecallTask(vocab_size=20, seq_len=8, alpha=alpha)
    b = task.sample(20000, seed=7)
    k = int((b.targets == task.noise_token).sum())
    assert stats.binomtest(k, 20000, alpha).pvalue > P_MIN
    # and the test is sharp enough to see a rate off by 0.02
    assert stats.binomtest(k, 20000, alpha + 0.02).pvalue < 1e-4


# --------------------------------------------------------------------------- randomness
def test_same_seed_same_batch_different_seed_different_batch() -> None:
    task = RecallTask(alpha=0.5)
    a, b, c = task.sample(64, seed=1), task.sample(64, seed=1), task.sample(64, seed=2)
    for f in ("tokens", "targets", "outputs", "pair_pos", "noise_pos"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.tokens, c.tokens)


def test_generator_is_used_and_advanced() -> None:
    task = RecallTask()
    g = torch.Generator().manual_seed(9)
    first, second = task.sample(32, generator=g), task.sample(32, generator=g)
    assert not torch.equal(first.tokens, second.tokens)
    assert torch.equal(first.tokens, task.sample(32, seed=9).tokens)
    assert make_generator(generator=g) is g
    with pytest.raises(ValueError, match="seed or generator"):
        task.sample(32, seed=9, generator=g)
    with pytest.raises(ValueError, match="seed"):
        task.sample(32, seed=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"alpha": "0.5"}, "alpha"),
        ({"seq_len": 3}, "seq_len"),
        ({"seq_len": 5, "alpha": 0.2}, "seq_len"),
        ({"vocab_size": 10}, "vocab_size"),  # needs 5 + 4 + 2 = 11
        ({"vocab_size": 60.0}, "vocab_size"),
        ({"n_triggers": 2.5}, "n_triggers"),
        ({"n_outputs": 0}, "n_outputs"),
        ({"seq_len": 256.0}, "seq_len"),
        ({"seq_len": True}, "seq_len"),
    ],
)
def test_task_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RecallTask(**kwargs)


def test_smallest_valid_tasks_exist() -> None:
    RecallTask(vocab_size=11)
    RecallTask(seq_len=4)
    RecallTask(seq_len=6, alpha=0.2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"pair_position": "middle"}, "pair_position"),
        ({"pair_position": 30}, "pair_position"),  # H = 32: starts 0 … 29
        ({"pair_position": -1}, "pair_position"),
        ({"pair_position": True}, "pair_position"),
        ({"filler_probs": torch.ones(19)}, "filler_probs"),
        ({"filler_probs": -torch.ones(20)}, "filler_probs"),
        ({"filler_probs": torch.zeros(20)}, "filler_probs"),
        ({"filler_probs": torch.ones(20)}, "filler_probs"),  # mass on triggers and τ
        ({"alpha": 0.3}, "alpha"),  # test-time alpha on a noiseless task
        ({"plant_prob": 1.5}, "plant_prob"),
        ({"plant_prob": -0.1}, "plant_prob"),
        ({"n_distractors": -1}, "n_distractors"),
        ({"seq_len": 3}, "seq_len"),
    ],
)
def test_sampler_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    task = RecallTask(vocab_size=20, seq_len=32)
    args = {"batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_sequences(task, args.pop("batch_size"), seed=0, **args)


def test_sampler_rejects_bad_noisy_parameters() -> None:
    task = RecallTask(vocab_size=20, seq_len=32, alpha=0.2)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            sample_sequences(task, 8, seed=0, alpha=bad)
    with pytest.raises(ValueError, match="seq_len"):
        sample_sequences(task, 8, seed=0, seq_len=5)
    with pytest.raises(ValueError, match="n_triggers"):
        sample_sequences(RecallTask(vocab_size=20, n_triggers=1), 8, seed=0, n_distractors=1)


@pytest.mark.parametrize(
    "tokens",
    [
        torch.zeros(8, dtype=torch.long),  # 1-D
        torch.zeros(2, 8, 3, dtype=torch.long),  # 3-D
        torch.zeros(2, 8),  # float
        torch.full((2, 8), 60),  # id N
        torch.full((2, 8), -1),  # negative id
        [[0, 1, 2, 3]],  # not a tensor
    ],
)
def test_check_tokens_rejects(tokens) -> None:
    task = RecallTask()
    with pytest.raises(ValueError, match="tokens|token ids"):
        task.check_tokens(tokens)
    with pytest.raises(ValueError):
        recover_output(task, tokens)


# --------------------------------------------------------------------------- shift knobs
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_pair_position_knob(alpha: float) -> None:
    task = RecallTask(vocab_size=20, seq_len=16, alpha=alpha)
    for where, start in (("start", 0), ("end", 13), (6, 6)):
        b = sample_sequences(task, 256, seed=1, pair_position=where)
        assert (b.pair_pos == start).all()
        assert (b.tokens[:, start] == b.triggers).all()
        assert (b.tokens[:, start + 1] == b.outputs).all()
        assert_invariants(task, b)


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_distractor_pairs(alpha: float) -> None:
    task = RecallTask(vocab_size=20, seq_len=24, alpha=alpha)
    k = 3
    b = sample_sequences(task, 512, seed=2, n_distractors=k)
    tok, q = b.tokens, b.triggers[:, None]
    other = (tok < task.n_triggers) & (tok != q)
    assert (other.sum(1) == k).all(), "exactly k distractor triggers q' != q"
    assert not other[:, -2:].any(), "a distractor pair needs room for its x before z_H"
    # each q' is followed by a filler token x, and the pairs do not overlap anything
    nxt = tok[:, 1:][other[:, :-1]]
    assert torch.isin(nxt, task.filler).all()
    # q, y, τ are still where promised (q only at the planted pair(s) and the end)
    q_pos = tok == q
    expected = 2 + int(task.noisy)
    assert (q_pos.sum(1) == expected).all()
    assert torch.equal(recover_output(task, tok), b.outputs)
    assert (tok[torch.arange(512), b.pair_pos + 1] == b.outputs).all()


def test_plant_prob_zero_and_rate() -> None:
    task = RecallTask(vocab_size=20, seq_len=16)
    b = sample_sequences(task, 256, seed=3, plant_prob=0.0)
    assert (b.pair_pos == -1).all()
    assert ((b.tokens < task.n_triggers).sum(1) == 1).all(), "only z_H is a trigger"
    assert (recover_output(task, b.tokens) == -1).all()
    assert_invariants(task, b, planted=False)
    b = sample_sequences(task, 20000, seed=3, plant_prob=0.3)
    k = int((b.pair_pos >= 0).sum())
    assert stats.binomtest(k, 20000, 0.3).pvalue > P_MIN
    assert_invariants(task, b, planted=False)
    noisy = RecallTask(vocab_size=20, seq_len=16, alpha=0.4)
    b = sample_sequences(noisy, 2000, seed=3, plant_prob=0.5)
    assert_invariants(noisy, b, planted=False)


def test_seq_len_override() -> None:
    for alpha in (0.0, 0.5):
        task = RecallTask(vocab_size=20, seq_len=32, alpha=alpha)
        for H in (6, 64):
            b = sample_sequences(task, 128, seed=0, seq_len=H)
            assert b.tokens.shape == (128, H)
            assert_invariants(task, b)


def test_test_time_alpha_and_filler_law() -> None:
    task = RecallTask(vocab_size=20, seq_len=16, alpha=0.2)
    b = sample_sequences(task, 20000, seed=4, alpha=0.6)
    k = int((b.targets == task.noise_token).sum())
    assert stats.binomtest(k, 20000, 0.6).pvalue > P_MIN
    b0 = sample_sequences(task, 512, seed=4, alpha=0.0)
    assert torch.equal(b0.targets, b0.outputs)
    probs = torch.zeros(20)
    probs[task.filler] = torch.linspace(1.0, 3.0, len(task.filler))
    b = sample_sequences(task, 4000, seed=4, filler_probs=probs)
    assert_invariants(task, b)
    B, H = b.tokens.shape
    mask = torch.ones(B, H, dtype=torch.bool)
    rows = torch.arange(B)
    for pos in (b.pair_pos, b.noise_pos):
        mask[rows, pos] = False
        mask[rows, pos + 1] = False
    mask[:, -1] = False
    counts = np.bincount(b.tokens[mask].numpy(), minlength=20)[task.filler.numpy()]
    pi = probs[task.filler].double().numpy()
    pi /= pi.sum()
    assert stats.chisquare(counts, pi * counts.sum()).pvalue > P_MIN
    assert stats.chisquare(counts).pvalue < 1e-10  # not the uniform filler any more


# --------------------------------------------------------------------------- properties
@st.composite
def tasks(draw) -> RecallTask:
    nq = draw(st.integers(1, 4))
    no = draw(st.integers(1, 4))
    N = draw(st.integers(nq + no + 2, nq + no + 8))
    alpha = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9]))
    H = draw(st.integers(6 if alpha > 0 else 4, 40))
    return RecallTask(vocab_size=N, n_triggers=nq, n_outputs=no, seq_len=H, alpha=alpha)


@settings(max_examples=30, deadline=None)
@given(task=tasks(), ood=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_invariants_hold_for_random_tasks(task: RecallTask, ood: bool, seed: int) -> None:
    assert_invariants(task, task.sample(64, seed=seed, ood=ood), ood=ood)


@settings(max_examples=30, deadline=None)
@given(task=tasks(), seed=st.integers(0, 2**31 - 1), k=st.integers(0, 2),
       where=st.sampled_from(["uniform", "start", "end"]))
def test_invariants_hold_under_knobs(task: RecallTask, seed: int, k: int, where: str) -> None:
    H = task.seq_len + 2 * (k + 1)  # room for the distractors
    if task.n_triggers < 2:
        k = 0
    b = sample_sequences(task, 32, seed=seed, n_distractors=k, pair_position=where, seq_len=H)
    assert b.seq_len == H
    if k == 0:
        assert_invariants(task, b)
    else:
        assert torch.equal(recover_output(task, b.tokens), b.outputs)
        assert ((b.tokens == b.triggers[:, None]).sum(1) == 2 + int(task.noisy)).all()


# --------------------------------------------------------------------------- speed
def test_sampling_is_vectorised() -> None:
    for alpha in (0.0, 0.5):
        task = RecallTask(alpha=alpha)
        task.sample(512, seed=0)  # warm-up
        best = min(_timed(lambda t=task: t.sample(512, seed=1)) for _ in range(3))
        assert best < 0.2, f"sampling B=512, H=256 took {best:.3f} s (alpha={alpha})"


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def test_public_names() -> None:
    assert icl.task.sample_sequences is sample_sequences and icl.RecallTask is RecallTask
