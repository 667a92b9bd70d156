"""Census of bad inputs: call the public functions of :mod:`icl` with common mistakes.

Each case is one call a new user could plausibly make (a string for a number, NaN, ``α = 1``,
a negative or huge size, a bool for an integer, a tensor of the wrong shape or dtype, an
object of the wrong type), plus a few *valid but extreme* inputs whose exact answer is
known (``numeric``) or that float32 cannot represent (``warn``). Every case runs in a
worker process with a memory cap (``--mem-gib``) and a time limit (``--timeout``), and is
classified as

``clear``       a ``ValueError``/``TypeError``/``IndexError`` whose message names the
                parameter (or, for a ``warn`` case, a warning naming the float64 remedy);
``correct``     a ``numeric`` case that returned the right value;
``silent``      a bad input accepted without complaint (or a ``warn`` case without warning);
``wrong``       a ``numeric`` case that returned a wrong value;
``obscure``     any other exception (deep inside torch/numpy, or a message that does not
                name the parameter);
``allocation``  an attempt to allocate more memory than the cap (``MemoryError``, torch's
                "can't allocate memory");
``hang``        still running after the time limit (the worker is killed).

Usage (from the repository root, with the package on ``PYTHONPATH``)::

    python benchmarks/bad_inputs.py                  # the table of counts
    python benchmarks/bad_inputs.py --list           # every case, its outcome, its message
    python benchmarks/bad_inputs.py --only silent    # only the cases with that outcome
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass

OUTCOMES = ("clear", "correct", "silent", "wrong", "obscure", "allocation", "hang")


@dataclass(frozen=True)
class Case:
    label: str  # module.function
    param: str  # the parameter the message must name
    code: str  # a Python expression evaluated in the fixture namespace
    kind: str = "bad"  # "bad", "numeric" (the expression is True iff the value is right), "warn"


CASES: list[Case] = []


def bad(label: str, param: str, template: str, values, kind: str = "bad") -> None:
    """One case per value: ``template`` with ``{v}`` replaced by the value's source text."""
    for v in values:
        CASES.append(Case(label, param, template.replace("{v}", v), kind))


STR_NUM = ['"1"']
REALS = ['"0.1"', "True", "nan", "inf"]
INTS = ['"8"', "True", "8.5", "-1"]

# ------------------------------------------------------------------ task and sampler
bad("RecallTask", "vocab_size", "icl.RecallTask(vocab_size={v})", ['"60"', "True", "60.0", "0"])
bad("RecallTask", "n_triggers", "icl.RecallTask(n_triggers={v})", ['"5"', "True", "0", "2.5"])
bad("RecallTask", "n_outputs", "icl.RecallTask(n_outputs={v})", ['"4"', "False", "0", "4.0"])
bad("RecallTask", "seq_len", "icl.RecallTask(seq_len={v})", ['"256"', "True", "3", "256.0"])
bad("RecallTask", "alpha", "icl.RecallTask(alpha={v})",
    ['"0.1"', "True", "nan", "inf", "1.0", "-0.1", "1.5", "None"])
bad("RecallTask.replace", "alpha", "T.replace(alpha={v})", ['"x"', "nan"])
bad("RecallTask.sample", "batch_size", "T.sample({v}, seed=0)",
    ['"8"', "True", "0", "-1", "8.0", "nan"])
bad("RecallTask.sample", "batch_size", "T.sample({v}, seed=0)", ["10**10", "10**8 * 3"])
bad("RecallTask.sample", "seed", "T.sample(4, seed={v})",
    ['"0"', "True", "-1", "1.5", "nan", "2**64"])
bad("RecallTask.sample", "generator", "T.sample(4, generator={v})",
    ['"g"', "0", "np.random.default_rng(0)"])
bad("RecallTask.sample", "ood", "T.sample(4, seed=0, ood={v})", ['"no"', "1", "None"])
bad("RecallTask.check_tokens", "tokens", "T.check_tokens({v})",
    ["B.tokens.float()", "B.tokens[0]", "B.tokens.tolist()", "B.tokens + 100"])
bad("sample_sequences", "task", "task_mod.sample_sequences({v}, 4, seed=0)", ['"task"', "None"])
bad("sample_sequences", "alpha", "task_mod.sample_sequences(TN, 4, seed=0, alpha={v})",
    ['"0.1"', "True", "nan", "1.0", "-0.2"])
bad("sample_sequences", "plant_prob", "task_mod.sample_sequences(T, 4, seed=0, plant_prob={v})",
    ["True", '"1"', "nan", "1.5", "-0.1"])
bad("sample_sequences", "pair_position",
    "task_mod.sample_sequences(T, 4, seed=0, pair_position={v})",
    ['"middle"', "True", "14", "-1", "2.0"])
bad("sample_sequences", "n_distractors",
    "task_mod.sample_sequences(T, 4, seed=0, n_distractors={v})",
    ["True", "-1", "1.5", '"2"', "10**6"])
bad("sample_sequences", "filler_probs",
    "task_mod.sample_sequences(T, 4, seed=0, filler_probs={v})",
    ['"uniform"', "torch.ones(5)", "torch.full((20,), nan)", "-torch.ones(20)"])
bad("sample_sequences", "seq_len", "task_mod.sample_sequences(T, 4, seed=0, seq_len={v})",
    ["True", "3", '"16"', "10**10"])
bad("RecallBatch", "targets", "icl.RecallBatch(BN.tokens, BN.targets[:3], BN.outputs, "
    "BN.pair_pos, BN.noise_pos)", ["x"])
bad("RecallBatch", "tokens", "icl.RecallBatch({v}, BN.targets, BN.outputs, BN.pair_pos, "
    "BN.noise_pos)", ["BN.tokens.float()", "BN.tokens.tolist()", "BN.tokens[0]"])
bad("RecallBatch.__getitem__", "index", "BN[{v}]", ["100", '"a"', "1.5"])
CASES.append(Case("RecallBatch.__getitem__", "index",
                  "len(BN[-1]) == 1 and bool((BN[-1].tokens == BN.tokens[-1:]).all())",
                  "numeric"))
bad("make_generator", "seed", "task_mod.make_generator({v})", ["True", '"0"', "-1"])
bad("check_task", "task", "task_mod.check_task({v})", ['"x"'])

# ------------------------------------------------------------------ Bayes risk and KL
bad("bayes_risk", "alpha", "icl.bayes_risk({v})",
    ['"0.1"', "True", "nan", "inf", "1.0", "-0.1", "None", "[0.1]"])
bad("binary_entropy", "alpha", "icl.binary_entropy({v})",
    ['"0.1"', "True", "nan", "1.5", "-0.5", "None"])
bad("kl_bernoulli", "alpha", "icl.kl_bernoulli({v}, 0.5)", ["nan", '"a"', "True", "1.5", "inf"])
bad("kl_bernoulli", "alpha_hat", "icl.kl_bernoulli(0.5, {v})", ["nan", '"a"', "-0.1", "None"])
bad("hoeffding_radius", "m", "bayes.hoeffding_radius({v}, 0.1)",
    ["True", "0", "1.5", '"10"', "nan"])
bad("hoeffding_radius", "delta", "bayes.hoeffding_radius(10, {v})",
    ["nan", "inf", "1.5", "0", '"0.1"', "True"])
bad("recover_output", "tokens", "bayes.recover_output(T, {v})",
    ["B.tokens.float()", "B.tokens[0]", "B.tokens.tolist()", "B.tokens + 100"])
