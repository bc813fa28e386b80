"""Networks with several inputs and outputs (``hw/network.py``: one stream port per graph input
and output, ``i0``, ``i1``, ... / ``o0``, ``o1``, ...; ``i``/``o`` kept for single-IO designs),
their ``ports.json``, the cocotb bench driving and collecting every port with its own random
stalls, ``intflow run --engine icarus`` writing every output; ``intflow build`` refusing them
(the UART wrapper has one stream each way); and ``intflow run --engine board``'s port errors.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import intflow
from intflow import cli
from intflow.compiler import reference
from intflow.hw.engines.common import payload_shape
from intflow.hw.network import TOP, Network
from intflow.sim.amaranth_bench import from_bits, run_streams, to_bits
from intflow.sim.network import compare_taps, run_graph, simulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qmodels import GraphBuilder, QParams, add, concat, gemm  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_icarus = pytest.mark.simulator("icarus")


def two_io_model(path: Path) -> Path:
    """Inputs a, b (8 each): s = a + b -> h = relu(fc(s)) -> head1 = fc(h);
    head2 = fc(concat(h, b)): a join of two inputs, a fork, two heads."""
    rng = np.random.default_rng(0)
    b = GraphBuilder(batch="N")
    xa = b.input((1, 8), QParams(0.05, 128, np.uint8), name="a")
    xb = b.input((1, 8), QParams(0.04, 120, np.uint8), name="b")
    s = add(b, xa, xb, QParams(0.08, 125, np.uint8))
    h = gemm(b, s, rng.integers(-60, 60, (8, 12)).astype(np.int8), 0.01, 0,
             rng.integers(-300, 300, 12), QParams(0.1, 100, np.uint8), activation="Relu")
    y1 = gemm(b, h, rng.integers(-60, 60, (12, 3)).astype(np.int8), 0.01, 0, None,
              QParams(0.1, 128, np.uint8))
    c = concat(b, [h, xb], QParams(0.1, 110, np.uint8), axis=1)
    y2 = gemm(b, c, rng.integers(-60, 60, (20, 5)).astype(np.int8), 0.01, 0, None,
              QParams(0.12, 128, np.uint8))
    b.output(y1, name="head1")
    b.output(y2, name="head2")
    import onnx
    onnx.save(b.model(), path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return two_io_model(tmp_path_factory.mktemp("two_io") / "two_io.onnx")


def user_inputs(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.uniform(-6, 6, (n, 8)).astype(np.float32),
            "b": rng.uniform(-4, 5, (n, 8)).astype(np.float32)}


def test_ports_and_verilog_have_one_stream_per_graph_input_and_output(model):
    from amaranth.back import verilog
    d = intflow.compile(model)
    df = d.dataflow()
    net = Network(df)
    assert net.in_ports == ["i0", "i1"] and net.out_ports == ["o0", "o1"]
    ports = net.ports(d.graph)
    assert "input" not in ports and "output" not in ports  # single-IO keys only
    assert [p["onnx_name"] for p in ports["inputs"]] == ["a", "b"]
    assert [p["onnx_name"] for p in ports["outputs"]] == ["head1", "head2"]
    assert [p["elements_per_inference"] for p in ports["outputs"]] == [3, 5]
    text = verilog.convert(net, name=TOP)
    header = re.search(rf"module {TOP}\((.*?)\);", text, re.S).group(1)
    names = {p.strip() for p in header.split(",")}
    want = {"clk", "rst"} | {f"{p}__{s}" for p in ("i0", "i1", "o0", "o1")
                             for s in ("valid", "ready", "payload")}
    assert names == want
    for p in ports["inputs"] + ports["outputs"]:
        decl = re.search(rf"(input|output) \[(\d+):0\] {p['payload']};", text)
        assert int(decl.group(2)) + 1 == p["width"]
        assert sorted(p["order"]) == list(range(p["elements_per_inference"]))


def test_single_io_ports_keep_their_names():
    d = intflow.compile(EXAMPLES / "models" / "digits_mlp_qdq.onnx")
    net = Network(d.dataflow())
    net._MustUse__silence = True  # described, not elaborated
    ports = net.ports(d.graph)
    assert net.in_ports == ["i"] and net.out_ports == ["o"]
    assert ports["input"]["valid"] == "i__valid" and ports["output"]["payload"] == "o__payload"
    assert ports["inputs"] == [ports["input"]] and ports["outputs"] == [ports["output"]]


def test_multi_io_network_in_amaranth_simulator(model):
    """Both inputs fed and both outputs drained with independent gaps (no cocotb)."""
    d = intflow.compile(model)
    df = d.dataflow()
    feeds = reference.to_codes(d.graph, user_inputs(3))
    want = reference.run_codes(d.graph, feeds)
    ins = {}
    for port, h, s in zip(("i0", "i1"), d.graph.inputs, df.inputs):
        st = df.streams[s]
        ins[port] = to_bits(feeds[h.tensor].reshape(3, -1)[:, st.order],
                            payload_shape(st.dtype).width)
    run = run_streams(Network(df), ins, {"o0": 3 * 3, "o1": 3 * 5}, valid_rate=0.6,
                      ready_rate=0.6)
    for port, o, s, order in zip(("o0", "o1"), d.graph.outputs, df.outputs, df.output_orders):
        shape = payload_shape(df.streams[s].dtype)
        got = from_bits(run.words[port], shape)
        flat = np.empty_like(got.reshape(3, -1))
        flat[:, order] = got.reshape(3, -1)
        np.testing.assert_array_equal(flat.reshape(want[o.tensor].shape), want[o.tensor])


@needs_icarus
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.9])
def test_multi_io_rtl_equals_reference(model, stall):
    d = intflow.compile(model)
    df = d.dataflow()
    feeds = reference.to_codes(d.graph, user_inputs(4, seed=int(stall * 10)))
    want = reference.run_codes(d.graph, feeds)
    got, res = run_graph(df, d.graph, feeds, engine="icarus", stall=stall, seed=3, taps=True)
    for o in d.graph.outputs:
        np.testing.assert_array_equal(got[o.tensor], want[o.tensor])
    assert len(res.all_outputs) == 2 and not res.lost
    assert np.all(res.last_out > res.first_in)
    diffs, compared = compare_taps(df, d.graph, feeds, res)
    assert not diffs and compared >= 8, (diffs, compared)


@needs_icarus
def test_multi_io_reset_mid_stream_then_next_samples_are_right(model):
    d = intflow.compile(model)
    df = d.dataflow()
    feeds = reference.to_codes(d.graph, user_inputs(4, seed=5))
    want = reference.run_codes(d.graph, feeds)
    res = simulate(df, [feeds[h.tensor] for h in d.graph.inputs], engine="icarus", stall=0.3,
                   reset_at=(1, 4), out_shape=[d.graph.tensors[o.tensor].shape
                                               for o in d.graph.outputs])
    assert 1 in res.lost and set(res.lost) <= {0, 1, 2}, res.lost
    kept = [s for s in range(4) if s not in res.lost]
    assert kept[-1] == 3
    for o, y in zip(d.graph.outputs, res.all_outputs):
        np.testing.assert_array_equal(y[kept], want[o.tensor][kept])


@needs_icarus
def test_cli_run_icarus_writes_every_output(model, tmp_path, capsys):
    x = user_inputs(2, seed=7)
    np.savez(tmp_path / "x.npz", **x)
    rc = cli.main(["run", str(model), "--inputs", str(tmp_path / "x.npz"), "--outputs",
                   str(tmp_path / "y.npz"), "--engine", "icarus", "--stall", "0.3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    y = np.load(tmp_path / "y.npz")
    want = intflow.compile(model).run(x)
    assert sorted(y.files) == ["head1", "head2"]
    for k in want:
        np.testing.assert_array_equal(y[k], want[k])
        assert y[k].dtype == want[k].dtype


def test_compile_writes_multi_io_rtl(model, tmp_path):
    import json
    d = intflow.compile(model)
    d.save(tmp_path / "out", hardware=True)
    ports = json.loads((tmp_path / "out" / "rtl" / "ports.json").read_text())
    assert [p["valid"] for p in ports["inputs"]] == ["i0__valid", "i1__valid"]
    assert [p["tensor"] for p in ports["outputs"]] == [o.tensor for o in d.graph.outputs]


def test_build_rejects_multi_io_before_building(model, tmp_path, capsys):
    rc = cli.main(["build", str(model), "--board", "icebreaker", "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "one input and one output stream" in err and "has 2 and 2" in err, err
    assert not (tmp_path / "b").exists()


# ---- intflow run --engine board: the argument and port errors ----------------------------------
def _digits(tmp_path) -> tuple[str, Path]:
    x = np.load(EXAMPLES / "data" / "digits_mlp_qdq.npz")["pixels"][:1]
    np.save(tmp_path / "x.npy", x)
    return str(EXAMPLES / "models" / "digits_mlp_qdq.onnx"), tmp_path / "x.npy"


def test_run_board_port_that_cannot_open_is_exit_2(tmp_path, capsys):
    m, x = _digits(tmp_path)
    rc = cli.main(["run", m, "--inputs", str(x), "--outputs", str(tmp_path / "y.npz"),
                   "--engine", "board", "--port", str(tmp_path / "no-such-tty")])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot open serial port" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_run_board_needs_port_and_port_needs_board(tmp_path, capsys):
    m, x = _digits(tmp_path)
    base = ["run", m, "--inputs", str(x), "--outputs", str(tmp_path / "y.npz")]
    assert cli.main([*base, "--engine", "board"]) == 2
    assert "needs --port" in capsys.readouterr().err
    assert cli.main([*base, "--port", "loop://"]) == 2
    assert "--port is for --engine board" in capsys.readouterr().err


def test_run_board_on_a_loopback_reports_the_wrong_answer(tmp_path, capsys):
    """pyserial's loop:// echoes the 64 input bytes: not the 10-byte answer of this design,
    which the host driver must report (exit 1), not hang on or accept."""
    m, x = _digits(tmp_path)
    rc = cli.main(["run", m, "--inputs", str(x), "--outputs", str(tmp_path / "y.npz"),
                   "--engine", "board", "--port", "loop://", "--timeout", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "sent more bytes than 10 per inference" in err, err
    assert not (tmp_path / "y.npz").exists()


def test_run_board_through_the_cli_equals_the_reference(tmp_path, capsys, monkeypatch):
    """The port opened by ``intflow run --engine board`` is a fake board computing the integer
    reference per frame (boards/tests/test_host_uart.py): every output written, exactly."""
    import serial

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "boards" / "tests"))
    from test_host_uart import ReferenceBoard
    m, x = _digits(tmp_path)
    opened = []

    def fake_port(url, baud, **kw):
        opened.append((url, baud))
        return ReferenceBoard(intflow.compile(m))

    monkeypatch.setattr(serial, "serial_for_url", fake_port)
    rc = cli.main(["run", m, "--inputs", str(x), "--outputs", str(tmp_path / "y.npz"),
                   "--engine", "board", "--port", "/dev/ttyUSB9", "--baud", "9600"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert opened == [("/dev/ttyUSB9", 9600)]
    want = intflow.compile(m).run({"pixels": np.load(x)})
    np.testing.assert_array_equal(np.load(tmp_path / "y.npz")["logits"], want["logits"])
