"""Clamping helpers, and Relu/Clip lowering (float islands or integer codes)."""

from __future__ import annotations

import numpy as np

from .registry import lowers
from .values import Codes, Const, Dequant, FloatInput, FloatOp


def fold_clamp(imp, x: Codes, lo: int, hi: int) -> Codes:
    """Clamp codes; the FuseClamp pass folds it into the Requant that produced them."""
    t = imp.emit("Clamp", [x.tensor], x.shape, imp.g.tensors[x.tensor].dtype,
                 {"lo": int(lo), "hi": int(hi)}, base=x.tensor)
    return Codes(t, x.shape, x.q)


def _as_code_clamp(imp, node, ins, src: Codes, exact: bool = True) -> Codes | None:
    """Relu/Clip of DQ(c) as DQ(clamp(c)) when every bound is exactly a dequantised code:
    DQ is monotone and DQ(zp) = 0, so max(DQ(c), 0) = DQ(max(c, zp)) exactly. With
    ``exact=False`` a bound between two codes clamps to the nearest code inside the range."""
    from .. import host
    from .float_island import clip_bounds
    q = src.q
    if node.op_type == "Relu":
        bounds = [np.float32(0), np.float32(np.inf)]
    else:
        bounds = list(clip_bounds(imp, imp.pending_float(node, ins, src.shape)))
    codes = []
    for b, default in zip(bounds, (q.dtype.min, q.dtype.max)):
        if np.isinf(b):
            codes.append(default)
            continue
        c = int(host.quantize(np.array([b], np.float32), q, sample_axis=False)[0])
        v = host.dequantize(np.array([c]), q, sample_axis=False)[0]
        lower_bound = default == q.dtype.min
        # a bound beyond every code (Clip(0, 6) of a tensor whose codes reach only 0.22)
        # changes no dequantised value: clamping at the extreme code is exact
        beyond = (c == q.dtype.min and v > b) if lower_bound else (c == q.dtype.max and v < b)
        if v != b and not beyond:
            if exact:
                return None
            if lower_bound and v < b and c < q.dtype.max:
                c += 1
            elif not lower_bound and v > b and c > q.dtype.min:
                c -= 1
        codes.append(c)
    return fold_clamp(imp, src, codes[0], codes[1])


def _lower_activation(imp, node, ins):
    x = ins[0]
    if isinstance(x, Dequant) and isinstance(x.src, Codes) and x.src.q.axis is None:
        exact = _as_code_clamp(imp, node, ins, x.src)
        if exact is not None:
            return [Dequant(exact, synthetic=True)]
    if isinstance(x, (Dequant, FloatOp, FloatInput)):
        return [imp.pending_float(node, ins, x.shape)]
    if isinstance(x, Const):
        raise imp.error("activation of a constant is not supported")
    if isinstance(x, Codes):
        # integer-domain Relu/Clip (ONNX allows int8 Relu from opset 14): raw codes
        a = imp.attrs(node)
        t = imp.g.tensors[x.tensor].dtype
        lo, hi = t.min, t.max
        if node.op_type == "Relu":
            lo = max(lo, 0)
        else:
            if len(ins) > 1 and ins[1] is not None:
                lo = max(lo, int(np.asarray(imp.const(ins[1], "Clip min"))))
            if len(ins) > 2 and ins[2] is not None:
                hi = min(hi, int(np.asarray(imp.const(ins[2], "Clip max"))))
            if "min" in a:
                lo = max(lo, int(np.ceil(a["min"])))
            if "max" in a:
                hi = min(hi, int(np.floor(a["max"])))
        return [fold_clamp(imp, x, lo, hi)]
    raise imp.error("Relu/Clip input is not a tensor intflow can lower")


lowers("Relu")(_lower_activation)
lowers("Clip")(_lower_activation)


def approximate_dequant(imp, v):
    """A pending Relu/Clip chain over DQ(codes) that a non-elementwise float op reads
    (onnxruntime runs both in float): the clamp on codes, nearest codes for the bounds, as a
    synthetic dequantised value — intflow then notes the float path instead of claiming
    equality."""
    if not (isinstance(v, FloatOp) and v.node.op_type in ("Relu", "Clip", "MaxPool")):
        return v
    inner = approximate_dequant(imp, v.inputs[0])
    if not (isinstance(inner, Dequant) and isinstance(inner.src, Codes)
            and inner.src.q.axis is None):
        return v
    saved, imp.node = imp.node, v.node
    try:
        if v.node.op_type == "MaxPool":
            # max commutes with the monotone clamp and DQ: pool the clamped codes (a window
            # wholly in the padding would be -FLT_MAX in float: leave that to the error)
            from ..ops.maxpool import has_empty_window
            from .maxpool import emit_maxpool
            from .pooling import pool_geometry
            geometry, _ = pool_geometry(imp, v.attrs, inner.shape)
            if has_empty_window(inner.shape[2:], geometry):
                return v
            return Dequant(emit_maxpool(imp, v.node, inner.src), synthetic=True)
        clamped = _as_code_clamp(imp, v.node, v.inputs, inner.src, exact=False)
    finally:
        imp.node = saved
    return Dequant(clamped, synthetic=True)
