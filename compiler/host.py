"""The host boundary: onnxruntime's QuantizeLinear / DequantizeLinear, emulated exactly.

These run on the host (CPU) before and after the accelerator, so float32 arithmetic is
allowed here; numpy float32 operations are IEEE single precision, rounded once each.

QuantizeLinear (ORT_KERNELS.md §1):   y = sat(rint(f32(x / s)) + zp); NaN -> lowest code
DequantizeLinear (§2):                y = f32(f32(x - zp) * s)
MatMulIntegerToFloat / QGemm float output (§3): y = f32(f32(acc) * S) [+ bias, separately]
"""

from __future__ import annotations

import numpy as np

from .ir import HostOutput, QuantParams


def _broadcast(p: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None or p.ndim == 0:
        return p
    shape = [1] * ndim
    shape[axis] = -1
    return p.reshape(shape)


def quantize(x: np.ndarray, q: QuantParams, *, sample_axis: bool = True) -> np.ndarray:
    """Float32 -> integer codes as int64. ``x`` has a leading sample axis when sample_axis."""
    x = np.asarray(x, dtype=np.float32)
    ax = None if q.axis is None else q.axis + int(sample_axis)
    s = _broadcast(q.scale.astype(np.float32), ax, x.ndim)
    zp = _broadcast(q.zero_point.astype(np.int64), ax, x.ndim)
    lo, hi = q.dtype.min, q.dtype.max
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = np.divide(x, s, dtype=np.float32)
        # the kernel clamps f32(x/s) to [qmin - zp, qmax - zp] before converting; NaN -> lower
        v = np.clip(np.nan_to_num(v, nan=-np.inf), lo - zp, hi - zp)
    return np.rint(v).astype(np.int64) + zp


def dequantize(codes: np.ndarray, q: QuantParams, *, sample_axis: bool = True) -> np.ndarray:
    ax = None if q.axis is None else q.axis + int(sample_axis)
    s = _broadcast(q.scale.astype(np.float32), ax, codes.ndim)
    zp = _broadcast(q.zero_point.astype(np.int64), ax, codes.ndim)
    diff = (np.asarray(codes, np.int64) - zp).astype(np.float32)  # exact below 2^24
    return np.multiply(diff, s, dtype=np.float32)


def int_to_float(acc: np.ndarray, out: HostOutput) -> np.ndarray:
    """MatMulIntegerToFloat: f32(f32(f32(acc) * S) + bias), multiply and add rounded apart."""
    a = np.asarray(acc, np.int64).astype(np.float32)
    ax = None if out.axis is None else out.axis + 1
    s = _broadcast(np.asarray(out.scale, np.float32), ax, a.ndim)
    y = np.multiply(a, s, dtype=np.float32)
    if out.bias is not None:
        y = np.add(y, out.bias.astype(np.float32), dtype=np.float32)
    return y


def epilogue(codes: np.ndarray, out: HostOutput) -> np.ndarray:
    """The value onnxruntime returns for this output, from the accelerator's integers."""
    if out.kind == "codes":
        return codes.astype(np.dtype(out.onnx_dtype))
    if out.kind == "dequantize":
        assert out.quant is not None
        return dequantize(codes, out.quant)
    if out.kind == "int_to_float":
        return int_to_float(codes, out)
    if out.kind == "table":
        assert out.quant is not None and out.table is not None
        idx = np.asarray(codes, np.int64) - out.quant.dtype.min
        if out.table.ndim == 1:
            return out.table[idx]
        shape = [1] * idx.ndim
        shape[out.axis + 1] = -1
        return out.table[np.arange(out.table.shape[0]).reshape(shape), idx]
    raise ValueError(f"unknown output kind {out.kind!r}")
