"""GlobalSum: per channel ``sum(x - zero_point)`` over ``pixels`` words (global average pool's
integer part; the division is the Requant engine that follows).

Input ``pixels`` x ``channels`` words in (pixel, channel) order; output the ``channels`` sums
in ``out_dtype``. A ``ChannelReduce`` (``window_max.py``) whose running sums are wide enough
for every partial sum; the final sum fits ``out_dtype`` (the compiler proved it).

One input word per cycle; latency 2; cycles per inference = ``pixels * channels``.
"""

from __future__ import annotations

from amaranth import Mux, Shape, Value
from amaranth.lib import wiring

from ...compiler.dataflow.spec import Engine, Stream
from .common import payload_shape
from .window_max import ChannelReduce

__all__ = ["build", "GlobalSum"]


class GlobalSum(ChannelReduce):
    def __init__(self, in_shape, out_shape, *, channels: int, pixels: int, zero_point: int):
        in_shape = Shape.cast(in_shape)
        lo = -(1 << (in_shape.width - 1)) if in_shape.signed else 0
        hi = (1 << (in_shape.width - (1 if in_shape.signed else 0))) - 1
        self.zero_point = int(zero_point)
        d_lo, d_hi = lo - self.zero_point, hi - self.zero_point
        acc = Shape.cast(range(pixels * min(d_lo, 0), pixels * max(d_hi, 0) + 1))
        super().__init__(in_shape, out_shape, acc, channels=channels, taps=pixels, rows=1)

    def operand(self, p, x: Value) -> Value:
        return p.reg(x - self.zero_point)

    def combine(self, m, old, operand, first):
        return Mux(first, 0, old) + operand


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    p = engine.params
    return GlobalSum(payload_shape(streams[engine.inputs[0]].dtype),
                     payload_shape(streams[engine.outputs[0]].dtype), channels=p["channels"],
                     pixels=p["pixels"], zero_point=p["zero_point"])
