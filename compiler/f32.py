"""IEEE-754 binary32 arithmetic emulated with integers only (numpy int64, vectorised).

onnxruntime's integer kernels finish in float32 arithmetic (ORT_KERNELS.md); intflow must
reproduce it bit-exactly while computing only with integers, because the integer datapath is what
the hardware implements. This module is that datapath's definition.

Representation: a float32 value is ``F32(m, e)``, two int64 arrays (broadcastable) with
value ``m * 2**e`` exactly. Every result is canonical:

- zero: ``m == 0`` and ``e == 0`` (there is no negative zero);
- normal: ``2**23 <= |m| < 2**24`` and ``-149 <= e <= 104``;
- subnormal: ``e == -149`` and ``0 < |m| < 2**23``.

There is no infinity or NaN. A result beyond float32's largest finite value
``(2**24 - 1) * 2**104`` is still rounded to 24 significant bits (as if the exponent range were
unbounded above) and returned with ``e > 104``; ``is_finite`` tells it apart, ``to_float32``
turns it into ``inf``, and ``cvt`` maps it to INT32_MIN like x86 does for ``inf``. Callers that
need saturation clamp in float first (``max_``/``min_``), as onnxruntime's kernels do.

Rounding is IEEE round-to-nearest, ties-to-even (the default MXCSR mode), with gradual underflow
(no flush-to-zero). Every operation computes the exact result (or a stand-in proven to round
the same way) and rounds it once with ``round_exact``.

Input bounds, not checked: arguments must be canonical ``F32`` values (``round_exact`` and
``from_int`` accept any ``|m| < 2**62``) and exponents stay below ``2**40`` in magnitude.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MANT_BITS = 24  # significand bits of binary32, hidden bit included
E_SUB = -149  # exponent of the subnormal quantum: the smallest float32 is 2**-149
E_MAX = 104  # exponent of the largest finite float32, (2**24 - 1) * 2**104
INT32_MIN = -(2**31)  # x86 "integer indefinite" of cvtps2dq

_HIDDEN = 1 << (MANT_BITS - 1)  # 2**23
_TOP_ZERO = -(1 << 40)  # "top" of a zero: below every nonzero value's top


class F32(NamedTuple):
    """A float32 value ``m * 2**e`` (int64 arrays), canonical as described in the module."""

    m: np.ndarray
    e: np.ndarray


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def _f32(a) -> tuple[np.ndarray, np.ndarray]:
    m, e = np.broadcast_arrays(_i64(a[0]), _i64(a[1]))
    return m, e


# ---------------------------------------------------------------------------------------------
# Integer building blocks


def bit_length(x) -> np.ndarray:
    """Number of significant bits of each ``x`` (``0 <= x < 2**63``), ``bit_length(0) == 0``.

    Binary search with integer shifts and compares. Invariant: before the step with shift ``s``,
    ``x < 2**(2*s)`` and ``bit_length(x0) == n + bit_length(x)``. The step keeps ``x >> s`` (and
    adds ``s`` to ``n``) when that is nonzero, else ``x`` (then ``x < 2**s`` already): either
    way ``x < 2**s`` afterwards and the invariant holds. After ``s == 1``, ``x`` is 0 or 1, which
    is its own bit length. (No float conversion: float64 rounds integers above 2**53.)
    """
    x = _i64(x)
    n = np.zeros(x.shape, dtype=np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        hi = np.right_shift(x, s)
        big = hi != 0
        n += big * s
        x = np.where(big, hi, x)
    return n + x


def shift_right_rne(a, s) -> np.ndarray:
    """``a / 2**s`` rounded to the nearest integer, ties to even (``0 <= a < 2**62``, ``s >= 0``).

    ``q = a >> s`` with remainder ``r``; round up when ``r`` exceeds half of ``2**s``, or equals
    it and ``q`` is odd. Shifts are clamped to 63: for ``s >= 63`` the half-way point
    ``2**(s-1) >= 2**62`` exceeds ``a``, so the result is 0 exactly as with ``s == 63``.
    For ``s == 0`` the remainder is 0 and nothing rounds.
    """
    a = _i64(a)
    s = np.clip(_i64(s), 0, 63)
    q = np.right_shift(a, s)
    r = a - np.left_shift(q, s)
    half = np.left_shift(np.int64(1), np.maximum(s - 1, 0))
    up = (r > half) | ((r == half) & (r != 0) & ((q & 1) == 1))
    return q + up


def _sticky_halve(q, r) -> np.ndarray:
    """``2*q + (r != 0)``: ``q`` plus a half that stands for a nonzero remainder below it.

    Valid where the caller has shown that no rounding boundary point (a float32 or the midpoint
    of two neighbouring float32s) lies strictly between ``q`` and ``q + 1``: every value in that
    open interval, ``q + 1/2`` included, then rounds to nearest the same way.
    """
    return 2 * q + (r != 0)


# ---------------------------------------------------------------------------------------------
# Rounding, conversions


def round_exact(m, e) -> F32:
    """Round the exact value ``m * 2**e`` to the nearest float32, ties to even.

    ``|m| < 2**62``, any ``e``. The last kept bit sits at ``2**max(top - 24, -149)`` where
    ``top`` is the exponent just above ``|m| * 2**e``: 24 significant bits, but never below the
    subnormal quantum (gradual underflow). Shift right by that many places with
    round-half-even (``shift_right_rne``); a carry into a 25th bit renormalises. Results
    beyond float32's range keep 24 bits and an exponent above 104 (no infinity).
    """
    m, e = np.broadcast_arrays(_i64(m), _i64(e))
    neg = m < 0
    a = np.abs(m)
    # shift >= bit_length - 24, so the exact left shift below stays under 2**24
    shift = np.maximum(bit_length(a) - MANT_BITS, E_SUB - e)
    q = np.where(
        shift > 0,
        shift_right_rne(a, np.maximum(shift, 0)),
        np.left_shift(a, np.clip(-shift, 0, MANT_BITS)),
    )
    er = e + shift
    carry = q >> MANT_BITS  # 1 when rounding gave exactly 2**24
    q = q >> carry
    er = np.where(q == 0, 0, er + carry)
    return F32(np.where(neg, -q, q), er)


def from_int(n) -> F32:
    """``f32(n)`` for integers ``|n| < 2**62``: nearest float32, ties to even (cvtsi2ss)."""
    return round_exact(n, 0)


def from_float32(x) -> F32:
    """Exact decomposition of float32 values (compile-time helper; reads the IEEE bit fields).

    Non-float32 input is first converted by numpy (rounding to nearest). NaN and infinity have
    no representation here and raise ``ValueError``.
    """
    bits = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)
    biased = (bits >> 23) & 0xFF
    if np.any(biased == 0xFF):
        raise ValueError("f32.from_float32: NaN or infinity has no F32 representation")
    frac = bits & (_HIDDEN - 1)
    mag = np.where(biased == 0, frac, frac | _HIDDEN)
    e = np.where(biased == 0, E_SUB, biased - 150)
    e = np.where(mag == 0, 0, e)
    return F32(np.where(bits >> 31 == 1, -mag, mag), e)


def to_float32(a: F32) -> np.ndarray:
    """The float32 values of ``a`` (exact; exponents above 104 give ``inf``). Host side only."""
    m, e = _f32(a)
    with np.errstate(over="ignore"):
        return np.ldexp(m.astype(np.float64), np.clip(e, -1100, 1100)).astype(np.float32)


def is_finite(a: F32) -> np.ndarray:
    """True where ``a`` is within float32's range (what IEEE would not have rounded to inf)."""
    return _f32(a)[1] <= E_MAX


