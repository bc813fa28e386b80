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


# MLAS's tanh (onnxruntime/core/mlas/lib/tanh.cpp, MlasTanhConstants; the same algorithm as
# Eigen's): x clamped to [-9, 9], x * p(x^2) / q(x^2), each Horner step one fma as in the AVX2
# kernel (the fma form matches onnxruntime 1.32 on this CPU bit for bit; mul-then-add does not).
TANH_LIMIT = np.float32(9)
TANH_P = [np.float32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13,
                                  -8.60467152213735e-11, 5.12229709037114e-08,
                                  1.48572235717979e-05, 6.37261928875436e-04,
                                  4.89352455891786e-03)]
TANH_Q = [np.float32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04,
                                  2.26843463243900e-03, 4.89352518554385e-03)]


def mlas_tanh(v: np.ndarray) -> np.ndarray:
    """onnxruntime's Tanh (MlasComputeTanh, FMA3 kernel) in exact float32 steps."""
    z = np.minimum(TANH_LIMIT, np.maximum(-TANH_LIMIT, np.asarray(v, np.float32)))
    z2 = np.multiply(z, z, dtype=np.float32)
    p = np.multiply(_horner(TANH_P, z2), z, dtype=np.float32)
    return np.divide(p, _horner(TANH_Q, z2), dtype=np.float32)


# MLAS's exp (onnxruntime/core/mlas/lib/compute.cpp, MlasComputeExpVector; onnxruntime's Exp op
# calls MlasComputeExp): x clamped to [-150 ln2, 128 ln2], m = round(x / ln 2) by the 1.5 * 2^23
# bias, r = x - m ln2 in two fmas, a degree-6 polynomial in fma steps whose last step adds the
# "overflow" factor 2^(m - m') and a final product by 2^m', m' = clamp(m, -126, 127) (two
# factors so that results down to 2^-150 stay representable). Equal to onnxruntime 1.32 bit
# for bit on this CPU, subnormal and overflowing results included.
EXP_RANGE = (np.float32(-103.9720840454), np.float32(88.7762626647950))
EXP_BIAS = np.float32(12582912.0)  # 1.5 * 2^23
EXP_POLY = [np.float32(float.fromhex(h)) for h in ("0x1.694000p-10", "0x1.125edcp-7",
                                                   "0x1.555b5ap-5", "0x1.555450p-3",
                                                   "0x1.fffff6p-2", "0x1.000000p+0")]


def mlas_exp(v: np.ndarray) -> np.ndarray:
    """onnxruntime's Exp (MlasComputeExp) in exact float32 steps."""
    x = np.minimum(np.maximum(np.asarray(v, np.float32), EXP_RANGE[0]), EXP_RANGE[1])
    biased = _fma(x, np.full_like(x, EXP_LOG2R), np.full_like(x, EXP_BIAS))
    m = np.subtract(biased, EXP_BIAS, dtype=np.float32)  # an integer in [-150, 128]
    r = _fma(m, np.full_like(m, EXP_LOG2_HI), x)
    r = _fma(m, np.full_like(m, EXP_LOG2_LO), r)
    mi = m.astype(np.int64)
    mc = np.clip(mi, -126, 127)
    normal = np.ldexp(np.float32(1), mc).astype(np.float32)
    overflow = np.ldexp(np.float32(1), mi - mc).astype(np.float32)  # 2^-24 .. 2
    p = _horner(EXP_POLY, r)
    p = _fma(p, np.multiply(r, overflow, dtype=np.float32), overflow)
    with np.errstate(over="ignore"):  # beyond float32: inf, as onnxruntime
        return np.multiply(p, normal, dtype=np.float32)


def hard_sigmoid(v: np.ndarray, alpha: np.float32, beta: np.float32) -> np.ndarray:
    """onnxruntime's HardSigmoid (Eigen, activations.h): max(0, min(1, alpha * x + beta)),
    the multiply and the add rounded apart (no fma in the shipped build: tested)."""
    y = np.add(np.multiply(v, alpha, dtype=np.float32), beta, dtype=np.float32)
    return np.maximum(np.minimum(y, np.float32(1)), np.float32(0))


def hard_swish(v: np.ndarray) -> np.ndarray:
    """ONNX HardSwish's function body as onnxruntime runs it: x * HardSigmoid(x, 1/6, 0.5)."""
    hs = hard_sigmoid(v, np.float32(1 / 6), np.float32(0.5))
    return np.multiply(v, hs, dtype=np.float32)


def _sqrt(v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # NaN below 0, as onnxruntime; Q maps NaN to qmin
        return np.sqrt(v, dtype=np.float32)


def _reciprocal(v: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):  # 1/0 = inf, saturated by Q like onnxruntime
        return np.divide(np.float32(1), v, dtype=np.float32)


def _softsign(v: np.ndarray) -> np.ndarray:
    """onnxruntime's Softsign: x * (1 / (1 + |x|)), three roundings (not x / (1 + |x|))."""
    d = np.add(np.float32(1), np.abs(v), dtype=np.float32)
    return np.multiply(v, np.divide(np.float32(1), d, dtype=np.float32), dtype=np.float32)


# ops whose float32 result is one correctly rounded IEEE operation (or exact; Softsign: three),
# which is what onnxruntime's Eigen kernels compute: each checked equal to onnxruntime 1.32 bit
# for bit on dense random inputs (tests/test_unary_tables.py)
EXACT_UNARY = {"Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil,
               "Round": np.rint, "Sign": np.sign, "Sqrt": _sqrt, "Reciprocal": _reciprocal,
               "Softsign": _softsign}


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
    if t == "Tanh":
        return mlas_tanh(v)
    if t == "HardSigmoid":
        return hard_sigmoid(v, np.float32(a.get("alpha", 0.2)), np.float32(a.get("beta", 0.5)))
    if t == "HardSwish":
        return hard_swish(v)
    if t == "Exp":
        return mlas_exp(v)
    if t in EXACT_UNARY:
        return EXACT_UNARY[t](np.asarray(v, np.float32)).astype(np.float32)
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
         "Erf", "Gelu", "Tanh", "HardSigmoid", "HardSwish", "Exp", *EXACT_UNARY}
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
