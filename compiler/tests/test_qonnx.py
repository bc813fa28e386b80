"""QONNX import (Quant/IntQuant, BipolarQuant, Trunc, QCDQ) against qonnx's own executor.

Every model is built by hand with onnx.helper, run by ``qonnx.core.onnx_exec.execute_onnx``
(after ``qonnx.util.cleanup.cleanup_model``) and by intflow's integer reference; outputs are
compared with exact equality on every element. Scales are powers of two: then qonnx's float32
arithmetic (onnxruntime's float MatMul/Conv, numpy's Quant) is exact and must equal the integer
kernels (TOLERANCE below is the one exception, for the non-power-of-two test).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from intflow.compiler import compile_model, reference
from intflow.compiler.errors import ModelError, UnsupportedOp

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "qonnx.custom_op.general"

# With scales that are not powers of two qonnx rounds float32 products and sums (onnxruntime's
# float MatMul, then x/scale) while intflow requantises the exact integer accumulator with
# onnxruntime's float32 multiplier: a value within a float32 rounding of a tie between two
# codes can land on either side. So there, and only there, codes may differ by one step.
TOLERANCE_CODES_NON_POW2 = 1


class Graph:
    """A tiny builder: initializers and nodes of one QONNX graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, value, dtype=np.float32) -> str:
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def node(self, op: str, inputs: list[str], domain: str = "", **attrs) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.n}",
                                           domain=domain, **attrs))
        return out

    def quant(self, x: str, scale, bits: int, signed=True, narrow=False, zeropt=0.0,
              rounding="ROUND", op="Quant") -> str:
        return self.node(op, [x, self.const(scale), self.const(zeropt), self.const(bits)],
                         DOMAIN, signed=int(signed), narrow=int(narrow),
                         rounding_mode=rounding)

    def model(self, x: str, xshape, y: str, yshape, qonnx_opset: int = 2) -> onnx.ModelProto:
        g = helper.make_graph(
            self.nodes, "qonnx_test",
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, xshape)],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, yshape)], self.inits)
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid(DOMAIN, qonnx_opset)])


