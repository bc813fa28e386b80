"""compiler/f32.py against IEEE-754 float32 oracles.

Oracles, none of which shares code with f32.py:
- numpy float32 arithmetic (IEEE, correctly rounded, gradual underflow) for mul/add/sub/div,
  numpy casts for int -> float32 and float32 bit fields;
- float64 with round-to-odd, then one float64 -> float32 rounding (exact when the round-to-odd
  step keeps >= 26 bits, Boldo & Melquiond) for round_exact and fma;
- Python ``fractions.Fraction`` with a separate rounding routine, on smaller samples.

Random operands cover the whole exponent range; the adversarial sets are built from integers so
that they hit exact ties, near ties (sticky bits), subnormals, cancellation and huge exponent
gaps. ``test_adversarial_sets_catch_*`` show that those sets fail a wrong tie rule or a lost
sticky bit. Random sets have 10**6 operands per op (about 1 s each); ``@slow`` runs 4x more.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from intflow.compiler import f32
from intflow.compiler.f32 import F32

N = 1_000_000  # random operands per op in the default run
N_SLOW = 4_000_000
N_FRACTION = 3_000  # samples per op checked with exact rationals

# ---------------------------------------------------------------------------------------------
# Reporting


def _show(x) -> str:
    if isinstance(x, np.floating) and x.dtype == np.float32:
        return f"{float(x)!r} ({int(x.view(np.uint32)):#010x})"
    return repr(x.item() if hasattr(x, "item") else x)


def _first_mismatch(name: str, bad: np.ndarray, operands: dict, extra) -> str:
    i = int(np.flatnonzero(bad)[0])
    ops = ", ".join(f"{k}={_show(np.ravel(v)[i])}" for k, v in operands.items())
    return f"{name}: {int(bad.sum())} of {bad.size} differ; first at index {i}: {ops}; " + extra(i)


def _assert_canonical(name: str, r: F32) -> None:
    m, e = np.broadcast_arrays(r.m, r.e)
    a = np.abs(m)
    ok = (
        ((a == 0) & (e == 0))
        | ((a >= 2**23) & (a < 2**24) & (e >= -149))
        | ((e == -149) & (a > 0) & (a < 2**23))
    )
    assert m.dtype == np.int64 and e.dtype == np.int64
    if not ok.all():
        i = int(np.flatnonzero(~ok.ravel())[0])
        raise AssertionError(
            f"{name}: non-canonical result at {i}: m={m.ravel()[i]} e={e.ravel()[i]}"
        )


def _check(name: str, got: F32, want, **operands) -> None:
    """got (F32) must equal want (float32; +-0 equal, inf where got's exponent exceeds 104)."""
    _assert_canonical(name, got)
    for k, v in operands.items():
        assert np.asarray(v).dtype.kind != "f" or np.asarray(v).dtype == np.float32, k
    g = f32.to_float32(got).ravel()
    want = np.asarray(want, dtype=np.float32).ravel()
    assert g.shape == want.shape
    assert not np.isnan(want).any(), f"{name}: the oracle produced NaN (bad test input)"
    bad = (g != want) | (f32.is_finite(got).ravel() != np.isfinite(want))
    if bad.any():
        gm, ge = (np.ravel(np.broadcast_arrays(got.m, got.e)[k]) for k in (0, 1))
        raise AssertionError(
            _first_mismatch(
                name,
                bad,
                operands,
                lambda i: f"got {_show(g[i])} = {gm[i]}*2**{ge[i]}, want {_show(want[i])}",
            )
        )


def _check_int(name: str, got, want, **operands) -> None:
    got, want = np.ravel(got), np.ravel(want)
    assert got.dtype == np.int64
    bad = got != want
    if bad.any():
        raise AssertionError(
            _first_mismatch(name, bad, operands, lambda i: f"got {got[i]}, want {want[i]}")
        )


# ---------------------------------------------------------------------------------------------
# Operand generators


def _from_fields(sign, biased, frac) -> np.ndarray:
    bits = (np.asarray(sign, np.uint64) << 31) | (np.asarray(biased, np.uint64) << 23)
    return (bits | np.asarray(frac, np.uint64)).astype(np.uint32).view(np.float32)


def _rand_frac(rng, n) -> np.ndarray:
    """Random fractions, with extra weight on 0 (powers of two) and all-ones (binade tops)."""
    frac = rng.integers(0, 2**23, n)
    kind = rng.integers(0, 8, n)
    frac = np.where(kind == 0, rng.integers(0, 4, n), frac)
    return np.where(kind == 1, 2**23 - 1 - rng.integers(0, 4, n), frac)


def _rand_f32(rng, n, biased=None) -> np.ndarray:
    """Random finite float32s; biased exponents uniform over 0..254 unless given (clipped)."""
    if biased is None:
        biased = rng.integers(0, 255, n)
    return _from_fields(rng.integers(0, 2, n), np.clip(biased, 0, 254), _rand_frac(rng, n))


def _biased(x: np.ndarray) -> np.ndarray:
    return (x.view(np.uint32).astype(np.int64) >> 23) & 0xFF


def _exact_f32(m, e) -> np.ndarray:
    """The float32 m * 2**e (int arrays), asserting that it is exactly representable."""
    m, e = np.broadcast_arrays(np.asarray(m, np.int64), np.asarray(e, np.int64))
    x = np.ldexp(m.astype(np.float64), e)
    assert (np.abs(m) < 2**53).all()
    x32 = x.astype(np.float32)
    assert (x32.astype(np.float64) == x).all(), "test construction is not a float32"
    return x32


def _rand_mant(rng, n, max_tz=0) -> np.ndarray:
    """Random 24-bit significands in [2**23, 2**24) with 0..max_tz forced trailing zeros."""
    m = rng.integers(2**23, 2**24, n)
    tz = rng.integers(0, max_tz + 1, n)
    return ((m >> tz) << tz) | (1 << 23)


def _pairs_add(rng, n):
    """a over all exponents; b's exponent: uniform, within 2, 3..60 away, or 20..30 away."""
    a = _rand_f32(rng, n)
    ea = _biased(a)
    kind = rng.integers(0, 4, n)
    sign = rng.choice([-1, 1], n)
    delta = np.select(
        [kind == 1, kind == 2, kind == 3],
        [rng.integers(-2, 3, n), sign * rng.integers(3, 61, n), sign * rng.integers(20, 31, n)],
        0,
    )
    eb = np.where(kind == 0, rng.integers(0, 255, n), ea + delta)
    return a, _rand_f32(rng, n, eb)


def _pairs_scaled(rng, n, op):
    """a over all exponents, b chosen so that a*b (op 'mul') or a/b ('div') lands anywhere from
    below the subnormals to above the overflow threshold; a quarter of b fully random."""
    a = _rand_f32(rng, n)
    ea = _biased(a) - 127
    target = rng.integers(-160, 135, n)
    eb = target - ea if op == "mul" else ea - target
    eb = np.where(rng.integers(0, 4, n) == 0, rng.integers(-127, 128, n), eb)
    b = _rand_f32(rng, n, eb + 127)
    if op == "div":
        b = np.where(b == 0, np.float32(1.5), b)
    return a, b


# ---------------------------------------------------------------------------------------------
# Oracles


def _to_odd(hi: np.ndarray, err) -> np.ndarray:
    """Round-to-odd fix-up: hi = RN(x), err = sign of x - hi; step to the odd neighbour."""
    even = (hi.view(np.int64) & 1) == 0
    step = (np.asarray(err) != 0) & even
    return np.where(step, np.nextafter(hi, np.where(np.asarray(err) > 0, np.inf, -np.inf)), hi)


def _oracle_round_exact(m, e) -> np.ndarray:
    """float32(m * 2**e), |m| < 2**62, via float64 round-to-odd (value within float64 range)."""
    m, e = np.broadcast_arrays(np.asarray(m, np.int64), np.asarray(e, np.int64))
    hi = m.astype(np.float64)
    hi = _to_odd(hi, m - hi.astype(np.int64))
    with np.errstate(over="ignore"):
        return np.ldexp(hi, e).astype(np.float32)


def _oracle_fma(a, b, c) -> np.ndarray:
    """float32(a*b + c) rounded once: exact float64 product, TwoSum, round-to-odd, round."""
    p = a.astype(np.float64) * b.astype(np.float64)  # 48 bits, exponent >= -298: exact
    c = c.astype(np.float64)
    s = p + c
    bp = s - c
    err = (p - bp) + (c - (s - bp))  # exact: p + c == s + err
    with np.errstate(over="ignore"):
        return _to_odd(s, err).astype(np.float32)


def _pow2(k: int) -> Fraction:
    return Fraction(2**k) if k >= 0 else Fraction(1, 2**-k)


def _fraction_to_f32(v: Fraction) -> np.float32:
    """Nearest float32 to the rational v, ties to even, gradual underflow, inf past the range."""
    if v == 0:
        return np.float32(0.0)
    sign, v = (-1 if v < 0 else 1), abs(v)
    k = v.numerator.bit_length() - v.denominator.bit_length()
    if v < _pow2(k):
        k -= 1  # now 2**k <= v < 2**(k+1)
    quantum = _pow2(max(k - 23, -149))
    n = v / quantum
    whole = n.numerator // n.denominator
    rest = n - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    mag = whole * quantum
    if mag >= _pow2(128):
        return np.float32(sign * np.inf)
    return np.float32(sign * float(mag))


def _fr(x) -> Fraction:
    return Fraction(float(x))


# ---------------------------------------------------------------------------------------------
# Integer helpers


def test_bit_length():
    rng = np.random.default_rng(1)
    edges = [v for k in range(63) for v in (2**k - 1, 2**k, 2**k + 1)] + [2**63 - 1]
    rand = rng.integers(0, 2**62, 50_000) >> rng.integers(0, 63, 50_000)
    x = np.array(edges + list(rand) + [2**62 + 12345, 2**63 - 2**40], dtype=np.int64)
    _check_int("bit_length", f32.bit_length(x), [int(v).bit_length() for v in x], x=x)


def test_shift_right_rne():
    rng = np.random.default_rng(2)
    n = 30_000
    a = rng.integers(0, 2**62, n) >> rng.integers(0, 62, n)
    s = rng.integers(0, 70, n)
    # half of them exactly on .5 ties
    tie = rng.integers(0, 2, n) == 1
    s_t = np.clip(s, 1, 40)
    a = np.where(tie, (rng.integers(0, 2**20, n) << s_t) | (1 << (s_t - 1)), a)
    s = np.where(tie, s_t, s)
    want = [round(Fraction(int(x), 2 ** int(k))) for x, k in zip(a, s, strict=True)]
    _check_int("shift_right_rne", f32.shift_right_rne(a, s), want, a=a, s=s)


# ---------------------------------------------------------------------------------------------
# round_exact, from_int, float32 conversions


def _round_exact_cases(rng, n):
    """Half random (m of 0..62 bits, value from 2**-160 to 2**135), half on exact ties or a few
    units beside them, at normal, subnormal and overflow rounding points."""
    h = n // 2
    bits = rng.integers(0, 63, h)
    m = (rng.integers(0, 2**62, h) >> (62 - bits)) * rng.choice([-1, 1], h)
    e = rng.integers(-160, 136, h) - bits
    # ties: result q at exponent eq, exact value (2q+1) * 2**(eq-1) scaled by 2**j, plus d
    q = np.where(
        rng.integers(0, 4, h) == 0, rng.integers(0, 2**23, h), rng.integers(2**23, 2**24, h)
    )
    eq = np.where(q < 2**23, -149, rng.integers(-149, 110, h))
    j = rng.integers(0, 37, h)
    d = np.select(
        [rng.integers(0, 3, h) == k for k in range(3)],
        [0, rng.choice([-1, 1], h), rng.integers(-(2**20), 2**20, h)],
    )
    d = np.where(j > 0, np.clip(d, -(2**j) + 1, 2**j - 1), 0)
    mt = (((2 * q + 1) << j) + d) * rng.choice([-1, 1], h)
    return np.concatenate([m, mt]), np.concatenate([e, eq - 1 - j])


def _run_round_exact(n, seed):
    rng = np.random.default_rng(seed)
    m, e = _round_exact_cases(rng, n)
    _check("round_exact", f32.round_exact(m, e), _oracle_round_exact(m, e), m=m, e=e)


def test_round_exact():
    _run_round_exact(N, 3)


@pytest.mark.slow
def test_round_exact_slow():
    _run_round_exact(N_SLOW, 103)


def test_round_exact_fractions_and_extremes():
    rng = np.random.default_rng(4)
    m, e = _round_exact_cases(rng, N_FRACTION)
    want = [_fraction_to_f32(int(a) * _pow2(int(b))) for a, b in zip(m, e, strict=True)]
    _check("round_exact/fraction", f32.round_exact(m, e), want, m=m, e=e)
    # exponents far outside float32: zero below, beyond-the-range above (no wrap-around)
    m = rng.integers(1, 2**62, 1000) * rng.choice([-1, 1], 1000)
    tiny = f32.round_exact(m, -(2**40) + rng.integers(0, 2**20, 1000))
    assert (tiny.m == 0).all() and (tiny.e == 0).all()
    below = f32.round_exact(np.full(1000, 2**61), np.full(1000, -211))  # 2**-150: tie -> 0
    assert (below.m == 0).all()
    huge = f32.round_exact(m, 2**30 + rng.integers(0, 2**20, 1000))
    _assert_canonical("round_exact/huge", huge)
    assert not f32.is_finite(huge).any() and (np.sign(huge.m) == np.sign(m)).all()


def test_from_int():
    rng = np.random.default_rng(5)
    near = np.arange(-300, 301)
    n = np.concatenate(
        [
            near,
            *(s * (2**k + near) for k in (24, 25, 31, 32, 53, 61) for s in (1, -1)),
            [2**31 - 1, -(2**31), 2**62 - 1, -(2**62) + 1, 2**60 + 2**36 + 1],
            rng.integers(-(2**31), 2**31, N // 2),
            rng.integers(-(2**62) + 1, 2**62, N // 2) >> rng.integers(0, 62, N // 2),
        ]
    )
    got = f32.from_int(n)
    _check("from_int", got, n.astype(np.float32), n=n)
    _check("from_int/round-to-odd", got, _oracle_round_exact(n, 0), n=n)


def test_float32_roundtrip():
    rng = np.random.default_rng(6)
    bits = rng.integers(0, 255 << 23, N, dtype=np.uint32) | (rng.integers(0, 2, N, np.uint32) << 31)
    special = np.array([0, 1, 2**23 - 1, 2**23, 0x7F7FFFFF, 0x3F800000, 0x4B800000], np.uint32)
    bits = np.concatenate([bits, special, special | np.uint32(2**31)])
    x = bits.view(np.float32)
    a = f32.from_float32(x)
    _check("from_float32/to_float32", a, x, x=x)
    back = f32.to_float32(a)
    assert (back.view(np.uint32) == np.where(x == 0, 0, bits)).all()
    # independent decomposition check: m * 2**e == x in float64
    assert (np.ldexp(a.m.astype(np.float64), a.e) == x.astype(np.float64)).all()
    for bad in (np.inf, -np.inf, np.nan):
        with pytest.raises(ValueError):
            f32.from_float32(np.array([1.0, bad], np.float32))


# ---------------------------------------------------------------------------------------------
# mul, add, sub


def _mul_tie_cases(rng, n):
    """Products exactly halfway between float32s: u*v with a 25-bit odd product (normal), and
    odd u*v at 2**-150 (subnormal, also 2**-151/-152), plus random subnormal factors."""
    u = rng.integers(2**10, 2**13, 4 * n) | 1
    v = rng.integers(2**11, 2**14, 4 * n) | 1
    keep = f32.bit_length(u * v) == 25
    u, v = u[keep][:n], v[keep][:n]
    s1 = rng.integers(-140, 50, u.size)
    s2 = rng.integers(-140, 50, u.size)
    s2 = np.clip(s2, -120 - s1, 100 - s1)
    su = rng.integers(1, 2**12, n) | 1
    sv = rng.integers(1, 2**12, n) | 1
    t1 = rng.integers(-149, 0, n)
    t2 = np.maximum(-150 - rng.integers(0, 3, n) - t1, -149)
    a = np.concatenate([_exact_f32(u, s1), _exact_f32(su, t1), _rand_f32(rng, n, 0)])
    b = np.concatenate([_exact_f32(-v, s2), _exact_f32(sv, t2), _rand_f32(rng, n, 127)])
    return a, b


def _run_mul(n, seed):
    rng = np.random.default_rng(seed)
    a, b = _pairs_scaled(rng, n, "mul")
    with np.errstate(all="ignore"):
        _check("mul", f32.mul(f32.from_float32(a), f32.from_float32(b)), a * b, a=a, b=b)


def test_mul():
    _run_mul(N, 7)


@pytest.mark.slow
def test_mul_slow():
    _run_mul(N_SLOW, 107)


def test_mul_ties():
    rng = np.random.default_rng(8)
    a, b = _mul_tie_cases(rng, 100_000)
    _check("mul/ties", f32.mul(f32.from_float32(a), f32.from_float32(b)), a * b, a=a, b=b)


def _add_cases(rng, n):
    """Adversarial sums; returns a, b and the number of exact ties among them."""
    parts_a, parts_b = [], []
    # 1. ties: b = +-(2j+1) * 2**(ea-1) for a = ma * 2**ea; sum odd in units 2**(ea-1)
    ma = _rand_mant(rng, n) * rng.choice([-1, 1], n)
    ea = rng.integers(-148, 100, n)
    j = np.where(rng.integers(0, 2, n) == 0, rng.integers(0, 8, n), rng.integers(0, 2**22, n))
    mb = (2 * j + 1) * rng.choice([-1, 1], n)
    parts_a.append(_exact_f32(ma, ea))
    parts_b.append(_exact_f32(mb, ea - 1))
    s = 2 * ma + mb
    ties = int((f32.bit_length(np.abs(s)) == 25).sum())
    # 2. cancellation: b = -(a moved by -4..4 ulps)
    a = _rand_f32(rng, n)
    bits = a.view(np.uint32).astype(np.int64) + rng.integers(-4, 5, n)
    b = -np.clip(bits, 0, 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    ok = _biased(b) != 255
    parts_a.append(a[ok])
    parts_b.append(b[ok])
    # 3. huge gaps, including subnormal b
    a = _rand_f32(rng, n)
    b = _rand_f32(rng, n, _biased(a) - rng.integers(24, 200, n))
    parts_a.append(a)
    parts_b.append(b)
    # 4. powers of two with a negative small addend near the lower half-ulp 2**(k-25)
    k = rng.integers(-90, 100, n)
    sa = rng.choice([-1, 1], n)
    m_small = np.where(rng.integers(0, 2, n) == 0, rng.integers(0, 3, n), rng.integers(0, 2**23, n))
    shift = rng.integers(-2, 8, n)
    parts_a.append(_exact_f32(sa * 2**23, k - 23))
    parts_b.append(_exact_f32(-sa * (2**23 + m_small), k - 25 - 23 - shift))
    # 5. subnormals with subnormals and with the smallest normals
    parts_a.append(_rand_f32(rng, n, rng.integers(0, 2, n)))
    parts_b.append(_rand_f32(rng, n, rng.integers(0, 2, n)))
    return np.concatenate(parts_a), np.concatenate(parts_b), ties


def _run_add(n, seed):
    rng = np.random.default_rng(seed)
    a, b = _pairs_add(rng, n)
    fa, fb = f32.from_float32(a), f32.from_float32(b)
    with np.errstate(all="ignore"):
        _check("add", f32.add(fa, fb), a + b, a=a, b=b)
        _check("sub", f32.sub(fa, fb), a - b, a=a, b=b)


def test_add_sub():
    _run_add(N, 9)


@pytest.mark.slow
def test_add_sub_slow():
    _run_add(N_SLOW, 109)


def test_add_adversarial():
    rng = np.random.default_rng(10)
    a, b, ties = _add_cases(rng, 100_000)
    assert ties > 30_000
    fa, fb = f32.from_float32(a), f32.from_float32(b)
    with np.errstate(all="ignore"):
        _check("add/adversarial", f32.add(fa, fb), a + b, a=a, b=b)
        _check("sub/adversarial", f32.sub(fb, fa), b - a, a=a, b=b)


def test_add_mul_fractions():
    rng = np.random.default_rng(11)
    a, b = _pairs_add(rng, N_FRACTION)
    a2, b2, _ = _add_cases(rng, N_FRACTION // 5)
    a, b = np.concatenate([a, a2]), np.concatenate([b, b2])
    fa, fb = f32.from_float32(a), f32.from_float32(b)
    want = [_fraction_to_f32(_fr(x) + _fr(y)) for x, y in zip(a, b, strict=True)]
    _check("add/fraction", f32.add(fa, fb), want, a=a, b=b)
    a, b = _pairs_scaled(rng, N_FRACTION, "mul")
    fa, fb = f32.from_float32(a), f32.from_float32(b)
    want = [_fraction_to_f32(_fr(x) * _fr(y)) for x, y in zip(a, b, strict=True)]
    _check("mul/fraction", f32.mul(fa, fb), want, a=a, b=b)


# ---------------------------------------------------------------------------------------------
# fma


def _fma_random(rng, n):
    """a, b anywhere; c's exponent relative to the product's like b's to a's in _pairs_add."""
    a, b = _pairs_scaled(rng, n, "mul")
    ep = _biased(a) + _biased(b) - 127
    kind = rng.integers(0, 4, n)
    sign = rng.choice([-1, 1], n)
    delta = np.select(
        [kind == 1, kind == 2, kind == 3],
        [rng.integers(-2, 3, n), sign * rng.integers(3, 61, n), sign * rng.integers(20, 50, n)],
        0,
    )
    ec = np.where(kind == 0, rng.integers(0, 255, n), ep + delta)
    c = _rand_f32(rng, n, ec)
    zero = rng.integers(0, 50, n)
    a = np.where(zero == 0, np.float32(0), a)
    c = np.where(zero == 1, np.float32(0), c)
    return a, b, c


def _fma_tie_cases(rng, n):
    """fma(a, b, c) whose exact value is a tie T or T + d with 0 < |d| < the tie unit.

    P = ma*mb (exact, up to 48 bits, exponent ep); s picks the tie unit 2**s; Q is P with its
    low s bits replaced so that bit s is 1, d = P - Q (|d| < 2**s). c cancels Q's high bits:
    normal family: P + C = 2**(s+24) + (Q mod 2**(s+24)) + d, 25 significant bits above 2**s;
    subnormal family (ep + s = -150): P + C = (Q mod 2**(s+w)) + d with w <= 23.
    Then products that are ties themselves plus a far smaller c (sticky decides).
    Returns a, b, c and the number of exact ties (d == 0).
    """
    ma = _rand_mant(rng, n, 12)
    mb = _rand_mant(rng, n, 12)
    p = ma * mb
    tz = f32.bit_length(p & -p) - 1
    s = np.where(rng.integers(0, 2, n) == 0, np.clip(tz, 1, 23), rng.integers(1, 24, n))
    low = p & ((1 << s) - 1)
    q = p - low + np.where(((p >> s) & 1) == 1, 0, 1 << s)
    d = p - q
    ties = int((d == 0).sum())
    sub = rng.integers(0, 2, n) == 1
    w = rng.integers(np.maximum(1, 24 - s), 24)
    hi_normal = (1 - (q >> (s + 24))) << (s + 24)
    hi_sub = -((q >> (s + w)) << (s + w))
    c_int = np.where(sub, hi_sub, hi_normal)
    # exponents of the integer significands: a = +-ma * 2**xa, b = mb * 2**xb, c = +-C * 2**ep
    xa = np.where(sub, rng.integers(-149, -1 - s), rng.integers(-80, 21, n))
    xb = np.where(sub, -150 - s - xa, rng.integers(-80, 21, n))
    ep = xa + xb
    sign = rng.choice([-1, 1], n)
    a = _exact_f32(sign * ma, xa)
    b = _exact_f32(mb, xb)
    c = _exact_f32(sign * c_int, ep)
    # products that are exact ties, plus a much smaller c of either sign
    u = rng.integers(2**10, 2**13, 4 * n) | 1
    v = rng.integers(2**11, 2**14, 4 * n) | 1
    keep = f32.bit_length(u * v) == 25
    u, v = u[keep][:n], v[keep][:n]
    s1 = rng.integers(-100, 40, u.size)
    s2 = rng.integers(-100, 40, u.size)
    a2 = _exact_f32(u, s1)
    b2 = _exact_f32(v, s2)
    c2 = _rand_f32(rng, u.size, (_biased(a2) + _biased(b2) - 127) - rng.integers(25, 200, u.size))
    return np.concatenate([a, a2]), np.concatenate([b, b2]), np.concatenate([c, c2]), ties


def _run_fma(name, a, b, c):
    got = f32.fma(f32.from_float32(a), f32.from_float32(b), f32.from_float32(c))
    _check(name, got, _oracle_fma(a, b, c), a=a, b=b, c=c)
    return got


def _run_fma_random(n, seed):
    rng = np.random.default_rng(seed)
    _run_fma("fma", *_fma_random(rng, n))


def test_fma():
    _run_fma_random(N, 12)


@pytest.mark.slow
def test_fma_slow():
    _run_fma_random(N_SLOW, 112)


def test_fma_ties_and_sticky():
    rng = np.random.default_rng(13)
    a, b, c, ties = _fma_tie_cases(rng, 100_000)
    assert ties > 20_000
    got = _run_fma("fma/ties", a, b, c)
    # single rounding matters here: mul-then-add differs on many of these
    fa, fb, fc = (f32.from_float32(x) for x in (a, b, c))
    twice = f32.add(f32.mul(fa, fb), fc)
    assert ((twice.m != got.m) | (twice.e != got.e)).sum() > 10_000


def test_fma_fractions():
    rng = np.random.default_rng(14)
    a, b, c = _fma_random(rng, N_FRACTION)
    a2, b2, c2, _ = _fma_tie_cases(rng, N_FRACTION // 2)
    a, b, c = (np.concatenate(p) for p in ((a, a2), (b, b2), (c, c2)))
    want = [_fraction_to_f32(_fr(x) * _fr(y) + _fr(z)) for x, y, z in zip(a, b, c, strict=True)]
    got = f32.fma(f32.from_float32(a), f32.from_float32(b), f32.from_float32(c))
    _check("fma/fraction", got, want, a=a, b=b, c=c)


def test_fma_qlinearadd_chain():
    """ORT_KERNELS.md section 4: y = cvt(fma(a, Ra, fma(b, Rb, fix))) on raw u8 codes."""
    rng = np.random.default_rng(15)
    n = 200_000
    a = rng.integers(0, 256, n).astype(np.float32)
    b = rng.integers(0, 256, n).astype(np.float32)
    ra = (10.0 ** rng.uniform(-3, 3, n)).astype(np.float32)
    rb = (ra * 10.0 ** rng.uniform(-1, 1, n)).astype(np.float32)
    fix = (rng.uniform(-300, 300, n) * ra).astype(np.float32)
    inner = _oracle_fma(b, rb, fix)
    want = _oracle_fma(a, ra, inner)
    fa, fb, fra, frb, ffix = (f32.from_float32(x) for x in (a, b, ra, rb, fix))
    got = f32.fma(fa, fra, f32.fma(fb, frb, ffix))
    _check("fma/qlinearadd", got, want, a=a, b=b, ra=ra, rb=rb, fix=fix)
    w = np.rint(want.astype(np.float64))
    want_cvt = np.where(np.abs(w) >= 2**31, f32.INT32_MIN, w).astype(np.int64)
    _check_int("cvt/qlinearadd", f32.cvt(got), want_cvt, a=a, b=b, ra=ra, rb=rb, fix=fix)


# ---------------------------------------------------------------------------------------------
# div


def _div_cases(rng, n):
    """Subnormal ties (a/b = odd * 2**-150), powers-of-two divisors, quotients next to a tie
    (a = f32(b * tie) and its neighbours), a ~ b, and subnormal operands."""
    u = rng.integers(1, 2**12, n) | 1
    v = rng.integers(1, 2**12, n) | 1
    s1 = rng.integers(-149, -60, n)
    a1, b1 = _exact_f32(u * v, s1), _exact_f32(-v, s1 + 150 + rng.integers(0, 3, n))
    a2 = _rand_f32(rng, n)
    b2 = _exact_f32(rng.choice([-1, 1], n), rng.integers(-149, 128, n))
    b3 = _rand_f32(rng, n, rng.integers(60, 190, n))
    tie = (2 * rng.integers(2**23, 2**24, n) + 1) * 2.0 ** rng.integers(-60, 10, n)
    a3 = (b3.astype(np.float64) * tie).astype(np.float32)
    step = rng.integers(0, 3, n)
    a3 = np.nextafter(a3, np.where(step == 0, -np.inf, np.where(step == 1, np.inf, a3)))
    a4 = _rand_f32(rng, n, rng.integers(0, 254, n))
    b4 = np.nextafter(a4, rng.choice(np.float32([-np.inf, np.inf]), n))
    b4 = b4 * rng.choice(np.float32([-1, 1]), n)
    b4 = np.where(b4 == 0, np.float32(1e-45), b4)
    a5, b5 = _rand_f32(rng, n, rng.integers(0, 3, n)), _rand_f32(rng, n, rng.integers(0, 3, n))
    b5 = np.where(b5 == 0, np.float32(-3e-45), b5)
    return np.concatenate([a1, a2, a3, a4, a5]), np.concatenate([b1, b2, b3, b4, b5])


def _run_div(n, seed):
    rng = np.random.default_rng(seed)
    a, b = _pairs_scaled(rng, n, "div")
    with np.errstate(all="ignore"):
        _check("div", f32.div(f32.from_float32(a), f32.from_float32(b)), a / b, a=a, b=b)


def test_div():
    _run_div(N, 16)


@pytest.mark.slow
def test_div_slow():
    _run_div(N_SLOW, 116)


def test_div_adversarial():
    rng = np.random.default_rng(17)
    a, b = _div_cases(rng, 50_000)
    assert a.dtype == b.dtype == np.float32 and np.isfinite(a).all() and (b != 0).all()
    with np.errstate(all="ignore"):
        _check(
            "div/adversarial", f32.div(f32.from_float32(a), f32.from_float32(b)), a / b, a=a, b=b
        )
    m = rng.integers(0, 2**24, 1000)
    with pytest.raises(ZeroDivisionError):
        f32.div(F32(m, np.zeros(1000, np.int64)), F32(np.where(m > 2**23, m, 0), 0))


def test_div_fractions():
    rng = np.random.default_rng(18)
    a, b = _pairs_scaled(rng, N_FRACTION, "div")
    a2, b2 = _div_cases(rng, N_FRACTION // 5)
    a, b = np.concatenate([a, a2]), np.concatenate([b, b2])
    want = [_fraction_to_f32(_fr(x) / _fr(y)) for x, y in zip(a, b, strict=True)]
    _check("div/fraction", f32.div(f32.from_float32(a), f32.from_float32(b)), want, a=a, b=b)


# ---------------------------------------------------------------------------------------------
# rint, cvt


def _rint_cases(rng, n):
    """Random magnitudes 2**-150..2**40, exact .5 ties, integers and halves near 2**24 and 2**31
    (and negatives), subnormals."""
    x = _rand_f32(rng, n, rng.integers(0, 127 + 40, n))
    ints = rng.integers(-(2**22), 2**22, n) >> rng.integers(0, 22, n)
    halves = (ints + 0.5).astype(np.float32)  # < 2**22 + 1/2: 24 bits, exact
    near = np.concatenate(
        [s * (2.0**k + np.arange(-300, 301) / 2) for k in (22, 23, 24, 25, 31) for s in (1, -1)]
    )
    near31 = [
        np.nextafter(np.float32(s * 2.0**31), np.float32(t)) for s in (1, -1) for t in (-1, 1)
    ]
    near31 = np.array(near31 + [2.0**31, -(2.0**31)], dtype=np.float32)
    return np.concatenate([x, halves, near.astype(np.float32), near31])


def test_rint_cvt():
    rng = np.random.default_rng(19)
    x = _rint_cases(rng, N)
    a = f32.from_float32(x)
    w = np.rint(x.astype(np.float64))
    _check_int("rint", f32.rint(a), w.astype(np.int64), x=x)
    want_cvt = np.where(np.abs(w) >= 2**31, f32.INT32_MIN, w).astype(np.int64)
    assert (want_cvt == f32.INT32_MIN).sum() > 1000
    _check_int("cvt", f32.cvt(a), want_cvt, x=x)
    # beyond int64 / beyond float32: rint refuses, cvt gives the x86 integer indefinite
    big = f32.from_float32(np.float32([3.0e38, -(2.0**63), 2.0**62]))
    with pytest.raises(OverflowError):
        f32.rint(big)
    beyond = f32.mul(big, big)
    assert not f32.is_finite(beyond)[0] and f32.is_finite(beyond)[1:].all()
    _check_int("cvt/huge", f32.cvt(beyond), np.full(3, f32.INT32_MIN), x=big.m)
    assert f32.rint(f32.from_float32(np.float32(2.0**62)))[()] == 2**62


# ---------------------------------------------------------------------------------------------
# comparisons


def test_compare():
    rng = np.random.default_rng(20)
    a, b = _pairs_add(rng, N // 2)
    eq = rng.integers(0, 8, a.size) == 0
    b = np.where(eq, a, b)
    b = np.where(rng.integers(0, 50, a.size) == 0, np.float32(-0.0), b)
    fa, fb = f32.from_float32(a), f32.from_float32(b)
    for name, fn, want in (
        ("lt", f32.lt, a < b),
        ("le", f32.le, a <= b),
        ("gt", f32.gt, a > b),
        ("ge", f32.ge, a >= b),
    ):
        _check_int(name, fn(fa, fb).astype(np.int64), want.astype(np.int64), a=a, b=b)
    _check("max_", f32.max_(fa, fb), np.maximum(a, b), a=a, b=b)
    _check("min_", f32.min_(fa, fb), np.minimum(a, b), a=a, b=b)
    # beyond-the-range values order above every finite one
    over = f32.mul(f32.from_float32(np.float32(3e38)), f32.from_float32(np.float32(2.0)))
    assert f32.lt(f32.from_float32(np.float32(3.4028235e38)), over)


def test_broadcasting_and_scalars():
    x = np.float32([1.5, -2.25, 3e-45, 0.0])
    a = f32.from_float32(x)
    s = f32.from_float32(np.float32(0.1))
    _check("mul/broadcast", f32.mul(a, s), x * np.float32(0.1), x=x)
    _check("fma/broadcast", f32.fma(a, s, s), _oracle_fma(x, np.float32(0.1), np.float32(0.1)), x=x)
    col = f32.from_float32(x[:, None])
    got = f32.add(col, a)
    assert got.m.shape == (4, 4)
    _check("add/outer", got, x[:, None] + x[None, :], x=np.repeat(x, 4))
    _check("from_int/scalar", f32.from_int(16777217), np.float32(16777216.0))


# ---------------------------------------------------------------------------------------------
# the adversarial sets can fail


def _ties_away(a, s):
    """A wrong rounding rule (ties away from zero) with shift_right_rne's signature."""
    s = np.clip(np.asarray(s, np.int64), 0, 63)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(np.asarray(a, np.int64) + half, s)


def _mismatches(fn) -> int:
    try:
        fn()
    except AssertionError:
        return 1
    return 0


def test_adversarial_sets_catch_a_wrong_tie_rule(monkeypatch):
    rng = np.random.default_rng(21)
    ma, mb = _mul_tie_cases(rng, 2000)
    aa, ab, _ = _add_cases(rng, 2000)
    fa, fb, fc, _ = _fma_tie_cases(rng, 2000)
    da, db = _div_cases(rng, 2000)
    m, e = _round_exact_cases(rng, 4000)
    x = _rint_cases(rng, 2000)
    monkeypatch.setattr(f32, "shift_right_rne", _ties_away)
    fl = f32.from_float32
    with np.errstate(all="ignore"):
        checks = {
            "round_exact": lambda: _check("r", f32.round_exact(m, e), _oracle_round_exact(m, e)),
            "mul": lambda: _check("m", f32.mul(fl(ma), fl(mb)), ma * mb),
            "add": lambda: _check("a", f32.add(fl(aa), fl(ab)), aa + ab),
            "fma": lambda: _run_fma("f", fa, fb, fc),
            "div": lambda: _check("d", f32.div(fl(da), fl(db)), da / db),
            "rint": lambda: _check_int("i", f32.rint(fl(x)), np.rint(x).astype(np.int64)),
        }
        caught = {k: _mismatches(fn) for k, fn in checks.items()}
    assert all(caught.values()), caught


def test_adversarial_sets_catch_a_lost_sticky_bit(monkeypatch):
    rng = np.random.default_rng(22)
    fa, fb, fc, _ = _fma_tie_cases(rng, 2000)
    da, db = _div_cases(rng, 2000)
    monkeypatch.setattr(f32, "_sticky_halve", lambda q, r: 2 * q)
    with np.errstate(all="ignore"):
        assert _mismatches(lambda: _run_fma("f", fa, fb, fc))
        fl = f32.from_float32
        assert _mismatches(lambda: _check("d", f32.div(fl(da), fl(db)), da / db))
