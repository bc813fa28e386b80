"""WindowMax: the per-channel maximum over each row of ``window`` taps.

Input rows of ``window`` x ``channels`` words in (tap, channel) order; output per row the
``channels`` maxima. ``ChannelReduce`` (also the skeleton of ``GlobalSum`` and ``WindowAvg``)
keeps one running value per channel in a memory of ``channels`` words and updates it with a
read-modify-write per input word: read at the word's acceptance (stage 0), combine and write
back at stage 1, the write forwarded to a read of the same channel in the same cycle
(``transparent_for``, which ``channels == 1`` needs). The word of the last tap is emitted.

One input word per cycle; latency 2 cycles (last tap in -> maximum out); cycles per inference
= ``rows * window * channels``. Every register advances on ``~o0.valid | o0.ready``
(``hw/pipeline.py``'s stall-together pipeline).
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from ..pipeline import Pipeline, stall_together
from .common import payload_shape

__all__ = ["build", "ChannelReduce", "WindowMax", "nested_counters"]


def nested_counters(m: Module, step: Value, sizes: list[int], name: str
                    ) -> list[tuple[Value, Value]]:
    """Counters ``0..size-1``, innermost first, each advancing when every inner one wraps;
    ``step`` advances the innermost. Returns ``(value, at_last)`` per counter (a size-1 counter
    is the constant 0, always at its last value)."""
    out = []
    carry = step
    for k, size in enumerate(sizes):
        if size <= 1:
            out.append((Const(0, 1), Const(1, 1)))
            continue
        v = Signal(range(size), name=f"{name}{k}")
        last = v == size - 1
        with m.If(carry):
            m.d.sync += v.eq(Mux(last, 0, v + 1))
        out.append((v, last))
        carry = carry & last
    return out


class ChannelReduce(wiring.Component):
    """Per-channel reduction over ``taps`` words of each of ``rows`` rows (see the module doc).

    Subclasses define ``operand`` (the input word's value at stage 1), ``combine`` (the new
    running value at stage 1), ``finish`` (the output word at stage ``latency - 1``) and
    ``latency`` (last tap accepted -> result valid, in cycles)."""

    latency = 2

    def __init__(self, in_shape, out_shape, acc_shape, *, channels: int, taps: int, rows: int):
        self.acc_shape = Shape.cast(acc_shape)
        self.channels, self.taps, self.rows = channels, taps, rows
        super().__init__({"i0": In(stream.Signature(in_shape)),
                          "o0": Out(stream.Signature(out_shape))})

    def operand(self, p: Pipeline, x: Value) -> Value:
        return p.reg(x)

    def combine(self, m: Module, old: Value, operand: Value, first: Value) -> Value:
        raise NotImplementedError

    def finish(self, p: Pipeline, acc: Value, row: Value) -> Value:
        """``acc`` (stage 1, combinational) -> the output word at stage ``latency - 1``.
        ``row`` is the row counter at stage 0 (beside the word being accepted)."""
        return acc

    def elaborate(self, platform):
        m = Module()
        p = stall_together(m, self.i0, self.o0, "red")
        step = self.i0.valid & p.en
        (c, _), (t, t_last), (r, _) = nested_counters(
            m, step, [self.channels, self.taps, self.rows], "red_count")
        m.submodules.acc = mem = memory.Memory(shape=self.acc_shape, depth=self.channels,
                                               init=[])
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=[wp])
        m.d.comb += [rp.addr.eq(c), rp.en.eq(p.en)]
        v1 = p.reg(self.i0.valid)
        c1 = p.reg(c)
        first1 = p.reg(t == 0)
        new = Signal(self.acc_shape)
        m.d.comb += new.eq(self.combine(m, rp.data, self.operand(p, self.i0.payload), first1))
        m.d.comb += [wp.addr.eq(c1), wp.data.eq(new), wp.en.eq(v1 & p.en)]
        p.output(self.i0.valid & t_last, self.latency, self.o0, self.finish(p, new, r))
        return m


class WindowMax(ChannelReduce):
    def __init__(self, shape, *, channels: int, window: int):
        # rows only matter to the counters' period, which rows * window * channels keeps
        super().__init__(shape, shape, shape, channels=channels, taps=window, rows=1)

    def combine(self, m, old, operand, first):
        return Mux(first | (operand > old), operand, old)


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    p = engine.params
    shape = payload_shape(streams[engine.inputs[0]].dtype)
    if payload_shape(streams[engine.outputs[0]].dtype) != shape:
        raise ValueError(f"{engine.name}: WindowMax changes the word type")
    return WindowMax(shape, channels=p["channels"], window=p["window"])
