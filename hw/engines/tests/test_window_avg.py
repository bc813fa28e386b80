"""WindowAvg engine against ``run_engine``: rounding sums, several window counts, stalls."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from intflow.compiler import f32
from intflow.compiler.dataflow import avgpool as ap
from intflow.compiler.dataflow.spec import Engine
from intflow.compiler.dtypes import IntType
from intflow.hw.engines.tests.harness import check, example_engines, random_codes, stream
from intflow.hw.engines.window_avg import round_sig24


def avg_engine(dtype: IntType, *, rows: int, window: int, channels: int, counts: list[int],
               sx: float, zx: int, sy: float, zy: int, rng) -> tuple[Engine, dict]:
    """Parameters the way ``plan_AvgPool`` derives them, for a made-up pool."""
    codes = np.arange(dtype.min, dtype.max + 1)
    xf = f32.from_float32((np.float32(sx) * (codes - zx).astype(np.float32)).astype(np.float32))
    xfix, e_min = ap.fixed_point_table(xf.m, xf.e)
    lo, hi = dtype.min, dtype.max
    s_lo = window * int(min(xfix.min(), 0))
    s_hi = window * int(max(xfix.max(), 0))
    syf = f32.from_float32(np.float32(sy))
    thr = np.stack([ap.thresholds(e_min, c, (int(syf.m), int(syf.e)), zy, lo, hi, s_lo, s_hi)
                    for c in counts])
    params = {"rows": rows, "window": window, "channels": channels, "x_min": dtype.min,
              "fixed_table": xfix, "count_index": rng.integers(0, len(counts), rows),
              "thresholds": thr, "lo": lo, "in_dtype": dtype, "out_dtype": dtype,
              "sum_bits": IntType.fit(s_lo, s_hi).bits}
    length = rows * window * channels
    streams = {"x": stream("x", dtype, length), "y": stream("y", dtype, rows * channels)}
    return Engine("WindowAvg", "t.WindowAvg", ["x"], ["y"], params), streams


def round_vectors(width: int) -> list[int]:
    """Ties, near-ties and carries at every bit length, and random values."""
    vals = [0, 1, -1, 5, (1 << 23) - 1, 1 << 23, (1 << 24) - 1, 1 << 24]
    for bits in range(24, width - 1):
        lsb = 1 << (bits - 23)
        for base in ((1 << bits), (1 << (bits + 1)) - lsb, (1 << bits) + 3 * lsb):
            for d in (-1, 0, 1):
                vals += [base + lsb // 2 + d, -(base + lsb // 2 + d)]
    rng = np.random.default_rng(0)
    vals += [int(v) for v in rng.integers(-(1 << (width - 1)), 1 << (width - 1), 60)]
    return [v for v in vals if -(1 << (width - 1)) <= v < (1 << (width - 1))]


def test_round_sig24_against_f32():
    """The combinational rounding against the model's on ties, carries and small values."""
    width = 34
    vals = round_vectors(width)
    m = Module()
    v = Signal(signed(width))
    r = Signal(signed(width + 2))
    m.d.comb += r.eq(round_sig24(m, v))
    got = []

    async def bench(ctx):
        for x in vals:
            ctx.set(v, x)
            got.append(ctx.get(r))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(np.array(got), ap.round_sig24(np.array(vals)))


