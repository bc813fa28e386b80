"""Build quantized ONNX models layer by layer, as onnxruntime's quantizer would write them.

A ``GraphBuilder`` collects nodes and initializers; each layer function takes the builder and
one or more quantized activations (``QAct``: the name of a tensor holding integer codes plus
their scale, zero point and type) and returns the ``QAct`` of its output, so layers compose
into graphs (the single-layer tests use one; a graph fuzzer can chain many)::

    b = GraphBuilder(batch="N")
    x = b.input((1, 3, 8, 8), QParams(0.02, 128, np.uint8))   # float input -> QuantizeLinear
    y = conv(b, x, w, 0.01, 0, bias, QParams(0.05, 120, np.uint8), pads=[1, 1, 1, 1])
    b.output(y)                                               # DequantizeLinear -> output
    model = b.model()

Two encodings of every layer (``style``):

- ``"qdq"``: DequantizeLinear -> float op -> QuantizeLinear, as ``quantize_static`` emits it
  (weights are int8/uint8 initializers behind DequantizeLinear, biases int32 with scale
  ``f32(sx * sw[c])`` and zero point 0);
- ``"qop"``: the QOperator node (QLinearConv, QLinearMatMul, com.microsoft QGemm, QLinearAdd,
  QLinearConcat, QLinearAveragePool, QLinearGlobalAveragePool, QLinearSigmoid,
  QLinearLeakyRelu; MaxPool stays an integer MaxPool on the codes).

Shapes are tracked with the batch axis as 1 (``QAct.shape``); graph inputs and outputs declare
it as ``builder.batch`` ("N" = dynamic, or 1). Nothing here imports intflow: the models are
built from the ONNX specification alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MS = "com.microsoft"
STYLES = ("qdq", "qop")

_ONNX_TYPE = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
              np.dtype(np.int32): TensorProto.INT32}


# ---- quantization parameters ------------------------------------------------------------------
@dataclass(frozen=True)
class QParams:
    """Per-tensor quantization of an activation: float32 scale, zero point, uint8 or int8."""

    scale: float
    zero_point: int
    dtype: type = np.uint8

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", float(np.float32(self.scale)))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).type)
        if not self.qmin <= self.zero_point <= self.qmax:
            raise ValueError(f"zero point {self.zero_point} outside {np.dtype(self.dtype)}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale {self.scale} must be finite and > 0")

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    @property
    def f32_scale(self) -> np.float32:
        return np.float32(self.scale)


@dataclass(frozen=True)
class QAct:
    """A quantized activation: ``name`` holds its codes (the output of a QuantizeLinear in a
    QDQ graph, of the QOperator node in a QOperator graph); ``shape`` has batch axis 1."""

    name: str
    shape: tuple[int, ...]
    q: QParams

    @property
    def scale(self) -> float:
        return self.q.scale

    @property
    def zero_point(self) -> int:
        return self.q.zero_point

    @property
    def dtype(self) -> type:
        return self.q.dtype


@dataclass(frozen=True)
class QConst:
    """A quantized constant operand (codes with their quantization), e.g. for Add."""

    codes: np.ndarray
    q: QParams

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)


def quantize_f32(x: np.ndarray, q: QParams) -> np.ndarray:
    """onnxruntime's QuantizeLinear: sat(rint(f32(x / s)) + zp) (a true float32 division)."""
    v = np.divide(np.asarray(x, np.float32), q.f32_scale, dtype=np.float32)
    v = np.clip(np.nan_to_num(v, nan=-np.inf), q.qmin - q.zero_point, q.qmax - q.zero_point)
    return (np.rint(v).astype(np.int64) + q.zero_point).astype(q.dtype)


