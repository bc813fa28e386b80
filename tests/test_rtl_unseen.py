"""Models we did not write through the RTL: onnxruntime's ``quantize_static`` (QDQ and
QOperator) over the float networks of ``test_quantize_static.py`` plus squeeze-excite blocks
(a Mul and an Add broadcasting a (1, C, 1, 1) activation over a feature map), Concat with
constants (a constant plane, a class-token-like prefix) and softmax-free self-attention
(MatMuls of two activations), and the ONNX backend node tests the reference accepts — on
Icarus with random stalls 0.3, every output element equal to the IntGraph reference (itself
held to onnxruntime by ``test_quantize_static.py`` and ``test_onnx_node_tests.py``; the new
networks' reference is checked against onnxruntime here).

By default one option set per network (but the two largest) and every node test; four option
sets per network (QDQ/QOperator x uint8/int8) run under ``-m slow``. A model with no
streaming engine for some node must fail with a PlanError naming the node: ``intflow run
--engine icarus`` prints it and exits 2.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import test_onnx_node_tests as node_tests
import test_quantize_static as qs
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static
from ortcheck import save_model

import intflow
from intflow import ort
from intflow.compiler import compile_model, reference
from intflow.compiler.edge_vectors import KINDS, with_edge_vectors
from intflow.oracle import u8u8_oracle
from intflow.sim.network import run_graph

_w = qs._w
SAMPLES = 3  # random samples per model, then the edge vectors


# ---- networks beyond test_quantize_static.py --------------------------------------------------
def se_block(rng):
    """Conv + ReLU, squeeze-excite (GAP, 1x1 conv, ReLU, 1x1 conv, Sigmoid, Mul with the
    feature map: a (1, 8, 1, 1) activation broadcast), strided Conv, Add of a (1, 6, 1, 1)
    constant."""
    inits = [_w(rng, "w1", 8, 3, 3, 3), _w(rng, "b1", 8), _w(rng, "ws1", 4, 8, 1, 1),
             _w(rng, "bs1", 4), _w(rng, "ws2", 8, 4, 1, 1), _w(rng, "bs2", 8),
             _w(rng, "w3", 6, 8, 3, 3), _w(rng, "b3", 6), _w(rng, "g6", 1, 6, 1, 1)]
    n = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c1"], ["r1"]),
         h.make_node("GlobalAveragePool", ["r1"], ["g"]),
         h.make_node("Conv", ["g", "ws1", "bs1"], ["s1"]),
         h.make_node("Relu", ["s1"], ["s1r"]),
         h.make_node("Conv", ["s1r", "ws2", "bs2"], ["s2"]),
         h.make_node("Sigmoid", ["s2"], ["s"]),
         h.make_node("Mul", ["r1", "s"], ["m"]),
         h.make_node("Conv", ["m", "w3", "b3"], ["c3"], strides=[2, 2]),
         h.make_node("Add", ["c3", "g6"], ["y0"]),
         h.make_node("Flatten", ["y0"], ["y"])]
    return n, inits, [3, 6, 6], [6 * 2 * 2]


def se_add(rng):
    """Squeeze-excite with the broadcast operand first (Mul(s, x)), then Add of the feature
    map and its own global average (an activation broadcast in an Add), 1x1 Conv."""
    inits = [_w(rng, "w1", 6, 2, 3, 3), _w(rng, "b1", 6), _w(rng, "ws1", 6, 6, 1, 1),
             _w(rng, "bs1", 6), _w(rng, "w3", 4, 6, 1, 1), _w(rng, "b3", 4)]
    n = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c1"], ["r1"]),
         h.make_node("GlobalAveragePool", ["r1"], ["g"]),
         h.make_node("Conv", ["g", "ws1", "bs1"], ["s1"]),
         h.make_node("Sigmoid", ["s1"], ["s"]),
         h.make_node("Mul", ["s", "r1"], ["m"]),
         h.make_node("Add", ["m", "g"], ["a"]),
         h.make_node("Conv", ["a", "w3", "b3"], ["c3"]),
         h.make_node("Flatten", ["c3"], ["y"])]
    return n, inits, [2, 5, 6], [4 * 5 * 6]


def concat_const(rng):
    """Conv + ReLU, Concat with a constant (1, 2, 5, 6) plane, Conv + ReLU, Flatten, Concat
    after a constant (1, 5) prefix, Gemm. Batch 1: a constant cannot follow a dynamic batch."""
    inits = [_w(rng, "w1", 4, 2, 3, 3), _w(rng, "b1", 4),
             nh.from_array(rng.uniform(-1, 1, (1, 2, 5, 6)).astype(np.float32), "plane"),
             _w(rng, "w2", 3, 6, 3, 3), _w(rng, "b2", 3),
             nh.from_array(rng.uniform(-1, 1, (1, 5)).astype(np.float32), "tok"),
             _w(rng, "wf", 95, 7), _w(rng, "bf", 7)]
    n = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c1"], ["r1"]),
         h.make_node("Concat", ["r1", "plane"], ["cat"], axis=1),
         h.make_node("Conv", ["cat", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c2"], ["r2"]),
         h.make_node("Flatten", ["r2"], ["f"]),
         h.make_node("Concat", ["tok", "f"], ["cat2"], axis=1),
         h.make_node("Gemm", ["cat2", "wf", "bf"], ["y"])]
    return n, inits, [2, 5, 6], [7]


def attention(rng):
    """Self-attention on a (6, 8) sequence without softmax: Q, K, V projections (MatMul with
    constants on a 3-D activation), Q·Kᵀ and S·V (MatMuls of two activations), Sigmoid
    scores, an output projection."""
    d = 8
    inits = [_w(rng, "wq", d, d), _w(rng, "wk", d, d), _w(rng, "wv", d, d), _w(rng, "wo", d, 4),
             _w(rng, "bo", 4)]
    n = [h.make_node("MatMul", ["x", "wq"], ["q"]),
         h.make_node("MatMul", ["x", "wk"], ["k"]),
         h.make_node("MatMul", ["x", "wv"], ["v"]),
         h.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
         h.make_node("MatMul", ["q", "kt"], ["s"]),
         h.make_node("Sigmoid", ["s"], ["p"]),
         h.make_node("MatMul", ["p", "v"], ["o"]),
         h.make_node("MatMul", ["o", "wo"], ["o2"]),
         h.make_node("Add", ["o2", "bo"], ["y"])]
    return n, inits, [6, d], [6, 4]


NETS = {f.__name__: f for f in [*qs.ARCHS, se_block, se_add, concat_const, attention]}
BATCH_ONE = {"concat_const"}


def _opt(fmt: str, act: str, per_channel: int, sym: int, reduce_range: int) -> int:
    """Index in ``qs.OPTIONS`` (format, activation type, per channel, symmetric, reduce)."""
    key = (fmt, act, bool(per_channel), bool(sym), bool(reduce_range))
    return [(f.name, a.name, p, s, r) for f, a, p, s, r in qs.OPTIONS].index(key)


# one option set per network by default (QDQ and QOperator, uint8 and int8 both covered);
# mobilenet_block and resnet_block (1.5-3 minutes each on Icarus here) run under -m slow only
DEFAULT = {
    "branchy_1d": _opt("QOperator", "QInt8", 0, 1, 1),
    "gated_mlp": _opt("QDQ", "QUInt8", 0, 0, 0),
    "conv_bn": _opt("QOperator", "QUInt8", 0, 0, 0),
    "se_block": _opt("QDQ", "QUInt8", 1, 0, 0),
    "se_add": _opt("QOperator", "QInt8", 1, 1, 0),
    "concat_const": _opt("QDQ", "QInt8", 0, 1, 1),
    "attention": _opt("QOperator", "QUInt8", 0, 0, 0),
}
SLOW_OPTIONS = [_opt("QDQ", "QUInt8", 0, 0, 0), _opt("QDQ", "QInt8", 1, 1, 0),
                _opt("QOperator", "QUInt8", 1, 0, 1), _opt("QOperator", "QInt8", 0, 1, 1)]
SLOW = [(n, o) for n in NETS for o in SLOW_OPTIONS if DEFAULT.get(n) != o]


class _Reader(CalibrationDataReader):
    def __init__(self, rng, shape, batch: int):
        self.it = iter([{"x": rng.normal(0, 1, (batch, *shape)).astype(np.float32)}
                        for _ in range(64 // batch)])

    def get_next(self):
        return next(self.it, None)


def quantized_net(name: str, option: int, tmp: Path) -> tuple[str, list[int], np.random.Generator]:
    rng = np.random.default_rng(sorted(NETS).index(name) + 11)
    nodes, inits, in_shape, out_shape = NETS[name](rng)
    batch = 1 if name in BATCH_ONE else "N"
    g = h.make_graph(nodes, name, [h.make_tensor_value_info("x", T.FLOAT, [batch, *in_shape])],
                     [h.make_tensor_value_info("y", T.FLOAT, [batch, *out_shape])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    fp, q = tmp / "float.onnx", tmp / "q.onnx"
    onnx.save(m, fp)
    fmt, act, per_channel, sym, reduce_range = qs.OPTIONS[option]
    quantize_static(str(fp), str(q), _Reader(rng, in_shape, 1 if batch == 1 else 16),
                    quant_format=fmt, activation_type=act, weight_type=QuantType.QInt8,
                    per_channel=per_channel, reduce_range=reduce_range,
                    extra_options={"ActivationSymmetric": sym})
    return str(q), in_shape, rng


def assert_rtl_equal(got: np.ndarray, want: np.ndarray, labels: list[str], where: str) -> None:
    bad = np.argwhere(got != want)
    if bad.size:
        i = tuple(bad[0].tolist())
        raise AssertionError(f"{len(bad)} of {want.size} elements differ; first at {i} "
                             f"({labels[i[0]]}): RTL {got[i]}, reference {want[i]}\n{where}")


def rtl_equals_reference(g, feeds: dict, labels: list[str], where: str, seed: int) -> int:
    """Icarus with stalls 0.3 against ``reference.run_codes``; returns elements compared."""
    d_feeds = {k: np.asarray(v, np.int64) for k, v in feeds.items()}
    want = reference.run_codes(g, d_feeds)
    df = intflow.Design(where, g).dataflow()
    got, res = run_graph(df, g, d_feeds, engine="icarus", stall=0.3, seed=seed)
    for o in g.outputs:
        assert_rtl_equal(got[o.tensor], want[o.tensor], labels, where)
    assert not res.lost
    return sum(want[o.tensor].size for o in g.outputs)


def check_net(name: str, option: int, tmp: Path) -> None:
    q, in_shape, rng = quantized_net(name, option, tmp)
    design = intflow.compile(q)
    g = design.graph
    x = rng.normal(0, 1.3, (SAMPLES, *in_shape)).astype(np.float32)
    if name not in {f.__name__ for f in qs.ARCHS}:
        # a network test_quantize_static.py does not hold to onnxruntime: do it here
        oracle = tmp / "oracle.onnx"
        onnx.save(u8u8_oracle(onnx.load(q)), oracle)
        want = np.concatenate([ort.run(str(oracle), {"x": x[i:i + 1]})["y"]
                               for i in range(SAMPLES)])
        got = design.run({"x": x})["y"]
        assert np.array_equal(got, want), f"{name}: the reference differs from onnxruntime"
    (hin,) = g.inputs
    codes = reference.to_codes(g, {hin.onnx_name: x})[hin.tensor]
    zp = 0 if hin.quantize is None else int(np.ravel(hin.quantize.zero_point)[0])
    feeds = {hin.tensor: with_edge_vectors(codes, g.tensors[hin.tensor].dtype, zp)}
    labels = [f"random sample {s}" for s in range(SAMPLES)] + [f"edge vector {k}"
                                                               for k in KINDS]
    n = rtl_equals_reference(g, feeds, labels, f"{name} {qs.OPTIONS[option]}", option)
    print(f"{name} option {option}: {n} elements equal")


@pytest.mark.simulator("icarus")
@pytest.mark.parametrize("name", list(DEFAULT))
def test_quantized_net_rtl(name, tmp_path):
    check_net(name, DEFAULT[name], tmp_path)


@pytest.mark.slow
@pytest.mark.simulator("icarus")
@pytest.mark.parametrize("name,option", SLOW)
def test_quantized_net_rtl_slow(name, option, tmp_path):
    check_net(name, option, tmp_path)


# ---- ONNX backend node tests ------------------------------------------------------------------
# every case the reference runs exactly, but the lone QuantizeLinear / DequantizeLinear: those
# run on the host alone, with no hardware layer between input and output
NODE_CASES = [(n, v) for n, vs in node_tests.EXACT.items() for v in vs
              if not n.startswith(("test_quantizelinear", "test_dequantizelinear"))]


@pytest.mark.simulator("icarus")
@pytest.mark.parametrize("name,variant", NODE_CASES)
def test_node_case_rtl(name, variant, tmp_path):
    m, feeds, _ = node_tests.prepare(node_tests.CASES[name], variant)
    g = compile_model(save_model(m, tmp_path, name))
    case = reference.to_codes(g, node_tests._sample_feeds(g, feeds))
    rng = np.random.default_rng(len(name))
    codes = {}
    for k, v in case.items():  # the test case's data, then random codes over the whole range
        t = g.tensors[k]
        extra = rng.integers(t.dtype.min, t.dtype.max + 1, (SAMPLES, *t.shape))
        codes[k] = np.concatenate([np.asarray(v, np.int64), extra])
    labels = ["node test data"] + [f"random sample {s}" for s in range(SAMPLES)]
    n = rtl_equals_reference(g, codes, labels, f"{name} [{variant}]", len(name))
    print(f"{name} [{variant}]: {n} elements equal")


# ---- a model with no streaming engine: a clear error, exit 2 ----------------------------------
def test_unplannable_model_is_a_clear_error(tmp_path):
    """A (3, 4) x (2, 4, 5) MatMulInteger: the left operand broadcast over the right one's
    batch axis has no streaming engine (ActMatMul shares a 2-D right operand only)."""
    g = h.make_graph([h.make_node("MatMulInteger", ["A", "B"], ["Y"], name="mm")], "g",
                     [h.make_tensor_value_info("A", T.UINT8, [3, 4]),
                      h.make_tensor_value_info("B", T.UINT8, [2, 4, 5])],
                     [h.make_tensor_value_info("Y", T.INT32, [2, 3, 5])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path = save_model(m, tmp_path, "broadcast_matmul")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", A=rng.integers(0, 256, (1, 3, 4)).astype(np.uint8),
             B=rng.integers(0, 256, (1, 2, 4, 5)).astype(np.uint8))
    cli = Path(sys.executable).with_name("intflow")
    r = subprocess.run([str(cli), "run", path, "--inputs", str(tmp_path / "in.npz"),
                        "--outputs", str(tmp_path / "out.npz"), "--engine", "icarus"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert path in r.stderr and "mm/MatMul" in r.stderr and "broadcast" in r.stderr, r.stderr


def test_host_only_model_is_a_clear_error(tmp_path):
    """A lone QuantizeLinear has no hardware layer: the RTL engines say so (exit 2)."""
    m, feeds, _ = node_tests.prepare(node_tests.CASES["test_quantizelinear"], "params")
    path = save_model(m, tmp_path, "quantizelinear")
    np.savez(tmp_path / "in.npz", **{k: np.asarray(v)[None] for k, v in feeds.items()})
    cli = Path(sys.executable).with_name("intflow")
    r = subprocess.run([str(cli), "run", path, "--inputs", str(tmp_path / "in.npz"),
                        "--outputs", str(tmp_path / "out.npz"), "--engine", "icarus"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert path in r.stderr and "no integer layer" in r.stderr, r.stderr
