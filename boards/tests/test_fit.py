"""Foldings chosen to fit a device, from the cost model (no tool runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import intflow
from intflow.boards import get_target
from intflow.boards.fit import device_budget, suggest_fold
from intflow.compiler.dataflow.estimate import estimate

MLP = Path(__file__).resolve().parents[2] / "examples" / "models" / "digits_mlp_qdq.onnx"
# what yosys + nextpnr used for the digits MLP at its fastest folding on ECP5 (37 multipliers)
MEASURED = {"LUT": 5587, "FF": 2145, "DSP": 41, "BRAM": 0}


@pytest.fixture(scope="module")
def mlp():
    return intflow.compile(MLP, fold="auto")


def test_device_budget_fits_the_estimate(mlp):
    t = get_target("ulx3s-25f")
    f = device_budget(mlp.graph, t)
    assert f is not None and f.fits(t.available)
    mlp.max_multipliers = f.max_multipliers
    try:
        est = estimate(mlp.dataflow(), t.family)
    finally:
        mlp.max_multipliers = None
    assert est["total"]["multipliers"] == f.multipliers <= f.max_multipliers
    assert est["total"]["DSP"] <= t.available["DSP"]
    fastest = estimate(mlp.dataflow(), t.family)
    assert fastest["total"]["DSP"] > t.available["DSP"]  # so the budget did something
    assert est["initiation_interval"] >= fastest["initiation_interval"]


def test_suggestion_after_an_overflow(mlp):
    t = get_target("ulx3s-25f")  # 28 DSP blocks; the fastest MLP used 41
    msg = suggest_fold(mlp.dataflow(), t, MEASURED)
    m = re.match(r"try --fold auto --max-multipliers (\d+) \(estimated .*DSP (\d+)/28", msg)
    assert m, msg
    assert int(m.group(1)) < 37 and int(m.group(2)) <= 28


def test_no_folding_fits_says_so(mlp):
    t = get_target("ice40-up5k")
    huge = {"LUT": 9000, "FF": 9000, "DSP": 60, "BRAM": 40}
    msg = suggest_fold(mlp.dataflow(), t, huge)
    assert msg.startswith("no folding fits") and "larger device" in msg
