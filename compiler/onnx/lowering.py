"""Integer building blocks shared by the QDQ and QOperator lowerings.

Each helper emits the IntGraph nodes of one onnxruntime integer kernel, with the kernel's
own float32 order for its multipliers (ORT_KERNELS.md), so a QDQ Conv and a QLinearConv lower
identically.
"""

from __future__ import annotations

import numpy as np

from .. import requant as rq
from ..dtypes import IntType
from ..ir import QuantParams
from . import saturation
from .loader import MAX_ELEMENTS
from .values import Codes, QConst


def per_tensor(imp, q: QuantParams, what: str) -> tuple[float, int]:
    if q.scale.size != 1:  # a 1-element vector (QLinearMatMul b_scale [1]) is per tensor
        raise imp.error(f"{what} must be quantised per tensor (got {q.scale.size} scales)")
    return np.float32(q.scale.reshape(())), int(q.zero_point.reshape(()))


def requant_consts(imp, base: str, m32: np.ndarray, real: np.ndarray) -> list[str]:
    """The Requant multiplier constants for the graph's mode."""
    m32 = np.asarray(m32, np.float32).reshape(-1)
    real = np.asarray(real, np.float64).reshape(-1)
    try:
        if imp.requant == "ort":
            mant, exp = rq.ort_multiplier(m32)
        else:
            pairs = [rq.dyadic_multiplier(float(r)) for r in real]
            mant = np.array([p[0] for p in pairs], np.int64)
            exp = np.array([p[1] for p in pairs], np.int64)
    except ValueError as e:
        raise imp.error(f"requantisation multiplier: {e}") from None
    return [imp.add_const(base + "_mult", mant), imp.add_const(base + "_exp", exp)]


def emit_requant(imp, acc: str, shape: tuple[int, ...], m32: np.ndarray, real: np.ndarray,
                 out_q: QuantParams, axis: int | None, base: str) -> Codes:
    """acc -> codes of ``out_q`` (per-tensor output), per-channel multipliers along ``axis``."""
    _, zy = per_tensor(imp, out_q, "the output")
    m32 = np.asarray(m32, np.float32).reshape(-1)
    if m32.size == 1:
        axis = None
    consts = requant_consts(imp, base, m32, real)
    t = imp.emit("Requant", [acc, *consts], shape, out_q.dtype,
                 {"mode": imp.requant, "axis": axis, "zero_point": zy,
                  "lo": out_q.dtype.min, "hi": out_q.dtype.max}, base=base)
    return Codes(t, shape, out_q)


def weight_minus_zero_point(imp, w: QConst, axis: int) -> np.ndarray:
    """w - zw as int64, zw per tensor or per ``axis`` (folding the weight zero point)."""
    zw = w.q.zero_point
    v = w.value.astype(np.int64)
    if zw.ndim == 0:
        return v - int(zw)
    shape = [1] * v.ndim
    shape[axis] = -1
    return v - zw.reshape(shape)


def scale_vector(q: QuantParams) -> np.ndarray:
    return np.atleast_1d(q.scale).astype(np.float32)


def check_window(imp, nd: int, **lists: list[int]) -> None:
    """Conv/pool attributes: as many values as the window has axes (pads: twice), kernel,
    strides and dilations >= 1, pads >= 0."""
    for name, v in lists.items():
        n, lo = (2 * nd, 0) if name == "pads" else (nd, 1)
        if len(v) != n:
            raise imp.error(f"{name} {list(v)} has {len(v)} values; a {nd}-D window needs {n}")
        if any(int(x) < lo for x in v):
            raise imp.error(f"{name} {list(v)}: every value must be >= {lo}")


