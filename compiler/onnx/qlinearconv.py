"""QLinearConv (ai.onnx and com.microsoft): integer Conv + per-channel Requant.

acc = sum (x - zx)(w - zw) + bias (int32), M[c] = f32(f32(sx * sw[c]) / sy),
y = sat(rint(f32(f32(acc) * M[c])) + zy)    — ORT_KERNELS.md §3.
"""

from __future__ import annotations

import numpy as np

from .lowering import (
    emit_conv_acc,
    emit_requant,
    int32_const,
    int_codes,
    per_tensor,
    scale_vector,
)
from .registry import lowers
from .values import Codes, Const, QConst


def emit_qlinearconv(imp, x: Codes, w: QConst, bias, attrs, out_q, base) -> Codes:
    sx, _ = per_tensor(imp, x.q, "the Conv input")
    sw = scale_vector(w.q)
    if sw.size not in (1, w.value.shape[0]):
        raise imp.error(f"{sw.size} weight scales for {w.value.shape[0]} output channels")
    sy, _ = per_tensor(imp, out_q, "the Conv output")
    acc, shape = emit_conv_acc(imp, x, w, bias, attrs, base)
    m32 = ((np.float32(sx) * sw).astype(np.float32) / np.float32(sy)).astype(np.float32)
    real = np.float64(sx) * sw.astype(np.float64) / np.float64(sy)
    return emit_requant(imp, acc, shape, m32, real, out_q, 1, base)


def as_qconst(imp, v, q, what: str) -> QConst:
    if isinstance(v, Const):
        return QConst(int_codes(imp, v.value, q, what), q)
    raise imp.error(f"{what} must be a constant")


def as_codes(imp, v, q, what: str) -> Codes:
    if isinstance(v, Codes):
        if imp.g.tensors[v.tensor].dtype != q.dtype:
            raise imp.error(f"{what}: zero point type {q.dtype} differs from the input type "
                            f"{imp.g.tensors[v.tensor].dtype}")
        return Codes(v.tensor, v.shape, q)
    raise imp.error(f"{what} must be an integer activation (got a constant or float)")


@lowers("QLinearConv")
@lowers("QLinearConv", "com.microsoft")
def lower(imp, node, ins):
    a = imp.attrs(node)
    if node.domain == "com.microsoft" and a.get("channels_last", 0):
        raise imp.error("channels_last QLinearConv is not supported")
    xq = imp.qparams(ins[1], ins[2], axis=None, ndim=None, what="x")
    x = as_codes(imp, ins[0], xq, "QLinearConv x")
    w_raw = imp.const(ins[3], "QLinearConv w")
    wq = imp.qparams(ins[4], ins[5], axis=0, ndim=w_raw.ndim, what="w", shape=w_raw.shape)
    w = QConst(int_codes(imp, w_raw, wq, "QLinearConv w"), wq)
    yq = imp.qparams(ins[6], ins[7], axis=None, ndim=None, what="y")
    bias = None
    if len(ins) > 8 and ins[8] is not None:
        bias = int32_const(imp, ins[8], "QLinearConv bias")
    return [emit_qlinearconv(imp, x, w, bias, a, yq, node.output[0])]
