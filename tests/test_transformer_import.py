"""Transformer ops from onnxruntime's quantizer into the IntGraph IR (issue 9, compiler side):
Softmax (QDQ and com.microsoft QLinearSoftmax), LayerNormalization, GELU (decomposed with
Erf, and fused), the attention MatMuls, and the stored tiny transformer's accuracy.

Exact where onnxruntime runs integer kernels or a float op over one tensor (a table): the
attention MatMuls, Erf, the whole GELU chain. Softmax and LayerNormalization are integer
kernels replacing onnxruntime's float ops, held to SOFTMAX_LN_TOLERANCE_CODES. The small
models are built with onnx.helper and quantized with onnxruntime's own quantize_static; no
torch needed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from ortcheck import DATA, MODELS, exact_truth, ort_outputs

import intflow
from intflow.compiler import compile_model, reference
from intflow.compiler.errors import ModelError
from intflow.compiler.onnx.float_island import gelu_erf, mlas_erf

# Softmax and LayerNorm: onnxruntime computes them in float32 and rounds once to the output
# code; the integer kernels (exp table to 2^-16 and one truncated reciprocal per row; isqrt
# and Z to 2^-8) are within a fraction of an output step of the float value, so where the
# float value lies near a rounding boundary they may land on the neighbouring code: at most 1.
SOFTMAX_LN_TOLERANCE_CODES = 1
# the criteria for the stored example (integer-only vs onnxruntime's quantized model)
# how often the one-code difference may occur (random rows): it appears only near rounding
# boundaries; LayerNorm with a float gamma (QOperator) also carries intflow's int8 rounding of
# gamma (up to half a step of max|gamma|/127 times |z| <= ~4), measured 7.4%
MAX_ONE_CODE_FRACTION = {"Softmax": 0.02, "LayerNorm": 0.05, "LayerNorm float gamma": 0.10}
MAX_TOP1_LOSS = 0.01
MIN_ARGMAX_AGREEMENT = 0.97
MAX_MEAN_LOGIT_ERROR_STEPS = 4.0


# ---- building and quantizing small float graphs -------------------------------------------
def _model(nodes, inits, x_shape, y_shape, opset=17, domains=()):
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *y_shape])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    ops = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    m = helper.make_model(g, opset_imports=ops)
    m.ir_version = 9
    return m


def _quantize(model, calib: np.ndarray, fmt: str, tmp: Path) -> str:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": calib}])

        def get_next(self):
            return next(self.it, None)

    src, out = tmp / f"f_{fmt}.onnx", tmp / f"q_{fmt}.onnx"
    onnx.save(model, str(src))
    quantize_static(str(src), str(out), Reader(), quant_format=getattr(QuantFormat, fmt),
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=False)
    return str(out)


def _all_codes_input(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """Float inputs whose quantisation is every uint8 code (in order, repeated)."""
    g = compile_model(path)
    q = g.inputs[0].quantize
    s, z = float(q.scale), int(q.zero_point)
    codes = np.resize(np.arange(256), int(np.prod(shape)))
    return ((codes - z) * s).astype(np.float32).reshape(shape)


def _output_step(path: str) -> float:
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    n = next(n for n in m.graph.node if "y" in n.output)
    assert n.op_type == "DequantizeLinear"
    return float(inits[n.input[1]])


def _gelu_nodes():
    # Add(0) first: a quantized op between the float input and the chain (QOperator leaves
    # Div in float, and a float op on the graph input runs on the host); it keeps the codes
    return [helper.make_node("Add", ["x", "zero"], ["x0"]),
            helper.make_node("Div", ["x0", "sqrt2"], ["d"]),
            helper.make_node("Erf", ["d"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["a"]),
            helper.make_node("Mul", ["x0", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"])]


GELU_CONSTS = {"sqrt2": np.float32(np.sqrt(2)), "one": np.float32(1), "half": np.float32(0.5),
               "zero": np.zeros(64, np.float32)}


# ---- Erf and GELU: exact -------------------------------------------------------------------
def _ort_unary(op: str, x: np.ndarray, domain: str = "") -> np.ndarray:
    m = _model([helper.make_node(op, ["x"], ["y"], domain=domain)], {}, (), (),
               domains=[domain] if domain else [])
    return ort_outputs(m, {"x": x})["y"]


def test_erf_and_gelu_equal_onnxruntime_bit_for_bit():
    rng = np.random.default_rng(0)
    edges = [0.921875, np.nextafter(np.float32(0.921875), np.float32(0)), 3.925, 3.725, 6.0,
             1e-30, 0.0]
    x = np.concatenate([rng.uniform(-6, 6, 20000), rng.normal(0, 1, 20000), edges,
                        np.negative(edges)]).astype(np.float32)
    for op, ours, dom in (("Erf", mlas_erf, ""), ("Gelu", gelu_erf, "com.microsoft")):
        want = _ort_unary(op, x, dom)
        bad = np.flatnonzero(ours(x).view(np.int32) != want.view(np.int32))
        assert bad.size == 0, (op, bad.size, x[bad[:4]])


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_gelu_chain_equals_onnxruntime_on_every_code(fmt):
    """Div(sqrt 2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5), quantized by quantize_static: a
    table, QLinearAdd, QLinearMul of two activations, QLinearMul by a constant."""
    rng = np.random.default_rng(1)
    m = _model(_gelu_nodes(), GELU_CONSTS, (64,), (64,))
    with tempfile.TemporaryDirectory() as tmp:
        path = _quantize(m, rng.normal(0, 2, (32, 64)).astype(np.float32), fmt, Path(tmp))
        ops = {n.op_type for n in onnx.load(path).graph.node}
        assert "Erf" in ops and ("QLinearMul" in ops) == (fmt == "QOperator")
        x = _all_codes_input(path, (4, 64))
        g = compile_model(path)
        add = next(n for n in g.nodes if n.op == "Add")
        env = reference.run_codes(g, reference.to_codes(g, {"x": x}))
        assert np.unique(env[add.outputs[0]]).size == 256  # the chain sees every code
        got = intflow.compile(path).run({"x": x})["y"]
        want = ort_outputs(path, {"x": x})["y"]
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:8]


@pytest.mark.parametrize("op,domain,opset", [("Gelu", "com.microsoft", 17), ("Gelu", "", 20),
                                              ("Erf", "", 17)])
def test_fused_gelu_and_erf_tables_equal_onnxruntime(op, domain, opset):
    """Q -> DQ -> op -> Q -> DQ written by hand: one table over the 256 input codes."""
    inits = {"s": np.float32(0.04), "z": np.uint8(120), "s2": np.float32(0.03),
             "z2": np.uint8(10 if op == "Gelu" else 128)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"]),
             helper.make_node(op, ["xf"], ["g"], domain=domain),
             helper.make_node("QuantizeLinear", ["g", "s2", "z2"], ["gq"]),
             helper.make_node("DequantizeLinear", ["gq", "s2", "z2"], ["y"])]
    m = _model(nodes, inits, (256,), (256,), opset=opset, domains=[domain] if domain else [])
    x = ((np.arange(256) - 120) * np.float32(0.04)).astype(np.float32)[None]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "m.onnx")
        onnx.save(m, path)
        g = compile_model(path)
        assert [n.op for n in g.nodes] == ["Lut"]
        got = intflow.compile(path).run({"x": x})["y"]
    assert np.array_equal(got, ort_outputs(m, {"x": x})["y"])


def test_scalar_steps_in_a_float_island_are_one_table():
    """DQ -> Div(c) -> Mul(c) -> Add(c) -> Sub(c - x) -> Erf -> Q with raw float constants:
    one table, equal to onnxruntime's float32 steps on every code."""
    inits = {"s": np.float32(0.05), "z": np.uint8(100), "s2": np.float32(0.01),
             "z2": np.uint8(128), "c1": np.float32(1.7), "c2": np.float32(0.3),
             "c3": np.float32(-0.2), "c4": np.float32(0.1)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"]),
             helper.make_node("Div", ["xf", "c1"], ["a"]),
             helper.make_node("Mul", ["c2", "a"], ["b"]),
             helper.make_node("Add", ["b", "c3"], ["c"]),
             helper.make_node("Sub", ["c4", "c"], ["d"]),
             helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("QuantizeLinear", ["e", "s2", "z2"], ["eq"]),
             helper.make_node("DequantizeLinear", ["eq", "s2", "z2"], ["y"])]
    m = _model(nodes, inits, (256,), (256,))
    x = ((np.arange(256) - 100) * np.float32(0.05)).astype(np.float32)[None]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "m.onnx")
        onnx.save(m, path)
        assert [n.op for n in compile_model(path).nodes] == ["Lut"]
        got = intflow.compile(path).run({"x": x})["y"]
    assert np.array_equal(got, ort_outputs(m, {"x": x})["y"])