bad("recover_output", "task", "bayes.recover_output({v}, B.tokens)", ['"x"', "None"])
bad("oracle_log_probs", "alpha", "bayes.oracle_log_probs(TN, BN.tokens, alpha={v})",
    ["nan", "1.0", '"x"', "True"])
bad("oracle_log_probs", "task", "bayes.oracle_log_probs({v}, BN.tokens)", ['"x"'])
bad("oracle_losses", "batch", "bayes.oracle_losses(TN, {v})", ["BN.tokens", '"x"'])
bad("oracle_losses", "task", "bayes.oracle_losses({v}, BN)", ['"x"'])

# ------------------------------------------------------------------ losses
bad("expected_loss", "alpha", "icl.expected_loss(XI, BN, {v}, 19)",
    ["nan", "1.5", "-0.5", '"0.1"', "True", "inf"])
bad("expected_loss", "noise_token", "icl.expected_loss(XI, BN, 0.2, {v})",
    ["-1", "20", "1.5", '"19"', "True"])
bad("expected_loss", "logits", "icl.expected_loss({v}, BN, 0.2, 19)",
    ["torch.zeros(8, 5)", "torch.zeros(8)", "XI.tolist()", "torch.zeros(3, 20)",
     "torch.zeros(8, 20, dtype=torch.long)"])
bad("expected_loss", "batch", "icl.expected_loss(XI, {v}, 0.2, 19)",
    ["None", "torch.full((8,), 50)", '"batch"', "BN.outputs.float()"])
bad("expected_losses", "xi", "losses.expected_losses(TN, {v}, BN.outputs)",
    ["torch.zeros(8, 5)", "XI.tolist()", "torch.zeros(8, 20, dtype=torch.long)"])
bad("expected_losses", "outputs", "losses.expected_losses(TN, XI, {v})",
    ["torch.full((8,), 25)", "BN.outputs[:3]", '"y"', "BN.outputs.float() + 0.5"])
bad("expected_losses", "alpha", "losses.expected_losses(TN, XI, BN.outputs, alpha={v})",
    ["nan", '"x"', "True", "1.0"])
bad("expected_losses", "task", "losses.expected_losses({v}, XI, BN.outputs)", ['"x"'])
bad("expected_excess", "task", "losses.expected_excess({v}, XI, BN.outputs)", ['"x"', "None"])
bad("expected_excess", "xi", "losses.expected_excess(TN, {v}, BN.outputs)",
    ["XI.tolist()", "torch.zeros(8, 5)", "torch.zeros(8, 20, dtype=torch.long)"])
bad("expected_excess", "outputs", "losses.expected_excess(TN, XI, {v})",
    ["torch.full((8,), 25)", "BN.outputs[:3]", "torch.full((8,), -1)"])
CASES.append(Case("expected_excess", "xi", "excess_gap_ok(TN, 800.0)", "numeric"))
CASES.append(Case("expected_excess", "xi", "excess_gap_ok(T, 800.0)", "numeric"))
CASES.append(Case("expected_excess", "xi", "excess_gap_ok(TN, 720.0)", "numeric"))

# ------------------------------------------------------------------ closed forms
bad("closed_form_loss", "Lambda", "icl.closed_form_loss(TN, {v})",
    ["nan", "inf", '"1"', "True", "[1, nan]", "None"])
bad("closed_form_loss", "Lambda", "icl.closed_form_loss(T, {v})",
    ["np.ones(3)", "np.ones((4, 2))", "nan"])
bad("closed_form_loss", "gamma", "icl.closed_form_loss(TN, 1.0, gamma={v})",
    ['"1"', "True", "nan", "inf"])
bad("closed_form_loss", "gamma", "icl.closed_form_loss(T, 1.0, gamma={v})", ["1.0"])
bad("closed_form_loss", "alpha_hat", "icl.closed_form_loss(T, 1.0, alpha_hat={v})", ["0.2"])
bad("closed_form_loss", "alpha_hat", "icl.closed_form_loss(TN, 1.0, alpha_hat={v})",
    ["0", "1", "nan", '"0.1"', "True"])
bad("closed_form_loss", "alpha_test", "icl.closed_form_loss(TN, 1.0, alpha_test={v})",
    ["nan", "1.0", '"x"', "True"])
bad("closed_form_loss", "task", "icl.closed_form_loss({v}, 1.0)", ['"x"', "None"])
CASES.append(Case("closed_form_loss", "Lambda", "cf_minus_1000_ok()", "numeric"))
bad("closed_form_excess", "Lambda", "icl.closed_form_excess(TN, {v})",
    ["nan", '"1"', "True", "inf"])
bad("closed_form_excess", "task", "icl.closed_form_excess({v}, 1.0)", ['"x"'])
bad("closed_form_excess", "gamma", "icl.closed_form_excess(T, 1.0, gamma={v})", ["1.0"])
CASES.append(Case("closed_form_excess", "Lambda",
                  "math.isfinite(icl.closed_form_excess(TN, -1000.0))", "numeric"))
bad("closed_form_logits", "batch", "closed_forms.closed_form_logits(TN, {v}, 1.0)",
    ['"x"', "BN.tokens"])
bad("closed_form_logits", "Lambda", "closed_forms.closed_form_logits(TN, BN, {v})",
    ["nan", '"x"', "[1.0, 2.0]"])
bad("closed_form_logits", "dtype", "closed_forms.closed_form_logits(TN, BN, 1.0, dtype={v})",
    ['"float"', "torch.int64"])
bad("kappa0_stalled_loss", "Lambda", "closed_forms.kappa0_stalled_loss(TN, {v})",
    ["nan", '"x"', "True"])
bad("kappa0_stalled_loss", "gamma", "closed_forms.kappa0_stalled_loss(TN, 1.0, gamma={v})",
    ['"1"', "nan"])
bad("kappa0_stalled_minimum", "task", "closed_forms.kappa0_stalled_minimum({v})", ['"x"'])

# ------------------------------------------------------------------ constants
bad("log_odds", "alpha", "constants.log_odds({v})", ["0", "1", "nan", '"x"'])
bad("rate_constant", "vocab_size", "constants.rate_constant({v}, 0.1)", ["True", "2", '"60"'])
bad("rate_constant", "alpha", "constants.rate_constant(60, {v})", ["1", "nan"])
bad("predicted_slope", "lr", "icl.predicted_slope({v}, noisy=True)", ["True", "0", "nan", '"1"'])
bad("predicted_slope", "n_triggers", "icl.predicted_slope(0.1, noisy=False, n_triggers={v})",
    ["0", "True"])
bad("predicted_slope", "noisy", "icl.predicted_slope(0.1, noisy={v})", ['"no"', "1"])

# ------------------------------------------------------------------ construction
bad("construct", "Lambda", "icl.construct(TN, {v}, d_model=40)",
    ["nan", "inf", '"1"', "True", "None"])
bad("construct", "lambdas", "icl.construct(T, lambdas={v}, d_model=40)",
    ["[1.0, 2.0]", "[nan] * 5", '"abcde"', "[True] * 5"])
bad("construct", "attention", "icl.construct(TN, 1.0, d_model=40, attention={v})",
    ['"soft"', "1"])
bad("construct", "kappa", "icl.construct(TN, 1.0, d_model=40, kappa={v})",
    ["1.0", "True", "2", '"1"'])
