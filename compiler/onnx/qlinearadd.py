"""QLinearAdd (com.microsoft), and QDQ Add which onnxruntime fuses into it.

The fma chain and which input is nested depend on the broadcast (ORT_KERNELS.md §4); the
float32 constants are computed here at compile time in the kernel's own order and handed to
the IR ``Add`` as exact (mantissa, exponent) pairs.
"""

from __future__ import annotations

import numpy as np

from .. import f32
from .. import requant as rq
from .lowering import int_codes, per_tensor
from .registry import fuses, lowers
from .values import Codes, Const, Dequant, FloatOp, QConst


def _pair(x: np.float32) -> list[int]:
    if x == 0:
        return [0, 0]
    a = f32.from_float32(np.asarray(x, np.float32))
    return [int(a.m), int(a.e)]


def _fma32(a, b, c) -> np.float32:
    r = f32.fma(*(f32.from_float32(np.asarray(v, np.float32)) for v in (a, b, c)))
    return np.float32(f32.to_float32(r))


def a_is_span_scalar(a_shape, b_shape) -> bool:
    """True when A holds one value per innermost span (A scalar, or A broadcast along the
    innermost axis where the output varies): onnxruntime then swaps the operands."""
    if int(np.prod(a_shape)) == 1:
        return True
    out = np.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    ra = (1,) * (len(out) - len(a_shape)) + tuple(a_shape)
    for i in range(len(out) - 1, -1, -1):
        if out[i] > 1:
            return ra[i] == 1
    return False


def add_attrs(imp, qa, qb, qc, a_shape, b_shape) -> dict:
    sa, za = per_tensor(imp, qa, "Add input A")
    sb, zb = per_tensor(imp, qb, "Add input B")
    sc, zc = per_tensor(imp, qc, "Add output")
    attrs = {"mode": imp.requant, "lo": qc.dtype.min, "hi": qc.dtype.max}
    if imp.requant == "ort":
        ra = np.float32(np.float32(sa) / np.float32(sc))
        rb = np.float32(np.float32(sb) / np.float32(sc))
        swap = a_is_span_scalar(a_shape, b_shape)
        if swap:  # fixB = f32(zc - fma(Rb, zb, f32(Ra*za)))
            fix = np.float32(np.float32(zc) - _fma32(rb, np.float32(zb),
                                                     np.float32(ra * np.float32(za))))
        else:  # fixA = f32(zc - fma(Ra, za, f32(Rb*zb)))
            fix = np.float32(np.float32(zc) - _fma32(ra, np.float32(za),
                                                     np.float32(rb * np.float32(zb))))
        if not np.isfinite([ra, rb, fix]).all():
            raise imp.error(f"Add rescale: the float32 constants Ra={ra}, Rb={rb}, fix={fix} "
                            "overflow: are the scales absurdly large or small?")
        attrs.update(ra=_pair(ra), rb=_pair(rb), fix=_pair(fix),
                     order="a_inner" if swap else "b_inner")
    else:
        # TFLite quantised Add: both inputs to a common scale 2*max(sa, sb) with 20 bits of
        # headroom, then one output multiplier
        twice_max = 2.0 * max(float(sa), float(sb))
        try:
            ma = rq.dyadic_multiplier(float(sa) / twice_max)
            mb = rq.dyadic_multiplier(float(sb) / twice_max)
            mc = rq.dyadic_multiplier(twice_max / ((1 << 20) * float(sc)))
        except ValueError as e:
            raise imp.error(f"Add rescale: {e}") from None
        attrs.update(left_shift=20, za=za, zb=zb, zc=zc, ma=list(ma), mb=list(mb),
                     mc=list(mc))
    return attrs


def operand_name(imp, v, base) -> tuple[str, tuple[int, ...]]:
    if isinstance(v, Codes):
        return v.tensor, v.shape
    return imp.add_const(base, v.value, v.q.dtype), tuple(v.value.shape)


def emit_add(imp, a, b, qc, base) -> Codes:
    (na, sa), (nb, sb) = operand_name(imp, a, base + "_a"), operand_name(imp, b, base + "_b")
    try:
        shape = tuple(np.broadcast_shapes(sa, sb))
    except ValueError:
        raise imp.error(f"Add shapes {list(sa)} and {list(sb)} do not broadcast") from None
    attrs = add_attrs(imp, a.q, b.q, qc, sa, sb)
    t = imp.emit("Add", [na, nb], shape, qc.dtype, attrs, base=base)
    return Codes(t, shape, qc)


@lowers("Add")
def lower(imp, node, ins):
    a, b = ins
    if isinstance(a, Const) and isinstance(b, Const):
        return [Const(a.value + b.value)]
    if isinstance(a, Dequant) and isinstance(b, Dequant):
        try:
            shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        except ValueError:
            raise imp.error(f"Add shapes {list(a.shape)} and {list(b.shape)} do not "
                            "broadcast") from None
        return [imp.pending_float(node, ins, shape)]
    if isinstance(a, FloatOp) and isinstance(b, Const):
        return [imp.pending_float(node, ins, a.shape)]  # MatMul + float bias at an output
    for x, c in ((a, b), (b, a)):  # a float island step: x + scalar (float_island.py)
        if isinstance(x, (Dequant, FloatOp)) and isinstance(c, Const) and c.value.size == 1:
            return [imp.pending_float(node, ins, x.shape)]
    raise imp.error("Add inputs must both be DequantizeLinear outputs (residual add in a QDQ "
                    "model)")


@fuses("Add")
def fuse(imp, op, q, qnode):
    a, b = op.inputs
    if any(isinstance(v, Const) and v.value.size == 1 for v in (a, b)):
        from .float_island import fuse_unary
        return fuse_unary(imp, op, q, qnode)  # DQ -> ... -> Add(scalar) -> Q: a table
    if not (isinstance(a, Dequant) and isinstance(b, Dequant)):
        raise imp.error("this Add runs in float in onnxruntime (an input is not "
                        "dequantised); not supported", op.node)
    if isinstance(a.src, QConst) and isinstance(b.src, QConst):
        raise imp.error("Add of two constants is not supported", op.node)
    return emit_add(imp, a.src, b.src, q, qnode.output[0])


@lowers("QLinearAdd", "com.microsoft")
def lower_qlinear(imp, node, ins):
    qa = imp.qparams(ins[1], ins[2], axis=None, ndim=None, what="A")
    qb = imp.qparams(ins[4], ins[5], axis=None, ndim=None, what="B")
    qc = imp.qparams(ins[6], ins[7] if len(ins) > 7 else None, axis=None, ndim=None,
                     default=qa.dtype, what="C")
    a = _operand(imp, ins[0], qa, "A")
    b = _operand(imp, ins[3], qb, "B")
    return [emit_add(imp, a, b, qc, node.output[0])]


def _operand(imp, v, q, what):
    if isinstance(v, Codes):
        return Codes(v.tensor, v.shape, q)
    if isinstance(v, Const):
        return QConst(int_codes(imp, v.value, q, f"QLinearAdd {what}"), q)
    raise imp.error(f"QLinearAdd {what} must be an integer tensor")
