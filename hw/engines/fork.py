"""Fork: one input stream copied to k output streams; a beat moves when every output can
take it.

Each output has its own register (payload and valid): a beat is accepted when every register
is empty or being emptied this cycle, and then loads all of them; a branch whose consumer is
slow holds its copy while the others drain theirs. ``valid`` is a register (it never waits on
``ready``), one beat per cycle when every branch is ready. Whole-tensor buffering, where
branches run at different paces, is the job of the FIFOs the network puts on each branch.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from .common import payload_shape


class Fork(wiring.Component):
    def __init__(self, shape, branches: int):
        if branches < 1:
            raise ValueError("a fork needs at least one branch")
        self.branches = branches
        sig = {"i0": In(stream.Signature(shape))}
        sig.update({f"o{j}": Out(stream.Signature(shape)) for j in range(branches)})
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{j}") for j in range(self.branches)]
        free = Signal(self.branches)  # register j empty, or emptied at this edge
        for j, o in enumerate(outs):
            m.d.comb += free[j].eq(~o.valid | o.ready)
        take = Signal()
        m.d.comb += [self.i0.ready.eq(free.all()), take.eq(self.i0.valid & free.all())]
        for o in outs:
            with m.If(take):
                m.d.sync += [o.valid.eq(1), o.payload.eq(self.i0.payload)]
            with m.Elif(o.ready):
                m.d.sync += o.valid.eq(0)
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> Fork:
    return Fork(payload_shape(streams[engine.inputs[0]].dtype), len(engine.outputs))
