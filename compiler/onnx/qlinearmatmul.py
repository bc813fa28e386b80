"""QLinearMatMul: integer MatMul + per-column Requant (ORT_KERNELS.md §3).

acc = sum (a - za)(b - zb), M[j] = f32(f32(sa * sb[j]) / sy), no bias input.
"""

from __future__ import annotations

import numpy as np

from .lowering import emit_matmul_acc, emit_requant, int_codes, per_tensor, scale_vector
from .qlinearconv import as_codes
from .registry import lowers
from .values import Codes, Const, QConst


def emit_qlinearmatmul(imp, a: Codes, b, out_q, base, bias=None, alpha=None) -> Codes:
    sa, _ = per_tensor(imp, a.q, "the MatMul input")
    sb = scale_vector(b.q)
    sy, _ = per_tensor(imp, out_q, "the MatMul output")
    acc, shape = emit_matmul_acc(imp, a, b, bias, base)
    if sb.size not in (1, shape[-1]):
        raise imp.error(f"{sb.size} scales for the {shape[-1]} columns of B")
    if alpha is None:
        m32 = ((np.float32(sa) * sb).astype(np.float32) / np.float32(sy)).astype(np.float32)
        real = np.float64(sa) * sb.astype(np.float64) / np.float64(sy)
    else:  # QGemm: M[j] = f32(f32(f32(alpha * sa) * sb[j]) / sy)
        asa = np.float32(np.float32(alpha) * np.float32(sa))
        m32 = ((asa * sb).astype(np.float32) / np.float32(sy)).astype(np.float32)
        real = float(alpha) * np.float64(sa) * sb.astype(np.float64) / np.float64(sy)
    return emit_requant(imp, acc, shape, m32, real, out_q, len(shape) - 1, base)


def operand(imp, v, q, what):
    if isinstance(v, Const):
        return QConst(int_codes(imp, v.value, q, what), q)
    return as_codes(imp, v, q, what)


@lowers("QLinearMatMul")
def lower(imp, node, ins):
    aq = imp.qparams(ins[1], ins[2], axis=None, ndim=None, what="a")
    a = as_codes(imp, ins[0], aq, "QLinearMatMul a")
    braw = ins[3]
    shape_b = braw.value.shape if isinstance(braw, Const) else braw.shape
    ndim_b = len(shape_b)
    bq = imp.qparams(ins[4], ins[5], axis=ndim_b - 1, ndim=ndim_b, what="b", shape=shape_b)
    b = operand(imp, braw, bq, "QLinearMatMul b")
    yq = imp.qparams(ins[6], ins[7], axis=None, ndim=None, what="y")
    return [emit_qlinearmatmul(imp, a, b, yq, node.output[0])]
