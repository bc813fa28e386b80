"""Gemm over dequantised inputs -> QGemm (com.microsoft); also the QGemm op itself.

acc = C + sum (a - za)(b - zb) with C the int32 bias used unscaled (onnxruntime does so
whatever the bias DQ scale, ORT_KERNELS.md §9); M[j] = f32(f32(f32(alpha*sa) * sb[j]) / sy).
transA becomes a Transpose, transB is applied to the constant weights.
"""

from __future__ import annotations

import numpy as np

from ..ir import QuantParams
from .lowering import int32_const, int_codes
from .qlinearconv import as_codes
from .qlinearmatmul import emit_qlinearmatmul
from .registry import fuses, lowers
from .values import Codes, Dequant, QConst


def gemm_operands(imp, a: Codes, b: QConst, attrs) -> tuple[Codes, QConst]:
    if attrs.get("transA", 0):
        t = imp.emit("Transpose", [a.tensor], (a.shape[1], a.shape[0]),
                     imp.g.tensors[a.tensor].dtype, {"perm": [1, 0]}, base=a.tensor)
        a = Codes(t, (a.shape[1], a.shape[0]), a.q)
    if attrs.get("transB", 0):
        q = b.q
        if q.axis is not None:
            q = QuantParams(q.scale, q.zero_point, q.dtype, 1 - q.axis)
        b = QConst(b.value.T, q)
    return a, b


def check_bias_shape(imp, c: np.ndarray, n: int) -> np.ndarray:
    if c.size == 1:
        return np.full(n, int(c.ravel()[0]), np.int64)
    if c.shape in ((n,), (1, n)):
        return c.reshape(n)
    raise imp.error(f"Gemm bias of shape {list(c.shape)} is not supported (only (N,) or (1,N))")


@lowers("Gemm")
def lower(imp, node, ins):
    a, b = ins[0], ins[1]
    if not isinstance(a, Dequant) or not isinstance(b, Dequant) or not isinstance(
            b.src, QConst):
        raise imp.error("Gemm inputs must be DequantizeLinear outputs with constant B (a QDQ "
                        "model); float Gemm is not supported: quantize the model first")
    at = imp.attrs(node)
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise imp.error(f"Gemm operands must be 2-D, got {list(a.shape)} and {list(b.shape)}")
    m = a.shape[1] if at.get("transA", 0) else a.shape[0]
    n = b.shape[0] if at.get("transB", 0) else b.shape[1]
    if at.get("beta", 1.0) != 1.0 and len(ins) > 2 and ins[2] is not None:
        raise imp.error("Gemm with beta != 1 is not supported")
    return [imp.pending_float(node, ins, (m, n))]


def gemm_bias(imp, op) -> np.ndarray | None:
    if len(op.inputs) < 3 or op.inputs[2] is None:
        return None
    c = op.inputs[2]
    if isinstance(c, Dequant) and isinstance(c.src, QConst):
        return c.src.value.astype(np.int64)
    raise imp.error("Gemm bias must be a DequantizeLinear of an int32 constant", op.node)


@fuses("Gemm")
def fuse(imp, op, q, qnode):
    a, b = op.inputs[0].src, op.inputs[1].src
    if not isinstance(a, Codes):
        raise imp.error("Gemm of a constant input is not supported", op.node)
    a, b = gemm_operands(imp, a, b, op.attrs)
    bias = gemm_bias(imp, op)
    alpha = op.attrs.get("alpha", 1.0)
    if bias is not None:
        bias = check_bias_shape(imp, bias, b.value.shape[1])
        if alpha != 1.0:
            # QGemm would scale the bias by alpha too, so onnxruntime does not fuse this and
            # runs Gemm in float: y = alpha*A*B + C. Rescale the bias to alpha*sa*sb[j].
            imp.float_path.append(op.node.name or "Gemm")
            from .conv import host_dequant
            real = np.broadcast_to(np.asarray(host_dequant(op.inputs[2].src), np.float64)
                                   .reshape(-1), bias.shape)
            acc_scale = (float(alpha) * np.float64(a.q.scale)
                         * np.atleast_1d(b.q.scale).astype(np.float64))
            bias = np.round(real / acc_scale).astype(np.int64)
    return emit_qlinearmatmul(imp, a, b, q, qnode.output[0], bias=bias, alpha=alpha)


@lowers("QGemm", "com.microsoft")
def lower_qgemm(imp, node, ins):
    at = imp.attrs(node)
    aq = imp.qparams(ins[1], ins[2], axis=None, ndim=None, what="A")
    a = as_codes(imp, ins[0], aq, "QGemm A")
    braw = imp.const(ins[3], "QGemm B")
    if len(a.shape) != 2 or braw.ndim != 2:
        raise imp.error(f"QGemm operands must be 2-D, got {list(a.shape)} and "
                        f"{list(braw.shape)}")
    bq = imp.qparams(ins[4], ins[5], axis=0 if at.get("transB", 0) else 1, ndim=2, what="B",
                     shape=braw.shape)
    a, b = gemm_operands(imp, a, QConst(int_codes(imp, braw, bq, "QGemm B"), bq), at)
    n = b.value.shape[1]
    bias = None
    if len(ins) > 6 and ins[6] is not None:
        bias = check_bias_shape(imp, int32_const(imp, ins[6], "QGemm C"), n)
    if len(ins) > 7 and ins[7] is not None:
        yq = imp.qparams(ins[7], ins[8] if len(ins) > 8 else None, axis=None, ndim=None,
                         default=aq.dtype, what="y")
        return [emit_qlinearmatmul(imp, a, b, yq, node.output[0], bias=bias,
                                   alpha=at.get("alpha", 1.0))]
    # float output: the host applies S[j] = f32(f32(alpha*sa) * sb[j]) to the accumulator
    from .outputs import FloatAcc, emit_float_acc
    s = (np.float32(np.float32(at.get("alpha", 1.0)) * np.float32(aq.scale))
         * np.atleast_1d(bq.scale).astype(np.float32)).astype(np.float32)
    return [emit_float_acc(imp, a, b, bias, s, node.output[0], FloatAcc)]


