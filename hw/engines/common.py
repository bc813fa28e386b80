"""Shapes and small helpers shared by the engines."""

from __future__ import annotations

from amaranth import Mux, Shape, Signal, signed, unsigned

from ...compiler.dtypes import IntType


def payload_shape(dtype: IntType) -> Shape:
    """The amaranth shape of one stream element of IR type ``dtype``."""
    return signed(dtype.bits) if dtype.signed else unsigned(dtype.bits)


class Reciprocal:
    """R = floor(2^F / d) by restoring division, one quotient bit per cycle, for the row
    engines (softmax.py, layernorm.py). Only the ``bits`` low quotient bits are computed (the
    caller proves floor(2^F / d_min) < 2^bits), so ``start`` loads the dividend's bits above
    them, 2^F >> bits (< d), and ``bits`` steps shift every bit of ``r`` in: no clearing.
    ``step(d)`` is one cycle's statements; ``done`` is true during the last step."""

    def __init__(self, m, f_bits: int, bits: int, d_max: int) -> None:
        self.f, self.bits = int(f_bits), int(bits)
        self.rem = Signal(range(2 * d_max + 2))  # the partial remainder, < d before each step
        self.r = Signal(self.bits)
        self.k = Signal(range(max(self.bits, 1)))  # the quotient bit computed this cycle
        # one restoring step: shift in dividend bit k (2^F has only bit F set)
        self.trial = Signal(range(2 * d_max + 2))
        m.d.comb += self.trial.eq((self.rem << 1) | (self.k == self.f))
        self.done = self.k == 0

    def start(self) -> list:
        return [self.rem.eq((1 << self.f) >> self.bits if self.bits <= self.f else 0),
                self.k.eq(self.bits - 1)]

    def step(self, d) -> list:
        fits = self.trial >= d
        return [self.rem.eq(Mux(fits, self.trial - d, self.trial)),
                self.r.eq((self.r << 1) | fits), self.k.eq(self.k - 1)]
