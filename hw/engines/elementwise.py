"""Elementwise engines: ``Requant``, ``Lut`` and ``Clamp`` (one input word -> one output word).

Per-channel parameters pick the channel of stream position ``i`` as
``(i // channel_stride) % channels`` (``compiler/dataflow/model.py``): a pair of wrapping
counters advanced on every accepted beat. The stream length is a whole number of
``channels * channel_stride`` periods, so the counters are back at 0 when the next inference
starts.

- ``Requant``: ``hw/requant.py``'s ``RequantOrt`` / ``RequantDyadic`` (14 / 10 cycles latency,
  a word a cycle), or ``hw/requant_serial.py``'s ``RequantOrtSerial`` (no DSP, one word per
  ``cycles_per_beat``) where the plan chose ``style`` "serial".
- ``Lut``: the table in a ROM (one row per channel when it has several rows), read with the
  input code: 1 cycle latency.
- ``Clamp``: a comparator pair and an output register: 1 cycle latency.

Lut and Clamp accept one word per cycle; every register advances on ``~o0.valid | o0.ready``.
"""

from __future__ import annotations

import numpy as np
from amaranth import Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from ..requant import RequantDyadic, RequantOrt
from ..requant_serial import RequantOrtSerial
from .common import payload_shape

__all__ = ["build", "requant_unit", "channel_counter", "ElementwiseRequant", "Lut", "Clamp"]


def requant_unit(p: dict, acc_shape) -> RequantOrt | RequantDyadic | RequantOrtSerial:
    """The requant unit of a params dict (``mode``, per-channel ``mult``/``exp``,
    ``zero_point``, ``lo``, ``hi``; ``style`` "serial" with ``radix`` picks the sequential
    unit, chosen by ``compiler.dataflow.fold.choose_requant_styles``). Per-channel
    multipliers that are all equal become one per-tensor constant (no ROM, no ``channel``)."""
    mult = np.asarray(p["mult"], np.int64).ravel()
    exp = np.asarray(p["exp"], np.int64).ravel()
    if np.all(mult == mult[0]) and np.all(exp == exp[0]):
        mult, exp = mult[:1], exp[:1]
    if p.get("style", "pipelined") == "serial":
        if p["mode"] != "ort":
            raise ValueError("the serial requant unit computes the ort mode only")
        return RequantOrtSerial(acc_shape, mult, exp, p["zero_point"], p["lo"], p["hi"],
                                radix=p["radix"])
    cls = RequantOrt if p["mode"] == "ort" else RequantDyadic
    return cls(acc_shape, mult, exp, p["zero_point"], p["lo"], p["hi"])


def channel_counter(m: Module, step: Value, channels: int, stride: int, name: str) -> Value:
    """``(i // stride) % channels`` of the beat about to be accepted, ``i`` counting ``step``s."""
    if channels <= 1:
        return Const(0, 1)
    ch = Signal(range(channels), name=f"{name}_channel")
    last_ch = ch == channels - 1
    if stride > 1:
        sub = Signal(range(stride), name=f"{name}_sub")
        with m.If(step):
            m.d.sync += sub.eq(Mux(sub == stride - 1, 0, sub + 1))
        wrap = sub == stride - 1
    else:
        wrap = Const(1, 1)
    with m.If(step & wrap):
        m.d.sync += ch.eq(Mux(last_ch, 0, ch + 1))
    return ch


def _check_period(engine: Engine, streams: dict[str, Stream]) -> None:
    p = engine.params
    period = p.get("channels", 1) * p.get("channel_stride", 1)
    length = streams[engine.inputs[0]].length
    if length % period:
        raise ValueError(f"{engine.name}: stream of {length} words is not a whole number of "
                         f"channel periods ({period})")


class ElementwiseRequant(wiring.Component):
    """``y[i] = requant(x[i], channel(i))`` through ``hw/requant.py``'s units."""

    def __init__(self, in_shape, out_shape, params: dict):
        self.params = params
        self.unit = requant_unit(params, Shape.cast(in_shape))
        self.latency = self.unit.latency
        super().__init__({"i0": In(stream.Signature(in_shape)),
                          "o0": Out(stream.Signature(out_shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.requant = u = self.unit
        p = self.params
        step = self.i0.valid & self.i0.ready
        m.d.comb += [u.i.valid.eq(self.i0.valid), self.i0.ready.eq(u.i.ready),
                     u.i.payload.acc.eq(self.i0.payload)]
        if u.channels > 1:
            ch = channel_counter(m, step, p["channels"], p["channel_stride"], "rq")
            m.d.comb += u.i.payload.channel.eq(ch)
        m.d.comb += [self.o0.valid.eq(u.o.valid), u.o.ready.eq(self.o0.ready),
                     self.o0.payload.eq(u.o.payload.y)]
        return m


class Lut(wiring.Component):
    """``y[i] = table[channel(i) if several rows else 0, x[i] - x_min]`` from a ROM."""

    latency = 1

    def __init__(self, in_shape, out_shape, params: dict):
        self.params = params
        table = np.atleast_2d(np.asarray(params["table"], np.int64))
        self.rows, self.entries = table.shape
        self.table = table
        super().__init__({"i0": In(stream.Signature(in_shape)),
                          "o0": Out(stream.Signature(out_shape))})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        en = Signal()
        m.d.comb += [en.eq(~self.o0.valid | self.o0.ready), self.i0.ready.eq(en)]
        step = self.i0.valid & en
        rom = memory.Memory(shape=self.o0.payload.shape(), depth=self.table.size,
                            init=[int(v) for v in self.table.ravel()])
        m.submodules.table = rom
        port = rom.read_port(domain="sync")
        index = (self.i0.payload - p["x_min"])[:max(1, (self.entries - 1).bit_length())]
        if self.rows > 1:
            ch = channel_counter(m, step, p["channels"], p["channel_stride"], "lut")
            m.d.comb += port.addr.eq(ch * self.entries + index)
        else:
            m.d.comb += port.addr.eq(index)
        m.d.comb += [port.en.eq(en), self.o0.payload.eq(port.data)]
        with m.If(en):
            m.d.sync += self.o0.valid.eq(self.i0.valid)
        return m


class Clamp(wiring.Component):
    """``y[i] = min(max(x[i], lo), hi)``."""

    latency = 1

    def __init__(self, in_shape, out_shape, lo: int, hi: int):
        self.lo, self.hi = int(lo), int(hi)
        super().__init__({"i0": In(stream.Signature(in_shape)),
                          "o0": Out(stream.Signature(out_shape))})

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o0.valid | self.o0.ready), self.i0.ready.eq(en)]
        x = self.i0.payload
        with m.If(en):
            m.d.sync += [self.o0.valid.eq(self.i0.valid),
                         self.o0.payload.eq(Mux(x < self.lo, self.lo,
                                                Mux(x > self.hi, self.hi, x)))]
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    in_shape = payload_shape(streams[engine.inputs[0]].dtype)
    out_shape = payload_shape(streams[engine.outputs[0]].dtype)
    p = engine.params
    if engine.kind == "Requant":
        _check_period(engine, streams)
        return ElementwiseRequant(in_shape, out_shape, p)
    if engine.kind == "Lut":
        _check_period(engine, streams)
        return Lut(in_shape, out_shape, p)
    if engine.kind == "Clamp":
        return Clamp(in_shape, out_shape, p["lo"], p["hi"])
    raise ValueError(f"{engine.name}: {engine.kind} is not an elementwise engine")