@pytest.mark.parametrize("dtype, window, channels, counts, sx, zx", [
    (IntType(True, 8), 4, 2, [4], 0.0371, -3),
    (IntType(True, 8), 9, 1, [4, 6, 9], 0.0123, 5),  # one channel; 3 window counts
    (IntType(False, 8), 3, 3, [2, 3], 0.25, 128),  # power-of-two scale: exact ties
    (IntType(True, 4), 2, 2, [1, 2], 0.5, 0),
])
def test_window_avg(dtype, window, channels, counts, sx, zx):
    rng = np.random.default_rng(window * 10 + channels)
    e, s = avg_engine(dtype, rows=5, window=window, channels=channels, counts=counts, sx=sx,
                      zx=zx, sy=sx * 0.9, zy=(dtype.min + dtype.max) // 2 + 1, rng=rng)
    x = random_codes(rng, dtype, (3, s["x"].length))
    x[0, :window * channels] = dtype.max  # full-scale windows: the widest sums
    x[1, :window * channels] = dtype.min
    check(e, s, x, valid_rate=0.6, ready_rate=0.5, seed=window)


def test_window_avg_of_example():
    (e, streams), = example_engines("pulse_cnn1d_qdq", "WindowAvg")
    x_stream = streams[e.inputs[0]]
    rng = np.random.default_rng(8)
    x = random_codes(rng, x_stream.dtype, (3, x_stream.length))
    x[0] = x_stream.dtype.max
    check(e, streams, x, valid_rate=0.7, ready_rate=0.6)


def test_window_avg_cancelling_taps():
    """Taps whose float32 sum cancels to a few units of the table's scale: partial sums far
    below 2^23, which ``round_sig24`` must leave as they are."""
    dtype = IntType(True, 8)
    rng = np.random.default_rng(11)
    window, channels, zx = 3, 2, 0
    e, s = avg_engine(dtype, rows=6, window=window, channels=channels, counts=[3], sx=0.0123,
                      zx=zx, sy=0.0015, zy=0, rng=rng)
    xfix = e.params["fixed_table"]
    x_min = e.params["x_min"]

    def xf(code):
        return int(xfix[code - x_min])

    # (a, b, c) with X(a) + X(b) + X(c) small and nonzero: rounding residues of f32(sx*d)
    triples = [(a, -b, b - a) for a in range(2, 60) for b in range(1, a)
               if 0 < abs(xf(a) + xf(-b) + xf(b - a)) < 1 << 20]
    assert len(triples) >= 6
    rows = np.array(triples[:6 * channels]).reshape(6, channels, window).transpose(0, 2, 1)
    x = np.stack([rows.ravel(), random_codes(rng, dtype, rows.size)])
    check(e, s, x, valid_rate=0.7, ready_rate=0.6)


@pytest.mark.parametrize("style", [None, "serial"])
def test_window_avg_sums_on_the_thresholds(style):
    """Sums equal to a threshold, one below and one above, with repeated thresholds and
    levels no sum reaches: the search (parallel, or the serial one) counts ``s >= t``
    exactly. One-tap windows make the sums the table's values, chosen around the
    thresholds."""
    rng = np.random.default_rng(12)
    in_dtype, out_dtype = IntType(False, 8), IntType(True, 4)
    levels = out_dtype.max - out_dtype.min  # 15
    base = 1 << 23  # 24-bit values: round_sig24 leaves them alone
    thr = np.sort(rng.integers(base, base + 4000, (3, levels)), axis=1)
    thr[0, 5:8] = thr[0, 5]  # repeated thresholds: several levels at once
    thr[1, -3:] = base + 10**6  # levels never reached
    hits = np.concatenate([thr.ravel() + d for d in (-1, 0, 1)])
    table = np.concatenate([hits, rng.integers(base - 100, base + 4100, 256 - hits.size)])
    rows, channels = 8, 2
    params = {"rows": rows, "window": 1, "channels": channels, "x_min": 0,
              "fixed_table": table, "count_index": rng.integers(0, 3, rows), "thresholds": thr,
              "lo": out_dtype.min, "in_dtype": in_dtype, "out_dtype": out_dtype,
              "sum_bits": IntType.fit(0, base + 10**6).bits}
    if style:
        params["style"] = style
    e = Engine("WindowAvg", "t.WindowAvg", ["x"], ["y"], params)
    s = {"x": stream("x", in_dtype, rows * channels),
         "y": stream("y", out_dtype, rows * channels)}
    x = np.arange(rows * channels * 8).reshape(8, -1) % hits.size  # every hit, in turn
    check(e, s, x, valid_rate=0.8, ready_rate=0.7)


# ---- the serial threshold search (params["style"] == "serial") -----------------------------
@pytest.mark.parametrize("dtype, window, channels, counts, sx, zx", [
    (IntType(True, 8), 4, 2, [4], 0.0371, -3),
    (IntType(True, 8), 9, 1, [4, 6, 9], 0.0123, 5),  # one channel; 3 window counts
    (IntType(False, 8), 3, 3, [2, 3], 0.25, 128),  # power-of-two scale: exact ties
])
def test_window_avg_serial(dtype, window, channels, counts, sx, zx):
    rng = np.random.default_rng(window * 10 + channels)
    e, s = avg_engine(dtype, rows=5, window=window, channels=channels, counts=counts, sx=sx,
                      zx=zx, sy=sx * 0.9, zy=(dtype.min + dtype.max) // 2 + 1, rng=rng)
    e.params["style"] = "serial"
    x = random_codes(rng, dtype, (3, s["x"].length))
    x[0, :window * channels] = dtype.max
    x[1, :window * channels] = dtype.min
    check(e, s, x, valid_rate=0.6, ready_rate=0.5, seed=window)


def test_window_avg_serial_of_example():
    """The pulse CNN's pool, which the plan makes serial (255 levels: 8 probes a word)."""
    import copy

    from intflow.compiler.dataflow.fold import apply_fold
    from intflow.hw.engines.tests.harness import example_plan

    df = copy.deepcopy(example_plan("pulse_cnn1d_qdq"))  # the cached plan stays unfolded
    apply_fold(df, "min")
    (e,) = [e for e in df.engines if e.kind == "WindowAvg"]
    assert e.params["style"] == "serial"  # so the registry builds WindowAvgSerial
    x_stream = df.streams[e.inputs[0]]
    rng = np.random.default_rng(8)
    x = random_codes(rng, x_stream.dtype, (2, x_stream.length))
    x[0] = x_stream.dtype.max
    check(e, df.streams, x, valid_rate=0.9, ready_rate=0.8)

