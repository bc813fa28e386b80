"""RequantOrtSerial in amaranth's simulator against ``compiler/requant.py``, exactly.

The cases of ``test_requant.py`` (exhaustive small accumulators with tie-making multipliers,
adversarial wide ones, rival roundings) plus the edges of the accumulator range, under random
valid/ready stalls, and the worst-case cycles per beat against ``cycles_per_beat``.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import signed, unsigned

from intflow.compiler import requant as rq
from intflow.hw.requant_serial import RequantOrtSerial, serial_cycles
from intflow.hw.testbench import pack, run_stream, unpack

from .test_requant import ORT_SMALL, every_acc, hard_ort_cases, ort_adversarial, ort_ref


def stream_serial(dut, acc, channel=None, **kw) -> np.ndarray:
    fields = {"acc": np.asarray(acc)}
    if dut.channels > 1:
        fields["channel"] = np.asarray(channel)
    beats = pack(dut.i.payload.shape(), fields)
    slow = 1 / min(kw.get("valid_rate", 1), kw.get("ready_rate", 1))
    budget = int(200 + len(beats) * (dut.cycles_per_beat + 4) * 2 * slow)
    run = run_stream(dut, list(beats), len(beats), max_cycles=budget, **kw)
    assert len(run.words) == len(beats)
    if kw.get("valid_rate", 1) == 1 and kw.get("ready_rate", 1) == 1:
        # never slower than the worst case the plan relies on
        assert run.last_out - run.first_in <= dut.cycles_per_beat * len(beats)
    return unpack(dut.o.payload.shape(), run.words)["y"]


def edge_accs(shape, n_random, rng):
    """0, +-1, +-2, the ends of the range and one inside them, and random values."""
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    edges = np.array([0, 1, -1, 2, -2, lo, lo + 1, hi, hi - 1, 0, 3])
    edges = edges[(edges >= lo) & (edges <= hi)]
    return np.concatenate([edges, rng.integers(lo, hi + 1, n_random)])


@pytest.mark.parametrize("radix", [2, 4])
@pytest.mark.parametrize("acc_shape, ms, zp, lo, hi", ORT_SMALL[:2] + ORT_SMALL[3:])
def test_small_acc_sweep(acc_shape, ms, zp, lo, hi, radix):
    """Every (acc, channel) pair of a 9-bit accumulator; 2,500 of them (the edges included)
    for wider ones (the simulator runs about 150 serial beats a second)."""
    mant, exp = rq.ort_multiplier(np.float32(ms))
    dut = RequantOrtSerial(acc_shape, mant, exp, zp, lo, hi, radix=radix)
    acc, ch = every_acc(acc_shape, len(ms))
    if len(acc) > 2500:
        rng = np.random.default_rng(acc_shape.width + radix)
        keep = np.unique(np.concatenate([np.arange(4 * len(ms)), len(acc) // 2
                                         + np.arange(-2 * len(ms), 2 * len(ms)),
                                         np.arange(len(acc) - 4 * len(ms), len(acc)),
                                         rng.choice(len(acc), 2400, replace=False)]))
        acc, ch = acc[keep], ch[keep]
    y = stream_serial(dut, acc, ch)
    ref = ort_ref(acc, mant, exp, ch, zp, lo, hi)
    np.testing.assert_array_equal(y, ref)
    assert len(np.unique(ref)) > 2


def test_unsigned_acc_with_stalls():
    acc_shape, ms, zp, lo, hi = ORT_SMALL[2]
    mant, exp = rq.ort_multiplier(np.float32(ms))
    dut = RequantOrtSerial(acc_shape, mant, exp, zp, lo, hi)
    acc, ch = every_acc(acc_shape, len(ms))
    acc, ch = acc[::7], ch[::7]  # 7 is prime to the 4 channels: each sees every 7th/4 value
    y = stream_serial(dut, acc, ch, valid_rate=0.7, ready_rate=0.6, seed=4)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, zp, lo, hi))


@pytest.mark.parametrize("width, radix", [(16, 2), (24, 4), (25, 2), (27, 4), (32, 2)])
def test_adversarial_wide_acc_with_stalls(width, radix):
    rng = np.random.default_rng(width)
    ms = np.float32(10.0 ** rng.uniform(-9, -1, 5) * (1 << max(0, width - 24)))
    ms[0] = np.float32(2.0 ** -(width - 9))  # a power of two: exact ties after f32(acc)
    mant, exp = rq.ort_multiplier(ms)
    zp, lo, hi = -7, -128, 127
    dut = RequantOrtSerial(signed(width), mant, exp, zp, lo, hi, radix=radix)
    acc, ch = ort_adversarial(rng, width, ms, zp, lo, hi, 800)
    edges = edge_accs(signed(width), 0, rng)  # every edge on every channel
    acc = np.concatenate([edges.repeat(5), acc])
    ch = np.concatenate([np.tile(np.arange(5), len(edges)), ch])
    y = stream_serial(dut, acc, ch, valid_rate=0.8, ready_rate=0.7, seed=width)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, zp, lo, hi))


@pytest.mark.parametrize("width", [26, 32])
def test_rival_roundings_told_apart(width):
    rng = np.random.default_rng(40 + width)
    ms = np.float32(10.0 ** rng.uniform(-9, -6.5, 8) * (1 << (width - 26)))
    ms[:4] = np.float32(np.array([1.5, 1.25, 1.75, 1.375]) * 2.0 ** np.floor(np.log2(ms[:4])))
    acc, ch = hard_ort_cases(rng, width, ms, -7, -128, 127, 400_000, per_rival=60)
    mant, exp = rq.ort_multiplier(ms)
    dut = RequantOrtSerial(signed(width), mant, exp, -7, -128, 127, radix=4)
    y = stream_serial(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, -7, -128, 127))


@pytest.mark.parametrize("radix", [2, 4])
def test_per_tensor_edges_and_saturation(radix):
    """Per-tensor multiplier (no ROM): the range ends, 0, +-1, and outputs past both clamp
    bounds; a uint8 output with its zero point."""
    rng = np.random.default_rng(5)
    mant, exp = rq.ort_multiplier(np.float32([0.0021]))
    dut = RequantOrtSerial(signed(20), mant, exp, 12, 0, 255, radix=radix)
    acc = edge_accs(signed(20), 600, rng)
    y = stream_serial(dut, acc, valid_rate=0.6, ready_rate=0.5, seed=3)
    ref = rq.requant_ort(acc, mant, exp, 12, 0, 255)
    np.testing.assert_array_equal(y, ref)
    assert np.sum(ref == 0) > 10 and np.sum(ref == 255) > 10  # both bounds reached


@pytest.mark.parametrize("width", [12, 26, 32])
def test_zero_and_small_acc_with_large_and_tiny_multipliers(width):
    ms = np.float32([1.0, 37.25, 1e4, 3e7, 2.0**40, 1e-30, 2.0**-24])
    mant, exp = rq.ort_multiplier(ms)
    dut = RequantOrtSerial(signed(width), mant, exp, 5, -128, 127)
    base = np.array([0, 0, 1, -1, 2, -2, 0, 3, -(1 << (width - 1)), (1 << (width - 1)) - 1])
    acc = np.tile(base, len(ms))
    ch = np.repeat(np.arange(len(ms)), len(base))
    y = stream_serial(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, 5, -128, 127))
    assert np.all(y[acc == 0] == 5)


def test_worst_case_cycles_are_reached_and_bounded():
    """|acc| = 1 (longest normalisation) with an output needing the longest right shift:
    one beat at a time, accept to accept within ``cycles_per_beat``."""
    mant, exp = rq.ort_multiplier(np.float32([2.0**-20, 0.37]))
    for radix in (2, 4):
        dut = RequantOrtSerial(signed(20), mant, exp, 0, -128, 127, radix=radix)
        assert dut.cycles_per_beat == serial_cycles(20, radix)
        acc = np.array([1, -1, 7, 1 << 18, -(1 << 19), 0] * 3)
        ch = np.array([0, 1, 0, 1, 0, 1] * 3)
        fields = {"acc": acc, "channel": ch}
        beats = pack(dut.i.payload.shape(), fields)
        run = run_stream(dut, list(beats), len(beats), max_cycles=4000)
        y = unpack(dut.o.payload.shape(), run.words)["y"]
        np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, 0, -128, 127))
        assert run.last_out - run.first_in <= dut.cycles_per_beat * len(acc)
        assert run.last_out - run.first_in >= len(acc) * 20  # it is a serial unit


def test_rejects_wide_outputs():
    mant, exp = rq.ort_multiplier(np.float32([3.75]))
    with pytest.raises(ValueError, match="21 bits"):
        RequantOrtSerial(signed(14), mant, exp, 0, -(1 << 25), (1 << 25) - 1)


def test_unsigned_acc_full_range():
    mant, exp = rq.ort_multiplier(np.float32([2.0**-5, 0.0123]))
    dut = RequantOrtSerial(unsigned(10), mant, exp, -128, -128, 127, radix=4)
    acc, ch = every_acc(unsigned(10), 2)
    y = stream_serial(dut, acc, ch)
    np.testing.assert_array_equal(y, ort_ref(acc, mant, exp, ch, -128, -128, 127))


# ---- inside the engines, as the plan chooses it -----------------------------------------------
def test_requant_engine_serial_with_stalls():
    """The Requant engine (per-channel, strided channels) with ``style`` "serial", two
    inferences back to back, stalls, and the edge vectors, against ``run_engine``."""
    from intflow.compiler.dtypes import IntType
    from intflow.hw.engines.elementwise import ElementwiseRequant
    from intflow.hw.engines.tests.harness import check, random_codes
    from intflow.hw.engines.tests.test_elementwise import elementwise, requant_params

    rng = np.random.default_rng(11)
    acc, i8 = IntType(True, 14), IntType(True, 8)
    for radix in (2, 4):
        p = requant_params(rng, "ort", 3, -5, -128, 127)
        e, s = elementwise("Requant", acc, i8, 30, channels=3, channel_stride=2, in_dtype=acc,
                           out_dtype=i8, style="serial", radix=radix, **p)
        unit = ElementwiseRequant(signed(14), signed(8), e.params).unit
        assert isinstance(unit, RequantOrtSerial)
        budget = 400 + 3 * 30 * 3 * unit.cycles_per_beat
        check(e, s, random_codes(rng, acc, (2, 30)), valid_rate=0.7, ready_rate=0.6, seed=radix,
              max_cycles=budget)


@pytest.mark.parametrize("pe, simd, radix", [(1, 1, 2), (2, 4, 4), (4, 2, 2)])
def test_mvau_with_serial_requant(pe, simd, radix):
    """MVAU (unchanged) calls ``requant_unit``, which gives it the serial unit: still equal
    to ``run_engine`` under stalls; the cycle model bounds its run."""
    from intflow.compiler.dataflow.fold import mvau_cycles
    from intflow.hw.engines.tests.harness import check, random_codes
    from intflow.hw.engines.tests.test_mvau import I8, mvau_engine

    rng = np.random.default_rng(pe * 10 + simd)
    e, s = mvau_engine(rng, rows=3, k=8, n=8, pe=pe, simd=simd)
    e.params["requant"].update(style="serial", radix=radix)
    full = mvau_cycles(e.params)
    assert full >= 3 * 8 * serial_cycles(e.params["acc_dtype"].bits, radix)
    r = check(e, s, random_codes(rng, I8, (2, 24)), valid_rate=0.8, ready_rate=0.7)
    assert r.cycles >= 2 * 3 * 8 * 20  # it did go through the serial unit


def test_plan_chooses_serial_only_within_the_ii():
    """``choose_requant_styles``: every serial requant's words x cycles fit the II, the II is
    unchanged, and a requant too busy for it stays pipelined."""
    import intflow
    from intflow.compiler.dataflow.fold import (
        choose_requant_styles,
        initiation_interval,
        requant_sites,
        serial_requant_cycles,
    )
    from intflow.hw.engines.tests.harness import EXAMPLES

    d = intflow.compile(EXAMPLES / "jet_mlp_qdq.onnx")
    df = d.dataflow()
    ii = initiation_interval(df)
    styles = []
    for rp, words, bits in requant_sites(df):
        styles.append(rp["style"])
        if rp["style"] == "serial":
            assert words * serial_requant_cycles(bits, rp["radix"]) <= ii
        else:
            assert words * serial_requant_cycles(bits, 4) > ii
    assert "serial" in styles and "pipelined" in styles
    assert choose_requant_styles(df, serial=False) == ii
    assert all(rp["style"] == "pipelined" for rp, _, _ in requant_sites(df))


def test_estimate_counts_serial_requants_without_dsp():
    """At fold min every requant of the digits CNN is serial: the estimate's DSP blocks are
    the four MVAU multipliers and the residual Add's two (what synth_ice40 -dsp used)."""
    import intflow
    from intflow.compiler.dataflow.estimate import estimate
    from intflow.hw.engines.tests.harness import EXAMPLES

    d = intflow.compile(EXAMPLES / "digits_cnn_qdq.onnx", fold="min")
    est = estimate(d.dataflow(), "ice40")
    assert est["total"]["DSP"] == 6
    rq = [r for r in est["layers"] if r["kind"] == "Requant"]
    assert rq and all(r["DSP"] == 0 for r in rq)