def run_both(model: onnx.ModelProto, x: np.ndarray, tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """(qonnx executor, intflow reference) on the samples of ``x`` (leading axis = sample)."""
    # qonnx's executor is the truth; `make test` installs it (.[qonnx]): a missing package
    # fails here rather than skipping
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    mw = cleanup_model(ModelWrapper(path))
    iname, oname = mw.graph.input[0].name, mw.graph.output[0].name
    want = np.concatenate([execute_onnx(mw, {iname: x[i:i + 1]})[oname]
                           for i in range(x.shape[0])])
    got = reference.run(compile_model(path), {model.graph.input[0].name: x})
    got = got[model.graph.output[0].name]
    return want, got.reshape(want.shape)


def assert_exact(want: np.ndarray, got: np.ndarray) -> None:
    assert want.dtype == got.dtype == np.float32
    bad = int(np.sum(want != got))
    assert bad == 0, f"{bad}/{want.size} elements differ, max |diff| {np.abs(want - got).max()}"


def inputs(shape, seed=0, spread=4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * spread
    x[0].flat[: min(8, x[0].size)] = np.arange(min(8, x[0].size)) * 0.0625 - 0.25  # ties
    return x.astype(np.float32)


def weights(shape, seed=1) -> np.ndarray:
    """Float shadow weights; the first ones are ties for scales 1, 1/2 and 1/4 (half-even)."""
    w = np.random.default_rng(seed).standard_normal(shape)
    ties = [0.5, -0.5, 1.5, -1.5, 0.25, -0.75, 0.125, -0.375, 2.5, -2.5]
    w.flat[: min(len(ties), w.size)] = ties[: w.size]
    return w.astype(np.float32)


# ---- MatMul / Gemm / Conv layers ---------------------------------------------------------
@pytest.mark.parametrize("wbits,abits,signed,narrow", [
    (2, 2, True, True),      # ternary weights, 2-bit activations
    (3, 3, False, False),
    (4, 4, True, False),
    (4, 3, False, True),
    (8, 8, True, True),
])
def test_matmul_layer(tmp_path, wbits, abits, signed, narrow):
    g = Graph()
    xq = g.quant("x", 2.0 ** -2, abits, signed=signed, narrow=narrow)
    w = g.quant(g.const(weights((12, 6))), 2.0 ** -(wbits - 2), wbits, narrow=True)
    y = g.node("MatMul", [xq, w])
    yq = g.quant(y, 2.0 ** -1, abits, signed=True, narrow=narrow)
    want, got = run_both(g.model("x", [1, 12], yq, [1, 6]), inputs((24, 12)), tmp_path)
    assert_exact(want, got)
    assert np.unique(want).size > 2  # not a degenerate all-clamped output


def test_gemm_bias_relu_two_layers(tmp_path):
    """Brevitas' QuantLinear export: Gemm(transB) with an Int32Bias Quant (scale sx*sw,
    per-channel weight scales), Relu, unsigned 4-bit activation, second Gemm, int8 output."""
    g = Graph()
    sx = np.float32(2.0 ** -3)
    xq = g.quant("x", sx, 4, signed=True)
    sw = (2.0 ** -np.array([2, 3, 2, 4, 3, 2, 2, 3], np.float32)).reshape(8, 1)
    w1 = g.quant(g.const(weights((8, 10))), sw, 4, narrow=True)
    b1 = g.quant(g.const(weights((8,), 5)), (sx * sw).reshape(8), 32)
    h = g.node("Relu", [g.node("Gemm", [xq, w1, b1], transB=1)])
    hq = g.quant(h, 2.0 ** -2, 4, signed=False)
    w2 = g.quant(g.const(weights((3, 8), 2)), 2.0 ** -2, 3, narrow=True)
    b2 = g.quant(g.const(weights((3,), 6)), np.float32(2.0 ** -4), 32)
    y = g.quant(g.node("Gemm", [hq, w2, b2], transB=1), 2.0 ** -3, 8)
    want, got = run_both(g.model("x", [1, 10], y, [1, 3]), inputs((32, 10)), tmp_path)
    assert_exact(want, got)


@pytest.mark.parametrize("op", ["Gemm", "Conv"])
def test_bias_scale_multiple_of_accumulator_unit(tmp_path, op):
    """qonnx adds the bias in float: a bias at 4*sx*sw (per-channel sw) is rescaled onto the
    accumulator exactly; 1.5*sx*sw cannot be and is refused."""
    sx = np.float32(2.0 ** -3)
    sw = 2.0 ** -np.array([2, 3, 2, 1], np.float32)
    for factor in (4.0, 1.5):
        g = Graph()
        xq = g.quant("x", sx, 4)
        if op == "Gemm":
            w = g.quant(g.const(weights((4, 6))), sw.reshape(4, 1), 4, narrow=True)
            xshape, yshape, attrs = [1, 6], [1, 4], {"transB": 1}
        else:
            w = g.quant(g.const(weights((4, 2, 3, 3))), sw.reshape(4, 1, 1, 1), 4, narrow=True)
            xshape, yshape, attrs = [1, 2, 5, 5], [1, 4, 3, 3], {"kernel_shape": [3, 3]}
        b = g.quant(g.const(weights((4,), 5) * 2), np.float32(factor) * sx * sw, 16)
        y = g.quant(g.node(op, [xq, w, b], **attrs), 2.0 ** -2, 8)
        m = g.model("x", xshape, y, yshape)
        if factor == 1.5:
            e = _compile_error(m, tmp_path)
            assert isinstance(e, UnsupportedOp) and "not an integer multiple" in e.reason
        else:
            want, got = run_both(m, inputs((8, *xshape[1:]), spread=1.0), tmp_path)
            assert_exact(want, got)


def test_conv_layer(tmp_path):
    g = Graph()
    xq = g.quant("x", 2.0 ** -3, 4, signed=False)
    sw = (2.0 ** -np.array([2, 3, 1, 2], np.float32)).reshape(4, 1, 1, 1)
    w = g.quant(g.const(weights((4, 3, 3, 3))), sw, 3, narrow=True)
    c = g.node("Conv", [xq, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 1])
    y = g.quant(g.node("Relu", [c]), 2.0 ** -2, 4, signed=False, narrow=True)
    m = g.model("x", [1, 3, 7, 6], y, [1, 4, 4, 6])
    want, got = run_both(m, inputs((6, 3, 7, 6), spread=1.0), tmp_path)
    assert_exact(want, got)


def test_binary_weights_and_bipolar_activation(tmp_path):
    """BipolarQuant weights (-1/+1) and a bipolar activation after the MatMul, then a 1-bit
    signed Quant (qonnx treats it as bipolar) on the next layer's output."""
    g = Graph()
    xq = g.quant("x", 2.0 ** -1, 2, signed=True)
    w = g.node("BipolarQuant", [g.const(weights((16, 8))), g.const(2.0 ** -1)], DOMAIN)
    h = g.node("BipolarQuant", [g.node("MatMul", [xq, w]), g.const(1.0)], DOMAIN)
    w2 = g.node("BipolarQuant", [g.const(weights((8, 5), 3)), g.const(1.0)], DOMAIN)
    y = g.quant(g.node("MatMul", [h, w2]), 2.0 ** 1, 1, signed=True)
    want, got = run_both(g.model("x", [1, 16], y, [1, 5]), inputs((40, 16), spread=1.0), tmp_path)
    assert_exact(want, got)
    assert set(np.unique(want)) == {-2.0, 2.0}


def test_requantise_codes_any_rounding_and_zero_point(tmp_path):
    """Quant of an already quantised value is a table over its codes: FLOOR/CEIL/HALF_UP,
    odd zero points and narrow ranges are exact there."""
    g = Graph()
    a = g.quant("x", 2.0 ** -3, 8, signed=True)
    b = g.quant(a, 0.3, 3, signed=False, zeropt=3.0, rounding="FLOOR")
    c = g.quant(b, 2.0 ** -2, 4, signed=True, narrow=True, zeropt=1.0, rounding="HALF_UP")
    want, got = run_both(g.model("x", [1, 20], c, [1, 20]), inputs((10, 20), spread=0.5), tmp_path)
    assert_exact(want, got)


# ---- Trunc after an average pool -----------------------------------------------------------
@pytest.mark.parametrize("k,version", [(2, 2), (3, 2), (2, 1)])
def test_trunc_after_averagepool(tmp_path, k, version):
    """FINN's average pool: AveragePool -> Mul(k*k) -> Trunc(FLOOR), both Trunc versions."""
    g = Graph()
    s = np.float32(2.0 ** -3)
    xq = g.quant("x", s, 4, signed=False)
    p = g.node("Mul", [g.node("AveragePool", [xq], kernel_shape=[k, k], strides=[k, k]),
                       g.const(float(k * k))])
    in_bits = 4 + int(np.ceil(np.log2(k * k)))
    if version == 2:
        ins = [p, g.const(s), g.const(0.0), g.const(in_bits), g.const(s * 2.0 ** (in_bits - 4)),
               g.const(4)]
        y = g.node("Trunc", ins, DOMAIN, rounding_mode="FLOOR", signed=0, narrow=0)
    else:
        ins = [p, g.const(s), g.const(0.0), g.const(in_bits), g.const(4)]
        y = g.node("Trunc", ins, DOMAIN, rounding_mode="FLOOR")
    want, got = run_both(g.model("x", [1, 2, 6, 6], y, [1, 2, 6 // k, 6 // k], qonnx_opset=version),
                         inputs((8, 2, 6, 6), spread=1.0), tmp_path)
    assert_exact(want, got)


# ---- QCDQ (Brevitas' standard-op export below 8 bits) --------------------------------------
def test_qcdq_matmul(tmp_path):
    """QuantizeLinear -> Clip(int range of 4 bits) -> DequantizeLinear on the input and the
    weights (int8 containers), MatMul, QCDQ on the output."""
    g = Graph()

    def qcdq(x, scale, lo, hi):
        q = g.node("QuantizeLinear", [x, g.const(scale), g.const(0, np.int8)])
        c = g.node("Clip", [q, g.const(lo, np.int8), g.const(hi, np.int8)])
        return g.node("DequantizeLinear", [c, g.const(scale), g.const(0, np.int8)])

    xq = qcdq("x", 2.0 ** -2, -8, 7)
    w = g.node("DequantizeLinear", [g.const(np.clip(np.round(weights((12, 5)) * 4), -7, 7),
                                            np.int8), g.const(2.0 ** -2), g.const(0, np.int8)])
    y = qcdq(g.node("MatMul", [xq, w]), 2.0 ** -1, -8, 7)
    want, got = run_both(g.model("x", [1, 12], y, [1, 5]), inputs((24, 12), spread=2.0), tmp_path)
    assert_exact(want, got)


# ---- Quant on its own, over bit widths and scales -----------------------------------------
@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), signed=st.booleans(), narrow=st.booleans(),
       exp=st.integers(-8, 4), mant=st.floats(1.0, 2.0, width=32, exclude_max=True),
       seed=st.integers(0, 2 ** 16))
def test_quant_alone(tmp_path_factory, bits, signed, narrow, exp, mant, seed):
    """Quant on the graph input (host quantisation + narrow clamp) then dequantised: one float32
    division and one product on both sides, so any float32 scale is exact."""
    scale = np.float32(mant) * np.float32(2.0 ** exp)
    g = Graph()
    y = g.quant("x", scale, bits, signed=signed, narrow=narrow)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 16)) * scale * 2 ** (bits - 1)).astype(np.float32)
    x[0, :8] = (np.arange(8) - 3.5) * scale  # exact ties
    want, got = run_both(g.model("x", [1, 16], y, [1, 16]), x, tmp_path_factory.mktemp("q"))
    assert_exact(want, got)