bad("construct", "gamma", "icl.construct(TN, 1.0, d_model=40, gamma={v})",
    ['"1"', "True", "nan"])
bad("construct", "gamma", "icl.construct(T, 1.0, d_model=40, gamma={v})", ["1.0"])
bad("construct", "alpha_hat", "icl.construct(TN, 1.0, d_model=40, alpha_hat={v})", ["1.5"])
bad("construct", "d_model", "icl.construct(TN, 1.0, d_model={v})",
    ["20000", "10", "True", '"128"'])
bad("construct", "scaled", "icl.construct(TN, 1.0, d_model=40, scaled={v})", ['"yes"', "1"])
bad("construct", "dtype", "icl.construct(TN, 1.0, d_model=40, dtype={v})",
    ['"float"', "torch.int64"])
bad("construct", "task", "icl.construct({v}, 1.0)", ['"x"'])
bad("construct_kappa0_stalled", "Lambda", "construction.construct_kappa0_stalled(TN, {v}, "
    "d_model=40)", ["nan", '"x"'])
bad("construction_matrices", "scale", "construction.construction_matrices(TN, {v}, d_model=40)",
    ["torch.ones(3)", '"x"', "torch.tensor(nan)"])

# ------------------------------------------------------------------ the network
bad("OneLayerTransformer", "task", "icl.OneLayerTransformer({v})", ['"x"', "None"])
bad("OneLayerTransformer", "attention", "icl.OneLayerTransformer(T, {v}, d_model=40)",
    ['"Linear"', "0"])
bad("OneLayerTransformer", "family", "icl.OneLayerTransformer(T, family={v}, d_model=40)",
    ['"orig"', "None"])
bad("OneLayerTransformer", "kappa", "icl.OneLayerTransformer(T, kappa={v}, d_model=40)",
    ["1.0", "True", "2"])
bad("OneLayerTransformer", "d_model", "icl.OneLayerTransformer(T, d_model={v})",
    ["20000", "10**6", "True", "39", '"128"'])
bad("OneLayerTransformer", "gamma", "icl.OneLayerTransformer(TN, d_model=40, gamma={v})",
    ['"1"', "True", "nan"])
bad("OneLayerTransformer", "gamma", "icl.OneLayerTransformer(T, d_model=40, gamma={v})",
    ["1.0"])
bad("OneLayerTransformer", "alpha_hat",
    "icl.OneLayerTransformer(TN, d_model=40, alpha_hat={v})", ["0", "1.0", '"x"'])
bad("OneLayerTransformer", "dtype", "icl.OneLayerTransformer(T, d_model=40, dtype={v})",
    ['"float32"', "torch.int64"])
bad("OneLayerTransformer.forward", "tokens", "MN({v})",
    ["BN.tokens.float()", "BN.tokens[0]", "BN.tokens + 100", "BN.tokens.tolist()"])
bad("OneLayerTransformer.forward", "path", "MN(BN.tokens, path={v})", ['"slow"', "1"])
bad("OneLayerTransformer.scores", "tokens", "MN.scores({v})", ["BN.tokens.tolist()"])
bad("OneLayerTransformer.from_construction", "construction",
    "icl.OneLayerTransformer.from_construction({v})", ['"x"'])
bad("construct_model", "Lambda", "icl.construct_model(TN, {v}, d_model=40)", ["nan", '"x"'])
bad("construct_model", "d_model", "icl.construct_model(TN, 1.0, d_model={v})", ["30000"])
CASES.append(Case("OneLayerTransformer.forward", "Lambda", "construction_big_lambda()", "warn"))

# ------------------------------------------------------------------ reading a model
bad("evaluate", "model", "icl.evaluate({v}, BN)", ['"x"', "None"])
bad("evaluate", "batch", "icl.evaluate(MN, {v})", ['"x"', "BN.tokens"])
bad("evaluate", "alpha", "icl.evaluate(MN, BN, alpha={v})",
    ["nan", "1.5", "-0.5", '"x"', "True"])
bad("role_split", "batch", "roles.role_split(MN, {v})", ['"x"'])
bad("role_split", "model", "roles.role_split({v}, BN)", ['"x"'])
bad("probability_by_role", "batch", "roles.probability_by_role(MN, {v})", ['"x"'])
bad("attention_on_output", "batch", "roles.attention_on_output(MN, {v})", ['"x"'])
bad("role_blocks", "d_model", "roles.role_blocks(T, d_model={v})", ["10", "True", '"40"'])
bad("role_blocks", "task", "roles.role_blocks({v})", ['"x"'])
bad("role_mass", "matrix", "roles.role_mass({v}, T)",
    ['"x"', "torch.zeros(3, 4)", "torch.zeros(10, 10)", "torch.full((40, 40), nan)"])
bad("role_mass", "reduce", "roles.role_mass(torch.zeros(40, 40), T, reduce={v})",
    ['"max"', "1"])
bad("role_mass", "rows", "roles.role_mass(torch.zeros(40, 40), T, rows={v})", ['"some"'])
bad("copy_scores", "V", "roles.copy_scores({v}, T)", ['"x"', "torch.zeros(3, 3)"])
bad("copy_scores", "task", "roles.copy_scores(torch.zeros(40, 40), {v})", ['"x"'])
bad("coordinate_label", "index", "roles.coordinate_label(T, {v})", ["-1", "1.5", "True"])
bad("nonzero_entries", "M", "roles.nonzero_entries(T, {v})", ['"x"', "torch.zeros(3)"])
bad("nonzero_entries", "limit", "roles.nonzero_entries(T, torch.eye(40), limit={v})",
    ["0", "True"])
bad("never_seen_tokens", "task", "roles.never_seen_tokens({v})", ['"x"'])

# ------------------------------------------------------------------ training
TR = "icl.train(MR, TN, {steps}, {lr}, batch_size=8, eval_size=16{extra})"


def tr(param: str, values, *, steps: str = "2", lr: str = "0.1", extra: str = "") -> None:
    bad("train", param, TR.format(steps=steps, lr=lr, extra=extra), values)


bad("train", "model", "icl.train({v}, TN, 2, 0.1)", ['"x"', "None"])
bad("train", "task", "icl.train(MR, {v}, 2, 0.1)", ["T", '"x"'])
tr("steps", ["0", "True", "1.5", '"10"', "-3"], steps="{v}")
tr("steps", ["10**8"], steps="{v}")
tr("lr", ["True", "nan", "-1", '"0.1"', "inf", "0"], lr="{v}")
bad("train", "batch_size", "icl.train(MR, TN, 2, 0.1, batch_size={v}, eval_size=16)",
    ["0", "True", "2.5", "10**9"])
tr("normalized", ['"yes"', "1", "None"], extra=", normalized={v}")
tr("seed", ["True", "-1", '"0"', "1.5"], extra=", seed={v}")
tr("eval_every", ["0", "True", "1.5"], extra=", eval_every={v}")
bad("train", "eval_size", "icl.train(MR, TN, 2, 0.1, batch_size=8, eval_size={v})",
    ["0", "True", "10**10"])
