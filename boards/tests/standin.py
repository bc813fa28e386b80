# amaranth: UnusedElaboratable=no
"""A stand-in accelerator for the board flow's tests: streams like ``hw.network.Network`` (one
input stream ``i``, one output stream ``o``, one element per beat) with a tiny, exactly
modelled computation and ``lanes`` real multipliers.

For each input ``x``: ``acc += sum_j x * taps[j]``, then ``x`` enters the tap line
(``taps[0]`` is the previous element); every ``group`` inputs ``acc`` is emitted (wrapped to
the output width) and cleared. Taps persist across groups; a reset clears everything.
"""

from __future__ import annotations

from amaranth import Module, Shape, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

S8, S24 = signed(8), signed(24)


class StandIn(wiring.Component):
    def __init__(self, *, lanes: int = 1, group: int = 4, in_shape=S8, out_shape=S24):
        self.lanes, self.group = lanes, group
        self.in_shape, self.out_shape = Shape.cast(in_shape), Shape.cast(out_shape)
        super().__init__({"i": In(stream.Signature(self.in_shape)),
                          "o": Out(stream.Signature(self.out_shape))})

    def elaborate(self, platform):
        m = Module()
        taps = [Signal(self.in_shape, name=f"tap{j}") for j in range(self.lanes)]
        acc = Signal(self.out_shape)
        count = Signal(range(self.group))
        x = self.i.payload
        products = [x * t for t in taps]
        total = products[0]
        for p in products[1:]:
            total = total + p

        m.d.comb += self.i.ready.eq(~self.o.valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [taps[0].eq(x)] + [taps[j].eq(taps[j - 1])
                                           for j in range(1, self.lanes)]
            with m.If(count == self.group - 1):
                m.d.sync += [self.o.payload.eq(acc + total), self.o.valid.eq(1),
                             acc.eq(0), count.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(acc + total), count.eq(count + 1)]
        return m


def model(xs, *, lanes: int = 1, group: int = 4, out_bits: int = 24, out_signed: bool = True,
          taps: list[int] | None = None) -> list[int]:
    """The stand-in's outputs for the input elements ``xs`` from reset."""
    taps = [0] * lanes if taps is None else taps
    acc, out = 0, []
    for i, x in enumerate(xs):
        acc += sum(int(x) * t for t in taps)
        taps = [int(x)] + taps[:-1]
        if i % group == group - 1:
            v = acc & ((1 << out_bits) - 1)
            if out_signed and v >> (out_bits - 1):
                v -= 1 << out_bits
            out.append(v)
            acc = 0
    return out