def conv_geometry(imp, attrs: dict, x_shape: tuple[int, ...], w_shape: tuple[int, ...]):
    """Normalised Conv attributes (explicit pads) and the output shape."""
    nd = len(x_shape) - 2
    if nd not in (1, 2):
        raise imp.error(f"only 1-D and 2-D convolutions are supported (input {list(x_shape)})")
    if len(w_shape) != nd + 2:
        raise imp.error(f"weights {list(w_shape)} do not fit a {nd}-D convolution of the "
                        f"input {list(x_shape)}")
    k = list(attrs.get("kernel_shape", w_shape[2:]))
    if list(k) != list(w_shape[2:]):
        raise imp.error(f"kernel_shape {k} does not match the weights {list(w_shape)}")
    strides = list(attrs.get("strides", [1] * nd))
    dil = list(attrs.get("dilations", [1] * nd))
    group = int(attrs.get("group", 1))
    pads = list(attrs.get("pads", [0] * (2 * nd)))
    check_window(imp, nd, kernel_shape=k, strides=strides, dilations=dil, pads=pads)
    if group < 1:
        raise imp.error(f"group {group} must be >= 1")
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            out = -(-x_shape[2 + i] // strides[i])
            total = max(0, (out - 1) * strides[i] + dil[i] * (k[i] - 1) + 1 - x_shape[2 + i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    if x_shape[1] != w_shape[1] * group:
        raise imp.error(f"input has {x_shape[1]} channels, weights expect "
                        f"{w_shape[1]} x group {group}")
    if w_shape[0] % group:
        raise imp.error(f"{w_shape[0]} output channels not divisible by group {group}")
    out_sp = []
    for i in range(nd):
        span = x_shape[2 + i] + pads[i] + pads[i + nd] - dil[i] * (k[i] - 1) - 1
        if span < 0:
            raise imp.error(f"kernel larger than the padded input on axis {2 + i}")
        out_sp.append(span // strides[i] + 1)
    if int(np.prod(out_sp, dtype=np.float64)) * w_shape[0] > MAX_ELEMENTS:
        raise imp.error(f"output shape {[x_shape[0], w_shape[0], *out_sp]} is absurd (limit "
                        f"{MAX_ELEMENTS} elements)")
    geometry = {"kernel_shape": k, "strides": strides, "pads": pads, "dilations": dil,
                "group": group}
    return geometry, (x_shape[0], w_shape[0], *out_sp)


def emit_conv_acc(imp, x: Codes, w: QConst, bias: np.ndarray | None, attrs: dict,
                  base: str) -> tuple[str, tuple[int, ...]]:
    """The integer Conv: acc = sum (x - zx)(w - zw) + bias, padding contributes 0."""
    _, zx = per_tensor(imp, x.q, "the Conv input") if x.q else (None, 0)
    geometry, out_shape = conv_geometry(imp, attrs, x.shape, w.value.shape)
    wv = weight_minus_zero_point(imp, w, 0)
    if x.q is not None:
        saturation.check(imp, x.q.dtype, w.q.dtype, w.value.reshape(w.value.shape[0], -1),
                         base)
    ins = [x.tensor, imp.add_const(base + "_w", wv)]
    if bias is not None:
        b = np.asarray(bias, np.int64).reshape(-1)
        if b.size != out_shape[1]:
            raise imp.error(f"bias has {b.size} values for {out_shape[1]} output channels")
        ins.append(imp.add_const(base + "_bias", b))
    acc = imp.emit("Conv", ins, out_shape, attrs={**geometry, "pad_value": zx,
                                                  "x_zero_point": zx}, base=base)
    return acc, out_shape


def emit_matmul_acc(imp, x: Codes, w: QConst | Codes, bias: np.ndarray | None,
                    base: str) -> tuple[str, tuple[int, ...]]:
    """acc[..., n] = sum_k (x - zx)(w - zw) + bias[n], w constant (K, N) or an activation."""
    _, zx = per_tensor(imp, x.q, "the MatMul input") if x.q else (None, 0)
    if isinstance(w, QConst):
        if w.value.ndim != 2:
            raise imp.error(f"constant MatMul weights must be 2-D, got {list(w.value.shape)}")
        k, n = w.value.shape
        if x.shape[-1] != k:
            raise imp.error(f"MatMul shapes {list(x.shape)} x {list(w.value.shape)} do not "
                            "match")
        if x.q is not None:
            saturation.check(imp, x.q.dtype, w.q.dtype, w.value.T, base)
        ins = [x.tensor, imp.add_const(base + "_w", weight_minus_zero_point(imp, w, 1))]
        attrs = {"x_zero_point": zx}
        out_shape = (*x.shape[:-1], n)
    else:
        _, zw = per_tensor(imp, w.q, "the MatMul right operand") if w.q else (None, 0)
        try:
            out_shape = tuple(np.broadcast_shapes(x.shape[:-2], w.shape[:-2])) + (
                x.shape[-2], w.shape[-1])
        except ValueError:
            raise imp.error(f"MatMul shapes {list(x.shape)} x {list(w.shape)} do not "
                            "broadcast") from None
        if x.shape[-1] != w.shape[-2]:
            raise imp.error(f"MatMul shapes {list(x.shape)} x {list(w.shape)} do not match")
        ins = [x.tensor, w.tensor]
        attrs = {"x_zero_point": zx, "w_zero_point": zw}
    if bias is not None:
        b = np.broadcast_to(np.asarray(bias, np.int64), (out_shape[-1],)).copy()
        ins.append(imp.add_const(base + "_bias", b))
    acc = imp.emit("MatMul", ins, out_shape, attrs=attrs, base=base)
    return acc, out_shape


def emit_lut(imp, x: Codes, table: np.ndarray, out_q: QuantParams | None, base: str,
             axis: int | None = None) -> Codes:
    """y = table[x - x_min]; ``table`` covers every code of x's type."""
    assert x.q is not None or axis is None
    dtype = out_q.dtype if out_q is not None else IntType.fit(int(table.min()), int(table.max()))
    xt = imp.g.tensors[x.tensor].dtype
    t = imp.emit("Lut", [x.tensor, imp.add_const(base + "_table", table, dtype)], x.shape,
                 dtype, {"x_min": xt.min, "axis": axis}, base=base)
    return Codes(t, x.shape, out_q)


def int_codes(imp, a: np.ndarray, q: QuantParams, what: str) -> np.ndarray:
    """A constant quantised operand's codes as int64: integers of the zero point's type."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.integer):
        raise imp.error(f"{what} must be an integer tensor, got {a.dtype}")
    t = imp.int_type(a.dtype, what)
    if t != q.dtype:
        raise imp.error(f"{what}: zero point type {q.dtype} differs from its type {t}")
    return a.astype(np.int64)


def int32_const(imp, v, what: str) -> np.ndarray:
    """An int32 constant (a bias) as int64."""
    b = np.asarray(imp.const(v, what))
    if b.dtype != np.int32:
        raise imp.error(f"{what} must be int32, got {b.dtype}")
    return b.astype(np.int64)