tr("ood", ['"no"', "1"], extra=", ood={v}")
tr("data", ['"x"', "B_big", "BN.tokens"], extra=", data={v}")
tr("progress", ['"yes"'], extra=", progress={v}")
tr("weight_decay", ["-0.1", "nan", '"0.1"', "True"], extra=", weight_decay={v}")
tr("adam", ['"yes"', "1", "None"], extra=", adam={v}")
tr("normalized", ["False", '"per_coordinate"'], extra=", adam=True, normalized={v}")
bad("normalized_step", "lr", "train_mod.normalized_step([torch.zeros(2)], [torch.ones(2)], {v})",
    ["nan", '"x"', "True"])
bad("normalized_step", "grads", "train_mod.normalized_step([torch.zeros(2)], {v}, 0.1)",
    ["[]", "[torch.ones(3)]"])
bad("History.array", "name", "H0.array({v})", ['"nope"'])
bad("History.array", "split", "H0.array('loss', {v})", ['"test"'])
CASES.append(Case("train", "dtype", "float32_stall()", "warn"))

# ------------------------------------------------------------------ softmax construction
bad("softmax_weights", "seq_len", "smc.softmax_weights(1.0, {v})", ["1", "True", "16.0"])
bad("softmax_weights", "score", "smc.softmax_weights({v}, 16)", ['"x"', "nan"])
bad("softmax_logits", "Lambda", "smc.softmax_logits(TN, BN.tokens, {v})",
    ["nan", '"x"', "[1.0, 2.0]"])
bad("softmax_logits", "scaled", "smc.softmax_logits(TN, BN.tokens, 1.0, scaled={v})",
    ['"yes"', "1"])
bad("softmax_logits", "kappa", "smc.softmax_logits(TN, BN.tokens, 1.0, kappa={v})", ["2"])
bad("softmax_logits", "tokens", "smc.softmax_logits(TN, {v}, 1.0)",
    ["BN.tokens.float()", '"x"'])
bad("softmax_logits", "gamma", "smc.softmax_logits(T, B.tokens, 1.0, gamma={v})", ["1.0"])
bad("softmax_loss", "n_samples", "smc.softmax_loss(TN, 1.0, n_samples={v})",
    ["0", "True", "1.5", "10**9"])
bad("softmax_loss", "seed", "smc.softmax_loss(TN, 1.0, n_samples=16, seed={v})",
    ['"0"', "-1", "True"])
bad("softmax_loss", "Lambda", "smc.softmax_loss(TN, {v}, n_samples=16)", ["nan", '"x"'])
bad("softmax_loss", "Lambda", "smc.softmax_loss(TN, {v}, n_samples=16)", ["np.zeros(10**7)"])
bad("softmax_loss", "batch", "smc.softmax_loss(TN, 1.0, batch={v})", ['"x"'])
bad("softmax_loss", "ood", "smc.softmax_loss(TN, 1.0, n_samples=16, ood={v})", ['"no"'])
bad("softmax_excess", "Lambda", "smc.softmax_excess(TN, {v}, n_samples=16)", ["nan", '"x"'])
bad("softmax_excess", "n_samples", "smc.softmax_excess(TN, 1.0, n_samples={v})", ["0"])
bad("softmax_excess_bounds", "Lambda", "smc.softmax_excess_bounds(TN, {v})",
    ["nan", "-1", '"x"'])
bad("softmax_excess_bounds", "task", "smc.softmax_excess_bounds({v}, 1.0)", ['"x"'])
bad("unscaled_logit_bound", "gamma", "smc.unscaled_logit_bound(TN, gamma={v})", ['"1"', "nan"])
bad("unscaled_lower_bound", "task", "smc.unscaled_lower_bound({v})", ['"x"'])
bad("softmax_unscaled_floor", "task", "smc.softmax_unscaled_floor({v})", ['"x"'])
bad("softmax_excess_limit", "task", "smc.softmax_excess_limit({v})", ['"x"'])
bad("keyquery_gap_bound", "task", "smc.keyquery_gap_bound({v})", ['"x"', "None"])
bad("train_in_segments", "segments",
    "sweeps.train_in_segments(families.LadderTransformer(TN, 'reparam'), TN, 6, 0.1, "
    "segments={v}, batch_size=4, eval_size=4)", ["0", "4", '"2"', "True"])
bad("sequence_counts", "tokens", "smc.sequence_counts(TN, {v})", ['"x"', "BN.tokens[0]"])

# ------------------------------------------------------------------ ordinary transformer
RA = "stt.train_adam_replicas"
bad(RA, "models", RA + "({v}, [T, T], [0, 1], 1)", ['"x"', "ST2[0]", "[]", "[ST2[0], 1]"])
bad(RA, "tasks", RA + "(ST2, {v}, [0, 1], 1)", ["[T]", "T", '"x"'])
bad(RA, "seeds", RA + "(ST2, [T, T], {v}, 1)", ["[0]", "[0, -1]", '"01"', "[0, 1.5]"])
bad(RA, "steps", RA + "(ST2, [T, T], [0, 1], {v})", ["0", "True", "1.5", "10**7"])
bad(RA, "lr", RA + "(ST2, [T, T], [0, 1], 1, {v})", ["0.0", "nan", '"x"'])
bad(RA, "batch_size", RA + "(ST2, [T, T], [0, 1], 1, batch_size={v})", ["0", "10**9"])
bad(RA, "batch_size", RA + "(ST2, [T, T], [0, 1], 1, batch_size=10**5, max_bytes={v})",
    ["1e6"])
RL = "stt.replica_last_logits"
bad(RL, "tokens", RL + "(ST2, {v})", ["B.tokens", "torch.zeros(3, 2, 5, dtype=torch.long)",
                                      "torch.full((2, 2, 5), 20)"])

# ------------------------------------------------------------------ Monte Carlo
bad("mc_oracle_risk", "n", "montecarlo.mc_oracle_risk(TN, {v}, seed=0)",
    ["1", "True", "1.5", '"100"'])
bad("mc_oracle_risk", "n", "montecarlo.mc_oracle_risk(TN, {v}, seed=0)", ["10**12"])
bad("mc_oracle_risk", "seed", "montecarlo.mc_oracle_risk(TN, 16, seed={v})",
    ['"0"', "True", "None", "-1"])
bad("mc_oracle_risk", "ood", "montecarlo.mc_oracle_risk(TN, 16, seed=0, ood={v})", ['"no"'])
bad("mc_oracle_risk", "batch_size",
    "montecarlo.mc_oracle_risk(TN, 10**8, seed=0, batch_size={v})", ["10**8"])
bad("mc_oracle_risk", "batch_size", "montecarlo.mc_oracle_risk(TN, 16, seed=0, batch_size={v})",
    ["0", "True"])
bad("mc_oracle_risk", "alpha_hat", "montecarlo.mc_oracle_risk(TN, 16, seed=0, alpha_hat={v})",
    ["0", "1", "nan", "True"])
bad("mc_oracle_risk", "task", "montecarlo.mc_oracle_risk({v}, 16, seed=0)", ['"x"'])
bad("mc_planted_variant_risk", "rho", "montecarlo.mc_planted_variant_risk(TN, {v}, 16, seed=0)",
    ["nan", "1.5", "True", '"0.5"'])
bad("mc_planted_variant_risk", "n", "montecarlo.mc_planted_variant_risk(TN, 0.5, {v}, seed=0)",
    ["10**12"])
bad("planted_variant_log_probs", "tokens", "montecarlo.planted_variant_log_probs(TN, {v})",
    ['"x"'])
bad("planted_variant_log_probs", "ood",
    "montecarlo.planted_variant_log_probs(TN, BN.tokens, ood={v})", ['"no"'])