# ---- the graph builder ------------------------------------------------------------------------
@dataclass
class GraphBuilder:
    """Collects nodes, initializers, inputs and outputs of one ONNX graph."""

    batch: int | str = "N"
    opset: int = 17
    name: str = "qmodel"
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    inputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    outputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    uses_ms: bool = False
    _names: set[str] = field(default_factory=set)

    def fresh(self, prefix: str) -> str:
        i = 0
        while f"{prefix}_{i}" in self._names:
            i += 1
        self._names.add(f"{prefix}_{i}")
        return f"{prefix}_{i}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        name = self.fresh(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def scalar(self, prefix: str, value, dtype) -> str:
        return self.const(prefix, np.array(value, dtype=dtype))

    def node(self, op: str, inputs: list[str], *, domain: str = "", n_out: int = 1,
             prefix: str | None = None, **attrs) -> list[str]:
        if domain == MS:
            self.uses_ms = True
        base = prefix or op.lower()
        outs = [self.fresh(base + "_out") for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.fresh(base),
                                           domain=domain, **attrs))
        return outs

    def _io_shape(self, shape: tuple[int, ...]) -> list[int | str]:
        return [self.batch, *shape[1:]]

    # -- host boundary ------------------------------------------------------------------------
    def float_input(self, shape: tuple[int, ...], name: str | None = None) -> str:
        """A float32 graph input; ``shape`` has batch axis 1 (declared as ``self.batch``)."""
        name = name or self.fresh("input")
        self._names.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                         self._io_shape(shape)))
        return name

    def input(self, shape: tuple[int, ...], q: QParams, name: str | None = None) -> QAct:
        """A float32 graph input quantized by QuantizeLinear (host quantization)."""
        return self.quantize(self.float_input(shape, name), shape, q)

    def quantize(self, x: str, shape: tuple[int, ...], q: QParams) -> QAct:
        (out,) = self.node("QuantizeLinear", [x, self.scalar("scale", q.scale, np.float32),
                                              self.scalar("zp", q.zero_point, q.dtype)],
                           prefix="q")
        return QAct(out, tuple(shape), q)

    def dequantize(self, x: QAct) -> str:
        (out,) = self.node("DequantizeLinear", [x.name,
                                                self.scalar("scale", x.scale, np.float32),
                                                self.scalar("zp", x.zero_point, x.dtype)],
                           prefix="dq")
        return out

    def dequantize_const(self, codes: np.ndarray, scale, zero_point,
                         axis: int | None = None) -> str:
        """DequantizeLinear of an integer initializer; per-axis when ``scale`` is a vector."""
        codes = np.asarray(codes)
        scale = np.asarray(scale, np.float32)
        zp = np.broadcast_to(np.asarray(zero_point), scale.shape).astype(codes.dtype)
        ins = [self.const("w", codes), self.const("w_scale", scale), self.const("w_zp", zp)]
        per_axis = scale.ndim == 1
        (out,) = self.node("DequantizeLinear", ins, prefix="dq",
                           axis=axis if per_axis else None)
        return out

    def output(self, x: QAct, name: str | None = None) -> str:
        """DequantizeLinear -> a float32 graph output."""
        f = self.dequantize(x)
        name = name or self.fresh("output")
        self.nodes.append(helper.make_node("Identity", [f], [name], name=self.fresh("out")))
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                          self._io_shape(x.shape)))
        return name

    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        if self.uses_ms:
            opsets.append(helper.make_opsetid(MS, 1))
        m = helper.make_model(graph, opset_imports=opsets, producer_name="intflow-tests")
        m.ir_version = 8 if self.opset <= 17 else 10
        onnx.checker.check_model(m)
        return m


# ---- shapes -----------------------------------------------------------------------------------
def conv_out_len(n: int, k: int, stride: int, pad_begin: int, pad_end: int,
                 dilation: int = 1) -> int:
    return (n + pad_begin + pad_end - dilation * (k - 1) - 1) // stride + 1


