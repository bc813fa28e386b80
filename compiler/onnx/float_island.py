"""Float islands: elementwise float ops between DequantizeLinear and QuantizeLinear.

A chain of unary elementwise ops over one dequantised tensor is a function of the input code
alone, so it becomes a table over every code, computed at compile time with the float32
arithmetic onnxruntime itself uses (numpy float32 is IEEE single, rounded once per op; the
fused multiply-adds of MLAS's sigmoid go through the exact ``f32.fma``). At run time only the
table lookup remains: exact and integer-only.

Relu/Clip after a fusable op (Conv, MatMul, ...) instead fuse into that kernel's requant as a
clamp, since Q(relu(v)) = max(Q(v), Q(0)) for the monotone Q.
"""

from __future__ import annotations

import numpy as np

from .. import f32, host
from ..ir import QuantParams
from . import registry
from .lowering import emit_lut
from .values import Codes, Dequant, FloatInput, FloatOp


def codes_range(q: QuantParams) -> np.ndarray:
    return np.arange(q.dtype.min, q.dtype.max + 1, dtype=np.int64)


def requant_table(qin: QuantParams, qout: QuantParams) -> np.ndarray:
    """T[c] = Q(DQ(c)): QLinearConcat's and a DQ -> Q pair's requantisation (ORT §7)."""
    c = codes_range(qin)
    return host.quantize(host.dequantize(c, qin, sample_axis=False), qout, sample_axis=False)


# ---- float32 semantics of the unary ops onnxruntime runs --------------------------------------
def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    r = f32.fma(f32.from_float32(np.asarray(a, np.float32)),
                f32.from_float32(np.asarray(b, np.float32)),
                f32.from_float32(np.asarray(c, np.float32)))
    return f32.to_float32(r)


SIGMOID_A = [np.float32(v) for v in (4.37031012579801e-11, 1.15627324459942e-07,
                                     6.08574864600143e-05, 8.51377133304701e-03,
                                     2.48287947061529e-01)]
SIGMOID_B = [np.float32(v) for v in (6.10247389755681e-13, 5.76102136993427e-09,
                                     6.29106785017040e-06, 1.70198817374094e-03,
                                     1.16817656904453e-01, 9.93151921023180e-01)]


def mlas_logistic(v: np.ndarray) -> np.ndarray:
    """MLAS's rational sigmoid, FMA3 kernel (ORT_KERNELS.md §7), in exact float32 steps."""
    z = np.minimum(np.float32(18), np.maximum(np.float32(-18), v.astype(np.float32)))
    z2 = (z * z).astype(np.float32)
    a9, a7, a5, a3, a1 = SIGMOID_A
    p = _fma(z2, np.full_like(z2, a9), np.full_like(z2, a7))
    for a in (a5, a3, a1):
        p = _fma(z2, p, np.full_like(z2, a))
    p = (z * p).astype(np.float32)
    b10, b8, b6, b4, b2, b0 = SIGMOID_B
    q = _fma(z2, np.full_like(z2, b10), np.full_like(z2, b8))
    for b in (b6, b4, b2, b0):
        q = _fma(z2, q, np.full_like(z2, b))
    r = np.add(np.divide(p, q, dtype=np.float32), np.float32(0.5), dtype=np.float32)
    return np.maximum(np.float32(0), r)


def apply_unary(op: FloatOp, v: np.ndarray, imp, channel_axis: int | None) -> np.ndarray:
    """Apply one float op to float32 values ``v`` (shape (C, n) when per-channel)."""
    t, a = op.node.op_type, op.attrs
    if t == "Relu":
        return np.maximum(v, np.float32(0))
    if t == "Clip":
        lo, hi = clip_bounds(imp, op)
        return np.minimum(np.maximum(v, lo), hi)
    if t == "LeakyRelu":
        alpha = np.float32(a.get("alpha", 0.01))
        return np.where(v >= 0, v, np.multiply(v, alpha, dtype=np.float32))
    if t == "Sigmoid":
        return mlas_logistic(v)
    if t == "BatchNormalization":
        return batchnorm(imp, op, v)
    if t in ("Identity", "Dropout"):
        return v
    raise imp.error(f"no float32 model of {t} for a lookup table", op.node)


def clip_bounds(imp, op: FloatOp) -> tuple[np.float32, np.float32]:
    a = op.attrs
    lo = np.float32(a.get("min", -np.inf))
    hi = np.float32(a.get("max", np.inf))
    if len(op.inputs) > 1 and op.inputs[1] is not None:
        lo = np.float32(imp.const(op.inputs[1], "Clip min"))
    if len(op.inputs) > 2 and op.inputs[2] is not None:
        hi = np.float32(imp.const(op.inputs[2], "Clip max"))
    return lo, hi