bad("n_candidate_outputs", "task", "montecarlo.n_candidate_outputs({v})", ['"x"'])
bad("n_candidate_outputs", "ood", "montecarlo.n_candidate_outputs(T, {v})", ["1"])
bad("agrees", "mean", "montecarlo.agrees({v}, 0.1, 0.5)", ["nan", '"x"'])
bad("agrees", "se", "montecarlo.agrees(0.5, {v}, 0.5)", ["nan", '"x"', "-1"])
bad("agrees", "k", "montecarlo.agrees(0.5, 0.1, 0.5, k={v})", ["nan", "0"])

# ------------------------------------------------------------------ dynamics
bad("normalized_gd_trajectory", "lr", "dynamics.normalized_gd_trajectory(TN, {v}, 10)",
    ["nan", '"x"', "0", "True"])
bad("normalized_gd_trajectory", "t", "dynamics.normalized_gd_trajectory(TN, 0.1, {v})",
    ["nan", "-1", '"x"'])
bad("normalized_gd_trajectory", "task", "dynamics.normalized_gd_trajectory({v}, 0.1, 10)",
    ['"x"'])
bad("excess_bound", "t", "dynamics.excess_bound(TN, 0.1, {v})", ["nan", '"x"'])
bad("normalized_gd_excess", "lr", "dynamics.normalized_gd_excess(TN, {v}, 10)", ["nan"])
bad("theory_fit", "steps", "dynamics.theory_fit(TN, 0.1, {v})", ['"x"', "[nan, 1, 2]"])
bad("theory_fit", "min_excess", "dynamics.theory_fit(TN, 0.1, range(50), min_excess={v})",
    ["nan", '"x"'])
bad("theory_fit", "window", "dynamics.theory_fit(TN, 0.1, range(50), window={v})",
    ['"x"', "(nan, 10)"])
bad("plain_gd_trajectory", "steps", "dynamics.plain_gd_trajectory(TN, 0.1, {v})",
    ["True", "-1", "1.5", '"10"'])
bad("plain_gd_trajectory", "steps", "dynamics.plain_gd_trajectory(TN, 0.1, {v})",
    ["10**8", "10**10"])
bad("plain_gd_trajectory", "gamma", "dynamics.plain_gd_trajectory(TN, 0.1, 10, gamma={v})",
    ['"1"', "nan", "True"])
bad("plain_gd_trajectory", "gamma", "dynamics.plain_gd_trajectory(T, 0.1, 10, gamma={v})",
    ["1.0"])
bad("plain_gd_flow", "t", "dynamics.plain_gd_flow(TN, 0.1, {v})", ["nan", '"x"'])
bad("plain_gd_flow", "gamma", "dynamics.plain_gd_flow(TN, 0.1, 10, gamma={v})", ['"1"'])
bad("plain_gd_asymptotics", "t", "dynamics.plain_gd_asymptotics(TN, 0.1, {v})", ["0", "nan"])
bad("plain_gd_excess_constant", "lr", "dynamics.plain_gd_excess_constant(TN, {v})",
    ["True", "nan"])
bad("plain_gd_excess", "steps", "dynamics.plain_gd_excess(TN, 0.1, {v})", ["10**8", "-1"])
bad("per_example_grad", "Lambda", "dynamics.per_example_grad(TN, {v})", ["nan", "-1", '"x"'])
bad("per_example_grad", "gamma", "dynamics.per_example_grad(TN, 1.0, gamma={v})", ['"1"'])
bad("per_example_grad", "alpha_hat", "dynamics.per_example_grad(TN, 1.0, alpha_hat={v})",
    ["1.5"])
bad("noiseless_balance_efficiency", "n_triggers",
    "dynamics.noiseless_balance_efficiency({v}, 8)", ["0", "True"])
bad("noiseless_balance_efficiency", "batch_size",
    "dynamics.noiseless_balance_efficiency(5, {v})", ["8.0", "0"])
bad("local_slope", "excess", "dynamics.local_slope([0, 1, 2], {v})",
    ["[1.0, 0.5]", "[1.0, -0.5, 0.2]", '"x"'])
bad("local_slope", "span", "dynamics.local_slope([0, 1, 2], [1.0, 0.5, 0.2], span={v})",
    ["0", "True"])
bad("autograd_per_example_grad", "model",
    "dynamics.autograd_per_example_grad({v}, BN.tokens, BN.targets)", ['"x"'])
bad("autograd_per_example_grad", "tokens",
    "dynamics.autograd_per_example_grad(MR, {v}, BN.targets)", ['"x"'])
bad("autograd_per_example_grad", "targets",
    "dynamics.autograd_per_example_grad(MR, BN.tokens, {v})", ["BN.targets[:2]"])

# ------------------------------------------------------------------ finite sample
bad("plugin_alpha", "batch", "finite.plugin_alpha({v}, TN)", ['"x"'])
bad("plugin_alpha", "task", "finite.plugin_alpha(BN, {v})", ['"x"'])
bad("hoeffding_kl_bound", "alpha", "finite.hoeffding_kl_bound({v}, 100, 0.1)",
    ["0", "nan", '"x"'])
bad("hoeffding_kl_bound", "m", "finite.hoeffding_kl_bound(0.2, {v}, 0.1)", ["1", "1.5", '"x"'])
bad("hoeffding_kl_bound", "delta", "finite.hoeffding_kl_bound(0.2, 100, {v})", ["0", "nan"])
bad("expected_plugin_excess", "m", "finite.expected_plugin_excess({v})", ["0", "1.5", '"x"'])
bad("expected_plugin_excess_exact", "alpha", "finite.expected_plugin_excess_exact({v}, 10)",
    ["1", "nan"])
bad("expected_plugin_excess_exact", "m", "finite.expected_plugin_excess_exact(0.2, {v})",
    ["0", "10**10"])
bad("kl_bernoulli_array", "alpha", "finite.kl_bernoulli_array({v}, 0.5)", ["nan"])
bad("run_finite_sample", "task", "finite.run_finite_sample({v}, 10)", ["T", '"x"'])
RF = "finite.run_finite_sample(TN, {m}, steps=2, batch_size=8, eval_size=16{extra})"
bad("run_finite_sample", "m", RF.format(m="{v}", extra=""), ["1", "True", "1.5", "10**10"])
bad("run_finite_sample", "steps", RF.format(m="16", extra="").replace("steps=2", "steps={v}"),
    ["0", "True"])
bad("run_finite_sample", "lr", RF.format(m="16", extra=", lr={v}"), ["nan", "True"])
bad("run_finite_sample", "seed", RF.format(m="16", extra=", seed={v}"), ["True", "-1"])
bad("run_finite_sample", "attention", RF.format(m="16", extra=", attention={v}"), ['"x"'])
bad("run_finite_sample", "eval_size", RF.format(m="16", extra=", eval_size={v}")
    .replace("eval_size=16, ", ""), ["0", "10**10"])
bad("run_finite_sample", "dtype", RF.format(m="16", extra=", dtype={v}"), ['"x"'])
bad("finite_sample_sweep", "ms", "finite.finite_sample_sweep(TN, {v}, [0], steps=2)",
    ["[0]", '"x"'])
bad("finite_sample_sweep", "seeds", "finite.finite_sample_sweep(TN, [16], {v}, steps=2)",
    ["[]", '["a"]'])
