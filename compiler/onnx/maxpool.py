"""MaxPool on codes (QOperator keeps an integer MaxPool; QDQ DQ -> MaxPool -> Q drops the
Q/DQ pair when the parameters are equal). Max commutes with the monotone DQ, so MaxPool of a
dequantised tensor is the dequantised MaxPool of its codes."""

from __future__ import annotations

from ..ops.maxpool import has_empty_window
from . import registry
from .float_island import requant_table
from .lowering import emit_lut
from .pooling import pool_geometry
from .registry import fuses, lowers
from .values import Codes, Dequant, FloatInput, FloatOp


def emit_maxpool(imp, node, x: Codes) -> Codes:
    geometry, shape = pool_geometry(imp, imp.attrs(node), x.shape)
    dtype = imp.g.tensors[x.tensor].dtype
    if has_empty_window(x.shape[2:], geometry):
        # a window entirely in the padding: onnxruntime gives the type's lowest code
        geometry["empty"] = (x.q.dtype if x.q is not None else dtype).min
    t = imp.emit("MaxPool", [x.tensor], shape, dtype, geometry)
    return Codes(t, shape, x.q)


@lowers("MaxPool")
def lower(imp, node, ins):
    if len(node.output) > 1 and node.output[1]:
        raise imp.error("MaxPool's Indices output is not supported")
    x = ins[0]
    if isinstance(x, Codes):
        return [emit_maxpool(imp, node, x)]
    if isinstance(x, Dequant) and isinstance(x.src, Codes):
        if x.src.q.axis is not None:
            raise imp.error("MaxPool of a per-channel quantised tensor is not supported")
        geometry, shape = pool_geometry(imp, imp.attrs(node), x.shape)
        if has_empty_window(x.shape[2:], geometry):
            # float MaxPool gives -FLT_MAX there, i.e. the lowest code of the closing Q
            return [imp.pending_float(node, ins, shape)]
        # onnxruntime pools the float values; what reads the result stays in float too
        return [Dequant(emit_maxpool(imp, node, x.src), synthetic=x.synthetic)]
    if isinstance(x, (FloatOp, FloatInput)):
        # max commutes with the monotone float ops before it and with Q: pool after them
        _, shape = pool_geometry(imp, imp.attrs(node), x.shape)
        return [imp.pending_float(node, ins, shape)]
    raise imp.error("MaxPool input must be quantised codes or their DequantizeLinear")


@lowers("NhwcMaxPool", "com.microsoft")
def lower_nhwc(imp, node, ins):
    raise imp.error("NhwcMaxPool (onnxruntime-optimized graphs) is not supported: give the "
                    "model before onnxruntime's graph optimisation")


@fuses("MaxPool")
def fuse(imp, op, q, qnode):
    """Q(MaxPool(f(...))) = MaxPool(Q(f(...))) for the non-decreasing f and Q."""
    inner = op.inputs[0]
    if isinstance(inner, Dequant):  # windows entirely in the padding (see ``lower``)
        codes = inner.src
        if not codes.q.same_as(q):
            codes = emit_lut(imp, codes, requant_table(codes.q, q), q, qnode.output[0] + "_in")
    else:
        codes = registry.fuse_inner(imp, inner, q, qnode)
    return emit_maxpool(imp, op.node, codes)
