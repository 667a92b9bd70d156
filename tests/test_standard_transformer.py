"""The ordinary causal transformer (icl.standard_transformer) and its readings (icl.mechanism)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import icl
from icl import mechanism
from icl.standard_transformer import (
    StandardTransformer,
    last_position_loss,
    train_adam,
    train_adam_replicas,
)
from icl.validate import InvalidTypeError

TASK = icl.RecallTask(vocab_size=20, seq_len=12)
NOISY = icl.RecallTask(vocab_size=20, seq_len=12, alpha=0.5)


def small(task=TASK, **kw) -> StandardTransformer:
    kw = {"n_layers": 2, "d_model": 16, "n_heads": 2, **kw}
    return StandardTransformer(task, **kw)


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_shapes(n_layers):
    net = small(n_layers=n_layers)
    b = TASK.sample(5, seed=0)
    out = net(b.tokens, return_attention=True)
    assert out.logits.shape == (5, 12, 20)
    assert out.last.shape == (5, 20)
    assert len(out.attention) == n_layers
    for a in out.attention:
        assert a.shape == (5, 2, 12, 12)
        assert torch.allclose(a.sum(-1), torch.ones(5, 2, 12), atol=1e-5)
        assert float(a.detach().triu(1).abs().max()) == 0.0  # nothing above the diagonal
    assert net(b.tokens).attention == ()


@pytest.mark.parametrize("n_layers", [1, 3])
def test_causal_mask(n_layers):
    """A change at position h never changes the output at positions before h."""
    net = small(n_layers=n_layers, seed=3)
    b = TASK.sample(8, seed=1)
    base = net(b.tokens).logits
    for h in range(TASK.seq_len):
        changed = b.tokens.clone()
        changed[:, h] = (changed[:, h] + 1) % TASK.vocab_size
        out = net(changed).logits
        assert torch.equal(out[:, :h], base[:, :h]), h
        assert not torch.allclose(out[:, h], base[:, h])  # and position h does see it


def test_determinism_per_seed():
    a, b, c = small(seed=7), small(seed=7), small(seed=8)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(),
                                                         strict=True))
    # the constructor leaves the global generator alone
    torch.manual_seed(123)
    x = torch.rand(3)
    torch.manual_seed(123)
    small(seed=5)
    assert torch.equal(torch.rand(3), x)
    h1 = train_adam(small(seed=1), TASK, 4, 1e-3, batch_size=8, seed=2, eval_size=16)
    h2 = train_adam(small(seed=1), TASK, 4, 1e-3, batch_size=8, seed=2, eval_size=16)
    assert h1.train_loss == h2.train_loss and h1.eval_loss == h2.eval_loss


def test_training_lowers_the_loss():
    net = small(seed=0)
    h = train_adam(net, TASK, 60, 3e-3, batch_size=32, seed=0, eval_every=30, eval_size=128)
    assert h.steps == [0, 30, 60]
    assert h.eval_loss[-1] < h.eval_loss[0] - 0.5
    assert h.bayes_risk == 0.0
    assert len(h.train_loss) == 60


def test_ablation_changes_the_output_and_attention_only_layer():
    net = small(seed=0)
    b = TASK.sample(4, seed=0)
    base = net(b.tokens).last
    assert not torch.allclose(net(b.tokens, ablate_mlp=(1,)).last, base)
    assert not torch.allclose(net(b.tokens, ablate_attention=(0,)).last, base)
    bare = small(mlp=False, seed=0)
    assert not any("mlp" in n for n, _ in bare.named_parameters())
    assert bare.n_parameters < net.n_parameters


def test_bad_inputs():
    with pytest.raises(ValueError, match="task"):
        StandardTransformer("task")
    with pytest.raises(ValueError, match="n_layers"):
        small(n_layers=0)
    with pytest.raises(InvalidTypeError, match="d_model"):
        small(d_model=16.0)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        small(d_model=15, n_heads=2)
    with pytest.raises(InvalidTypeError, match="mlp"):
        small(mlp=1)
    with pytest.raises(ValueError, match="seed"):
        small(seed=-1)
    net = small()
    with pytest.raises(ValueError, match="token ids"):
        net(torch.full((2, 5), 20))
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        net(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="max_len"):
        net(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="ablate_mlp"):
        net(torch.zeros(1, 5, dtype=torch.long), ablate_mlp=(2,))
    with pytest.raises(InvalidTypeError, match="ablate_attention"):
        net(torch.zeros(1, 5, dtype=torch.long), ablate_attention=1)
    with pytest.raises(ValueError, match="steps"):
        train_adam(net, TASK, 0)
    with pytest.raises(ValueError, match="lr"):
        train_adam(net, TASK, 1, lr=0.0)
    with pytest.raises(ValueError, match="vocab_size"):
        train_adam(net, TASK.replace(vocab_size=30), 1)
    with pytest.raises(ValueError, match="max_len"):
        train_adam(net, TASK.replace(seq_len=40), 1)
    with pytest.raises(InvalidTypeError, match="model"):
        train_adam(icl.OneLayerTransformer(TASK, d_model=40), TASK, 1)
    with pytest.raises(InvalidTypeError, match="model"):
        last_position_loss("net", torch.zeros(1, 4, dtype=torch.long), torch.zeros(1))


# ------------------------------------------------------------------ mechanism
def test_scores_on_planted_maps():
    B, n_heads, H = 3, 2, 6
    prev = torch.zeros(B, n_heads, H, H)
    rows = torch.arange(1, H)
    prev[:, :, rows, rows - 1] = 1.0
    prev[:, :, 0, 0] = 1.0
    assert torch.allclose(mechanism.previous_token_attention(prev), torch.ones(n_heads))
    uniform = torch.tril(torch.ones(H, H)) / torch.arange(1, H + 1)[:, None]
    uniform = uniform.expand(B, n_heads, H, H)
    assert abs(float(mechanism.previous_token_attention(uniform)[0])
               - mechanism.chance_previous_token(H)) < 1e-6
    pos = torch.tensor([1, 2, 4])
    target = torch.zeros(B, n_heads, H, H)
    target[torch.arange(B), :, -1, pos] = 1.0
    assert torch.allclose(mechanism.recall_attention(target, pos), torch.ones(n_heads))
    assert abs(float(mechanism.recall_attention(uniform, pos)[1])
               - mechanism.chance_recall(H)) < 1e-6
    with pytest.raises(ValueError, match="attention"):
        mechanism.previous_token_attention(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="positions"):
        mechanism.recall_attention(target, torch.tensor([1, 2, 9]))


def test_head_scores_ablations_and_tables():
    net = small(NOISY, seed=0)
    b = NOISY.sample(16, seed=0)
    hs = mechanism.head_scores(net, b)
    assert hs.previous.shape == hs.recall.shape == hs.noise.shape == (2, 2)
    assert np.all(np.isfinite(hs.noise))
    layer, head, score = hs.best("recall")
    assert score == hs.recall.max() and 0 <= layer < 2 and 0 <= head < 2
    with pytest.raises(ValueError, match="which"):
        hs.best("noise")
    clean = mechanism.head_scores(small(seed=0), TASK.sample(8, seed=0))
    assert np.all(np.isnan(clean.noise))
    table = mechanism.ablation_table(net, b, NOISY)
    assert set(table) == {"none", "all MLPs", "last MLP", "last attention"}
    for row in table.values():
        assert 0 <= row["p_y"] <= 1 and 0 <= row["p_tau"] <= 1 and row["loss"] > 0
    # evaluate_logits: the loss is icl.expected_loss of the last logits
    r = mechanism.evaluate_logits(net, b, NOISY)
    with torch.no_grad():
        ref = icl.expected_loss(net(b.tokens).last, b, 0.5, NOISY.noise_token).mean()
    assert abs(r["loss"] - float(ref)) < 1e-9
    sets = mechanism.test_sets(NOISY, 8, seed=1, seq_lens=(8, 30))
    names = [s.name for s in sets]
    assert names == ["in distribution", "unseen outputs", "pair at start", "pair at end",
                     "H = 8", "H = 30"]
    assert all(s.bayes_risk == icl.bayes_risk(0.5) for s in sets)
    assert bool((sets[1].batch.outputs >= NOISY.n_triggers + NOISY.n_outputs).all())
    assert bool((sets[2].batch.pair_pos == 0).all())
    stylised = icl.OneLayerTransformer(NOISY, family="reparam", d_model=40)
    rows = mechanism.generalisation_rows({"st": net, "reparam": stylised}, NOISY, sets)
    assert np.isnan(rows["st"]["H = 30"]["loss"])  # longer than max_len = 24
    assert np.isfinite(rows["reparam"]["H = 30"]["loss"])
    assert abs(rows["reparam"]["unseen outputs"]["loss"]
               - icl.closed_form_loss(NOISY, 0.0)) < 1e-6


def test_mechanism_bad_inputs():
    net = small()
    b = TASK.sample(4, seed=0)
    with pytest.raises(InvalidTypeError, match="model"):
        mechanism.head_scores(icl.OneLayerTransformer(TASK, d_model=40), b)
    with pytest.raises(InvalidTypeError, match="batch"):
        mechanism.evaluate_logits(net, b.tokens, TASK)
    with pytest.raises(ValueError, match="ablations need"):
        mechanism.last_logits(icl.OneLayerTransformer(TASK, d_model=40), b.tokens,
                              ablate_mlp=(0,))
    with pytest.raises(InvalidTypeError, match="ablations"):
        mechanism.ablation_table(net, b, TASK, ablations={})
    with pytest.raises(ValueError, match="seq_lens"):
        mechanism.test_sets(TASK, 4, seq_lens=(2,))
    with pytest.raises(ValueError, match="n"):
        mechanism.test_sets(TASK, 0)
    with pytest.raises(InvalidTypeError, match="models"):
        mechanism.generalisation_rows({}, TASK, [])


def test_figures_draw_and_refuse_bad_input():
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    from icl.viz import standard_transformer as viz

    h = train_adam(small(seed=0), TASK, 2, 1e-3, batch_size=4, seed=0, eval_size=8)
    fig = viz.plot_layer_curves({"noiseless": {2: [h, h]}}, {"noiseless": 0.0})
    assert len(fig.axes) == 1
    a = np.tril(np.full((6, 6), 1 / 6))
    fig2 = viz.plot_attention_maps([a, a], ["x", "y"], tokens=list(range(6)),
                                   marks={"q": 2, "y": 3})
    fig3 = viz.plot_head_scores(np.full((2, 2, 2), 0.3), np.full((2, 2, 2), 0.5), 0.2, 0.1)
    fig4 = viz.plot_ablations({"none": {"p_y": [0.5], "p_tau": [0.5]}}, alpha=0.5)
    for f in (fig, fig2, fig3, fig4):
        plt.close(f)
    with pytest.raises(ValueError, match="curves"):
        viz.plot_layer_curves({}, {})
    with pytest.raises(ValueError, match="maps"):
        viz.plot_attention_maps([a], ["x", "y"])
    with pytest.raises(ValueError, match="maps"):
        viz.plot_attention_maps([a * np.nan], ["x"])
    with pytest.raises(ValueError, match="previous and recall"):
        viz.plot_head_scores(np.zeros((2, 2)), np.zeros((2, 2)), 0.1, 0.1)
    with pytest.raises(ValueError, match="table"):
        viz.plot_ablations({}, alpha=0.5)


# ------------------------------------------------------------------ several at once
@pytest.mark.parametrize("n_layers", [1, 3])
def test_replica_logits_equal_each_network(n_layers):
    nets = [small(t, n_layers=n_layers, seed=s) for t in (TASK, NOISY) for s in (0, 1)]
    tokens = torch.stack([t.sample(6, seed=s).tokens for t in (TASK, NOISY) for s in (0, 1)])
    out = icl.standard_transformer.replica_last_logits(nets, tokens)
    assert out.shape == (4, 6, 20)
    for r, net in enumerate(nets):
        assert torch.allclose(out[r], net(tokens[r]).last, atol=1e-5)
    bare = [small(mlp=False, seed=s) for s in (0, 1)]
    out = icl.standard_transformer.replica_last_logits(bare, tokens[:2])
    assert torch.allclose(out[1], bare[1](tokens[1]).last, atol=1e-5)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_replica_training_equals_separate_runs(weight_decay):
    """Batched training = train_adam on each network (same batches, same Adam steps)."""
    tasks, seeds = [TASK, NOISY, NOISY], [0, 0, 5]
    together = [small(t, seed=s) for t, s in zip(tasks, seeds, strict=True)]
    alone = [small(t, seed=s) for t, s in zip(tasks, seeds, strict=True)]
    # eval_size 1400: above 4096 // 3, so the held-out set is evaluated in two chunks
    kw = {"batch_size": 16, "eval_every": 5, "eval_size": 1400, "warmup": 3,
          "weight_decay": weight_decay}
    hs = train_adam_replicas(together, tasks, seeds, 10, 3e-3, **kw)
    for net, t, s, h in zip(alone, tasks, seeds, hs, strict=True):
        ref = train_adam(net, t, 10, 3e-3, seed=s, **kw)
        assert h.steps == ref.steps == [0, 5, 10]
        assert np.allclose(h.train_loss, ref.train_loss, atol=1e-5)
        assert np.allclose(h.eval_loss, ref.eval_loss, atol=1e-5)
        assert h.bayes_risk == ref.bayes_risk
    probe = NOISY.sample(8, seed=9).tokens
    for a, b in zip(together, alone, strict=True):
        assert torch.allclose(a(probe).logits, b(probe).logits, atol=1e-4)
        for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
            if name.endswith("in_proj_bias"):
                # the key bias adds one constant to every score of a query: the softmax
                # ignores it, its gradient is 0 up to rounding, which Adam's normalised
                # step then amplifies; compare the query and value biases only
                keep = torch.arange(48) // 16 != 1  # d_model = 16: [query | key | value]
                pa, pb = pa[keep], pb[keep]
            assert torch.allclose(pa, pb, atol=1e-5), name


def test_replica_bad_inputs():
    nets = [small(seed=0), small(seed=1)]
    with pytest.raises(InvalidTypeError, match="models"):
        train_adam_replicas(small(), [TASK], [0], 1)
    with pytest.raises(InvalidTypeError, match="models"):
        train_adam_replicas([small(), "net"], [TASK, TASK], [0, 1], 1)
    with pytest.raises(ValueError, match="one architecture"):
        train_adam_replicas([small(), small(n_layers=3)], [TASK, TASK], [0, 1], 1)
    with pytest.raises(ValueError, match="tasks"):
        train_adam_replicas(nets, [TASK], [0, 1], 1)
    with pytest.raises(ValueError, match="seeds"):
        train_adam_replicas(nets, [TASK, TASK], [0], 1)
    with pytest.raises(ValueError, match="seeds"):
        train_adam_replicas(nets, [TASK, TASK], [0, -1], 1)
    with pytest.raises(ValueError, match="vocab_size"):
        train_adam_replicas(nets, [TASK, TASK.replace(vocab_size=30)], [0, 1], 1)
    with pytest.raises(ValueError, match="steps"):
        train_adam_replicas(nets, [TASK, TASK], [0, 1], 0)
    with pytest.raises(ValueError, match="batch_size"):
        train_adam_replicas(nets, [TASK, TASK], [0, 1], 1, batch_size=10**6,
                            max_bytes=1e6)
    with pytest.raises(ValueError, match="tokens"):
        icl.standard_transformer.replica_last_logits(nets, torch.zeros(3, 2, 5,
                                                                       dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        icl.standard_transformer.replica_last_logits(nets, torch.full((2, 2, 5), 20))
