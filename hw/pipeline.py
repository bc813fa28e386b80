"""Stall-together pipelines: every register of a unit advances on one enable.

A unit built this way keeps its output stream's ``valid`` and ``payload`` in registers of its
last stage and advances every register on ``en = ~o.valid | o.ready``: the pipeline moves one
step whenever the output can take (or holds no) beat, and stands still otherwise. The
``amaranth.lib.stream`` rules then hold by construction — the payload is stable while
``valid & ~ready`` (nothing is enabled) and ``valid`` never waits on ``ready`` (it is a
register) — at one beat per cycle. The input's ``ready`` is ``en``, a combinational function of
the output's ``ready``, which the stream rules allow.

Datapaths are plain functions of a ``Pipeline``: ``p.reg(value)`` is ``value`` one stage later;
a datapath returns its result and the number of stages it used, and the unit delays the input's
``valid`` bit by that latency (``Pipeline.output``).
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth import Const, Module, Shape, Signal, Value
from amaranth.lib import data, memory

__all__ = ["Pipeline", "stall_together"]


class Pipeline:
    """Registers of one stall-together pipeline: each ``reg`` loads when ``en`` is high."""

    def __init__(self, m: Module, en: Value, name: str = "p"):
        self.m = m
        self.en = en
        self.name = name
        self._n = 0

    def _name(self, name: str | None) -> str:
        self._n += 1
        return f"{self.name}_{name or 'r'}{self._n}"

    def reg(self, value, shape=None, *, name: str | None = None):
        """``value`` one stage later: a register loaded when the pipeline advances.

        Constants (``int``, ``Const``, ``data.Const``) need no register and are returned as
        they are (cast to ``shape`` when given)."""
        if isinstance(value, data.Const):
            return value
        if isinstance(value, int | Const):
            value = Const.cast(value)
            return Const(value.value, Shape.cast(shape)) if shape is not None else value
        if isinstance(value, data.View):
            r = Signal(shape or value.shape(), name=self._name(name))
            with self.m.If(self.en):
                self.m.d.sync += r.as_value().eq(value.as_value())
            return r
        value = Value.cast(value)
        r = Signal(Shape.cast(shape) if shape is not None else value.shape(),
                   name=self._name(name))
        with self.m.If(self.en):
            self.m.d.sync += r.eq(value)
        return r

    def delay(self, value, stages: int, *, name: str | None = None):
        """``value`` delayed by ``stages`` registers (``stages == 0`` returns it unchanged)."""
        for _ in range(stages):
            value = self.reg(value, name=name)
        return value

    def rom(self, shape, init: Sequence, addr: Value, *, name: str = "rom"):
        """``init[addr]`` one stage later, from a read-only memory (block RAM on FPGAs).

        A one-entry table needs no memory: its constant is returned instead (no stage is
        spent, the caller's registers carry nothing)."""
        if len(init) == 1:
            if isinstance(shape, data.Layout):
                return shape.const(init[0])
            return Const(int(init[0]), Shape.cast(shape))
        mem = memory.Memory(shape=shape, depth=len(init), init=list(init))
        self.m.submodules[self._name(name)] = mem
        port = mem.read_port(domain="sync")
        self.m.d.comb += [port.addr.eq(addr), port.en.eq(self.en)]
        return port.data

    def output(self, valid: Value, latency: int, o_stream, payload) -> None:
        """Register ``payload`` (computed at stage ``latency - 1``; a value or a dict of fields)
        into the output stream and delay ``valid`` by ``latency`` stages into ``o.valid``."""
        v = self.delay(valid, latency - 1, name="valid")
        with self.m.If(self.en):
            self.m.d.sync += o_stream.valid.eq(v)
            if isinstance(payload, dict):
                for name, value in payload.items():
                    self.m.d.sync += o_stream.payload[name].eq(value)
            else:
                self.m.d.sync += o_stream.payload.eq(payload)


def stall_together(m: Module, i_stream, o_stream, name: str = "p") -> Pipeline:
    """The pipeline of a unit whose last stage is its output stream's registers.

    ``en = ~o.valid | o.ready``; drives ``i.ready`` with it (when ``i_stream`` is given)."""
    en = Signal(name=f"{name}_en")
    m.d.comb += en.eq(~o_stream.valid | o_stream.ready)
    if i_stream is not None:
        m.d.comb += i_stream.ready.eq(en)
    return Pipeline(m, en, name)
