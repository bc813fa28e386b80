"""Concat: of constants (shape arithmetic), of codes, or DQ -> Concat -> Q, which
onnxruntime runs as QLinearConcat: each input requantised by its table T[c] = Q(DQ(c)) unless
its parameters equal the output's (ORT_KERNELS.md §7), then the codes concatenated."""

from __future__ import annotations

import numpy as np

from .. import host
from .float_island import requant_table
from .lowering import emit_lut
from .registry import fuses, lowers
from .values import Codes, Const, Dequant, QConst


def concat_shape(imp, shapes, axis):
    rank = len(shapes[0])
    axis = axis % rank
    for s in shapes:
        if len(s) != rank or any(s[i] != shapes[0][i] for i in range(rank) if i != axis):
            raise imp.error(f"Concat shapes {[list(x) for x in shapes]} do not match")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out), axis


def emit_concat(imp, parts, q, axis, base) -> Codes:
    names, shapes = [], []
    for i, p in enumerate(parts):
        if isinstance(p, QConst):
            v = p.value if p.q.same_as(q) else host.quantize(
                host.dequantize(p.value, p.q, sample_axis=False), q, sample_axis=False)
            names.append(imp.add_const(f"{base}_in{i}", v, q.dtype))
            shapes.append(tuple(v.shape))
            continue
        if p.q is not None and not p.q.same_as(q):
            p = emit_lut(imp, p, requant_table(p.q, q), q, f"{base}_in{i}")
        names.append(p.tensor)
        shapes.append(p.shape)
    shape, axis = concat_shape(imp, shapes, axis)
    t = imp.emit("Concat", names, shape, q.dtype, {"axis": axis}, base=base)
    return Codes(t, shape, q)


@lowers("Concat")
def lower(imp, node, ins):
    axis = imp.attrs(node)["axis"]
    if all(isinstance(v, Const) for v in ins):
        return [Const(np.concatenate([v.value for v in ins], axis=axis))]
    if all(isinstance(v, Dequant) for v in ins):
        qs = [v.src.q for v in ins]
        if all(isinstance(v.src, Codes) for v in ins) and all(q.same_as(qs[0]) for q in qs):
            out = emit_concat(imp, [v.src for v in ins], qs[0], axis, node.output[0])
            return [Dequant(out)]
        shape, _ = concat_shape(imp, [v.shape for v in ins], axis)
        return [imp.pending_float(node, ins, shape)]
    if all(isinstance(v, Codes) for v in ins):
        q = ins[0].q
        return [emit_concat(imp, ins, q, axis, node.output[0])]
    raise imp.error("Concat inputs must all be dequantised, all integer, or all constant")


@fuses("Concat")
def fuse(imp, op, q, qnode):
    return emit_concat(imp, [v.src for v in op.inputs], q, op.attrs["axis"], qnode.output[0])


@lowers("QLinearConcat", "com.microsoft")
def lower_qlinear(imp, node, ins):
    axis = imp.attrs(node)["axis"]
    yq = imp.qparams(ins[0], ins[1], axis=None, ndim=None, what="Y")
    parts = []
    for i in range(2, len(ins), 3):
        q = imp.qparams(ins[i + 1], ins[i + 2], axis=None, ndim=None, what=f"input {i // 3}")
        v = ins[i]
        if isinstance(v, Codes):
            parts.append(Codes(v.tensor, v.shape, q))
        elif isinstance(v, Const):
            parts.append(QConst(v.value.astype(np.int64), q))
        else:
            raise imp.error("QLinearConcat inputs must be integer tensors")
    return [emit_concat(imp, parts, yq, axis, node.output[0])]
