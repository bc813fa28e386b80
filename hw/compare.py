"""Compare unit for max pooling: a running maximum per lane over a window of beats.

The window arrives one element per beat (per lane: lanes are channels, as in FINN's streaming
max pool), framed by ``first`` and ``last``; the maximum of the in-bounds elements is exactly
what onnxruntime's MaxPool computes (ORT_KERNELS.md §8, ``compiler/ops/maxpool.py``).
"""

from __future__ import annotations

from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import stall_together

__all__ = ["WindowMax"]


class WindowMax(wiring.Component):
    """``y[l] = max(x[l] over the beats from first to last)`` for each lane ``l``.

    Streams: ``i`` carries ``{x, first, last}``, ``o`` carries ``{y}`` once per window.
    ``latency`` is from the ``last`` beat accepted to ``y`` valid."""

    latency = 1

    def __init__(self, shape, lanes: int = 1):
        self.shape = Shape.cast(shape)
        self.lanes = lanes
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "x": data.ArrayLayout(self.shape, lanes), "first": 1, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({
                "y": data.ArrayLayout(self.shape, lanes)}))),
        })

    def elaborate(self, platform):
        m = Module()
        p = stall_together(m, self.i, self.o, "max")
        beat = self.i.payload
        take = self.i.valid & p.en
        for k in range(self.lanes):
            best = Signal(self.shape, name=f"best{k}")
            new = Mux(beat.first | (beat.x[k] > best), beat.x[k], best)
            with m.If(take):
                m.d.sync += best.eq(new)
            with m.If(p.en):
                m.d.sync += self.o.payload.y[k].eq(new)
        with m.If(p.en):
            m.d.sync += self.o.valid.eq(take & beat.last)
        return m
