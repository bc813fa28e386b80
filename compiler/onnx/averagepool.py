"""AveragePool / GlobalAveragePool: QDQ patterns and QLinearAveragePool /
QLinearGlobalAveragePool (com.microsoft), bit-exact to onnxruntime's two paths (ORT §6):

- whole-image window with zero pads, and global pooling: acc = sum x - zx*n, then Requant
  with S = f32(sx / f32(sy * f32(n)))  (the GlobalAvgPool + Requant pair);
- a real window: the float32 sequence of QLinearAveragePool, emulated by the AvgPool op.
"""

from __future__ import annotations

import numpy as np

from .. import f32
from .lowering import emit_requant, per_tensor
from .pooling import pool_geometry
from .qlinearadd import _pair
from .registry import fuses, lowers
from .values import Codes, Dequant


def emit_global(imp, x: Codes, q, base) -> Codes:
    sx, zx = per_tensor(imp, x.q, "the pool input")
    sy, _ = per_tensor(imp, q, "the pool output")
    n = int(np.prod(x.shape[2:]))
    if n >= 1 << 24:
        raise imp.error("pool window of 2^24 or more elements")
    shape = (*x.shape[:2], *([1] * (len(x.shape) - 2)))
    acc = imp.emit("GlobalAvgPool", [x.tensor], shape, attrs={"x_zero_point": zx}, base=base)
    s = np.float32(np.float32(sx) / np.float32(np.float32(sy) * np.float32(n)))
    if not 2.0 ** -32 <= s < 256:
        raise imp.error(f"pool rescale {s} outside onnxruntime's range [2^-32, 256)")
    return emit_requant(imp, acc, shape, np.array([s]), np.array([sx / (sy * n)]), q, None,
                        base)


def emit_windowed(imp, x: Codes, q, geometry, shape, count_include_pad, base) -> Codes:
    sx, zx = per_tensor(imp, x.q, "the pool input")
    sy, zy = per_tensor(imp, q, "the pool output")
    t = imp.g.tensors[x.tensor].dtype
    codes = np.arange(t.min, t.max + 1, dtype=np.int64)
    xf = np.multiply(np.float32(sx), (codes - zx).astype(np.float32), dtype=np.float32)
    parts = f32.from_float32(xf)
    table = np.stack([parts.m, parts.e]).astype(np.int64)
    if imp.requant == "dyadic":
        imp.note("windowed AveragePool keeps onnxruntime's float32 sequence in dyadic mode")
    attrs = {**geometry, "count_include_pad": int(count_include_pad), "x_min": t.min,
             "sy": _pair(np.float32(sy)), "zy": zy, "lo": q.dtype.min, "hi": q.dtype.max}
    tab = imp.add_const(base + "_xf", table)
    out = imp.emit("AvgPool", [x.tensor, tab], shape, q.dtype, attrs, base=base)
    return Codes(out, shape, q)


def emit_avgpool(imp, x: Codes, q, attrs, base) -> Codes:
    geometry, shape = pool_geometry(imp, attrs, x.shape)
    whole = (list(geometry["kernel_shape"]) == list(x.shape[2:])
             and not any(geometry["pads"]) and all(s == 1 for s in shape[2:]))
    if whole:
        return emit_global(imp, x, q, base)
    if any(d != 1 for d in geometry["dilations"]):
        raise imp.error("dilated AveragePool is not supported")
    return emit_windowed(imp, x, q, geometry, shape, attrs.get("count_include_pad", 0), base)


def _pending(imp, node, ins):
    x = ins[0]
    if not (isinstance(x, Dequant) and isinstance(x.src, Codes)):
        raise imp.error(f"{node.op_type} input must be a DequantizeLinear of an activation")
    if node.op_type == "GlobalAveragePool":
        shape = (*x.shape[:2], *([1] * (len(x.shape) - 2)))
    else:
        _, shape = pool_geometry(imp, imp.attrs(node), x.shape)
    return [imp.pending_float(node, ins, shape)]


lowers("AveragePool")(_pending)
lowers("GlobalAveragePool")(_pending)


@fuses("AveragePool")
def fuse_avg(imp, op, q, qnode):
    return emit_avgpool(imp, op.inputs[0].src, q, op.attrs, qnode.output[0])


@fuses("GlobalAveragePool")
def fuse_global(imp, op, q, qnode):
    return emit_global(imp, op.inputs[0].src, q, qnode.output[0])


def _qlinear_io(imp, node, ins):
    a = imp.attrs(node)
    if a.get("channels_last", 0):
        raise imp.error("channels_last pooling is not supported")
    xq = imp.qparams(ins[1], ins[2], axis=None, ndim=None, what="X")
    yq = imp.qparams(ins[3], ins[4] if len(ins) > 4 else None, axis=None, ndim=None,
                     default=xq.dtype, what="Y")
    x = ins[0]
    if not isinstance(x, Codes):
        raise imp.error("pool input must be an integer activation")
    return Codes(x.tensor, x.shape, xq), yq, a


@lowers("QLinearAveragePool", "com.microsoft")
def lower_qavg(imp, node, ins):
    x, yq, a = _qlinear_io(imp, node, ins)
    return [emit_avgpool(imp, x, yq, a, node.output[0])]


@lowers("QLinearGlobalAveragePool", "com.microsoft")
def lower_qgap(imp, node, ins):
    x, yq, _ = _qlinear_io(imp, node, ins)
    return [emit_global(imp, x, yq, node.output[0])]