bad("loglog_slope", "excess", "finite.loglog_slope([10, 20], {v})",
    ["[[1.0], [2.0]]", "[[1.0, -1.0], [1.0, 2.0]]", "[[nan, 1.0], [1.0, 2.0]]"])

# ------------------------------------------------------------------ shifts
bad("zipf_filler", "exponent", "shifts.zipf_filler(T, {v})", ["nan", '"x"', "-1", "True"])
bad("zipf_filler", "task", "shifts.zipf_filler({v})", ['"x"'])
bad("relabel_outputs", "batch", "shifts.relabel_outputs(T, {v})", ['"x"'])
bad("shift_batch", "shift", "shifts.shift_batch(T, {v}, 10)", ['"x"'])
bad("shift_batch", "n", "shifts.shift_batch(T, SH0, {v})", ["0", "True", "10**10"])
bad("shift_batch", "seed", "shifts.shift_batch(T, SH0, 10, seed={v})", ['"x"', "True"])
bad("Shift", "name", "shifts.Shift({v}, 'd', 'p')", ['""', "1"])
bad("Shift", "kwargs", "shifts.Shift('s', 'd', 'p', {v})",
    ["{'foo': 1}", "{'alpha': 'x'}", "{'seq_len': True}"])
bad("evaluate_shift", "n", "shifts.evaluate_shift(M, T, SH0, n={v})", ["0", "10**10"])
bad("evaluate_shift", "model", "shifts.evaluate_shift({v}, T, SH0)", ['"x"'])
bad("shift_table", "models", "shifts.shift_table({v}, T, [SH0])", ["{}", '{"a": "x"}'])
bad("shift_table", "atol", "shifts.shift_table({'m': M}, T, [SH0], n=16, atol={v})",
    ["nan", '"x"'])
bad("context_free_risk", "task", "shifts.context_free_risk({v})", ['"x"'])
bad("shift_table_markdown", "rows", "shifts.shift_table_markdown({v}, [SH0])", ["[]", '"x"'])

# ------------------------------------------------------------------ laws of the sampler
bad("position_law", "batch", "laws.position_law(T, {v})", ['"x"', "BN_big"])
bad("position_law", "task", "laws.position_law({v}, B)", ['"x"'])
bad("noise_position_law", "n_bins", "laws.noise_position_law(TN, BN, n_bins={v})",
    ["0", "True", '"10"', "10**9"])
bad("filler_law", "probs", "laws.filler_law(T, B, probs={v})",
    ['"x"', "torch.ones(5)", "torch.full((20,), nan)"])
bad("trigger_law", "batch", "laws.trigger_law(T, {v})", ['"x"'])
bad("output_law", "ood", "laws.output_law(T, B, ood={v})", ['"no"', "1"])
bad("target_law", "alpha", "laws.target_law(TN, BN, alpha={v})", ["nan", "1.5", '"x"'])
bad("check_structure", "ood", "laws.check_structure(T, B, ood={v})", ['"no"'])
bad("filler_exposure", "task", "laws.filler_exposure({v})", ['"x"', "None"])
bad("overlap_probability", "seq_len", "laws.overlap_probability({v})",
    ["3", "True", '"256"', "256.0"])

# ------------------------------------------------------------------ exercise self-checks
bad("checks.task", "seed", "icl.checks.task.ood_exposure(laws.filler_exposure, seed={v})",
    ["-1", "True", '"x"'])
bad("checks.task", "strict", "icl.checks.task.recover_output(bayes.recover_output, strict={v})",
    ['"yes"', "1"])
bad("checks.task", "n_cases", "icl.checks.task.overlap_probability(None, n_cases={v})",
    ["0", "10**6", "2.5"])
bad("checks.generalization", "seed",
    "icl.checks.generalization.alpha_shift_limit(None, seed={v})", ["-1", "True", '"x"'])
bad("checks.generalization", "n_cases",
    "icl.checks.generalization.freeze_value(None, n_cases={v})", ["0", "2.5"])
bad("checks.generalization", "strict",
    "icl.checks.generalization.context_free_risk(None, strict={v})", ['"yes"', "1"])
bad("checks.reproduction", "seed", "icl.checks.reproduction.rate_slope(None, seed={v})",
    ["-1", "True"])
bad("checks.reproduction", "n_cases",
    "icl.checks.reproduction.float32_stall(None, n_cases={v})", ["0", "10**6"])
bad("checks.reproduction", "strict",
    "icl.checks.reproduction.softmax_limit(None, strict={v})", ['"yes"'])
bad("checks.classification", "batch_size",
    "icl.checks.classification.prediction(None, batch_size={v})", ["0", "2.5"])
bad("checks.classification", "seed",
    "icl.checks.classification.bayes_accuracy(None, seed={v})", ["-1", '"x"'])
bad("checks.classification", "strict",
    "icl.checks.classification.squared_loss_scale(None, strict={v})", ['"yes"', "1"])
bad("float32_stall", "lr", "dynamics.float32_stall(TN, {v})", ["0", "-0.1", "nan", '"x"'])
bad("float32_stall", "task", "dynamics.float32_stall({v}, 0.1)", ["T", '"x"'])
bad("squared_loss_scale", "r", "icl.classification.theory.squared_loss_scale({v})",
    ["0", "-1", "nan", '"x"'])
bad("checks.bayes", "seed", "icl.checks.bayes.bayes_risk(icl.bayes_risk, seed={v})",
    ["-1", "True", '"x"'])
bad("checks.bayes", "strict", "icl.checks.bayes.plugin_bound(None, strict={v})", ['"yes"', "1"])
bad("checks.bayes", "n_cases", "icl.checks.bayes.two_noise_risk(None, n_cases={v})",
    ["0", "10**6", "2.5"])
bad("checks.construction", "seed", "icl.checks.construction.best_split(None, seed={v})",
    ["-1", "True", '"x"'])
bad("checks.construction", "strict", "icl.checks.construction.plugin_limit(None, strict={v})",
    ['"yes"', "1"])
bad("checks.construction", "batch_size",
    "icl.checks.construction.construction_scores(None, batch_size={v})", ["0", "True"])
bad("checks.construction", "n_cases",
    "icl.checks.construction.lambda_for_excess(None, n_cases={v})", ["0", "10**6", "2.5"])
bad("checks.training", "seed", "icl.checks.training.final_lambdas(None, seed={v})",
    ["-1", "True", '"x"'])
bad("checks.training", "strict", "icl.checks.training.plain_gd(None, strict={v})",
    ['"yes"', "1"])
bad("checks.training", "n_cases", "icl.checks.training.growth_ratio(None, n_cases={v})",
    ["0", "10**6", "2.5"])
bad("categorical_entropy", "probs", "bayes.categorical_entropy({v})",
    ["[0.5, 0.6]", "[]", '["a"]', "[nan, 1.0]", "[[0.5, 0.5]]"])
bad("quadratic_hoeffding_bound", "alpha", "finite.quadratic_hoeffding_bound({v}, 100, 0.05)",
    ["0.0", "1.0", "nan", '"0.2"'])
bad("quadratic_hoeffding_bound", "m", "finite.quadratic_hoeffding_bound(0.2, {v}, 0.05)",
    ["0", "2.5", '"100"'])
