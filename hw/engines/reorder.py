"""Reorder: buffer a whole tensor, emit element ``read[i]`` at position i.

``read`` is a permutation of the input positions (a relayout), or any index map onto them
(a broadcast, ``params["in_length"]`` given: a small activation, e.g. a (1, C, 1, 1)
squeeze-excite scale, spread over the stream order of a larger operand; ``read`` repeats
positions and the output is longer than the input).

Two banks of ``in_length`` words (double buffering): the write side fills one bank in arrival
order while the read side empties the other through ``read`` (a ROM), so the next inference
streams in while this one streams out; II = max(in_length, len(read)) cycles.

Read side, a stall-together pipeline on ``en = ~o.valid | o.ready``:
    stage 0  issue position ``pos`` of the bank being read (when that bank is full)
    stage 1  ``read[pos]`` from the ROM
    stage 2  the word from the buffer memory
    stage 3  the output register
A bank is handed back to the write side only after its last word has left the buffer memory
(stage 2), so no write can overtake a read.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from ..pipeline import Pipeline
from .common import payload_shape


class Reorder(wiring.Component):
    latency = 3  # issue to output register, in enabled cycles

    def __init__(self, shape, read, in_length: int | None = None):
        self.read = [int(r) for r in np.ravel(read)]
        self.length = len(self.read)
        self.in_length = self.length if in_length is None else int(in_length)
        if in_length is None and sorted(self.read) != list(range(self.length)):
            self._MustUse__silence = True  # never elaborated: not a forgotten component
            raise ValueError("reorder: read is not a permutation")
        if not self.read or self.in_length < 1 or not all(
                0 <= r < self.in_length for r in self.read):
            self._MustUse__silence = True
            raise ValueError(f"reorder: read must index the {self.in_length} input positions")
        self.shape = shape
        super().__init__({"i0": In(stream.Signature(shape)),
                          "o0": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        n, n_in = self.length, self.in_length
        buf = m.submodules.buffer = memory.Memory(shape=self.shape, depth=2 * n_in, init=[])
        full = Signal(2)  # bank b holds a complete tensor not yet read out

        # write side: arrival order into bank ``wbank``
        wbank = Signal()
        wpos = Signal(range(n_in))
        wp = buf.write_port()
        take = self.i0.valid & self.i0.ready
        m.d.comb += [
            self.i0.ready.eq(~full.bit_select(wbank, 1)),
            wp.addr.eq(Mux(wbank, n_in + wpos, wpos)),
            wp.data.eq(self.i0.payload),
            wp.en.eq(take),
        ]
        set_full = Signal(2)
        with m.If(take):
            with m.If(wpos == n_in - 1):
                m.d.sync += [wpos.eq(0), wbank.eq(~wbank)]
                m.d.comb += set_full.eq(Mux(wbank, 0b10, 0b01))
            with m.Else():
                m.d.sync += wpos.eq(wpos + 1)

        # read side
        o = self.o0
        en = Signal()
        m.d.comb += en.eq(~o.valid | o.ready)
        p = Pipeline(m, en, "reorder")
        rbank = Signal()
        rpos = Signal(range(n))
        issue = full.bit_select(rbank, 1)
        with m.If(en & issue):
            with m.If(rpos == n - 1):
                m.d.sync += [rpos.eq(0), rbank.eq(~rbank)]
            with m.Else():
                m.d.sync += rpos.eq(rpos + 1)
        # stage 1
        addr = p.rom(unsigned(max(1, (n_in - 1).bit_length())), self.read, rpos, name="read")
        bank1 = p.reg(rbank, name="bank")
        valid1 = p.reg(issue, name="valid")
        last1 = p.reg(issue & (rpos == n - 1), name="last")
        # stage 2: the buffer read (its port register is the stage)
        rp = buf.read_port(domain="sync")
        m.d.comb += [rp.addr.eq(Mux(bank1, n_in + addr, addr)), rp.en.eq(en)]
        valid2 = p.reg(valid1, name="valid")
        clear_full = Signal(2)
        with m.If(en & valid1 & last1):
            m.d.comb += clear_full.eq(Mux(bank1, 0b10, 0b01))
        m.d.sync += full.eq((full | set_full) & ~clear_full)
        # stage 3: output register
        with m.If(en):
            m.d.sync += [o.valid.eq(valid2), o.payload.eq(rp.data)]
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> Reorder:
    shape = payload_shape(streams[engine.inputs[0]].dtype)
    return Reorder(shape, engine.params["read"], engine.params.get("in_length"))
