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

``WindowAvgSerial`` (``params["style"] == "serial"``, chosen by ``fold.choose_requant_styles``
where outputs per inference x ``serial_search_cycles`` fit the II) keeps the running sums as
they are (``WindowAvgSums``: the rounded window sum, and the row's window count, come out)
and does the binary search one probe at a time on one threshold ROM (every level, per
count): 2 cycles a bit (address, then compare), ``2 * B + 2`` cycles an output word, one
comparator and one ROM instead of ``B`` of each and ``B`` pipeline stages.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.fold import serial_search_cycles
from ...compiler.dataflow.spec import Engine, Stream
from ..pipeline import Pipeline
from ..requant import count_leading_zeros
from .common import payload_shape
from .window_max import ChannelReduce

__all__ = ["build", "WindowAvg", "WindowAvgSerial", "round_sig24", "serial_search_cycles"]

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


class WindowAvgSums(WindowAvg):
    """WindowAvg's running sums alone: each window's rounded sum ``s`` (and, with several
    window counts, its count index ``cidx``) comes out at the last tap, latency 2."""

    def __init__(self, in_shape, **kw):
        acc = signed(int(kw["sum_bits"]) + 1)
        thr = np.atleast_2d(np.asarray(kw["thresholds"], np.int64))
        self.cbits = (thr.shape[0] - 1).bit_length()  # 0: one window count
        fields = {"s": acc}
        if self.cbits:
            fields["cidx"] = unsigned(self.cbits)
        super().__init__(in_shape, data.StructLayout(fields), **kw)
        self.latency = 2

    def finish(self, p: Pipeline, acc: Value, row: Value):
        out = {"s": acc}
        if self.cbits:  # the row's count index, read at stage 1 beside the sum
            if self.rows > 1:
                out["cidx"] = p.rom(unsigned(self.cbits), [int(v) for v in self.count_index],
                                    row, name="count")
            else:
                out["cidx"] = Const(int(self.count_index[0]), unsigned(self.cbits))
        return out


class WindowAvgSerial(wiring.Component):
    """``WindowAvg`` with the threshold search done serially (module docstring): the same
    ports and results, one output word per ``cycles_per_beat`` cycles at most."""

    def __init__(self, in_shape, out_shape, **kw):
        self.sums = WindowAvgSums(in_shape, **kw)
        self.bits, self.lo = self.sums.bits, self.sums.lo
        self.cycles_per_beat = serial_search_cycles(self.bits)
        super().__init__({"i0": In(stream.Signature(in_shape)),
                          "o0": Out(stream.Signature(out_shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.sums = sums = self.sums
        m.d.comb += [sums.i0.payload.eq(self.i0.payload), sums.i0.valid.eq(self.i0.valid),
                     self.i0.ready.eq(sums.i0.ready)]
        thr = sums.thresholds  # (counts, 2^bits - 1), padded with "never"
        per = 1 << self.bits  # one ROM row of 2^bits words per count (the last unused)
        init = [int(thr[c, k]) if k < thr.shape[1] else int(thr[c, -1])
                for c in range(thr.shape[0]) for k in range(per)]
        m.submodules.thr = rom = memory.Memory(shape=sums.thr_shape, depth=len(init),
                                               init=init)
        rp = rom.read_port(domain="sync")

        s = Signal(sums.acc_shape, name="s")
        idx = Signal(self.bits, name="idx")  # the count's bits found so far
        bit = Signal(self.bits, name="bit")  # one-hot: the bit being decided
        y = Signal.like(self.o0.payload, name="y")
        m.d.comb += self.o0.payload.eq(y)
        # probe t[idx + bit - 1]: the first level of the upper half (idx has no bits below)
        probe = (idx | (bit - 1))[:self.bits]
        if sums.cbits:
            cidx = Signal(sums.cbits, name="cidx")
            m.d.comb += rp.addr.eq(Cat(probe, cidx))
        else:
            m.d.comb += rp.addr.eq(probe)
        with m.FSM(name="search"):
            with m.State("IDLE"):
                m.d.comb += sums.o0.ready.eq(1)
                with m.If(sums.o0.valid):
                    m.d.sync += [s.eq(sums.o0.payload.s), idx.eq(0),
                                 bit.eq(1 << (self.bits - 1))]
                    if sums.cbits:
                        m.d.sync += cidx.eq(sums.o0.payload.cidx)
                    m.next = "PROBE"
            with m.State("PROBE"):  # the ROM reads t[probe]
                m.next = "COMPARE"
            with m.State("COMPARE"):
                found = Mux(rp.data <= s, idx | bit, idx)
                m.d.sync += [idx.eq(found), bit.eq(bit >> 1)]
                with m.If(bit[0]):
                    m.d.sync += y.eq(self.lo + found)
                    m.next = "OUT"
                with m.Else():
                    m.next = "PROBE"
            with m.State("OUT"):
                m.d.comb += self.o0.valid.eq(1)
                with m.If(self.o0.ready):
                    m.next = "IDLE"
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    p = engine.params
    if p.get("style") == "serial":
        return WindowAvgSerial(
            payload_shape(streams[engine.inputs[0]].dtype),
            payload_shape(streams[engine.outputs[0]].dtype), rows=p["rows"],
            window=p["window"], channels=p["channels"], x_min=p["x_min"],
            fixed_table=p["fixed_table"], count_index=p["count_index"],
            thresholds=p["thresholds"], lo=p["lo"], sum_bits=p["sum_bits"])
    return WindowAvg(payload_shape(streams[engine.inputs[0]].dtype),
                     payload_shape(streams[engine.outputs[0]].dtype), rows=p["rows"],
                     window=p["window"], channels=p["channels"], x_min=p["x_min"],
                     fixed_table=p["fixed_table"], count_index=p["count_index"],
                     thresholds=p["thresholds"], lo=p["lo"], sum_bits=p["sum_bits"])