@pytest.mark.parametrize("op,domain", [("IntQuant", DOMAIN), ("Quant", "finn.custom_op.general"),
                                       ("Quant", "onnx.brevitas")])
def test_other_names_and_domains(tmp_path, op, domain):
    """Newer qonnx's IntQuant, FINN's old domain and Brevitas' raw export domain lower like
    Quant in qonnx.custom_op.general (the truth: the same graph under the current name)."""
    outs = []
    for o, d in ((op, domain), ("Quant", DOMAIN)):
        g = Graph()
        xq = g.quant("x", 2.0 ** -2, 4)
        w = g.node(o, [g.const(weights((8, 4))), g.const(0.5), g.const(0.0), g.const(3)], d,
                   signed=1, narrow=1, rounding_mode="ROUND")
        y = g.quant(g.node("MatMul", [xq, w]), 2.0 ** -1, 5)
        m = g.model("x", [1, 8], y, [1, 4])
        if d != DOMAIN:
            m.opset_import.append(helper.make_opsetid(d, 1))
        path = str(tmp_path / f"{o}_{d}.onnx")
        onnx.save(m, path)
        outs.append(reference.run(compile_model(path), {"x": inputs((16, 8))})[y])
    assert_exact(outs[1], outs[0])


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(1, 8), signed=st.booleans(), narrow=st.booleans(),
       scale=st.floats(2.0 ** -6, 4.0, width=32), zeropt=st.integers(-3, 3),
       mode=st.sampled_from(["ROUND", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN"]),
       seed=st.integers(0, 2 ** 16))
def test_quant_of_quantised_value(tmp_path_factory, bits, signed, narrow, scale, zeropt, mode,
                                  seed):
    """Quant of an 8-bit quantised value (a table over its codes): any float32 scale, zero
    point, rounding mode, narrow range and 1-bit (bipolar) width is exact."""
    g = Graph()
    a = g.quant("x", 2.0 ** -4, 8)
    y = g.quant(a, np.float32(scale), bits, signed=signed, narrow=narrow,
                zeropt=float(zeropt), rounding=mode)
    x = (np.random.default_rng(seed).standard_normal((4, 16)) * 4).astype(np.float32)
    want, got = run_both(g.model("x", [1, 16], y, [1, 16]), x, tmp_path_factory.mktemp("q"))
    assert_exact(want, got)


# ---- non-power-of-two scales: the tolerance rule -------------------------------------------
def test_non_pow2_scales_within_one_code(tmp_path):
    g = Graph()
    sx, sw, sy = np.float32(0.0371), np.float32(0.113), np.float32(0.0917)
    xq = g.quant("x", sx, 8, signed=True)
    w = g.quant(g.const(weights((64, 16))), sw, 4, narrow=True)
    y = g.quant(g.node("MatMul", [xq, w]), sy, 8, signed=True)
    want, got = run_both(g.model("x", [1, 64], y, [1, 16]), inputs((64, 64), spread=2.0), tmp_path)
    diff = np.abs(np.round(want / sy) - np.round(got / sy))
    assert diff.max() <= TOLERANCE_CODES_NON_POW2


# ---- what is refused, and how --------------------------------------------------------------
def _compile_error(model, tmp_path) -> ModelError:
    path = str(tmp_path / "bad.onnx")
    onnx.save(model, path)
    with pytest.raises(ModelError) as e:
        compile_model(path)
    return e.value


def test_non_constant_bitwidth_is_unsupported(tmp_path):
    g = Graph()
    y = g.node("Quant", ["x", g.const(0.5), g.const(0.0), "x_bits"], DOMAIN, signed=1,
               narrow=0)
    m = g.model("x", [1, 4], y, [1, 4])
    m.graph.input.append(helper.make_tensor_value_info("x_bits", TensorProto.FLOAT, []))
    e = _compile_error(m, tmp_path)
    assert isinstance(e, UnsupportedOp) and e.node == g.nodes[-1].name
    assert "bit width must be a constant" in e.reason


@pytest.mark.parametrize("rounding,zeropt,what", [("FLOOR", 0.0, "rounding_mode FLOOR"),
                                                  ("ROUND", 1.0, "zero point")])
def test_activation_variants_the_requant_cannot_do(tmp_path, rounding, zeropt, what):
    g = Graph()
    xq = g.quant("x", 0.5, 4)
    w = g.quant(g.const(weights((4, 3))), 0.5, 4)
    y = g.quant(g.node("MatMul", [xq, w]), 0.5, 4, rounding=rounding, zeropt=zeropt)
    e = _compile_error(g.model("x", [1, 4], y, [1, 3]), tmp_path)
    assert isinstance(e, UnsupportedOp)
    assert what in e.reason and e.node == g.nodes[-1].name and e.op == "Quant"


def test_unknown_rounding_mode(tmp_path):
    g = Graph()
    y = g.quant("x", 0.5, 4, rounding="STOCHASTIC")
    e = _compile_error(g.model("x", [1, 4], y, [1, 4]), tmp_path)
    assert isinstance(e, UnsupportedOp) and "STOCHASTIC" in e.reason


# ---- the Brevitas example (examples/make_qonnx_example.py) ---------------------------------
def test_brevitas_digits_example_equals_qonnx():
    """The 4-bit Brevitas export, as stored (not cleaned up), on its 256 held-out inputs:
    equal to the qonnx executor's outputs stored beside it, element for element."""
    stem = ROOT / "examples" / "models" / "digits_mlp_w4_qonnx.onnx"
    data = ROOT / "examples" / "data"
    x = np.load(data / "digits_mlp_w4_qonnx.npz")["pixels"]
    truth = np.load(data / "digits_mlp_w4_qonnx_truth.npz")["logits"]
    g = compile_model(str(stem))
    assert any(g.tensors[n.outputs[0]].dtype.bits <= 4 for n in g.nodes), "no 4-bit codes"
    got = reference.run(g, {"pixels": x})["logits"].reshape(truth.shape)
    assert_exact(truth, got)


# ---- real Brevitas exports (QONNX and QCDQ) --------------------------------------------------
def _brevitas_cnn(export: str, tmp_path) -> onnx.ModelProto:
    """A trained-statistics 4-bit Brevitas CNN (Conv, ReLU, TruncAvgPool2d for QONNX; Linear
    for QCDQ), power-of-two scales, exported with Brevitas' own exporter."""
    import brevitas.nn as qnn
    import torch
    from brevitas.export import export_onnx_qcdq, export_qonnx
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )

    torch.manual_seed(0)
    act = dict(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4, return_quant_tensor=True)
    wq = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4)
    if export == "qonnx":
        layers = [qnn.QuantIdentity(**act),
                  qnn.QuantConv2d(2, 4, 3, bias=False, return_quant_tensor=True, **wq),
                  qnn.QuantReLU(**act),
                  qnn.TruncAvgPool2d(kernel_size=2, stride=2, bit_width=4,
                                     return_quant_tensor=False)]
        x = torch.rand(16, 2, 8, 8)
    else:
        layers = [qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=4,
                                    return_quant_tensor=True),
                  qnn.QuantLinear(16, 8, bias_quant=Int32Bias, return_quant_tensor=True, **wq),
                  qnn.QuantReLU(**act),
                  qnn.QuantLinear(8, 4, bias_quant=Int32Bias,
                                  output_quant=Int8ActPerTensorFixedPoint, **wq)]
        x = torch.randn(64, 16) * 2
    m = torch.nn.Sequential(*layers)
    m.train()
    m(x)  # collects the activation statistics the scales come from
    m.eval()
    path = str(tmp_path / f"brevitas_{export}.onnx")
    fn = export_qonnx if export == "qonnx" else export_onnx_qcdq
    fn(m, x[:1], export_path=path, dynamo=False)
    return onnx.load(path)


FIXTURES = Path(__file__).parent / "data"


def _check_brevitas_model(m: onnx.ModelProto, export: str, tmp_path) -> None:
    ops = {n.op_type for n in m.graph.node}
    assert ({"Quant", "Trunc", "AveragePool"} <= ops if export == "qonnx"
            else {"QuantizeLinear", "Clip", "DequantizeLinear"} <= ops), ops
    shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    x = inputs((12, *shape[1:]), spread=1.0)
    if export == "qonnx":
        x = np.abs(x)
    want, got = run_both(m, x, tmp_path)
    assert_exact(want, got)


@pytest.mark.parametrize("export", ["qonnx", "qcdq"])
def test_brevitas_export_fixture(tmp_path, export):
    """Models Brevitas exported (``_brevitas_cnn``, stored in data/ so the default suite needs
    no torch): qonnx's executor == the intflow reference."""
    _check_brevitas_model(onnx.load(FIXTURES / f"brevitas_{export}.onnx"), export, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("export", ["qonnx", "qcdq"])
def test_brevitas_export_live(tmp_path, export):
    """A fresh Brevitas export (``make test-slow`` installs brevitas and torch)."""
    _check_brevitas_model(_brevitas_cnn(export, tmp_path), export, tmp_path)