def pool_out_len(n: int, k: int, stride: int, pad_begin: int, pad_end: int,
                 dilation: int = 1, ceil_mode: bool = False) -> int:
    """ONNX pooling output length (with ceil_mode, a window must start inside the input or
    the begin padding)."""
    span = n + pad_begin + pad_end - dilation * (k - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= n + pad_begin:
        out -= 1
    return out


def _qparam_inputs(b: GraphBuilder, q: QParams) -> list[str]:
    return [b.scalar("scale", q.scale, np.float32), b.scalar("zp", q.zero_point, q.dtype)]


def _weight_params(b: GraphBuilder, w: np.ndarray, w_scale, w_zp) -> list[str]:
    """QOperator weight inputs: codes, scale (scalar or vector), zero point (same shape)."""
    s = np.asarray(w_scale, np.float32)
    zp = np.broadcast_to(np.asarray(w_zp), s.shape).astype(w.dtype)
    return [b.const("w", w), b.const("w_scale", s), b.const("w_zp", zp)]


def bias_scale(x: QParams, w_scale) -> np.ndarray:
    """quantize_static's bias scale: f32(sx * sw[c]) (scalar or per channel)."""
    return (np.float32(x.scale) * np.asarray(w_scale, np.float32)).astype(np.float32)


def _maybe_relu(b: GraphBuilder, f: str, activation: str | None) -> str:
    if activation is None:
        return f
    if activation != "Relu":
        raise ValueError(f"fused activation {activation!r}: only Relu")
    return b.node("Relu", [f])[0]


# ---- layers -----------------------------------------------------------------------------------
def conv(b: GraphBuilder, x: QAct, w: np.ndarray, w_scale, w_zp, bias: np.ndarray | None,
         y: QParams, *, strides=None, pads=None, dilations=None, group: int = 1,
         style: str = "qdq", activation: str | None = None) -> QAct:
    """Conv 1-D/2-D. ``w`` int8/uint8 codes (M, C/group, *k); ``w_scale``/``w_zp`` scalars or
    (M,) vectors (per output channel); ``bias`` int32 (M,) or None; ``pads`` as ONNX
    [begin..., end...]. ``activation="Relu"`` (QDQ only) puts a Relu between Conv and Q."""
    nd = len(x.shape) - 2
    k = list(w.shape[2:])
    strides = list(strides or [1] * nd)
    pads = list(pads or [0] * (2 * nd))
    dilations = list(dilations or [1] * nd)
    out = (x.shape[0], w.shape[0], *(conv_out_len(x.shape[2 + i], k[i], strides[i], pads[i],
                                                  pads[nd + i], dilations[i])
                                     for i in range(nd)))
    attrs = dict(kernel_shape=k, strides=strides, pads=pads, dilations=dilations, group=group)
    if style == "qdq":
        ins = [b.dequantize(x), b.dequantize_const(w, w_scale, w_zp, axis=0)]
        if bias is not None:
            ins.append(b.dequantize_const(np.asarray(bias, np.int32), bias_scale(x.q, w_scale),
                                          0, axis=0))
        f = b.node("Conv", ins, **attrs)[0]
        return b.quantize(_maybe_relu(b, f, activation), out, y)
    if style != "qop":
        raise ValueError(f"unknown style {style!r}")
    if activation is not None:
        raise ValueError("QOperator layers fuse activations into their output parameters")
    ins = [x.name, *_qparam_inputs(b, x.q), *_weight_params(b, w, w_scale, w_zp),
           *_qparam_inputs(b, y)]
    if bias is not None:
        ins.append(b.const("bias", np.asarray(bias, np.int32)))
    (o,) = b.node("QLinearConv", ins, **attrs)
    return QAct(o, out, y)


def matmul(b: GraphBuilder, x: QAct, w: np.ndarray, w_scale, w_zp, y: QParams, *,
           style: str = "qdq", activation: str | None = None) -> QAct:
    """MatMul with constant 2-D weights ``w`` (K, N); scales per tensor or per column (N,)."""
    out = (*x.shape[:-1], w.shape[1])
    if style == "qdq":
        f = b.node("MatMul", [b.dequantize(x), b.dequantize_const(w, w_scale, w_zp, axis=1)])[0]
        return b.quantize(_maybe_relu(b, f, activation), out, y)
    if activation is not None:
        raise ValueError("QOperator layers fuse activations into their output parameters")
    ins = [x.name, *_qparam_inputs(b, x.q), *_weight_params(b, w, w_scale, w_zp),
           *_qparam_inputs(b, y)]
    (o,) = b.node("QLinearMatMul", ins)
    return QAct(o, out, y)


def gemm(b: GraphBuilder, x: QAct, w: np.ndarray, w_scale, w_zp, bias: np.ndarray | None,
         y: QParams, *, alpha: float = 1.0, trans_b: bool = False, style: str = "qdq",
         activation: str | None = None) -> QAct:
    """Gemm of a 2-D activation (batch, K) with constant ``w``: (K, N), or (N, K) when
    ``trans_b``; scales per tensor or per column (N,); ``bias`` int32 (N,) or None."""
    n = w.shape[0] if trans_b else w.shape[1]
    out = (x.shape[0], n)
    attrs = dict(alpha=float(alpha) if alpha != 1.0 else None,
                 transB=1 if trans_b else None)
    if style == "qdq":
        ins = [b.dequantize(x), b.dequantize_const(w, w_scale, w_zp, axis=0 if trans_b else 1)]
        if bias is not None:
            ins.append(b.dequantize_const(np.asarray(bias, np.int32), bias_scale(x.q, w_scale),
                                          0, axis=0))
        f = b.node("Gemm", ins, **attrs)[0]
        return b.quantize(_maybe_relu(b, f, activation), out, y)
    if activation is not None:
        raise ValueError("QOperator layers fuse activations into their output parameters")
    ins = [x.name, *_qparam_inputs(b, x.q), *_weight_params(b, w, w_scale, w_zp),
           b.const("bias", np.asarray(bias, np.int32)) if bias is not None else "",
           *_qparam_inputs(b, y)]
    (o,) = b.node("QGemm", ins, domain=MS, **attrs)
    return QAct(o, out, y)


def _operand(b: GraphBuilder, v: QAct | QConst, style: str) -> tuple[str, list[str]]:
    """(float value for QDQ, [codes, scale, zp] for QOperator) of an Add operand."""
    if isinstance(v, QConst):
        if style == "qdq":
            return b.dequantize_const(v.codes, v.q.scale, v.q.zero_point), []
        return "", [b.const("c", v.codes), *_qparam_inputs(b, v.q)]
    if style == "qdq":
        return b.dequantize(v), []
    return "", [v.name, *_qparam_inputs(b, v.q)]


def add(b: GraphBuilder, a: QAct | QConst, c: QAct | QConst, y: QParams, *,
        style: str = "qdq") -> QAct:
    """Elementwise Add with numpy broadcasting; either operand may be a constant."""
    out = tuple(np.broadcast_shapes(a.shape, c.shape))
    if style == "qdq":
        fa, _ = _operand(b, a, style)
        fc, _ = _operand(b, c, style)
        return b.quantize(b.node("Add", [fa, fc])[0], out, y)
    _, ia = _operand(b, a, style)
    _, ic = _operand(b, c, style)
    (o,) = b.node("QLinearAdd", [*ia, *ic, *_qparam_inputs(b, y)], domain=MS)
    return QAct(o, out, y)


def concat(b: GraphBuilder, xs: list[QAct], y: QParams, *, axis: int = 1,
           style: str = "qdq") -> QAct:
    """Concat of activations with their own scales/zero points along ``axis``."""
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    if style == "qdq":
        f = b.node("Concat", [b.dequantize(x) for x in xs], axis=axis)[0]
        return b.quantize(f, tuple(shape), y)
    ins = [*_qparam_inputs(b, y)]
    for x in xs:
        ins += [x.name, *_qparam_inputs(b, x.q)]
    (o,) = b.node("QLinearConcat", ins, domain=MS, axis=axis)
    return QAct(o, tuple(shape), y)


def _pool_shape(x: QAct, kernel, strides, pads, dilations, ceil_mode) -> tuple[int, ...]:
    nd = len(x.shape) - 2
    return (*x.shape[:2], *(pool_out_len(x.shape[2 + i], kernel[i], strides[i], pads[i],
                                         pads[nd + i], dilations[i], bool(ceil_mode))
                            for i in range(nd)))


def maxpool(b: GraphBuilder, x: QAct, y: QParams | None = None, *, kernel, strides=None,
            pads=None, dilations=None, ceil_mode: int = 0, style: str = "qdq") -> QAct:
    """MaxPool. QDQ: DQ -> MaxPool -> Q with ``y`` (default: x's parameters); QOperator: an
    integer MaxPool on the codes (``y`` must be None or equal to x's)."""
    nd = len(x.shape) - 2
    strides = list(strides or [1] * nd)
    pads = list(pads or [0] * (2 * nd))
    dilations = list(dilations or [1] * nd)
    out = _pool_shape(x, kernel, strides, pads, dilations, ceil_mode)
    attrs = dict(kernel_shape=list(kernel), strides=strides, pads=pads,
                 dilations=dilations if any(d != 1 for d in dilations) else None,
                 ceil_mode=ceil_mode or None)
    if style == "qdq":
        f = b.node("MaxPool", [b.dequantize(x)], **attrs)[0]
        return b.quantize(f, out, y or x.q)
    if y is not None and y != x.q:
        raise ValueError("an integer MaxPool keeps its input's quantization")
    (o,) = b.node("MaxPool", [x.name], **attrs)
    return QAct(o, out, x.q)


def average_pool(b: GraphBuilder, x: QAct, y: QParams, *, kernel, strides=None, pads=None,
                 count_include_pad: int = 0, ceil_mode: int = 0, style: str = "qdq") -> QAct:
    """AveragePool (windowed, or a whole-image kernel with zero pads)."""
    nd = len(x.shape) - 2
    strides = list(strides or [1] * nd)
    pads = list(pads or [0] * (2 * nd))
    out = _pool_shape(x, kernel, strides, pads, [1] * nd, ceil_mode)
    attrs = dict(kernel_shape=list(kernel), strides=strides, pads=pads,
                 count_include_pad=count_include_pad or None, ceil_mode=ceil_mode or None)
    if style == "qdq":
        f = b.node("AveragePool", [b.dequantize(x)], **attrs)[0]
        return b.quantize(f, out, y)
    (o,) = b.node("QLinearAveragePool", [x.name, *_qparam_inputs(b, x.q),
                                         *_qparam_inputs(b, y)], domain=MS, **attrs)
    return QAct(o, out, y)


def global_average_pool(b: GraphBuilder, x: QAct, y: QParams, *, style: str = "qdq") -> QAct:
    out = (*x.shape[:2], *([1] * (len(x.shape) - 2)))
    if style == "qdq":
        f = b.node("GlobalAveragePool", [b.dequantize(x)])[0]
        return b.quantize(f, out, y)
    (o,) = b.node("QLinearGlobalAveragePool", [x.name, *_qparam_inputs(b, x.q),
                                               *_qparam_inputs(b, y)], domain=MS)
    return QAct(o, out, y)


UNARY_QOP = {"Sigmoid": "QLinearSigmoid", "LeakyRelu": "QLinearLeakyRelu"}


def unary(b: GraphBuilder, x: QAct, op: str, y: QParams, *, style: str = "qdq",
          alpha: float | None = None, clip_min: float | None = None,
          clip_max: float | None = None) -> QAct:
    """DQ -> Relu | Clip | Sigmoid | LeakyRelu -> Q; QOperator: QLinearSigmoid /
    QLinearLeakyRelu (Relu and Clip have no QOperator form)."""
    if style == "qdq":
        xf = b.dequantize(x)
        if op == "Clip":
            ins = [xf, b.scalar("min", clip_min, np.float32) if clip_min is not None else "",
                   b.scalar("max", clip_max, np.float32) if clip_max is not None else ""]
            while ins[-1] == "":
                ins.pop()
            f = b.node("Clip", ins)[0]
        else:
            f = b.node(op, [xf], alpha=alpha if op == "LeakyRelu" else None)[0]
        return b.quantize(f, x.shape, y)
    if op not in UNARY_QOP:
        raise ValueError(f"{op} has no QOperator form")
    (o,) = b.node(UNARY_QOP[op], [x.name, *_qparam_inputs(b, x.q), *_qparam_inputs(b, y)],
                  domain=MS, alpha=alpha if op == "LeakyRelu" else None)
    return QAct(o, x.shape, y)


# ---- inputs -----------------------------------------------------------------------------------
def input_values(rng: np.random.Generator, shape: tuple[int, ...], q: QParams) -> np.ndarray:
    """float32 values for a graph input quantized with ``q``: uniform over the representable
    range (and a little beyond, to saturate), exact code values, and exact rounding ties of
    QuantizeLinear (values v with f32(v / s) = k + 0.5), mixed elementwise."""
    s = q.f32_scale
    lo, hi = q.qmin - q.zero_point, q.qmax - q.zero_point
    n = int(np.prod(shape))
    uniform = rng.uniform(lo - 2, hi + 2, n) * np.float64(s)
    k = rng.integers(lo - 1, hi + 1, n)
    exact = (k * np.float64(s)).astype(np.float32)
    ties = _ties(k, s)
    kind = rng.integers(0, 4, n)
    v = np.where(kind == 0, exact, np.where(kind == 1, uniform.astype(np.float32), ties))
    return v.astype(np.float32).reshape(shape)


def _ties(k: np.ndarray, s: np.float32) -> np.ndarray:
    """float32 values whose quotient by ``s`` is exactly k + 0.5, searched within two ulps of
    f32((k + 0.5) * s); where none exists, that nearest value (a near tie)."""
    target = (k + 0.5).astype(np.float32)
    base = (target.astype(np.float64) * np.float64(s)).astype(np.float32)
    up = [base]
    down = [base]
    for _ in range(2):
        up.append(np.nextafter(up[-1], np.float32(np.inf)))
        down.append(np.nextafter(down[-1], np.float32(-np.inf)))
    best = base.copy()
    found = np.zeros(k.shape, bool)
    for c in (base, up[1], down[1], up[2], down[2]):
        hit = ~found & (np.divide(c, s, dtype=np.float32) == target)
        best = np.where(hit, c, best)
        found |= hit
    return best
