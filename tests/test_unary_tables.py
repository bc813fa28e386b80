"""Unary float ops between DequantizeLinear and QuantizeLinear (Tanh, HardSigmoid, HardSwish,
Neg, Abs, Floor, Ceil, Round, Sign, Sqrt, Reciprocal, Softsign, Exp) become exact 256-entry tables:
intflow's reference equals onnxruntime on every element, over every input code, for uint8 and
int8 and random input/output scales and zero points, as a one-op island, after a Mul(const) in a
chain, as a float epilogue, and between Convs quantized by quantize_static (QDQ and QOperator).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from ortcheck import assert_stream_model_equals_reference

import intflow
from intflow import ort
from intflow.compiler.onnx.float_island import apply_unary
from intflow.compiler.onnx.importer import Importer
from intflow.compiler.onnx.values import FloatOp
from intflow.oracle import u8u8_oracle

OPS = ["Tanh", "HardSigmoid", "HardSwish", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign",
       "Sqrt", "Reciprocal", "Softsign", "Exp"]
ONNX_TYPE = {np.uint8: T.UINT8, np.int8: T.INT8}


def _op_node(op: str, x: str, y: str, rng) -> onnx.NodeProto:
    if op == "HardSigmoid":  # random attributes, not only the defaults
        return h.make_node(op, [x], [y], alpha=float(rng.uniform(0.05, 0.5)),
                           beta=float(rng.uniform(-0.5, 1.0)))
    return h.make_node(op, [x], [y])


def _island(op: str, dtype, seed: int, chain: bool) -> onnx.ModelProto:
    """x -> Q -> DQ -> [Mul(c) ->] op -> Q -> DQ -> y, random quantisation parameters."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    inits = [nh.from_array(np.float32(rng.uniform(0.004, 0.08)), "s"),
             nh.from_array(dtype(rng.integers(info.min, info.max + 1)), "z"),
             nh.from_array(np.float32(rng.uniform(0.002, 0.05)), "s2"),
             nh.from_array(dtype(rng.integers(info.min, info.max + 1)), "z2"),
             nh.from_array(np.float32(rng.uniform(-3, 3)), "c")]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             h.make_node("DequantizeLinear", ["q", "s", "z"], ["d"])]
    src = "d"
    if chain:
        nodes.append(h.make_node("Mul", ["d", "c"], ["m"]))
        src = "m"
    nodes += [_op_node(op, src, "f", rng),
              h.make_node("QuantizeLinear", ["f", "s2", "z2"], ["q2"]),
              h.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["y"])]
    g = h.make_graph(nodes, "island", [h.make_tensor_value_info("x", T.FLOAT, ["N", 256])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 256])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _every_code(model: onnx.ModelProto, dtype, rng) -> np.ndarray:
    """Inputs whose QuantizeLinear gives every code (row 0) plus random values (rows 1-2)."""
    init = {i.name: nh.to_array(i) for i in model.graph.initializer}
    s, z = init["s"], int(init["z"])
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1, dtype=np.int64)
    exact = np.multiply((codes - z).astype(np.float32), s, dtype=np.float32)
    rand = rng.uniform(-200 * s, 200 * s, (2, 256)).astype(np.float32)
    return np.concatenate([exact[None], rand])


@pytest.mark.parametrize("chain", [False, True], ids=["island", "after_mul"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8], ids=["u8", "s8"])
@pytest.mark.parametrize("op", OPS)
def test_unary_table_equals_onnxruntime(tmp_path, op, dtype, chain):
    for seed in range(3):
        model = _island(op, dtype, seed, chain)
        path = tmp_path / f"{op}_{seed}.onnx"
        onnx.save(model, path)
        x = _every_code(model, dtype, np.random.default_rng(seed))
        want = ort.run(str(path), {"x": x})["y"]
        got = intflow.compile(path).run({"x": x})["y"]
        diff = np.flatnonzero(got != want)
        assert diff.size == 0, (f"seed {seed}: {diff.size} differ, first x={x.ravel()[diff[0]]}"
                                f" intflow {got.ravel()[diff[0]]} ort {want.ravel()[diff[0]]}")