bad("checks.lsa", "seed", "icl.checks.lsa.step_loss(None, seed={v})", ["-1", "True", '"x"'])
bad("checks.lsa", "strict", "icl.checks.lsa.prior_scale_step(None, strict={v})", ['"yes"', "1"])
bad("checks.lsa", "n_cases", "icl.checks.lsa.noiseless_query_optimum(None, n_cases={v})",
    ["0", "10**6", "2.5"])
bad("checks.transformer", "seed", "icl.checks.transformer.parameter_count(None, seed={v})",
    ["-1", "True", '"x"'])
bad("checks.transformer", "n_sequences",
    "icl.checks.transformer.attention_only(None, n_sequences={v})", ["0", "10**7", "2.5"])
bad("checks.transformer", "strict",
    "icl.checks.transformer.noise_averaged_loss(None, strict={v})", ['"yes"', "1"])
bad("checks.questions", "seed", "icl.checks.questions.posterior_predictive(None, seed={v})",
    ["-1", "True", '"x"'])
bad("checks.questions", "n_cases",
    "icl.checks.questions.sign_step_fraction(None, n_cases={v})", ["0", "10**6", "2.5"])
bad("checks.questions", "strict",
    "icl.checks.questions.one_occurrence_risk(None, strict={v})", ['"yes"', "1"])
bad("chi_square", "counts", "laws.chi_square({v}, [0.5, 0.5])",
    ['"x"', "[1, 2, 3]", "[-1, 2]", "[nan, 1]"])
bad("chi_square", "probs", "laws.chi_square([1, 2], {v})", ['"x"', "[nan, 0.5]"])
bad("token_usage", "batch", "laws.token_usage(T, {v})", ['"x"'])

# ------------------------------------------------------------------ rates
bad("fit_rate", "steps", "icl.fit_rate({v}, [1.0, 0.5, 0.2, 0.1], 0.0)", ['"x"', "[0, 1]"])
bad("fit_rate", "bayes", "icl.fit_rate([0, 1, 2, 3], [1.0, 0.5, 0.2, 0.1], {v})",
    ["nan", '"x"', "True"])
bad("fit_rate", "min_excess", "icl.fit_rate([0, 1, 2, 3], [1.0, 0.5, 0.2, 0.1], 0.0, "
    "min_excess={v})", ['"x"', "nan"])
bad("fit_rate", "window", "icl.fit_rate([0, 1, 2, 3], [1.0, 0.5, 0.2, 0.1], 0.0, "
    "window={v})", ['"x"', "(0, nan)", "(0,)"])
bad("RateFit.agrees_with", "n_sigma", "FIT.agrees_with(-1.0, n_sigma={v})", ["nan", '"x"'])
bad("pick", "full", "icl.pick({v}, 1)", ["1"])  # any value is allowed: a control case

# ------------------------------------------------------------------ figures and symbolic
bad("viz.task.draw_sequences", "n", "vizt.draw_sequences(T, B, n={v})",
    ["0", '"3"', "True", "10**6"])
bad("viz.task.draw_sequences", "batch", "vizt.draw_sequences(T, {v})", ['"x"'])
bad("viz.task.roles_markdown", "task", "vizt.roles_markdown({v})", ['"x"'])
bad("viz.task.role_codes", "batch", "vizt.role_codes(T, {v})", ['"x"'])
bad("viz.explorer.construction_state", "Lambda", "vize.construction_state(TN, {v})",
    ['"x"', "nan", "True"])
bad("viz.explorer.construction_state", "attention",
    "vize.construction_state(TN, 1.0, attention={v})", ['"x"'])
bad("viz.explorer.construction_state", "task", "vize.construction_state({v}, 1.0)", ['"x"'])
bad("viz.explorer.explorer_state", "lr", "vize.explorer_state(TN, {v})",
    ["0.0", "-1.0", "nan", '"x"', "True", "100.0"])
bad("viz.explorer.explorer_state", "attention", "vize.explorer_state(TN, 0.1, {v})", ['"x"'])
bad("viz.explorer.explorer_state", "family", "vize.explorer_state(TN, 0.1, family={v})",
    ['"x"', "None"])
bad("viz.explorer.explorer_state", "sizes", "vize.explorer_state(TN, 0.1, sizes={v})",
    ['"x"', "{'steps': 3}"])
bad("viz.explorer.explorer_state", "task", "vize.explorer_state({v}, 0.1)", ['"x"'])
bad("viz.explorer.ExplorerSizes", "steps", "vize.ExplorerSizes(steps={v})",
    ["0", "10**9", "True", '"3"'])
bad("viz.explorer.ExplorerSizes", "batch_size", "vize.ExplorerSizes(batch_size={v})",
    ["0", "10**9"])
bad("viz.explorer.ExplorerSizes", "lambda_max", "vize.ExplorerSizes(lambda_max={v})",
    ["0.0", "nan", "inf"])
bad("viz.explorer.ExplorerSizes", "seed", "vize.ExplorerSizes(seed={v})", ["-1", "1.5"])
bad("viz.explorer.draw_explorer_state", "state", "vize.draw_explorer_state({v})",
    ['"x"', "{'alpha': 0.2}"])
bad("viz.style.band", "runs", "style.band(AX, [0, 1, 2], {v})",
    ["np.ones((2, 4))", '"x"'])
bad("viz.style.band", "spread", "style.band(AX, [0, 1, 2], np.ones((2, 3)), spread={v})",
    ['"x"'])
bad("viz.training.plot_training_curves", "histories",
    "vizr.plot_training_curves({v}, 0.2)", ['"x"'])
bad("symbolic.bayes.bayes_optimal_derivation", "n_other",
    "symb.bayes_optimal_derivation(n_other={v})", ["0", "True", '"2"'])
bad("symbolic.bayes.planted_variant_derivation", "k", "symb.planted_variant_derivation(k={v})",
    ["0", '"x"', "True"])
bad("symbolic.bayes.plugin_excess_function", "quadratic",
    "symb.plugin_excess_function(quadratic={v})", ['"yes"'])
bad("symbolic.bayes.bayes_risk_function", "alpha", "symb.bayes_risk_function()({v})",
    ["nan", "1.5"])
bad("symbolic.construction.tiny_example", "noisy", "symc.tiny_example(noisy={v})", ['"yes"'])
bad("symbolic.construction.construction_derivation", "attention",
    "symc.construction_derivation(attention={v})", ['"x"'])
bad("symbolic.construction.construction_derivation", "kappa",
    "symc.construction_derivation(kappa={v})", ["2", "True"])


