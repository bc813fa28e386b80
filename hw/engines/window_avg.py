"""WindowAvg: QLinearAveragePool's float32 sequence as integer sums and thresholds.

Per row of ``window`` x ``channels`` words ((tap, channel) order) and per channel
(``compiler/dataflow/avgpool.py``):

    s = 0;  s = round_sig24(s + fixed_table[x - x_min]) per tap
    y = lo + #{k : s >= thresholds[count_index[row], k]}

``round_sig24`` rounds an integer to 24 significant bits, ties to even (float32 addition at a
fixed scale). The running sums live in a ``ChannelReduce`` memory (``window_max.py``); the
table lookup is a ROM read in parallel with the sum's read. The thresholds of one count are
non-decreasing in ``k``, so the count is a binary search: ``B = ceil(log2(levels + 1))``
pipelined stages, stage ``b`` reading its own ROM (the thresholds probed at that depth, for
each window count) — ``levels`` comparators' worth of answers for ``B`` comparators.

One input word per cycle; latency ``B + 2`` cycles; cycles per inference =
``rows * window * channels``.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import wiring

from ...compiler.dataflow.spec import Engine, Stream
from ..pipeline import Pipeline
from ..requant import count_leading_zeros
from .common import payload_shape
from .window_max import ChannelReduce

__all__ = ["build", "WindowAvg", "round_sig24"]

MANT = 24


def round_sig24(m: Module, v: Value, name: str = "r24") -> Value:
    """``v`` rounded to 24 significant bits, ties to even (``avgpool.round_sig24``).

    Normalise ``|v|`` so its leading one is the top bit, round the top 24 bits half-even on
    the guard and sticky bits below, shift back. A value of at most 24 bits shifts in zeros
    below, so it comes back unchanged; a carry out of the 24 bits gives ``2^bit_length``.
    Intermediate values are signals: the simulator then evaluates each once."""
    v = Value.cast(v)
    width = len(v)
    if width <= MANT + (1 if v.shape().signed else 0):
        return v
    neg = Signal(name=f"{name}_neg")
    mag = Signal(width, name=f"{name}_mag")
    lz = Signal(range(width + 1), name=f"{name}_lz")
    norm = Signal(width, name=f"{name}_norm")
    back = Signal(width + 1, name=f"{name}_back")
    drop = width - MANT
    m.d.comb += [neg.eq(v < 0 if v.shape().signed else 0),
                 mag.eq(Mux(neg, -v, v)),
                 lz.eq(count_leading_zeros(mag)),
                 norm.eq(mag << lz)]
    top = norm[drop:]
    guard = norm[drop - 1]
    sticky = norm[:drop - 1].any() if drop > 1 else Const(0, 1)
    rounded = top + (guard & (sticky | top[0]))  # 25 bits
    m.d.comb += back.eq((rounded << drop) >> lz)
    return Mux(neg, -back, back)


class WindowAvg(ChannelReduce):
    def __init__(self, in_shape, out_shape, *, rows: int, window: int, channels: int,
                 x_min: int, fixed_table, count_index, thresholds, lo: int, sum_bits: int):
        table = np.asarray(fixed_table, np.int64).ravel()
        thr = np.atleast_2d(np.asarray(thresholds, np.int64))
        if np.any(np.diff(thr, axis=1) < 0):
            raise ValueError("WindowAvg thresholds must be non-decreasing in the level")
        self.x_min = int(x_min)
        self.table = table
        self.lo = int(lo)
        # running sums: the exact window sums fit sum_bits; rounding to 24 bits can step
        # past a power of two, so one bit more
        acc = signed(int(sum_bits) + 1)
        smax = (1 << (acc.width - 1)) - 1
        levels = thr.shape[1]
        self.bits = max(1, levels.bit_length())  # count in 0..levels <= 2^bits - 1
        never = smax + 1  # above every running sum: padded levels never count
        padded = np.full((thr.shape[0], (1 << self.bits) - 1), never, np.int64)
        padded[:, :levels] = thr
        self.thr_shape = Shape.cast(range(min(int(thr.min(initial=0)), -smax - 1), never + 1))
        self.thresholds = padded
        ci = np.asarray(count_index, np.int64).ravel()
        if len(ci) != rows:
            raise ValueError(f"count_index has {len(ci)} entries for {rows} rows")
        self.counts = thr.shape[0]
        self.count_index = ci
        self.latency = self.bits + 2
        self.table_shape = Shape.cast(range(min(int(table.min()), 0), max(int(table.max()), 0)
                                            + 1))
        varies = self.counts > 1 and len(np.unique(ci)) > 1
        super().__init__(in_shape, out_shape, acc, channels=channels, taps=window,
                         rows=rows if varies else 1)

    def operand(self, p: Pipeline, x: Value) -> Value:
        entries = len(self.table)
        index = (x - self.x_min)[:max(1, (entries - 1).bit_length())]
        return p.rom(self.table_shape, [int(v) for v in self.table], index, name="xfix")

    def combine(self, m, old, operand, first):
        total = Signal(signed(self.acc_shape.width + 1), name="avg_total")
        m.d.comb += total.eq(Mux(first, 0, old) + operand)
        return round_sig24(m, total)

    def finish(self, p: Pipeline, acc: Value, row: Value) -> Value:
        # stage 1: which window count (so which thresholds) this row has
        if self.rows > 1:
            cidx = p.rom(unsigned(max(1, (self.counts - 1).bit_length())),
                         [int(v) for v in self.count_index], row, name="count")
        else:
            cidx = Const(int(self.count_index[0]), unsigned(max(1, (self.counts - 1)
                                                                .bit_length())))
        s = acc
        idx = Const(0, self.bits)
        cbits = len(cidx) if self.counts > 1 else 0
        for b in range(self.bits - 1, -1, -1):
            # probe t[idx + 2^b - 1] where idx holds the bits above b
            j_bits = self.bits - 1 - b
            entries = []
            for c in range(self.counts):
                for j in range(1 << j_bits):
                    entries.append(int(self.thresholds[c, (j << (b + 1)) + (1 << b) - 1]))
            j = idx[b + 1:] if j_bits else Const(0, 0)
            addr = Cat(j, cidx) if cbits else j
            if len(entries) == 1:
                addr = Const(0, 1)
            t = p.rom(self.thr_shape, entries, addr, name=f"thr{b}")
            s, idx, cidx = p.reg(s), p.reg(idx), p.reg(cidx)
            idx = Value.cast(idx) | Mux(t <= s, 1 << b, 0)
        return self.lo + idx


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    p = engine.params
    return WindowAvg(payload_shape(streams[engine.inputs[0]].dtype),
                     payload_shape(streams[engine.outputs[0]].dtype), rows=p["rows"],
                     window=p["window"], channels=p["channels"], x_min=p["x_min"],
                     fixed_table=p["fixed_table"], count_index=p["count_index"],
                     thresholds=p["thresholds"], lo=p["lo"], sum_bits=p["sum_bits"])
