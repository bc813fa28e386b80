"""Concat: interleave input streams following ``pattern`` — runs of (input, count) — repeated
``repeat`` times per inference.

The run index and the count within the run select which input is read; since an inference is
the pattern ``repeat`` times over, cycling through the pattern forever also starts every
inference at run 0. The output is one register stage (``valid`` never waits on ``ready``), one
beat per cycle; an input other than the selected one is never ready.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from .common import payload_shape


class Concat(wiring.Component):
    def __init__(self, in_shapes, out_shape, pattern):
        self.pattern = [(int(i), int(c)) for i, c in pattern]
        if not self.pattern or any(c < 1 or not 0 <= i < len(in_shapes)
                                   for i, c in self.pattern):
            raise ValueError(f"bad concat pattern {pattern} for {len(in_shapes)} inputs")
        sig = {f"i{j}": In(stream.Signature(s)) for j, s in enumerate(in_shapes)}
        sig["o0"] = Out(stream.Signature(out_shape))
        super().__init__(sig)
        self.n_in = len(in_shapes)

    def elaborate(self, platform):
        m = Module()
        runs = len(self.pattern)
        run = Signal(range(runs))
        count = Signal(range(max(c for _, c in self.pattern)))
        sel = Array([i for i, _ in self.pattern])[run]
        last_in_run = count == Array([c - 1 for _, c in self.pattern])[run]
        ins = [getattr(self, f"i{j}") for j in range(self.n_in)]
        o = self.o0
        en = ~o.valid | o.ready
        valid = Array([s.valid for s in ins])[sel]
        payload = Array([s.payload for s in ins])[sel]
        for j, s in enumerate(ins):
            m.d.comb += s.ready.eq(en & (sel == j))
        with m.If(en):
            m.d.sync += o.valid.eq(valid)
            with m.If(valid):
                m.d.sync += o.payload.eq(payload)
                with m.If(last_in_run):
                    m.d.sync += [count.eq(0), run.eq(Mux(run == runs - 1, 0, run + 1))]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> Concat:
    p = engine.params
    return Concat([payload_shape(streams[s].dtype) for s in engine.inputs],
                  payload_shape(streams[engine.outputs[0]].dtype), p["pattern"])
