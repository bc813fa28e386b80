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


# MLAS's erf (onnxruntime/core/mlas/lib/erf.cpp, MlasErfConstants), as its AVX2/FMA3 kernel
# (x86_64/ErfKernelFma3.S) computes it: |x| clamped to 3.925 (3.725 in older releases; 3.925
# matches onnxruntime 1.32 bit for bit); below 0.921875 an odd polynomial in x^2, from there
# 1 - exp(-poly(|x|)) with MLAS's own exp (2^round(r) * polynomial); the sign copied.
ERF_UPPER, ERF_SPLIT = np.float32(3.925), np.float32(0.921875)
ERF_SMALL = [np.float32(v) for v in (-5.99104969e-4, 4.99339588e-3, -2.67667342e-2,
                                     1.12818025e-1, -3.76124859e-1, 1.28379151e-1)]
ERF_BIG = [np.float32(v) for v in (1.72948930e-5, -3.83208680e-4, 3.88393435e-3,
                                   -2.42545605e-2, 1.06777847e-1, 6.34846687e-1,
                                   1.28717512e-1)]
EXP_LOWER, EXP_LOG2R = np.float32(-88.3762626647949), np.float32(1.44269504088896341)
EXP_LOG2_HI, EXP_LOG2_LO = np.float32(-6.93145752e-1), np.float32(-1.42860677e-6)
EXP_P = [np.float32(v) for v in (1.38319808e-3, 8.37550033e-3, 4.16689515e-2, 1.66664466e-1,
                                 4.99999851e-1, 1.0, 1.0)]
EXP_C = np.float32(1.25829120e+7)  # 1.5 * 2^23: fma(log2e, x, C) - C rounds to an integer


def _horner(coefs: list[np.float32], x: np.ndarray) -> np.ndarray:
    """((c0 x + c1) x + c2) ... with one fma per step (vfmadd213ps)."""
    r = np.full_like(x, coefs[0])
    for c in coefs[1:]:
        r = _fma(r, x, np.full_like(x, c))
    return r


def mlas_erf(v: np.ndarray) -> np.ndarray:
    """onnxruntime's Erf (MlasComputeErf, FMA3 kernel) in exact float32 steps."""
    v = np.asarray(v, np.float32)
    a = np.minimum(np.abs(v), ERF_UPPER)
    small = ~(ERF_SPLIT <= a)  # vcmpleps: the boundary itself takes the big branch
    out = np.zeros_like(a)
    if small.any():
        x = a[small]
        s = (x * x).astype(np.float32)
        out[small] = _fma(_horner(ERF_SMALL, s), x, x)
    if (~small).any():
        x = a[~small]
        r = _fma(_horner(ERF_BIG, x), x, x)
        r = np.maximum(-r, EXP_LOWER)  # exp(-r)
        t = _fma(np.full_like(r, EXP_LOG2R), r, np.full_like(r, EXP_C))
        t = (t - EXP_C).astype(np.float32)  # round(r / ln 2)
        f = _fma(t, np.full_like(t, EXP_LOG2_HI), r)
        f = _fma(t, np.full_like(t, EXP_LOG2_LO), f)
        y = _horner(EXP_P, f)
        y = (y * np.ldexp(np.float32(1), t.astype(np.int32)).astype(np.float32))
        out[~small] = (np.float32(1) - y.astype(np.float32)).astype(np.float32)
    return np.where(np.signbit(v), -out, out).astype(np.float32)


def scalar_operand(imp, op: FloatOp) -> tuple[int, np.float32] | None:
    """For Div/Mul/Add/Sub with one constant scalar operand: (index of the tensor operand,
    the constant as float32); None when neither operand is a constant scalar."""
    from .values import Const, Dequant, QConst
    for i, v in enumerate(op.inputs[:2]):
        if isinstance(v, Dequant) and isinstance(v.src, QConst):
            c = imp.const(v, f"{op.node.op_type} constant")
        elif isinstance(v, Const):
            c = v.value
        else:
            continue
        c = np.asarray(c)
        if c.size == 1 and np.issubdtype(c.dtype, np.floating):
            return 1 - i, np.float32(c.reshape(()))
    return None


def _binary_scalar(op: FloatOp, v: np.ndarray, imp) -> np.ndarray:
    """x op c or c op x in float32 (one IEEE rounding, as onnxruntime's Eigen kernels)."""
    found = scalar_operand(imp, op)
    if found is None:
        raise imp.error(f"{op.node.op_type} needs a constant scalar operand", op.node)
    i, c = found
    cv = np.full_like(v, c)
    a, b = (v, cv) if i == 0 else (cv, v)
    fn = {"Div": np.divide, "Mul": np.multiply, "Add": np.add, "Sub": np.subtract}
    return fn[op.node.op_type](a, b, dtype=np.float32)


def gelu_erf(v: np.ndarray) -> np.ndarray:
    """onnxruntime's Gelu (contrib Gelu, ONNX Gelu approximate='none'): 0.5 x (1 + erf(x /
    sqrt 2)), x * M_SQRT1_2 then MlasComputeErf, then (erf + 1) * x * 0.5, in float32."""
    e = mlas_erf(np.multiply(v, np.float32(0.70710678118654752440), dtype=np.float32))
    return np.multiply(np.multiply(np.float32(0.5), v, dtype=np.float32),
                       np.add(e, np.float32(1), dtype=np.float32), dtype=np.float32)


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
    if t == "Erf":
        return mlas_erf(v)
    if t in ("Div", "Mul", "Add", "Sub"):
        return _binary_scalar(op, v, imp)
    if t == "Gelu":
        if a.get("approximate", "none") != "none":
            raise imp.error("Gelu approximate='tanh' is not supported (only the erf form)",
                            op.node)
        return gelu_erf(v)
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


UNARY = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "BatchNormalization", "Identity", "Dropout",
         "Erf", "Gelu"}
CLAMPS = {"Relu", "Clip"}
BINARY_SCALAR = {"Div", "Mul", "Add", "Sub"}  # unary when one operand is a constant scalar


def unary_chain(v, imp=None) -> tuple[list[FloatOp], object]:
    """Peel unary float ops off ``v``: (ops from the leaf outwards, the leaf value)."""
    chain: list[FloatOp] = []
    while isinstance(v, FloatOp):
        if v.node.op_type in UNARY:
            chain.append(v)
            v = v.inputs[0]
            continue
        found = scalar_operand(imp, v) if (imp is not None
                                           and v.node.op_type in BINARY_SCALAR) else None
        if found is None:
            break
        chain.append(v)
        v = v.inputs[found[0]]
    return chain[::-1], v


def fuse_unary(imp, op: FloatOp, q: QuantParams, qnode) -> Codes:
    """Close DQ -> unary ops -> Q as a table, or inner kernel -> Relu/Clip -> Q as a clamp."""
    chain, leaf = unary_chain(op, imp)
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


for _t in UNARY | {"Div", "Sub"}:
    registry.FUSE[_t] = fuse_unary
