"""QLinearMul (com.microsoft), and QDQ Mul which onnxruntime fuses into it (ORT §5):
R = f32(f32(sa*sb)/sc); y = sat(cvt(f32(f32(f32(p) * R) + zc))), p = (a-za)(b-zb)."""

from __future__ import annotations

import numpy as np

from .lowering import per_tensor
from .qlinearadd import _operand, _pair, operand_name
from .registry import fuses, lowers
from .values import Codes, Const, Dequant, FloatOp, QConst


def emit_mul(imp, a, b, qc, base) -> Codes:
    (na, sha), (nb, shb) = operand_name(imp, a, base + "_a"), operand_name(imp, b, base + "_b")
    sa, za = per_tensor(imp, a.q, "Mul input A")
    sb, zb = per_tensor(imp, b.q, "Mul input B")
    sc, zc = per_tensor(imp, qc, "Mul output")
    r = np.float32(np.float32(np.float32(sa) * np.float32(sb)) / np.float32(sc))
    try:
        shape = tuple(np.broadcast_shapes(sha, shb))
    except ValueError:
        raise imp.error(f"Mul shapes {list(sha)} and {list(shb)} do not broadcast") from None
    attrs = {"za": za, "zb": zb, "zc": zc, "r": _pair(r), "lo": qc.dtype.min,
             "hi": qc.dtype.max}
    t = imp.emit("Mul", [na, nb], shape, qc.dtype, attrs, base=base)
    return Codes(t, shape, qc)


@lowers("Mul")
def lower(imp, node, ins):
    a, b = ins
    if isinstance(a, Const) and isinstance(b, Const):
        return [Const(a.value * b.value)]
    if isinstance(a, Dequant) and isinstance(b, Dequant):
        try:
            shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        except ValueError:
            raise imp.error(f"Mul shapes {list(a.shape)} and {list(b.shape)} do not "
                            "broadcast") from None
        return [imp.pending_float(node, ins, shape)]
    pool = next((v for v in ins if isinstance(v, FloatOp) and v.node.op_type in (
        "AveragePool", "GlobalAveragePool")), None)
    if pool is not None and any(isinstance(v, Const) for v in ins):
        # FINN's average pool AveragePool -> Mul(k^2) -> QONNX Trunc (qonnx_trunc.py)
        return [imp.pending_float(node, ins, pool.shape)]
    for x, c in ((a, b), (b, a)):  # a float island step: x * scalar (float_island.py)
        if isinstance(x, (Dequant, FloatOp)) and isinstance(c, Const) and c.value.size == 1:
            return [imp.pending_float(node, ins, x.shape)]
    raise imp.error("Mul inputs must both be DequantizeLinear outputs")


@fuses("Mul")
def fuse(imp, op, q, qnode):
    a, b = op.inputs
    if not (isinstance(a, Dequant) and isinstance(b, Dequant)):
        from .float_island import fuse_unary
        return fuse_unary(imp, op, q, qnode)  # DQ -> ... -> Mul(scalar) -> Q: a table
    if isinstance(a.src, QConst) and isinstance(b.src, QConst):
        raise imp.error("Mul of two constants is not supported", op.node)
    return emit_mul(imp, a.src, b.src, q, qnode.output[0])


@lowers("QLinearMul", "com.microsoft")
def lower_qlinear(imp, node, ins):
    qa = imp.qparams(ins[1], ins[2], axis=None, ndim=None, what="A")
    qb = imp.qparams(ins[4], ins[5], axis=None, ndim=None, what="B")
    qc = imp.qparams(ins[6], ins[7] if len(ins) > 7 else None, axis=None, ndim=None,
                     default=qa.dtype, what="C")
    return [emit_mul(imp, _operand(imp, ins[0], qa, "A"), _operand(imp, ins[3], qb, "B"), qc,
                     node.output[0])]