@pytest.mark.parametrize("op", OPS)
def test_float_model_equals_onnxruntime_op(op):
    """The float32 model behind each table equals onnxruntime's float kernel bit for bit on
    dense random inputs (a 1-ulp error rarely crosses a quantisation boundary, so the table
    tests alone could miss it): HardSigmoid's mul-then-add, MLAS's fma tanh, ..."""
    rng = np.random.default_rng(OPS.index(op))
    x = np.concatenate([rng.uniform(-12, 12, 40000), rng.normal(0, 1, 40000),
                        rng.uniform(-110, 95, 5000),  # Exp's subnormal and overflow ends
                        rng.uniform(-1e-3, 1e-3, 5000), np.arange(-300, 300) * 0.03125,
                        [0.0, -0.0, 9.0, -9.0, 3.0, -3.0, 0.5, -0.5, 2.5, -2.5]]
                       ).astype(np.float32)
    node = _op_node(op, "x", "y", rng)
    g = h.make_graph([node], op, [h.make_tensor_value_info("x", T.FLOAT, [x.size])],
                     [h.make_tensor_value_info("y", T.FLOAT, [x.size])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    want = ort.session(m.SerializeToString()).run(None, {"x": x})[0]
    fop = FloatOp(node, [None], (x.size,), Importer.attrs(node))
    with np.errstate(invalid="ignore", divide="ignore"):
        got = apply_unary(fop, x, None, None)
    assert got.dtype == np.float32
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    bad = np.flatnonzero(~same)
    assert bad.size == 0, f"{bad.size} differ, first x={x[bad[0]]!r}: {got[bad[0]]!r} != " \
                          f"{want[bad[0]]!r}"


@pytest.mark.parametrize("op", OPS)
def test_float_epilogue_equals_onnxruntime(tmp_path, op):
    """The op after the last DequantizeLinear (a host table of float32 values per code)."""
    model = _island(op, np.int8, 5, False)
    del model.graph.node[-2:]
    model.graph.node[-1].output[0] = "y"
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, path)
    x = _every_code(model, np.int8, np.random.default_rng(5))
    want = ort.run(str(path), {"x": x})["y"]
    got = intflow.compile(path).run({"x": x})["y"]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_every_code_reaches_the_table(tmp_path):
    """Row 0 of the inputs quantises to every code, so the tests above cover each entry."""
    for dtype in (np.uint8, np.int8):
        model = _island("Tanh", dtype, 1, False)
        init = {i.name: nh.to_array(i) for i in model.graph.initializer}
        x = _every_code(model, dtype, np.random.default_rng(0))[0]
        q = np.rint(np.divide(x, init["s"], dtype=np.float32)) + int(init["z"])
        assert np.array_equal(q, np.arange(np.iinfo(dtype).min, np.iinfo(dtype).max + 1))


def test_unsupported_unary_op_is_a_clear_error(tmp_path):
    """An op without an exact float32 model (Softplus) stays an unsupported-op error."""
    model = _island("Tanh", np.uint8, 0, False)
    for n in model.graph.node:
        if n.op_type == "Tanh":
            n.op_type = "Softplus"
    path = tmp_path / "softplus.onnx"
    onnx.save(model, path)
    with pytest.raises(intflow.compiler.errors.ModelError, match="Softplus"):
        intflow.compile(path)


class _Reader(CalibrationDataReader):
    def __init__(self, rng):
        self.it = iter([{"x": rng.normal(0, 1, (8, 3, 6, 6)).astype(np.float32)}
                        for _ in range(3)])

    def get_next(self):
        return next(self.it, None)


@pytest.mark.parametrize("fmt", [QuantFormat.QDQ, QuantFormat.QOperator], ids=["qdq", "qop"])
@pytest.mark.parametrize("act", [QuantType.QUInt8, QuantType.QInt8], ids=["u8", "s8"])
@pytest.mark.parametrize("op", ["HardSwish", "HardSigmoid", "Tanh", "Abs", "Exp"])
def test_quantize_static_conv_op_conv(tmp_path, op, act, fmt):
    rng = np.random.default_rng(OPS.index(op))
    inits = [nh.from_array(rng.normal(0, 0.4, s).astype(np.float32), n) for n, s in
             (("w1", (6, 3, 3, 3)), ("b1", (6,)), ("w2", (4, 6, 1, 1)), ("b2", (4,)))]
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             _op_node(op, "c1", "a", rng),
             h.make_node("Conv", ["a", "w2", "b2"], ["y"])]
    g = h.make_graph(nodes, "conv_op_conv", [h.make_tensor_value_info("x", T.FLOAT,
                                                                      ["N", 3, 6, 6])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 4, 6, 6])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path, q = tmp_path / "float.onnx", tmp_path / "q.onnx"
    onnx.save(m, path)
    quantize_static(str(path), str(q), _Reader(rng), quant_format=fmt, activation_type=act,
                    weight_type=QuantType.QInt8)
    assert op in {n.op_type for n in onnx.load(q).graph.node}  # left in float by the quantizer
    x = rng.normal(0, 1.5, (16, 3, 6, 6)).astype(np.float32)
    design = intflow.compile(q)
    got = design.run({"x": x})["y"]
    oracle = tmp_path / "oracle.onnx"
    onnx.save(u8u8_oracle(onnx.load(q)), oracle)
    want = ort.run(str(oracle), {"x": x})["y"]
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:5]
    # the streaming plan the hardware is built from computes the same integers
    g = design.graph
    assert "Lut" in {n.op for n in g.nodes}
    assert_stream_model_equals_reference(g, {"x": x})