# ---- the attention MatMuls: exact ----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_attention_matmuls_equal_onnxruntime(fmt):
    """q = x Wq, k = x Wk, scores = q k^T, out = scores v: two MatMuls of two activations."""
    rng = np.random.default_rng(2)
    w = {k: rng.normal(0, 0.3, (8, 8)).astype(np.float32) for k in ("wq", "wk", "wv")}
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]),
             helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]),
             helper.make_node("MatMul", ["s", "v"], ["y"])]
    m = _model(nodes, w, (6, 8), (6, 8))
    x = rng.normal(0, 1, (64, 6, 8)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = _quantize(m, x[:32], fmt, Path(tmp))
        g = compile_model(path)
        act = [n for n in g.nodes if n.op == "MatMul" and n.inputs[1] not in g.constants]
        assert len(act) == 2
        got = intflow.compile(path).run({"x": x})["y"]
        want = exact_truth(path, {"x": x})["y"]
    assert np.array_equal(got, want)


# ---- Softmax and LayerNormalization: within SOFTMAX_LN_TOLERANCE_CODES ---------------------
def _within_tolerance(path: str, x: np.ndarray) -> float:
    got = intflow.compile(path).run({"x": x})["y"]
    want = exact_truth(path, {"x": x})["y"]  # u8xu8 oracle: no u8xs8 saturation before
    codes = np.abs(got.astype(np.float64) - want) / _output_step(path)
    assert codes.max() <= SOFTMAX_LN_TOLERANCE_CODES + 1e-3, codes.max()
    print(f"{path}: {(codes > 0.5).mean():.4f} of the elements one code off")
    return float((codes > 0.5).mean())


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_softmax_imports_and_is_within_a_code(fmt):
    rng = np.random.default_rng(3)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["s"]),
                helper.make_node("Softmax", ["s"], ["y"], axis=-1)],
               {"w": rng.normal(0, 0.5, (16, 16)).astype(np.float32)}, (4, 16), (4, 16))
    x = rng.normal(0, 2, (128, 4, 16)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = _quantize(m, x[:64], fmt, Path(tmp))
        ops = {n.op_type for n in onnx.load(path).graph.node}
        assert ("QLinearSoftmax" in ops) == (fmt == "QOperator")
        g = compile_model(path)
        assert [n.op for n in g.nodes][-2:] == ["Softmax", "Requant"]
        assert any(n.startswith("Softmax:") for n in g.notes)
        assert any("in float between DequantizeLinear" in n for n in g.notes)
        frac = _within_tolerance(path, x)
    assert frac < MAX_ONE_CODE_FRACTION["Softmax"]


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_layernorm_imports_and_is_within_a_code(fmt):
    rng = np.random.default_rng(4)
    n = 24
    # QOperator quantizes LayerNormalization only between quantized ops: Add(0) around it
    m = _model([helper.make_node("Add", ["x", "zero"], ["x0"]),
                helper.make_node("LayerNormalization", ["x0", "gamma", "beta"], ["l"],
                                 axis=-1, epsilon=1e-5),
                helper.make_node("Add", ["l", "zero"], ["y"])],
               {"gamma": rng.uniform(0.5, 1.5, n).astype(np.float32),
                "beta": rng.normal(0, 0.3, n).astype(np.float32),
                "zero": np.zeros(n, np.float32)}, (5, n), (5, n))
    x = (rng.normal(0, 1, (128, 5, n)) * rng.uniform(0.2, 3, (128, 5, 1))).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = _quantize(m, x[:64], fmt, Path(tmp))
        g = compile_model(path)
        assert [n.op for n in g.nodes if n.op in ("LayerNorm", "Requant")] == \
            ["LayerNorm", "Requant"]
        if fmt == "QOperator":  # float gamma: quantised by intflow, and noted
            assert any("gamma is quantised to int8" in t for t in g.notes)
        frac = _within_tolerance(path, x)
    assert frac < MAX_ONE_CODE_FRACTION["LayerNorm float gamma" if fmt == "QOperator"
                                        else "LayerNorm"]


def test_layernorm_int32_beta():
    """DQ(gamma int8 per tensor), DQ(beta int32) as the issue describes quantize_static's
    output: beta enters as B = round(beta / (s_gamma 2^-P))."""
    rng = np.random.default_rng(5)
    n = 16
    sx, sg, sy = np.float32(0.05), np.float32(0.01), np.float32(0.04)
    gamma = rng.integers(50, 127, n).astype(np.int8)
    beta = rng.integers(-3000, 3000, n).astype(np.int32)
    inits = {"sx": sx, "zx": np.uint8(128), "sg": sg, "zg": np.int8(0), "sb": np.float32(sx * sg),
             "zb": np.int32(0), "sy": sy, "zy": np.uint8(128), "gq": gamma, "bq": beta}
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xf"]),
             helper.make_node("DequantizeLinear", ["gq", "sg", "zg"], ["g"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node("LayerNormalization", ["xf", "g", "b"], ["l"], axis=-1),
             helper.make_node("QuantizeLinear", ["l", "sy", "zy"], ["lq"]),
             helper.make_node("DequantizeLinear", ["lq", "sy", "zy"], ["y"])]
    m = _model(nodes, inits, (3, n), (3, n))
    x = rng.normal(0, 2, (128, 3, n)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ln.onnx")
        onnx.save(m, path)
        g = compile_model(path)
        assert not any("gamma is quantised" in t for t in g.notes)
        assert _within_tolerance(path, x) < MAX_ONE_CODE_FRACTION["LayerNorm"]


@pytest.mark.parametrize("op,attrs,why", [
    ("Softmax", {"axis": 1}, "only the last axis"),
    ("LayerNormalization", {"axis": 1}, "only the last axis"),
])
def test_other_axes_are_a_clear_error(op, attrs, why):
    inits = {"s": np.float32(0.05), "z": np.uint8(128), "gamma": np.ones(8, np.float32)}
    ins = ["xf", "gamma"] if op == "LayerNormalization" else ["xf"]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xf"]),
             helper.make_node(op, ins, ["o"], name="the_op", **attrs),
             helper.make_node("QuantizeLinear", ["o", "s", "z"], ["oq"]),
             helper.make_node("DequantizeLinear", ["oq", "s", "z"], ["y"])]
    m = _model(nodes, inits, (4, 8), (4, 8))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bad.onnx")
        onnx.save(m, path)
        with pytest.raises(ModelError) as e:
            compile_model(path)
    assert why in str(e.value) and "the_op" in str(e.value)


# ---- the stored example ----------------------------------------------------------------------
@pytest.mark.parametrize("stem", ["tiny_transformer_qdq", "tiny_transformer_qop"])
def test_tiny_transformer_meets_the_accuracy_criteria(stem):
    """Against onnxruntime's exact integer result (the u8xu8 oracle: the raw session's u8xs8
    kernel saturates on AVX2 CPUs without VNNI, so its output depends on the CPU)."""
    path = str(MODELS / f"{stem}.onnx")
    with np.load(DATA / f"{stem}.npz") as z:
        x = z["patches"]
    labels = _digits_labels(len(x))
    got = intflow.compile(path).run({"patches": x})["logits"]
    want = exact_truth(path, {"patches": x})["logits"]
    acc_int = (got.argmax(1) == labels).mean()
    acc_ort = (want.argmax(1) == labels).mean()
    assert acc_int >= acc_ort - MAX_TOP1_LOSS, (acc_int, acc_ort)
    assert (got.argmax(1) == want.argmax(1)).mean() >= MIN_ARGMAX_AGREEMENT
    step = json.loads((DATA / f"{stem}.json").read_text())["output_scale"]
    assert np.abs(got - want).mean() / step <= MAX_MEAN_LOGIT_ERROR_STEPS


def _digits_labels(n: int) -> np.ndarray:
    """The held-out labels (examples/make_examples.py digits_split: permutation(seed 0), the
    first 256 held out)."""
    from sklearn.datasets import load_digits

    y = load_digits().target
    return y[np.random.default_rng(0).permutation(len(y))[:n]]
