"""MaxPool on codes (QOperator keeps an integer MaxPool; QDQ DQ -> MaxPool -> Q drops the
Q/DQ pair when the parameters are equal). Max commutes with the monotone DQ, so MaxPool of a
dequantised tensor is the dequantised MaxPool of its codes."""

from __future__ import annotations

from . import registry
from .pooling import pool_geometry
from .registry import fuses, lowers
from .values import Codes, Dequant, FloatOp


def emit_maxpool(imp, node, x: Codes) -> Codes:
    geometry, shape = pool_geometry(imp, imp.attrs(node), x.shape)
    t = imp.emit("MaxPool", [x.tensor], shape, imp.g.tensors[x.tensor].dtype, geometry)
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
        return [Dequant(emit_maxpool(imp, node, x.src))]
    if isinstance(x, FloatOp):
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
    codes = registry.fuse_inner(imp, op.inputs[0], q, qnode)
    return emit_maxpool(imp, op.node, codes)
