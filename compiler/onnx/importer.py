"""Walk an ONNX graph in order and build the IntGraph.

Values stay symbolic (``values.py``) until an integer kernel can be emitted: a
QuantizeLinear closing a float op over dequantised inputs becomes the kernel onnxruntime
fuses that pattern into (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, ...), so QDQ and
QOperator models lower through the same helpers (``lowering.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..dtypes import ONNX_INT_TYPES, IntType
from ..errors import FloatPrefix, ModelError, UnsupportedOp
from ..ir import HostInput, IntGraph, Node, QuantParams
from . import registry
from .loader import LoadedModel, initializer_arrays
from .values import (
    Codes,
    Const,
    Dequant,
    FloatInput,
    FloatOp,
    QConst,
    Value,
    describe,
    reads_float_input,
)

ACC = IntType(True, 64)  # placeholder type of accumulators until widths are proven
# ops that keep a pending float Relu/Clip chain symbolic (a following Q can close it exactly)
ELEMENTWISE_OR_LAYOUT = {"QuantizeLinear", "Relu", "Clip", "Sigmoid", "LeakyRelu",
                         "BatchNormalization", "Identity", "Dropout", "MaxPool", "Reshape",
                         "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Shape",
                         # unary float-island ops (tables; not monotone-commuting with Q)
                         "Tanh", "HardSigmoid", "HardSwish", "Neg", "Abs", "Floor", "Ceil",
                         "Round", "Sign", "Sqrt", "Reciprocal", "Softsign", "Exp"}
# ops on a float graph input that commute with the QuantizeLinear after them (monotone or
# layout), so the host quantises first and the accelerator runs them on codes
COMMUTES_WITH_Q = {"QuantizeLinear", "MaxPool", "Relu", "Clip", "Reshape", "Flatten",
                   "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape",
                   "DynamicQuantizeLinear",  # (rejected by its own lowering, clearly)
                   "Quant", "IntQuant"}  # QONNX quantisers (qonnx_quant.py)


class Importer:
    def __init__(self, loaded: LoadedModel, requant: str) -> None:
        self.loaded = loaded
        self.path = loaded.path
        self.requant = requant
        name = loaded.model.graph.name or "model"
        self.g = IntGraph(name=name, tensors={}, constants={}, nodes=[], inputs=[],
                          outputs=[], requant=requant, source=loaded.path)
        self.env: dict[str, Value] = {}
        self.node: onnx.NodeProto | None = None
        self.float_path: list[str] = []  # nodes onnxruntime runs in float (noted, not exact)
        self.saturating: list[str] = []  # u8s8 layers onnxruntime may saturate on AVX2

    # ---- messages -------------------------------------------------------------------------
    def error(self, reason: str, node: onnx.NodeProto | None = None) -> ModelError:
        node = node or self.node
        return ModelError(reason, file=self.path, node=self.node_label(node) if node else None,
                          op=node.op_type if node else None)

    def node_label(self, node: onnx.NodeProto) -> str:
        """The node's name, or its position in the graph when it has none."""
        if node.name:
            return node.name
        for i, n in enumerate(self.loaded.model.graph.node):
            if n is node or n == node:
                return f"#{i}"
        return "?"

    def note(self, text: str) -> None:
        if text not in self.g.notes:
            self.g.notes.append(text)

    # ---- attribute and value access -------------------------------------------------------
    @staticmethod
    def attrs(node: onnx.NodeProto) -> dict[str, Any]:
        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            elif isinstance(v, onnx.TensorProto):
                v = numpy_helper.to_array(v)
            out[a.name] = v
        return out

    def const(self, v: Value | None, what: str) -> np.ndarray:
        if isinstance(v, Const):
            return v.value
        if isinstance(v, Dequant) and isinstance(v.src, QConst):
            # a quantised float parameter: DequantizeLinear of a constant, as onnxruntime
            # computes it (f32(f32(x - zp) * s))
            from .. import host
            return host.dequantize(v.src.value, v.src.q, sample_axis=False)
        raise self.error(f"{what} must be a constant, got {describe(v) if v else 'nothing'}")

    def qparams(self, scale: Value | None, zero_point: Value | None, *, axis: int | None,
                ndim: int | None, default: IntType | None = None,
                what: str = "", shape: tuple[int, ...] | None = None) -> QuantParams:
        """Validated quantisation parameters from a scale and an optional zero point
        (``shape``: the quantised tensor's, to check a per-axis scale's length)."""
        s = np.asarray(self.const(scale, f"{what} scale"))
        if s.dtype != np.float32:
            raise self.error(f"{what} scale must be float32, got {s.dtype}")
        if (s.ndim > 1 and s.size > 1) or s.size == 0:
            raise self.error(f"{what} scale must be a scalar or a non-empty 1-D tensor, got "
                             f"shape {list(s.shape)}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise self.error(f"{what} scale must be finite and > 0, got "
                             f"{s.ravel()[:4].tolist()}")
        if zero_point is None:
            if default is None:
                raise self.error(f"{what} has no zero point and no type")
            zp = np.zeros(s.shape, np.int64)
            dtype = default
        else:
            zpa = np.asarray(self.const(zero_point, f"{what} zero point"))
            if not np.issubdtype(zpa.dtype, np.integer):
                raise self.error(f"{what} zero point must be an integer tensor, got "
                                 f"{zpa.dtype}")
            dtype = self.int_type(zpa.dtype, what)
            zp = zpa.astype(np.int64)
            if zp.shape != s.shape:
                if zp.size == 1:
                    zp = np.full(s.shape, int(zp.ravel()[0]), np.int64)
                else:
                    raise self.error(f"{what} zero point shape {zp.shape} != scale shape "
                                     f"{s.shape}")
        if s.ndim > 1 or s.size == 1:  # one value is per tensor whatever the axis
            s, zp = s.reshape(-1), zp.reshape(-1)
            if s.size == 1:
                s, zp = s.reshape(()), zp.reshape(())
        if s.ndim == 0:
            axis = None
        elif ndim is not None:
            axis = axis if axis is not None else 1
            if not -ndim <= axis < ndim:
                raise self.error(f"{what} axis {axis} is out of range for a {ndim}-D tensor")
            axis %= ndim
            if shape is not None and s.size not in (1, shape[axis]):
                raise self.error(f"{what}: {s.size} scales for axis {axis} of length "
                                 f"{shape[axis]}")
        return QuantParams(s.astype(np.float32), zp, dtype, axis)

    def int_type(self, dt: np.dtype, what: str) -> IntType:
        t = {np.dtype(np.uint8): IntType(False, 8), np.dtype(np.int8): IntType(True, 8),
             np.dtype(np.int32): IntType(True, 32), np.dtype(np.uint16): IntType(False, 16),
             np.dtype(np.int16): IntType(True, 16)}.get(np.dtype(dt))
        if t is None:
            raise self.error(f"{what}: quantised type {dt} is not supported (int8, uint8, "
                             "int16, uint16, int32)")
        return t

    # ---- emitting IR ----------------------------------------------------------------------
    def emit(self, op: str, inputs: list[str], shape: tuple[int, ...],
             dtype: IntType = ACC, attrs: dict[str, Any] | None = None,
             base: str | None = None) -> str:
        node = self.node
        base = base or (node.output[0] if node is not None and node.output else op)
        out = self.g.add_tensor(_clean(base) + "_" + op.lower(), shape, dtype)
        origin = [node.name or node.op_type] if node is not None else []
        self.g.nodes.append(Node(op, self.g.unique_node_name(op, origin), inputs, [out],
                                 attrs or {}, origin))
        return out

    def add_const(self, base: str, value: np.ndarray, dtype: IntType | None = None) -> str:
        return self.g.add_const(_clean(base), value, dtype)

    # ---- the walk -------------------------------------------------------------------------
    def run(self) -> IntGraph:
        m = self.loaded.model
        for name, arr in initializer_arrays(m).items():
            self.env[name] = Const(arr)
        for vi in m.graph.input:
            if vi.name in self.env:
                continue
            dt = helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            shape = self.loaded.input_shapes[vi.name]
            if np.issubdtype(dt, np.floating):
                if dt != np.float32:
                    raise self.error(f"graph input '{vi.name}' is {dt}; only float32 float "
                                     "inputs are supported")
                self.env[vi.name] = FloatInput(vi.name, shape, str(np.dtype(dt)))
            else:
                itype = ONNX_INT_TYPES.get(vi.type.tensor_type.elem_type)
                if itype is None:
                    raise self.error(f"graph input '{vi.name}' has type {dt}")
                t = self.g.add_tensor(_clean(vi.name), shape, itype)
                self.g.inputs.append(HostInput(t, vi.name, str(np.dtype(dt)), shape, None))
                self.env[vi.name] = Codes(t, shape, None)
        from .outputs import lower_outputs  # the host epilogues
        try:
            # absurd scales overflow the float32 multipliers: an error, not a warning
            with np.errstate(over="raise", divide="raise", invalid="raise"):
                for node in m.graph.node:
                    self.node = node
                    self.lower_node(node)
                self.node = None
                lower_outputs(self)
        except FloatingPointError as e:
            raise self.error(f"float32 arithmetic on the quantisation parameters fails ({e}): "
                             "are the scales absurdly large or small?") from None
        if self.saturating:
            from .saturation import note
            self.note(note(self.saturating))
        if self.float_path:
            self.note("onnxruntime runs these nodes in float between DequantizeLinear and "
                      "QuantizeLinear; intflow computes them with integer kernels, so they "
                      "may differ by rounding (or, where a Clip bound lies between two codes, "
                      "by the clamp to the code inside it): " + ", ".join(self.float_path))
        if not any(n.op in ("Conv", "MatMul", "Requant", "Lut", "Add", "Mul", "AvgPool")
                   for n in self.g.nodes) and not self.g.inputs:
            raise ModelError("no quantized ops: quantize it with onnxruntime.quantization "
                             "first", file=self.path)
        return self.g

    def lower_node(self, node: onnx.NodeProto) -> None:
        ins: list[Value | None] = []
        for i in node.input:
            if i == "":
                ins.append(None)
            elif i not in self.env:
                raise self.error(f"input '{i}' is not defined before this node (graph not "
                                 "topologically sorted, or a dangling name)")
            else:
                ins.append(self.env[i])
        key = (node.domain or "", node.op_type)
        if node.op_type not in ELEMENTWISE_OR_LAYOUT:
            from .clamp import approximate_dequant
            ins = [approximate_dequant(self, v) if v is not None else None for v in ins]
        if node.op_type not in COMMUTES_WITH_Q and any(
                reads_float_input(v) for v in ins if v is not None):
            raise FloatPrefix(
                f"{node.op_type} computes in float on the graph input before its first "
                "QuantizeLinear (onnxruntime runs it on the CPU); intflow runs quantized ops "
                "only: quantize this op too, or compute it before calling the model",
                file=self.path, node=self.node_label(node), op=node.op_type)
        if (node.domain in ("", "ai.onnx") and ins and all(isinstance(v, Const) for v in ins
                                                           if v is not None)
                and node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Constant")):
            from .shape import fold_constant_node
            present = [v for v in ins if v is not None]
            if len(present) == len(ins):
                for name, v in zip(node.output, fold_constant_node(self, node, present)):
                    self.env[name] = v
                return
        fn = registry.LOWER.get(key)
        if fn is None:
            dom = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
            raise UnsupportedOp(
                f"unsupported op {dom}{node.op_type}; intflow supports: "
                + ", ".join(registry.supported_ops()),
                file=self.path, node=node.name, op=node.op_type)
        outs = fn(self, node, ins)
        if len(outs) < len([o for o in node.output if o]):
            raise self.error(f"the node has {len(node.output)} outputs; {node.op_type} has "
                             f"{len(outs)}")
        for name, v in zip(node.output, outs):
            if name:
                self.env[name] = v

    def pending_float(self, node: onnx.NodeProto, ins: list[Value | None],
                      shape: tuple[int, ...]) -> FloatOp:
        return FloatOp(node, list(ins), tuple(shape), self.attrs(node))


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name).strip("_") or "t"


def codes_of(v: Value) -> Codes | None:
    return v if isinstance(v, Codes) else None


__all__ = ["Importer", "ACC", "Codes", "Const", "Dequant", "FloatOp", "QConst", "FloatInput"]
