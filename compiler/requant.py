"""Requantisation arithmetic: int32 accumulator -> output codes, in two integer-only modes.

``ort`` — bit-exact to onnxruntime's MLAS requantize-output routine (ORT_KERNELS.md §3):
    v = f32(f32(acc) * M);  y = sat(rint(v) + zy)
emulated with integers: round |acc| to 24 significant bits (half-even), multiply by M's 24-bit
mantissa, round the 48-bit product to 24 bits (half-even), shift to the binary point with
round-half-even. M itself is a float32 computed at compile time in the kernel's own order.

``dyadic`` — gemmlowp/TFLite ``MultiplyByQuantizedMultiplier``: M ~= M0 * 2^shift with M0 a
Q31 integer; ``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``. Bit-exact to
its own definition (this module), not to onnxruntime.
"""

from __future__ import annotations

import math

import numpy as np

from . import f32

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ---- ort ----------------------------------------------------------------------------------
def ort_multiplier(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split float32 multipliers into (mantissa, exponent) integer pairs: M = mant * 2^exp."""
    m = np.asarray(m, dtype=np.float32)
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("requant multiplier must be finite and > 0")
    a = f32.from_float32(m)
    return a.m.astype(np.int64), a.e.astype(np.int64)


def rint_saturating(v: f32.F32) -> np.ndarray:
    """rint(v) ties-to-even as int64, with |v| >= 2^40 pinned to +-2^40 (beyond any code)."""
    e = np.asarray(v.e, dtype=np.int64)
    big = (e > 16) & (v.m != 0)  # |m| >= 2^23, so e > 16 means |v| >= 2^40
    safe = f32.F32(np.where(big, 0, v.m), np.where(big, 0, e))
    r = f32.rint(safe)
    return np.where(big, np.sign(v.m) * (1 << 40), r)


def requant_ort(acc: np.ndarray, mant: np.ndarray, exp: np.ndarray, zero_point: int,
                lo: int, hi: int) -> np.ndarray:
    """y = clip(rint(f32(f32(acc) * M)) + zero_point, lo, hi), M = mant * 2^exp (float32)."""
    a = f32.from_int(np.asarray(acc, dtype=np.int64))
    v = f32.mul(a, f32.F32(np.asarray(mant, np.int64), np.asarray(exp, np.int64)))
    return np.clip(rint_saturating(v) + zero_point, lo, hi)


# ---- dyadic -------------------------------------------------------------------------------
def dyadic_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m0 * 2^(shift - 31), m0 in [2^30, 2^31)."""
    if not real > 0 or not math.isfinite(real):
        raise ValueError("requant multiplier must be finite and > 0")
    q, shift = math.frexp(real)
    m0 = round(q * (1 << 31))
    if m0 == 1 << 31:
        m0 //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"requant multiplier {real} too large for the dyadic mode")
    return m0, shift


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SRDHM: round(a*b / 2^31), ties away from zero, INT32_MIN*INT32_MIN saturates."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C++ division truncates toward zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requant_dyadic(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray, zero_point: int,
                   lo: int, hi: int) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier + zero point + clamp.

    The left shift saturates to int32 (TFLite leaves that overflow undefined)."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = np.clip(np.asarray(acc, np.int64) << left, INT32_MIN, INT32_MAX)
    y = rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m0), right)
    return np.clip(y + zero_point, lo, hi)
