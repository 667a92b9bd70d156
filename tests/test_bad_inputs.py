"""Every bad input of the census is refused with a clear error naming its parameter.

The table of calls is the one of ``benchmarks/bad_inputs.py`` (a string for a number, NaN,
``α = 1``, negative and huge sizes, bools for integers, tensors of the wrong shape or
dtype, objects of the wrong type, for every public function of the recall package). Here
each call runs in-process and must raise ``ValueError``/``TypeError``/``IndexError`` whose
message names the parameter; the huge sizes must be refused *before* anything is allocated
(a call that tried would take seconds and gigabytes, not microseconds). The ``numeric``
cases (valid but extreme inputs) must return the exact value, the ``warn`` cases must emit
a :class:`icl.validate.PrecisionWarning` naming float64.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

from icl.validate import PrecisionWarning

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bad_inputs", ROOT / "benchmarks" / "bad_inputs.py")
census = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bad_inputs", census)  # dataclasses look their module up
_spec.loader.exec_module(census)

#: calls the census keeps as controls or that are accepted on purpose (with the reason)
ACCEPTED = {
    "icl.pick(1, 1)": "pick takes any two values: a control case of the census",
    "vizt.draw_sequences(T, B, n=10**6)": "n above the batch size draws the whole batch",
}

BAD = [c for c in census.CASES if c.kind == "bad" and c.code not in ACCEPTED]
NUMERIC = [c for c in census.CASES if c.kind == "numeric"]
WARN = [c for c in census.CASES if c.kind == "warn"]


@pytest.fixture(scope="module")
def ns():
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(census.SETUP, namespace)
    yield namespace
    namespace["plt"].close("all")


def test_the_census_is_large():
    assert len(census.CASES) >= 300
    assert len({c.label for c in census.CASES}) >= 100  # public functions and methods


@pytest.mark.parametrize("case", BAD, ids=[f"{c.label}[{c.code}]" for c in BAD])
def test_bad_input_is_refused_clearly(ns, case):
    with pytest.raises((ValueError, TypeError, IndexError)) as info:
        eval(case.code, ns)
    assert case.param in str(info.value), f"{case.code}: {info.value}"


@pytest.mark.parametrize("case", NUMERIC, ids=[c.code for c in NUMERIC])
def test_extreme_valid_input_gives_the_exact_value(ns, case):
    assert eval(case.code, ns) is True


@pytest.mark.parametrize("case", WARN, ids=[c.code for c in WARN])
def test_unrepresentable_float32_quantity_warns(ns, case):
    with pytest.warns(PrecisionWarning, match="float64"):
        eval(case.code, ns)


def test_invalid_type_error_is_both_type_error_and_value_error(ns):
    with pytest.raises(TypeError):
        ns["icl"].RecallTask(alpha="0.1")
    with pytest.raises(ValueError):
        ns["icl"].RecallTask(alpha="0.1")


def test_limits_can_be_raised_by_keyword(ns):
    icl = ns["icl"]
    task = ns["T"]
    with pytest.raises(ValueError, match="max_bytes"):
        icl.task.sample_sequences(task, 1000, seed=0, max_bytes=1000)
    assert len(icl.task.sample_sequences(task, 1000, seed=0, max_bytes=10**6)) == 1000
    with pytest.raises(ValueError, match="max_steps"):
        ns["dynamics"].plain_gd_trajectory(ns["TN"], 0.1, 100, max_steps=10)
    assert len(ns["dynamics"].plain_gd_trajectory(ns["TN"], 0.1, 100, max_steps=100)) == 101
    with pytest.raises(ValueError, match="max_samples"):
        ns["montecarlo"].mc_oracle_risk(ns["TN"], 100, seed=0, max_samples=10)
    with pytest.raises(ValueError, match="max_bytes"):
        icl.OneLayerTransformer(task, d_model=400, max_bytes=10**5)
    assert icl.OneLayerTransformer(task, d_model=400, max_bytes=10**7).d_model == 400


def test_batch_indexing_follows_python(ns):
    batch = ns["BN"]
    assert len(batch[0]) == 1 and len(batch[-1]) == 1
    assert (batch[-1].tokens == batch.tokens[-1:]).all()
    assert (batch[-8].tokens == batch.tokens[:1]).all()
    with pytest.raises(IndexError, match="index"):
        batch[-9]