# ---------------------------------------------------------------------------------------------
# Arithmetic


def neg(a: F32) -> F32:
    """``-a`` (exact)."""
    m, e = _f32(a)
    return F32(-m, e)


def mul(a: F32, b: F32) -> F32:
    """``f32(a * b)``: the product of two 24-bit significands (< 2**48) is exact, round once."""
    ma, ea = _f32(a)
    mb, eb = _f32(b)
    return round_exact(ma * mb, ea + eb)


def _top(m: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Exponent just above the value: ``2**(top-1) <= |m| * 2**e < 2**top`` (zero: very low)."""
    return np.where(m == 0, _TOP_ZERO, e + bit_length(np.abs(m)))


def _round_sum(mx, ex, my, ey) -> F32:
    """``mx*2**ex + my*2**ey`` rounded once to float32 (ties to even), ``|mx|, |my| < 2**48``.

    Let X be the operand with the higher ``top`` (``_top``), Y the other, and
    ``lo = min(ex, top_x - 26)``. Two cases:

    Exact (``ey >= lo`` or ``top_y >= top_x - 2``): align both to ``min(ex, ey)`` and add. The
    aligned magnitudes stay below ``2**51``: if ``ey >= lo``, ``top_x - min(ex, ey) <=
    max(bits_x, 26) <= 48``; if ``top_y >= top_x - 2``, also ``top_x - ey <= 2 + bits_y <= 50``.

    Sticky (``ey < lo`` and ``top_y <= top_x - 3``; Y is far below X and both are nonzero):
    Y is cut toward zero at ``2**lo`` into ``Yh + Yl`` (``|Yl| < 2**lo``, same sign as Y), and a
    nonzero ``Yl`` is replaced by ``sign(Y) * 2**(lo-1)``. Proof that the rounding is unchanged:
    rounding to nearest is constant on any open interval that contains no float32 and no
    midpoint of two neighbouring float32s (call those the boundary points). ``|Y| < 2**(top_x-3)``
    and ``|X| >= 2**(top_x-1)``, so both ``X + Y`` and the stand-in lie in the open interval
    between ``X + Yh`` and ``X + Yh + sign(Y) * 2**lo``, all of whose points exceed
    ``2**(top_x-2)`` in magnitude. Above ``2**k`` (binade k and higher, k = top_x - 2) every
    boundary point is a multiple of ``2**(k-24)`` if those binades are normal (floats are
    multiples of ``2**(k-23)``, midpoints of ``2**(k-24)``), and of ``2**-150`` if subnormals are
    involved, which then implies ``k - 24 < -150``; either way a multiple of
    ``2**(top_x-26)``, hence of ``2**lo``. ``X + Yh`` is a multiple of ``2**lo`` (``ex >= lo``), so
    the interval, of length ``2**lo``, holds no boundary point, and the exact sum and the
    stand-in round alike. The sum is then formed exactly at exponent ``lo - 1``, magnitude below
    ``2**(max(bits_x, 26) + 2) <= 2**50``. (For two 24-bit operands ``lo = ex - 2``: Y keeps its
    bits down to two places below X's last one, the rest collapses into one sticky bit — a
    hardware adder's guard, round and sticky bits. The thresholds have a little slack:
    ``top_x - 1`` in the exact test would also be correct.)
    """
    mx, ex, my, ey = np.broadcast_arrays(_i64(mx), _i64(ex), _i64(my), _i64(ey))
    # a zero takes the other operand's exponent, so it never widens the alignment
    ex = np.where(mx == 0, ey, ex)
    ey = np.where(my == 0, ex, ey)
    tx, ty = _top(mx, ex), _top(my, ey)
    swap = ty > tx
    mx, my = np.where(swap, my, mx), np.where(swap, mx, my)
    ex, ey = np.where(swap, ey, ex), np.where(swap, ex, ey)
    tx, ty = np.where(swap, ty, tx), np.where(swap, tx, ty)

    lo = np.minimum(ex, tx - 26)
    exact = (ey >= lo) | (ty >= tx - 2)
    base = np.where(exact, np.minimum(ex, ey), lo - 1)
    ax = np.left_shift(mx, np.clip(ex - base, 0, 62))
    y_exact = np.left_shift(my, np.clip(ey - base, 0, 62))
    ay = np.abs(my)
    cut = np.clip(lo - ey, 0, 62)  # |my| < 2**48: shifting by 62 leaves nothing, as it should
    yh = np.right_shift(ay, cut)
    y_sticky = _sticky_halve(yh, ay - np.left_shift(yh, cut))
    y_sticky = np.where(my < 0, -y_sticky, y_sticky)
    return round_exact(ax + np.where(exact, y_exact, y_sticky), base)


def add(a: F32, b: F32) -> F32:
    """``f32(a + b)``: exact sum (or sticky stand-in, see ``_round_sum``), rounded once."""
    return _round_sum(*_f32(a), *_f32(b))


def sub(a: F32, b: F32) -> F32:
    """``f32(a - b)``, i.e. ``add(a, -b)``; ``a - a`` is +0 (there is no -0)."""
    return add(a, neg(b))


def fma(a: F32, b: F32, c: F32) -> F32:
    """``a * b + c`` rounded once (vfmadd): the exact 48-bit product plus ``c``, one rounding.

    The product is kept exactly (``|ma * mb| < 2**48``) and added with ``_round_sum``, whose
    sticky stand-in preserves ties and near-ties exactly.
    """
    ma, ea = _f32(a)
    mb, eb = _f32(b)
    mc, ec = _f32(c)
    return _round_sum(ma * mb, ea + eb, mc, ec)


def div(a: F32, b: F32) -> F32:
    """``f32(a / b)`` correctly rounded (divps): integer quotient, remainder as sticky bit.

    ``N = |ma| << k`` with ``k = 27 + bits(mb) - bits(ma)`` (so ``N < 2**51``) gives a quotient
    ``q = N // |mb| >= 2**26`` (27 bits or more) and remainder ``r``. The true quotient lies in
    ``[q, q + 1)`` (units ``2**(ea-eb-k)``); float32 keeps at most 24 of q's bits, so all rounding
    boundary points near it (floats, midpoints; also the subnormal ones) are multiples of
    ``2**2`` in these units, none strictly inside ``(q, q+1)``: ``q + 1/2`` (``_sticky_halve``)
    stands in for any nonzero remainder. Division by zero raises ``ZeroDivisionError``.
    """
    ma, ea = _f32(a)
    mb, eb = _f32(b)
    ma, ea, mb, eb = np.broadcast_arrays(ma, ea, mb, eb)
    if np.any(mb == 0):
        raise ZeroDivisionError("f32.div: division by zero")
    na, nb = np.abs(ma), np.abs(mb)
    k = 27 + bit_length(nb) - bit_length(na)
    num = np.left_shift(na, k)
    q = num // nb
    m = _sticky_halve(q, num - q * nb)
    return round_exact(np.where((ma < 0) != (mb < 0), -m, m), ea - eb - k - 1)


# ---------------------------------------------------------------------------------------------
# Float to integer


def rint(a: F32) -> np.ndarray:
    """Round to the nearest integer, ties to even (cvtps2dq, default MXCSR), as int64.

    No clamping; raises ``OverflowError`` for ``|a| >= 2**63`` (``e > 39``).
    """
    m, e = _f32(a)
    if np.any((m != 0) & (e > 39)):
        raise OverflowError("f32.rint: value does not fit in int64")
    mag = np.abs(m)
    r = np.where(
        e >= 0,
        np.left_shift(mag, np.clip(e, 0, 39)),
        shift_right_rne(mag, np.maximum(-e, 0)),
    )
    return np.where(m < 0, -r, r)


def cvt(a: F32) -> np.ndarray:
    """``rint(a)`` as an int32 value (in int64), INT32_MIN where ``|rint(a)| >= 2**31``.

    x86 cvtps2dq returns the "integer indefinite" 0x80000000 when the rounded value does not fit
    in int32 (also for inf and NaN, i.e. here for ``e > 104``).
    """
    m, e = _f32(a)
    # any canonical value with e >= 8 has |v| >= 2**23 * 2**8 = 2**31: clamping e keeps it there
    r = rint(F32(m, np.minimum(e, 8)))
    return np.where((r < INT32_MIN) | (r > 2**31 - 1), INT32_MIN, r)


# ---------------------------------------------------------------------------------------------
# Comparisons


def order_key(a: F32) -> np.ndarray:
    """An int64 key with the same order as the values: sign times the IEEE bit pattern.

    For canonical magnitudes the float32 encoding ``(e + 149) * 2**23 + |m|`` (biased exponent and
    fraction; subnormals have ``e == -149``) is monotone, zero being 0.
    """
    m, e = _f32(a)
    mag = np.abs(m)
    key = np.where(mag == 0, 0, np.left_shift(e - E_SUB, MANT_BITS - 1) + mag)
    return np.where(m < 0, -key, key)


def lt(a: F32, b: F32) -> np.ndarray:
    """``a < b``."""
    return order_key(a) < order_key(b)


def le(a: F32, b: F32) -> np.ndarray:
    """``a <= b``."""
    return order_key(a) <= order_key(b)


def gt(a: F32, b: F32) -> np.ndarray:
    """``a > b``."""
    return order_key(a) > order_key(b)


def ge(a: F32, b: F32) -> np.ndarray:
    """``a >= b``."""
    return order_key(a) >= order_key(b)


def max_(a: F32, b: F32) -> F32:
    """Elementwise maximum (maxps on non-NaN inputs)."""
    take_a = ge(a, b)
    (ma, ea), (mb, eb) = _f32(a), _f32(b)
    return F32(np.where(take_a, ma, mb), np.where(take_a, ea, eb))


def min_(a: F32, b: F32) -> F32:
    """Elementwise minimum (minps on non-NaN inputs)."""
    take_a = le(a, b)
    (ma, ea), (mb, eb) = _f32(a), _f32(b)
    return F32(np.where(take_a, ma, mb), np.where(take_a, ea, eb))