# ================================================================== fixtures
SETUP = r'''
import math
import warnings
import numpy as np
import torch
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import icl
from icl import (bayes, closed_forms, constants, construction, dynamics, finite, laws,
                 losses, montecarlo, roles, shifts)
from icl import softmax_construction as smc
from icl import standard_transformer as stt
from icl import task as task_mod
from icl import families, sweeps
import importlib
train_mod = importlib.import_module("icl.training")
from icl.viz import explorer as vize
from icl.viz import style
from icl.viz import task as vizt
from icl.viz import training as vizr
from icl.symbolic import bayes as symb
from icl.symbolic import construction as symc
import icl.checks.bayes
import icl.checks.classification
import icl.checks.construction
import icl.checks.generalization
import icl.checks.lsa
import icl.checks.questions
import icl.checks.reproduction
import icl.checks.task
import icl.checks.training
import icl.checks.transformer

nan, inf = float("nan"), float("inf")
T = icl.RecallTask(vocab_size=20, seq_len=16)
TN = icl.RecallTask(vocab_size=20, seq_len=16, alpha=0.2)
B = T.sample(8, seed=0)
BN = TN.sample(8, seed=0)
B_big = icl.RecallTask(vocab_size=30, seq_len=16, alpha=0.2).sample(8, seed=0)
BN_big = icl.RecallTask(vocab_size=30, seq_len=16).sample(8, seed=0)
XI = torch.zeros(8, 20)
M = icl.OneLayerTransformer(T, d_model=40)
MN = icl.OneLayerTransformer(TN, d_model=40)
MR = icl.OneLayerTransformer(TN, family="reparam", d_model=40)
H0 = icl.train(MR, TN, 1, 0.1, batch_size=8, eval_size=16)
SH0 = shifts.standard_shifts(T)[0]
FIT = icl.fit_rate([0, 1, 2, 3], [1.0, 0.5, 0.2, 0.1], 0.0)
AX = plt.figure().gca()
ST2 = [stt.StandardTransformer(T, n_layers=1, d_model=8, n_heads=1, seed=s) for s in (0, 1)]


def excess_gap_ok(task, gap):
    """expected_excess with every wrong logit ``gap`` above y's: finite and right."""
    b = task.sample(4, seed=0)
    xi = torch.full((4, task.vocab_size), gap, dtype=torch.float64)
    xi[torch.arange(4), b.outputs] = 0.0
    got = losses.expected_excess(task, xi, b.outputs)
    N, a = task.vocab_size, task.alpha
    # exact: logsumexp(xi) - (1-a) xi_y - a xi_tau - H_b(a), all but y at `gap`
    lse = gap + math.log((N - 1) + math.exp(-gap))
    want = lse - (1 - a) * 0.0 - a * (gap if a > 0 else 0.0) - icl.bayes_risk(a)
    return bool(torch.isfinite(got).all()) and bool(
        torch.allclose(got, torch.full_like(got, want), rtol=1e-12))


def cf_minus_1000_ok():
    task = icl.RecallTask(alpha=0.2)
    got = icl.closed_form_loss(task, -1000.0)
    g, N = task.gamma, task.vocab_size
    want = 1000.0 + math.log(N - 2) + math.log1p((1 + math.exp(g)) * math.exp(-1000.0) / (N - 2))
    want -= task.alpha * g
    return math.isfinite(got) and abs(got - want) < 1e-9 * want


def construction_big_lambda():
    """float32 construction at Lambda = 1e9: gamma + Lambda rounds to Lambda."""
    net = icl.construct_model(TN, 1e9, d_model=40, dtype=torch.float32)
    return net(BN.tokens)


def float32_stall():
    """float32 normalised GD past Lambda ~ 19.5: the gradient rounds to zero."""
    net = icl.OneLayerTransformer(TN, family="reparam", d_model=40)
    with torch.no_grad():
        net.Lambda.fill_(19.0)
    return icl.train(net, TN, 20, 0.5, batch_size=8, eval_size=16, eval_every=5)
'''


# ================================================================== worker
def _classify_exception(exc: BaseException, case: Case) -> tuple[str, str]:
    msg = f"{type(exc).__name__}: {exc}"
    text = str(exc)
    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError)
        and ("allocate" in text or "out of memory" in text.lower())
    ):
        return "allocation", msg
    if case.kind == "bad" and isinstance(exc, (ValueError, TypeError, IndexError)):
        if case.param in text:
            return "clear", msg
    return "obscure", msg


def worker(start: int, mem_gib: float) -> None:
    import resource
    import warnings

    limit = int(mem_gib * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    ns: dict = {}
    exec(SETUP, ns)
    print("READY", flush=True)
    for i in range(start, len(CASES)):
        case = CASES[i]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                value = eval(case.code, ns)
            except BaseException as exc:  # noqa: BLE001 - the census records everything
                outcome, msg = _classify_exception(exc, case)
            else:
                if case.kind == "numeric":
                    outcome = "correct" if value is True else "wrong"
                    msg = repr(value)[:200]
                elif case.kind == "warn":
                    hits = [w for w in caught if "float64" in str(w.message)]
                    outcome = "clear" if hits else "silent"
                    msg = f"{hits[0].category.__name__}: {hits[0].message}" if hits else ""
                else:
                    outcome, msg = "silent", f"returned {repr(value)[:150]}"
        print(json.dumps({"i": i, "outcome": outcome, "message": msg[:400]}), flush=True)


# ================================================================== driver
def run(timeout: float, mem_gib: float, startup: float = 300.0) -> list[dict]:
    results: list[dict] = []
    i = 0
    while i < len(CASES):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(i), "--mem-gib", str(mem_gib)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OMP_NUM_THREADS": "1", "ICL_PROGRESS": "0"},
        )
        fd = proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf, lines = b"", []
        ready, deadline = False, time.monotonic() + startup
        while True:
            if not lines:  # read the pipe unbuffered: select() sees every pending byte
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(timeout=left):  # out of time
                    proc.kill()
                    proc.wait()
                    if not ready:
                        raise RuntimeError("the worker did not start")
                    results.append({"i": i, "outcome": "hang", "message": f"> {timeout:g} s"})
                    i += 1
                    break
                chunk = os.read(fd, 65536)
                if not chunk:  # the worker died (e.g. killed by the memory cap)
                    proc.wait()
                    if not ready:
                        raise RuntimeError("the worker died before starting")
                    results.append({"i": i, "outcome": "allocation",
                                    "message": f"worker died (exit {proc.returncode})"})
                    i += 1
                    break
                buf += chunk
                *complete, buf = buf.split(b"\n")
                lines += [c.decode() for c in complete]
                continue
            line = lines.pop(0)
            if line.startswith("READY"):
                ready, deadline = True, time.monotonic() + timeout
                continue
            rec = json.loads(line)
            results.append(rec)
            i = rec["i"] + 1
            deadline = time.monotonic() + timeout
            if i >= len(CASES):
                proc.wait()
                break
        sel.close()
        proc.stdout.close()
    return results


def table(results: list[dict]) -> str:
    counts = Counter(r["outcome"] for r in results)
    bad_n = sum(1 for r in results if CASES[r["i"]].kind == "bad")
    lines = [
        f"{len(results)} calls ({bad_n} bad inputs, "
        f"{len(results) - bad_n} valid extreme inputs)",
        "",
        "| outcome | count |",
        "|---|---|",
    ]
    lines += [f"| {o} | {counts.get(o, 0)} |" for o in OUTCOMES]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mem-gib", type=float, default=3.0, help="memory cap of a worker (GiB)")
    ap.add_argument("--timeout", type=float, default=20.0, help="time limit per call (s)")
    ap.add_argument("--list", action="store_true", help="print every case")
    ap.add_argument("--only", choices=OUTCOMES, default=None, help="print cases with this outcome")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.worker, args.mem_gib)
        return
    t0 = time.time()
    results = run(args.timeout, args.mem_gib)
    if args.list or args.only:
        for r in results:
            if args.only and r["outcome"] != args.only:
                continue
            c = CASES[r["i"]]
            print(f"[{r['outcome']:>10}] {c.label} ({c.param}): {c.code}\n{'':13}{r['message']}")
        print()
    print(table(results))
    print(f"\n({time.time() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{**r, "label": CASES[r["i"]].label, "param": CASES[r["i"]].param,
                        "code": CASES[r["i"]].code} for r in results], fh, indent=1)


if __name__ == "__main__":
    main()
