"""A hardware-friendly, exact form of QLinearAveragePool's float32 sequence (ORT §6).

    xf = f32(sx * (x - zx));  s = f32(s + xf) per tap;  y = sat(rint(f32(f32(f32(s/cnt)/sy)+zy)))

All xf are multiples of 2^e_min (the smallest exponent in the 256-entry table), so each is an
exact integer X at that scale, and every partial sum is an integer rounded to 24 significant
bits (round-half-even) — an adder and the rounding unit the requant already has. The rest is a
monotone function of s for each window count, so it is 255 thresholds per count, found at
compile time with the exact ``f32`` emulation: y = lo + #{k : s >= t_k}.
"""

from __future__ import annotations

import numpy as np

from .. import f32
from ..requant import rint_saturating


def fixed_point_table(m: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, int]:
    """xf table (mantissa, exponent) -> (X integers, e_min) with xf = X * 2^e_min."""
    nz = m != 0
    e_min = int(e[nz].min()) if nz.any() else 0
    x = np.where(nz, m.astype(np.int64) << np.where(nz, e - e_min, 0), 0)
    return x, e_min


def round_sig24(s: np.ndarray) -> np.ndarray:
    """Round integers to 24 significant bits, ties to even (f32 rounding at a fixed scale)."""
    r = f32.round_exact(np.asarray(s, np.int64), np.zeros_like(np.asarray(s, np.int64)))
    m, e = r.m.astype(np.int64), r.e.astype(np.int64)
    # canonical mantissas are normalised to 24 bits, so small integers come back with e < 0
    # (exact: the value is an integer)
    return np.where(e >= 0, m << np.maximum(e, 0), m >> np.maximum(-e, 0))


def tail(s: np.ndarray, e_min: int, cnt: int, sy: tuple[int, int], zy: int, lo: int,
         hi: int) -> np.ndarray:
    """y for window sums s (integers at scale 2^e_min), exactly as the kernel computes it."""
    sf = f32.round_exact(np.asarray(s, np.int64), np.full(np.shape(s), e_min, np.int64))
    q = f32.div(sf, f32.from_int(np.full(np.shape(s), cnt, np.int64)))
    q = f32.div(q, f32.F32(np.int64(sy[0]), np.int64(sy[1])))
    q = f32.add(q, f32.from_int(np.full(np.shape(s), zy, np.int64)))
    return np.clip(rint_saturating(q), lo, hi)


def thresholds(e_min: int, cnt: int, sy, zy: int, lo: int, hi: int, s_lo: int,
               s_hi: int) -> np.ndarray:
    """t[k - lo - 1] = the least s in [s_lo, s_hi + 1] with y(s) >= k, for k = lo+1..hi."""
    levels = np.arange(lo + 1, hi + 1, dtype=np.int64)
    left = np.full(levels.shape, s_lo, np.int64)
    right = np.full(levels.shape, s_hi + 1, np.int64)  # s_hi + 1 stands for "never"
    while np.any(left < right):
        mid = (left + right) // 2
        ok = tail(mid, e_min, cnt, sy, zy, lo, hi) >= levels
        right = np.where(ok & (left < right), mid, right)
        left = np.where(~ok & (left < right), mid + 1, left)
    return left


def window_sum(taps: np.ndarray) -> np.ndarray:
    """Sequential rounded sum over the last axis of X values (the kernel's tap order)."""
    s = np.zeros(taps.shape[:-1], np.int64)
    for i in range(taps.shape[-1]):
        s = round_sig24(s + taps[..., i])
    return s
