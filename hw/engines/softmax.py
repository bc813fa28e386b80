"""Softmax: the integer softmax of ``compiler/ops/softmax.py`` along rows of ``n`` words.

Per row of codes x (stream order within a row is free: max, sum and the elementwise p do not
depend on it):

    d = max(x) - x;  e = table[d];  S = sum(e);  R = floor(2^F / S);  p = (e * R) >> (F - M)

Two halves joined by a double row buffer (2 n codes, read combinationally: small, LUT RAM),
so a row loads while the one before it is computed and emitted (a Softmax between two slow
neighbours, e.g. serial requants, would otherwise make them wait for each other in turn):
    front  takes a row's n words into its half of the buffer, keeping the running maximum;
           then waits for the back to be idle and hands the row (half, maximum) over
    back   IDLE  takes a row from the front (1 cycle)
           SUM   n cycles: S += table[max - buf[i]]
           DIV   ``recip_bits`` cycles of a restoring divider: R = floor(2^F / S), one
                 quotient bit a cycle (``recip_bits`` = bits of 2^F // S_min, set by the
                 planner; the dividend's bits above them are pre-loaded as the first partial
                 remainder, which is < S); it waits for the output pipeline to drain (R)
           EMIT  n words: e = table[max - buf[i]] into a pipeline register, then
                 p = (e * R) >> (F - M) into the output register (the pipeline moves
                 whenever the output register is free and drains during the next row)
Cycles per row with no stalls: 2 n + recip_bits + 1 (the back; the front needs n + 1),
``fold.engine_cycles``.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from .common import Reciprocal, payload_shape

__all__ = ["Softmax", "build"]


def _range(lo: int, hi: int) -> Shape:
    return Shape.cast(range(min(lo, 0), max(hi, 0) + 1))


class Softmax(wiring.Component):
    def __init__(self, in_shape, out_shape, *, rows: int, n: int, table, e_bits: int,
                 f_bits: int, m_bits: int, recip_bits: int):
        self.in_shape, self.out_shape = Shape.cast(in_shape), Shape.cast(out_shape)
        self.rows, self.n = int(rows), int(n)
        if self.rows < 1 or self.n < 1:
            raise ValueError(f"Softmax: empty tensor ({rows} rows of {n})")
        self.F, self.M, self.E = int(f_bits), int(m_bits), int(e_bits)
        span = (1 << self.in_shape.width) - 1  # largest max(x) - x
        table = np.asarray(table, np.int64).ravel()
        if table.size <= span:
            raise ValueError(f"Softmax: exp table of {table.size} entries for "
                             f"{self.in_shape.width}-bit codes (needs {span + 1})")
        self.table = [int(v) for v in table[:span + 1]]
        if self.table[0] <= 0 or min(self.table) < 0:
            raise ValueError("Softmax: exp table must be >= 0 with table[0] > 0 (S > 0)")
        self.qbits = int(recip_bits)
        s_min = self.table[0] + (self.n - 1) * min(self.table)
        if (1 << self.F) // s_min >= 1 << self.qbits:
            raise ValueError(f"Softmax: {recip_bits} reciprocal bits cannot hold 2^F / S_min")
        super().__init__({"i0": In(stream.Signature(self.in_shape)),
                          "o0": Out(stream.Signature(self.out_shape))})

    def elaborate(self, platform):
        m = Module()
        n, F, qb = self.n, self.F, self.qbits
        s_max = n * max(self.table)
        buf = m.submodules.buf = memory.Memory(shape=self.in_shape, depth=2 * n, init=[])
        rom = m.submodules.table = memory.Memory(shape=_range(0, max(self.table)),
                                                 depth=len(self.table), init=self.table)
        bw = buf.write_port()
        br = buf.read_port(domain="comb")
        tr = rom.read_port(domain="comb")
        x = self.i0.payload
        o = self.o0

        # front: one half of the buffer per row (half ``wb``), the running maximum
        widx = Signal(range(n))
        wb = Signal()
        f_full = Signal()  # a whole row waits in half wb for the back
        f_mx = Signal(self.in_shape)
        m.d.comb += [self.i0.ready.eq(~f_full), bw.en.eq(self.i0.valid & ~f_full),
                     bw.addr.eq(Mux(wb, n + widx, widx)), bw.data.eq(x)]
        with m.If(self.i0.valid & ~f_full):
            m.d.sync += [f_mx.eq(Mux((widx == 0) | (x > f_mx), x, f_mx)),
                         widx.eq(Mux(widx == n - 1, 0, widx + 1))]
            with m.If(widx == n - 1):
                m.d.sync += f_full.eq(1)

        # back: the row in half ``rb`` with maximum ``mx``
        idx = Signal(range(n))
        last = idx == n - 1
        rb = Signal()
        mx = Signal(self.in_shape)
        s = Signal(range(s_max + 1))
        div = Reciprocal(m, F, qb, s_max)  # R = floor(2^F / S) < 2^qb
        r = div.r
        m.d.comb += [br.addr.eq(Mux(rb, n + idx, idx)),
                     tr.addr.eq((mx - br.data)[:len(tr.addr)])]
        e = tr.data
        with m.If(o.ready):  # the output register empties when taken (EMIT may refill it)
            m.d.sync += o.valid.eq(0)

        # the output pipeline, moved whenever the output register is free: stage A holds
        # e = table[max - x], then (e R) >> (F - M) goes out; it drains during the next row,
        # and DIV (which rewrites R) waits until it is empty
        sh = F - self.M
        a_v = Signal()
        a_e = Signal(range(max(self.table) + 1))
        adv = ~o.valid | o.ready
        prod = a_e * r
        with m.If(adv):
            m.d.sync += a_v.eq(0)
            with m.If(a_v):
                m.d.sync += [o.valid.eq(1), o.payload.eq(prod >> sh if sh >= 0 else prod << -sh)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(f_full):  # take the front's row; the front goes on in the other half
                    m.d.sync += [rb.eq(wb), mx.eq(f_mx), wb.eq(~wb), f_full.eq(0), s.eq(0),
                                 idx.eq(0)]
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.sync += [s.eq(s + e), idx.eq(Mux(last, 0, idx + 1))]
                with m.If(last):
                    m.d.sync += div.start()
                    m.next = "DIV"
            with m.State("DIV"):  # qb shifts replace every bit of R: no clearing needed
                with m.If(~a_v):
                    m.d.sync += div.step(s)
                    with m.If(div.done):
                        m.next = "EMIT"
            with m.State("EMIT"):
                with m.If(adv):
                    m.d.sync += [a_v.eq(1), a_e.eq(e), idx.eq(Mux(last, 0, idx + 1))]
                    with m.If(last):
                        m.next = "IDLE"
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> Softmax:
    p = engine.params
    a = p["attrs"]
    return Softmax(payload_shape(streams[engine.inputs[0]].dtype),
                   payload_shape(streams[engine.outputs[0]].dtype), rows=p["rows"], n=p["n"],
                   table=p["table"], e_bits=a["E"], f_bits=a["F"], m_bits=a["M"],
                   recip_bits=p["recip_bits"])
