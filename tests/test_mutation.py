"""Tests that can fail (issue 8): every comparison path of intflow, of its benches and of the
test helpers is fed one corrupted element — an expected value, or an RTL output word — and
must report the failure with that element's index.

Paths: ``intflow run --compare`` (``cli._compare``), ``intflow check`` (``check.check``,
``format_rows``), ``intflow build``'s RTL check (``rtl_check.rtl_cycles``), the engine harness
(``hw/engines/tests/harness.check``, random and edge-vector runs), the multi-stream engine
bench (``sim/amaranth_bench.check_engine``), the cocotb scoreboard (``sim/check_stream.py``,
``sim/stream.Scoreboard``), and the test helpers (``ortcheck.assert_exact``,
``test_fuzz.compare``, ``test_network_rtl.assert_rtl_equals_reference``,
``test_fuzz_rtl.assert_rtl_equal``). ``sim/network_tb.py`` compares nothing itself: it returns
the words, which the paths above compare.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

import intflow
from intflow import cli, rtl_check
from intflow.compiler import reference
from intflow.compiler.dataflow import model as dataflow_model
from intflow.compiler.edge_vectors import KINDS

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "models" / "digits_mlp_qdq.onnx"


def corrupt(a: np.ndarray, index) -> np.ndarray:
    """A copy of ``a`` with the element at ``index`` changed by one step (staying in range
    for codes at their maximum: one step down there)."""
    a = np.array(a, copy=True)
    flat = a.reshape(-1)
    k = np.ravel_multi_index(index, a.shape) if isinstance(index, tuple) else index
    flat[k] = flat[k] - 1 if flat[k] == np.iinfo(np.uint8).max else flat[k] + 1
    return a


@pytest.fixture(scope="module")
def mlp():
    d = intflow.compile(MODEL)
    x = np.load(ROOT / "examples" / "data" / "digits_mlp_qdq.npz")["pixels"][:3]
    return d, {"pixels": x}, d.run({"pixels": x})


# ---- the CLI and the library ------------------------------------------------------------------
def test_run_compare_names_the_index(mlp, capsys):
    d, inputs, outs = mlp
    assert cli._compare(str(MODEL), inputs, outs) == 0  # unmutated: equal
    bad = {"logits": corrupt(outs["logits"], (1, 4))}
    assert cli._compare(str(MODEL), inputs, bad) == 1
    out = capsys.readouterr().out
    assert "first difference at flat index 14" in out, out


def test_check_names_the_index(mlp, monkeypatch, capsys):
    from intflow.check import check, format_rows
    d, inputs, outs = mlp
    real = reference.run

    def mutated(g, xs):
        return {k: corrupt(v, (2, 7)) for k, v in real(g, xs).items()}

    monkeypatch.setattr(reference, "run", mutated)
    rows, ok = check(str(MODEL), d.graph, inputs)
    assert not ok
    assert "first at flat index 27" in rows[0]["first difference"], rows[0]
    assert "ORT_ENABLE_ALL (int8 flag 1) differs at logits" in format_rows(rows)
    # and through the command line (random inputs: the first corrupted element is 27)
    capsys.readouterr()
    rc = cli.main(["check", str(MODEL), "--samples", "3"])
    out = capsys.readouterr().out
    assert rc == 1 and "flat index 27" in out, out


def test_build_rtl_check_names_the_index(monkeypatch, capsys):
    """``intflow build``'s RTL check (``rtl_check.rtl_cycles``) on a corrupted RTL output word."""
    import intflow.sim.network as simnet
    from intflow.compiler.dataflow.estimate import estimate
    d = intflow.compile(MODEL)
    df = d.dataflow()
    real = simnet.run_graph
    seen = {}

    def mutated(*a, **kw):
        outs, res = real(*a, **kw)
        seen.update(outs)
        return {k: corrupt(v, (1, 0, 3)) for k, v in outs.items()}, res

    monkeypatch.setattr(simnet, "run_graph", mutated)
    _, ok = rtl_check.rtl_cycles(d, df, estimate(df, "ice40"), samples=2)
    out = capsys.readouterr().out
    assert ok is False and "DIFFER" in out
    (name,) = seen
    assert re.search(rf"{re.escape(name)}: 1 of \d+ elements differ; first at \(1, 0, 3\)",
                     out), out


# ---- the engine benches -----------------------------------------------------------------------
def _engine():
    from intflow.hw.engines.tests.harness import example_engines
    return example_engines("digits_mlp_qdq", "MVAU")[-1]


@pytest.mark.parametrize("run, index, label", [
    ("random", (1, 3), "sample 1 word 3"),
    ("edge", (3, 2), f"sample 3 (edge vector {KINDS[3]}) word 2"),
])
def test_engine_harness_names_sample_and_word(monkeypatch, run, index, label):
    from intflow.hw.engines.tests import harness
    e, streams = _engine()
    real = harness.run_engine
    edges = len(KINDS)

    def mutated(engine, xs):
        ys = real(engine, xs)
        hit = (len(xs[0]) == edges) == (run == "edge")
        return [corrupt(ys[0], index)] + ys[1:] if hit else ys

    monkeypatch.setattr(harness, "run_engine", mutated)
    x = harness.random_codes(np.random.default_rng(0), streams[e.inputs[0]].dtype,
                             (2, streams[e.inputs[0]].length))
    with pytest.raises(AssertionError, match=re.escape(label)):
        harness.check(e, streams, x)