def float_table(imp, chain: list[FloatOp], src: Codes) -> tuple[np.ndarray, bool]:
    """chain(DQ(c)) in float32 for every code of ``src`` (per channel when a
    BatchNormalization is in the chain: shape (C, codes))."""
    per_channel = any(c.node.op_type == "BatchNormalization" for c in chain)
    vals = host.dequantize(codes_range(src.q), src.q, sample_axis=False)
    if per_channel:
        vals = np.broadcast_to(vals, (src.shape[1], vals.size)).copy()
    for c in chain:
        vals = apply_unary(c, vals, imp, 1 if per_channel else None)
    return vals.astype(np.float32), per_channel


def lut_of(imp, chain: list[FloatOp], src: Codes, q: QuantParams) -> tuple[np.ndarray, bool]:
    """The table T[c] = Q(chain(DQ(c))) over every code of ``src`` (per channel when a
    BatchNormalization is in the chain: shape (C, codes))."""
    vals, per_channel = float_table(imp, chain, src)
    return host.quantize(vals, q, sample_axis=False), per_channel


def batchnorm(imp, op: FloatOp, v: np.ndarray) -> np.ndarray:
    """onnxruntime's CPU BatchNormalization: new_scale = scale / sqrt(var + eps),
    new_bias = B - mean * new_scale, y = x * new_scale + new_bias (float32, no fma).
    ``v`` has shape (C, n)."""
    eps = np.float32(op.attrs.get("epsilon", 1e-5))
    scale, b, mean, var = (np.asarray(imp.const(i, "BatchNormalization parameter"),
                                      np.float32).reshape(-1, 1) for i in op.inputs[1:5])
    inv_std = np.divide(np.float32(1), np.sqrt(np.add(var, eps, dtype=np.float32)),
                        dtype=np.float32)
    new_scale = np.multiply(inv_std, scale, dtype=np.float32)
    new_bias = np.subtract(b, np.multiply(mean, new_scale, dtype=np.float32),
                           dtype=np.float32)
    return np.add(np.multiply(v, new_scale, dtype=np.float32), new_bias, dtype=np.float32)


UNARY = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "BatchNormalization", "Identity", "Dropout"}
CLAMPS = {"Relu", "Clip"}


def unary_chain(v) -> tuple[list[FloatOp], object]:
    """Peel unary float ops off ``v``: (ops from the leaf outwards, the leaf value)."""
    chain: list[FloatOp] = []
    while isinstance(v, FloatOp) and v.node.op_type in UNARY:
        chain.append(v)
        v = v.inputs[0]
    return chain[::-1], v


def fuse_unary(imp, op: FloatOp, q: QuantParams, qnode) -> Codes:
    """Close DQ -> unary ops -> Q as a table, or inner kernel -> Relu/Clip -> Q as a clamp."""
    chain, leaf = unary_chain(op)
    if isinstance(leaf, Dequant) and isinstance(leaf.src, Codes):
        src = leaf.src
        if src.q.axis is not None:
            raise imp.error("a float op on a per-channel quantised activation is not "
                            "supported", op.node)
        table, per_channel = lut_of(imp, chain, src, q)
        return emit_lut(imp, src, table, q, qnode.output[0], axis=1 if per_channel else None)
    if isinstance(leaf, (FloatOp, FloatInput)) and all(c.node.op_type in CLAMPS for c in chain):
        out = registry.fuse_inner(imp, leaf, q, qnode)
        lo, hi = q.dtype.min, q.dtype.max
        for c in chain:
            a, b = (np.float32(0), np.float32(np.inf)) if c.node.op_type == "Relu" else \
                clip_bounds(imp, c)
            qa = host.quantize(np.array([a], np.float32), q, sample_axis=False)[0]
            qb = host.quantize(np.array([b], np.float32), q, sample_axis=False)[0]
            lo, hi = max(lo, int(qa)), min(hi, int(qb))
        if lo > q.dtype.min or hi < q.dtype.max:
            if isinstance(leaf, FloatOp):
                # onnxruntime drops the clamp only when it is a no-op (ReluQuantFusion /
                # ClipQuantFusion); otherwise it runs the op before it in float
                imp.float_path.append(leaf.node.name or leaf.node.op_type)
            from .clamp import fold_clamp
            return fold_clamp(imp, out, lo, hi)
        return out
    raise imp.error(f"cannot lower the float ops {[c.node.op_type for c in chain]} over "
                    f"{type(leaf).__name__}", op.node)


for _t in UNARY:
    registry.FUSE[_t] = fuse_unary
