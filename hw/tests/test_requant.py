"""RequantOrt / RequantDyadic in amaranth's simulator against ``compiler/requant.py``, exactly.

Small accumulators are swept exhaustively (every value, every channel) over multipliers chosen
to make ties: powers of two put every other output on a .5 tie, and 24-bit rounding of |acc|
only happens above 2^24, so wide accumulators get targeted cases (values one below, on, and one
above each rounding boundary, outputs next to .5 and next to the clamp bounds).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import signed, unsigned

from intflow.compiler import requant as rq
from intflow.hw.requant import RequantDyadic, RequantOrt, requant_from_ir
from intflow.hw.testbench import pack, run_stream, unpack


def stream_requant(dut, acc, channel=None, **kw) -> np.ndarray:
    fields = {"acc": np.asarray(acc)}
    if dut.channels > 1:
        fields["channel"] = np.asarray(channel)
    beats = pack(dut.i.payload.shape(), fields)
    run = run_stream(dut, list(beats), len(beats), **kw)
    if kw.get("valid_rate", 1) == 1 and kw.get("ready_rate", 1) == 1:
        assert run.last_out - run.first_in == dut.latency + len(beats) - 1  # one beat a cycle
    return unpack(dut.o.payload.shape(), run.words)["y"]


def ort_ref(acc, mant, exp, ch, zp, lo, hi):
    return rq.requant_ort(acc, np.asarray(mant)[ch], np.asarray(exp)[ch], zp, lo, hi)


def every_acc(shape, channels):
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    acc = np.arange(lo, lo + (1 << shape.width))
    return np.repeat(acc, channels), np.tile(np.arange(channels), len(acc))


# M: powers of two (ties everywhere), 1.5 * 2^-k, 1, a value just below 1 (1 - 2^-24),
# odd mantissas, a large one (everything saturates), a tiny one (everything rounds to 0)
ORT_SMALL = [
    (signed(12), [2.0**-4, 1.5 * 2.0**-6, 0.7, 1 / 3], -5, -128, 127),
    (signed(10), [1.0, np.nextafter(np.float32(1), np.float32(0)), 2.0**-9, 37.25], 3, -128, 127),
    (unsigned(12), [2.0**-5, 0.0123, 1e-30, 2.0**-12 * 3], 0, 0, 255),
    (signed(12), [0.09, 2.0**-3], -128, -128, 127),  # fused ReLU: lo = zero point
    (signed(9), [0.37], 7, -8, 7),  # 4-bit output
]


@pytest.mark.parametrize("acc_shape, ms, zp, lo, hi", ORT_SMALL)
def test_ort_exhaustive_small_acc(acc_shape, ms, zp, lo, hi):
    mant, exp = rq.ort_multiplier(np.float32(ms))
    dut = RequantOrt(acc_shape, mant, exp, zp, lo, hi)
    acc, ch = every_acc(acc_shape, len(ms))
    y = stream_requant(dut, acc, ch)
    ref = ort_ref(acc, mant, exp, ch, zp, lo, hi)
    np.testing.assert_array_equal(y, ref)
    assert len(np.unique(ref)) > 2  # the sweep is not all saturated


def ort_adversarial(rng, width: int, ms: np.ndarray, zp: int, lo: int, hi: int, n: int):
    """Accumulators where the rounding steps are decided: .5 ties of the output, the clamp
    bounds, and (for width > 24) the 24-bit rounding boundaries of |acc|."""
    amax = (1 << (width - 1)) - 1
    c = len(ms)
    ch = rng.integers(0, c, n)
    m = np.float64(np.asarray(ms, np.float32))[ch]
    kind = rng.integers(0, 4, n)
    y = rng.integers(lo - zp - 3, hi - zp + 4, n) + 0.5 * (kind == 0)
    acc = np.floor(y / m) + rng.integers(-2, 3, n)
    # |acc| = (2^23 + j) * 2^s + 2^(s-1) + {-1, 0, 1} (24 + s bits): ties and near-ties of
    # f32(acc)
    if width > 25:
        s = rng.integers(1, width - 24, n)
        j = rng.integers(0, 1 << 23, n)
        tie = (((1 << 23) + j) << s) + (1 << (s - 1)) + rng.integers(-1, 2, n)
        tie = np.where(rng.random(n) < 0.5, -tie, tie)
        acc = np.where(kind == 3, tie, acc)
    acc = np.clip(acc, -amax - 1, amax).astype(np.int64)
    return acc, ch


def _round_shift(x, s, mode):
    """x >> s rounded: "even" (half-even), "up" (half-up) or "trunc" (x >= 0, s >= 0)."""
    s = np.asarray(s, np.int64)
    q = x >> s
    r = x - (q << s)
    half = np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)
    if mode == "trunc":
        return q
    up = (r > half) | ((r == half) & (s > 0) & ((q & 1 == 1) if mode == "even" else True))
    return q + up


def ort_variant(acc, mant, exp, acc_mode="even", prod_mode="even", out_mode="even"):
    """``requant_ort`` with one rounding step changed (``acc_mode=None``: no acc rounding):
    the rivals a hard case must tell apart from the kernel. Normal M, 8-bit-ish outputs."""
    a = np.abs(acc)
    bl = np.array([int(v).bit_length() for v in a])
    if acc_mode is None:
        am, ea = a, np.zeros_like(a)
    else:
        sh = np.maximum(bl - 24, 0)
        am = _round_shift(a, sh, acc_mode)
        ea = sh
    p = am * mant  # < 2^55
    pb = np.array([int(v).bit_length() for v in p])
    sh = np.maximum(pb - 24, 0)
    vm = _round_shift(p, sh, prod_mode)
    ve = ea + exp + sh
    r = np.where(ve >= 0, 1 << 40, _round_shift(vm, np.minimum(-ve, 62), out_mode))
    return np.where(acc < 0, -r, r)


RIVALS = ({"acc_mode": None}, {"acc_mode": "up"}, {"acc_mode": "trunc"},
          {"prod_mode": "up"}, {"prod_mode": "trunc"}, {"out_mode": "up"})


def hard_ort_cases(rng, width, ms, zp, lo, hi, n_candidates, per_rival=250):
    """Accumulators (and channels) on which rival roundings give a different output: up to
    ``per_rival`` for each rival, which must have at least 10."""
    acc, ch = ort_adversarial(rng, width, ms, zp, lo, hi, n_candidates)
    mant, exp = rq.ort_multiplier(np.float32(ms))
    true = ort_ref(acc, mant, exp, ch, zp, lo, hi)
    keep = np.zeros(len(acc), bool)
    for kw in RIVALS:
        rival = np.clip(ort_variant(acc, mant[ch], exp[ch], **kw) + zp, lo, hi)
        told = np.nonzero(rival != true)[0]
        assert len(told) >= 10, f"no hard cases for rival {kw}"
        keep[told[:per_rival]] = True
    return acc[keep], ch[keep]


@pytest.mark.parametrize("width", [26, 32])
def test_ort_rival_roundings_told_apart(width):
    """Cases where a rival (acc not rounded to 24 bits, half-up or truncating rounding in any
    of the three steps) differs from the kernel: the hardware must side with the kernel."""
    rng = np.random.default_rng(40 + width)
    # |acc| > 2^24 and outputs in [-128, 127]: M < 2^-17; short mantissas make product ties
    ms = np.float32(10.0 ** rng.uniform(-9, -6.5, 8) * (1 << (width - 26)))
    ms[:4] = np.float32(np.array([1.5, 1.25, 1.75, 1.375]) * 2.0 ** np.floor(np.log2(ms[:4])))
    acc, ch = hard_ort_cases(rng, width, ms, -7, -128, 127, 400_000)
    mant, exp = rq.ort_multiplier(ms)
    dut = RequantOrt(signed(width), mant, exp, -7, -128, 127)
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, -7, -128, 127))


@pytest.mark.parametrize("width", [16, 24, 25, 27, 32])
def test_ort_adversarial_wide_acc(width):
    rng = np.random.default_rng(width)
    ms = np.float32(10.0 ** rng.uniform(-9, -1, 5) * (1 << max(0, width - 24)))
    ms[0] = np.float32(2.0 ** -(width - 9))  # a power of two: exact ties after f32(acc)
    mant, exp = rq.ort_multiplier(ms)
    zp, lo, hi = -7, -128, 127
    dut = RequantOrt(signed(width), mant, exp, zp, lo, hi)
    acc, ch = ort_adversarial(rng, width, ms, zp, lo, hi, 3000)
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, zp, lo, hi))


def test_ort_stalls_and_per_tensor():
    rng = np.random.default_rng(5)
    mant, exp = rq.ort_multiplier(np.float32([0.0021]))
    dut = RequantOrt(signed(20), mant, exp, 12, 0, 255)
    acc = rng.integers(-(1 << 19), 1 << 19, 2000)
    y = stream_requant(dut, acc, valid_rate=0.6, ready_rate=0.5, seed=3)
    np.testing.assert_array_equal(y, rq.requant_ort(acc, mant, exp, 12, 0, 255))


def test_ort_wide_output_needs_left_shift():
    # a 26-bit output: results in [2^23, 2^25) are exact and take the left-shift path
    rng = np.random.default_rng(2)
    mant, exp = rq.ort_multiplier(np.float32([3.75, 1000.5, 3000.25]))
    lo, hi = -(1 << 25), (1 << 25) - 1
    dut = RequantOrt(signed(14), mant, exp, 11, lo, hi)
    acc, ch = rng.integers(-(1 << 13), 1 << 13, 4000), rng.integers(0, 3, 4000)
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, 11, lo, hi))
    assert np.sum(np.abs(y) >= 1 << 23) > 500


@pytest.mark.parametrize("width", [12, 26, 32])
def test_ort_zero_and_small_acc_with_large_multipliers(width):
    """acc == 0 has no exponent: whatever M, the output is the zero point (a large M once
    made the zero saturate)."""
    ms = np.float32([1.0, 37.25, 1e4, 3e7, 2.0**40])
    mant, exp = rq.ort_multiplier(ms)
    dut = RequantOrt(signed(width), mant, exp, 5, -128, 127)
    acc = np.tile(np.array([0, 0, 1, -1, 2, -2, 0, 3]), len(ms))
    ch = np.repeat(np.arange(len(ms)), 8)
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, 5, -128, 127))
    assert np.all(y[acc == 0] == 5)


@pytest.mark.slow
@pytest.mark.parametrize("width", [18, 26, 32])
def test_ort_random_1e5(width):
    rng = np.random.default_rng(100 + width)
    ms = np.float32(10.0 ** rng.uniform(-10, -2, 16) * (1 << max(0, width - 20)))
    mant, exp = rq.ort_multiplier(ms)
    dut = RequantOrt(signed(width), mant, exp, -3, -128, 127)
    n = 100_000
    acc1, ch1 = ort_adversarial(rng, width, ms, -3, -128, 127, n // 2)
    ch2 = rng.integers(0, 16, n // 2)
    acc2 = rng.integers(-(1 << (width - 1)), 1 << (width - 1), n // 2)
    acc, ch = np.concatenate([acc1, acc2]), np.concatenate([ch1, ch2])
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, -3, -128, 127))


# ---- dyadic ---------------------------------------------------------------------------------
def dyadic_params(reals):
    m0, sh = zip(*(rq.dyadic_multiplier(float(r)) for r in reals), strict=True)
    return np.array(m0), np.array(sh)


DYADIC_SMALL = [
    (signed(12), [2.0**-4, 1.5 * 2.0**-6, 0.7, 1 / 3], -5, -128, 127),
    (signed(10), [1.0, 2.0**-9, 37.25, 2.0**20 + 0.3], 3, -128, 127),  # left shifts saturate
    (unsigned(12), [2.0**-5, 0.0123, 1e-30, 2.0**-12 * 3], 0, 0, 255),  # 1e-30: m0 = 0
    (signed(12), [0.09, 2.0**-3], -128, -128, 127),
]


@pytest.mark.parametrize("acc_shape, reals, zp, lo, hi", DYADIC_SMALL)
def test_dyadic_exhaustive_small_acc(acc_shape, reals, zp, lo, hi):
    m0, sh = dyadic_params(reals)
    dut = RequantDyadic(acc_shape, m0, sh, zp, lo, hi)
    acc, ch = every_acc(acc_shape, len(reals))
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, rq.requant_dyadic(acc, m0[ch], sh[ch], zp, lo, hi))


@pytest.mark.parametrize("width", [20, 32])
def test_dyadic_wide_acc(width):
    rng = np.random.default_rng(width)
    reals = 10.0 ** rng.uniform(-9, 3, 8)
    m0, sh = dyadic_params(reals)
    dut = RequantDyadic(signed(width), m0, sh, 9, -128, 127)
    n = 3000
    ch = rng.integers(0, 8, n)
    # outputs near .5 and the clamp bounds, and random values
    y = rng.integers(-140, 140, n) + 0.5 * rng.integers(0, 2, n)
    acc = np.floor(y / reals[ch]) + rng.integers(-1, 2, n)
    acc = np.where(rng.random(n) < 0.3, rng.integers(-(1 << 62), 1 << 62, n), acc)
    acc = np.clip(acc, -(1 << (width - 1)), (1 << (width - 1)) - 1).astype(np.int64)
    out = stream_requant(dut, acc, ch, valid_rate=0.8, ready_rate=0.7)
    np.testing.assert_array_equal(out, rq.requant_dyadic(acc, m0[ch], sh[ch], 9, -128, 127))


def test_dyadic_left_shift_saturates_exactly_at_int32():
    """Accumulators one below, on and one above the bounds where ``acc << left`` leaves int32,
    for every left shift, with an int32 output range so the saturation is visible."""
    rng = np.random.default_rng(8)
    shifts = np.arange(1, 31)
    m0 = rng.integers(1 << 30, 1 << 31, len(shifts))
    dut = RequantDyadic(signed(32), m0, shifts, 0, rq.INT32_MIN, rq.INT32_MAX)
    ch = np.repeat(np.arange(len(shifts)), 6)
    edge = np.stack([rq.INT32_MIN >> shifts, rq.INT32_MAX >> shifts], axis=1)
    acc = (edge[:, :, None] + np.array([-1, 0, 1])).reshape(len(shifts), 6).ravel()
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, rq.requant_dyadic(acc, m0[ch], shifts[ch], 0,
                                                       rq.INT32_MIN, rq.INT32_MAX))


@pytest.mark.slow
def test_dyadic_random_1e5():
    rng = np.random.default_rng(7)
    reals = 10.0 ** rng.uniform(-10, 2, 16)
    m0, sh = dyadic_params(reals)
    dut = RequantDyadic(signed(32), m0, sh, -3, -128, 127)
    n = 100_000
    ch = rng.integers(0, 16, n)
    acc = np.floor((rng.integers(-140, 140, n) + 0.5) / reals[ch]) + rng.integers(-1, 2, n)
    acc = np.where(rng.random(n) < 0.5, rng.integers(-(1 << 31), 1 << 31, n), acc)
    acc = np.clip(acc, -(1 << 31), (1 << 31) - 1).astype(np.int64)
    y = stream_requant(dut, acc, ch)
    np.testing.assert_array_equal(y, rq.requant_dyadic(acc, m0[ch], sh[ch], -3, -128, 127))


# ---- from the IR ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["ort", "dyadic"])
def test_requant_nodes_of_an_example_model(mode, digits_cnn):
    g, env = digits_cnn(mode)
    nodes = [n for n in g.nodes if n.op == "Requant"]
    assert len(nodes) >= 3
    for node in nodes:
        acc = env[node.inputs[0]]
        axis = node.attrs["axis"]
        s = acc.shape[0]
        if axis is None:
            ch = np.zeros(acc.shape, np.int64)
        else:
            ch = np.broadcast_to(np.arange(acc.shape[axis + 1]).reshape(
                [-1 if d == axis + 1 else 1 for d in range(acc.ndim)]), acc.shape)
        acc, ch = acc.reshape(-1)[:600 * s], ch.reshape(-1)[:600 * s]
        dut = requant_from_ir(g, node)
        y = stream_requant(dut, acc, ch)
        np.testing.assert_array_equal(y, env[node.outputs[0]].reshape(-1)[:len(y)])