def test_amaranth_bench_names_the_word(monkeypatch):
    from intflow.sim.amaranth_bench import check_engine
    e, streams = _engine()
    real = dataflow_model.run_engine

    def mutated(engine, xs):
        ys = real(engine, xs)
        return [corrupt(ys[0].reshape(-1), 12).reshape(ys[0].shape)] + ys[1:]

    monkeypatch.setattr(dataflow_model, "run_engine", mutated)
    n = streams[e.outputs[0]].length
    x = np.random.default_rng(1).integers(0, 100, (2, streams[e.inputs[0]].length))
    with pytest.raises(AssertionError, match=rf"first at 12 \(inference {12 // n}, position "
                                             rf"{12 % n}\)"):
        check_engine(e, streams, [x])


class Passthrough(wiring.Component):
    """One register stage, o = i (the smallest stream DUT for the cocotb scoreboard)."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(unsigned(8))),
                          "o": Out(stream.Signature(unsigned(8)))})

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


@pytest.mark.simulator("icarus")
def test_cocotb_scoreboard_names_the_word(tmp_path):
    from intflow.sim.runner import CocotbFailure, run_stream_case
    words = list(range(40))
    res = run_stream_case(Passthrough(), words, words, build_dir=tmp_path / "ok",
                          valid_pause=0.3, ready_pause=0.3)
    assert res.words == 40
    with pytest.raises(CocotbFailure, match=r"1 mismatches of 40; first: word 17: got 0x11, "
                                            r"expected 0x12"):
        run_stream_case(Passthrough(), words, corrupt(np.array(words), 17).tolist(),
                        build_dir=tmp_path / "bad", valid_pause=0.3, ready_pause=0.3)


# ---- the test helpers -------------------------------------------------------------------------
def test_ortcheck_assert_exact_names_the_index():
    from ortcheck import assert_exact
    want = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert assert_exact(want.copy(), want) == 12
    with pytest.raises(AssertionError, match=r"1/12 elements differ; first at flat \[6\]"):
        assert_exact(corrupt(want, (1, 2)), want, "y")


def test_fuzz_compare_names_the_index(monkeypatch):
    import test_fuzz

    from intflow import ort
    real = ort.run

    def mutated(model, feeds, **kw):
        return {k: corrupt(v, 5) for k, v in real(model, feeds, **kw).items()}

    # compare() feeds "x" and reads "y": a fuzz-shaped model
    fuzz = sorted((ROOT / "tests" / "regressions").glob("fuzz-*.onnx"))
    if not fuzz:
        pytest.fail("no fuzz regression model to run compare() on")
    x = np.load(fuzz[0].with_suffix(".npz"))["x"]
    test_fuzz.compare(str(fuzz[0]), x)  # unmutated: passes
    monkeypatch.setattr(ort, "run", mutated)
    with pytest.raises(AssertionError, match=r"first at flat 5:"):
        test_fuzz.compare(str(fuzz[0]), x)


def test_fuzz_compare_plan_check_names_the_index(monkeypatch):
    import test_fuzz
    fuzz = sorted((ROOT / "tests" / "regressions").glob("fuzz-*.onnx"))
    real = dataflow_model.run

    def mutated(df, g, feeds):
        return {k: corrupt(v, 2) for k, v in real(df, g, feeds).items()}

    monkeypatch.setattr(dataflow_model, "run", mutated)
    for model in fuzz:  # the first whose plan exists (others stop at the reference check)
        x = np.load(model.with_suffix(".npz"))["x"]
        try:
            test_fuzz.compare(str(model), x)
        except AssertionError as e:
            assert "dataflow plan differs from the reference at 2" in str(e)
            return
    pytest.fail("no fuzz regression model with a dataflow plan")


def test_network_rtl_helper_names_the_index(mlp):
    from test_network_rtl import assert_rtl_equals_reference
    d, inputs, _ = mlp
    feeds = reference.to_codes(d.graph, inputs)
    want = reference.run_codes(d.graph, feeds)
    (o,) = d.graph.outputs
    got = {o.tensor: corrupt(want[o.tensor], (2, 0, 9))}
    with pytest.raises(AssertionError, match=r"first at \(2, 0, 9\)"):
        assert_rtl_equals_reference(d, got, want, "mutated")


def test_fuzz_rtl_helper_names_the_index():
    from test_fuzz_rtl import assert_rtl_equal
    want = np.arange(24).reshape(3, 8)
    assert_rtl_equal(want.copy(), want, ["a", "b", "c"], "")
    with pytest.raises(AssertionError, match=r"first at \(2, 5\) \(c\)"):
        assert_rtl_equal(corrupt(want, (2, 5)), want, ["a", "b", "c"], "")
