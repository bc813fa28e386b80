"""Softmax over the last axis: DQ -> Softmax -> Q (QDQ) and com.microsoft QLinearSoftmax.

Both become the integer Softmax IR op (compiler/ops/softmax.py: exp table over d = max - x,
one reciprocal per row, p = softmax * 2^M) and a Requant of p (scale 2^-M) to the output
codes. onnxruntime computes the float softmax (QDQ) or a float exp table (QLinearSoftmax), so
the integer kernel is an approximation: the node goes on the float-path list, whose output
elements ``intflow check`` counts as "float path" rather than as errors.
"""

from __future__ import annotations

import math

import numpy as np

from ..dtypes import IntType
from ..ops.softmax import exp_table
from .lowering import emit_requant, per_tensor
from .registry import fuses, lowers
from .values import Codes, Dequant

E_BITS = 16  # table fraction bits: exp(-s d) to 2^-16
M_BITS = 15  # output fraction bits: p = softmax * 2^15, 1/128 of a 1/255 output step


def _axis(imp, attrs: dict, ndim: int, opset: int) -> None:
    """Only the last axis: from opset 13 the default; before, axis (default 1) flattens the
    axes from it on, which is the last-axis softmax only when it is the last axis."""
    axis = int(attrs.get("axis", -1 if opset >= 13 else 1))
    if not -ndim <= axis < ndim:
        raise imp.error(f"Softmax axis {axis} is out of range for a {ndim}-D tensor")
    if axis % ndim != ndim - 1:
        raise imp.error(f"Softmax over axis {axis} of a {ndim}-D tensor: only the last axis "
                        "is supported")


def emit_softmax(imp, x: Codes, out_q, base: str) -> Codes:
    """Softmax IR node over the last axis of ``x`` + Requant to ``out_q``."""
    if x.q is None or x.q.axis is not None or x.q.scale.size != 1:
        raise imp.error("Softmax input must be quantised per tensor")
    bits = x.q.dtype.bits
    if bits != 8:
        raise imp.error(f"Softmax input is {x.q.dtype}; only 8-bit inputs are supported (the "
                        "exp table has one entry per code difference)")
    sx, _ = per_tensor(imp, x.q, "the Softmax input")
    n = x.shape[-1]
    attrs = {"E": E_BITS, "M": M_BITS,
             "F": E_BITS + M_BITS + math.ceil(math.log2(max(n, 1))) + 2}
    table = exp_table(float(sx), bits, E_BITS)
    t = imp.add_const(base + "_exp", table, IntType.fit(int(table.min()), int(table.max())))
    p = imp.emit("Softmax", [x.tensor, t], x.shape, attrs=attrs, base=base)
    # p has scale 2^-M. onnxruntime's QLinearSoftmax (what it runs for both forms) multiplies
    # by floor(1.0f / y_scale), not 1 / y_scale (qlinear_softmax.cc: 254 for the quantizer's
    # y_scale = f32(1/255)), so the requant multiplier is floor(f32(1 / sy)) * 2^-M, exact
    sy, _ = per_tensor(imp, out_q, "the Softmax output")
    inv = float(np.floor(np.float32(1) / np.float32(sy)))
    if inv < 1:
        raise imp.error(f"Softmax output scale {float(sy)} > 1: onnxruntime's QLinearSoftmax "
                        "would output zero")
    real = inv * 2.0 ** -M_BITS
    m32 = np.float32(real)
    out = emit_requant(imp, p, x.shape, np.array([m32]), np.array([real]), out_q, None, base)
    node = imp.node
    imp.float_path.append(node.name or node.op_type)
    imp.note("Softmax: onnxruntime's float softmax is replaced by the integer kernel (exp "
             "table over max - x, one reciprocal per row, p = softmax * 2^15, then requant); "
             "its outputs may differ from onnxruntime's by a code")
    return out


@lowers("Softmax")
def lower(imp, node, ins):
    x = ins[0]
    if not isinstance(x, Dequant) or not isinstance(x.src, Codes):
        raise imp.error("Softmax on a tensor that is not dequantised: only DequantizeLinear "
                        "-> Softmax -> QuantizeLinear is supported")
    _axis(imp, imp.attrs(node), len(x.shape), imp.loaded.opset)
    return [imp.pending_float(node, ins, x.shape)]


@fuses("Softmax")
def fuse(imp, op, q, qnode):
    return emit_softmax(imp, op.inputs[0].src, q, qnode.output[0])


@lowers("QLinearSoftmax", "com.microsoft")
def lower_qlinear(imp, node, ins):
    """X, X_scale, x_zero_point, Y_scale, y_zero_point; attrs axis, opset (the Softmax opset
    whose axis semantics apply)."""
    x = ins[0]
    if not isinstance(x, Codes):
        raise imp.error("QLinearSoftmax input must be an integer activation")
    a = imp.attrs(node)
    _axis(imp, a, len(x.shape), int(a.get("opset", 13)))
    qx = imp.qparams(ins[1], ins[2] if len(ins) > 2 else None, axis=None, ndim=None,
                     default=imp.g.tensors[x.tensor].dtype, what="QLinearSoftmax X")
    qy = imp.qparams(ins[3], ins[4] if len(ins) > 4 else None, axis=None, ndim=None,
                     default=qx.dtype, what="QLinearSoftmax Y")
    return [emit_softmax(imp, Codes(x.tensor, x.shape, qx), qy, node.output[0])]
