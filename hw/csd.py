"""Multiplier-free products by known weights: shift-add on canonical signed digits (CSD).

A weight ``w`` is written in non-adjacent form, ``w = sum_k d_k 2^k`` with ``d_k`` in
{-1, 0, 1} and no two adjacent digits nonzero: the signed-digit form with the fewest nonzero
digits (at most ``ceil((bits + 1) / 2)``, about a third of the positions on average), so
``x * w`` costs one adder per nonzero digit beyond the first and no DSP block.

``CsdMultiplierArray`` has the interface and latency of ``mac.MultiplierArray`` but takes, in
place of each weight, its digit code from a ROM written at elaboration (``encode``). Lane ``k``
only has adders for the digit positions that some weight of that lane uses; with a single
weight per lane (a fully unrolled layer) the codes are constants and synthesis keeps just the
shift-adds of that weight's nonzero digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth import Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .mac import product_shape

__all__ = ["naf", "CsdMultiplierArray", "csd_adders"]


def naf(w: int) -> list[int]:
    """Non-adjacent form of ``w``, least significant digit first (``[]`` for 0).

    Reitwiesner's recoding: for odd ``w`` take ``d = 2 - (w mod 4)`` (so ``w - d`` is a
    multiple of 4 and the next digit is 0), for even ``w`` take 0, then halve."""
    w = int(w)
    digits = []
    while w:
        d = (2 - (w & 3)) if w & 1 else 0
        digits.append(d)
        w = (w - d) >> 1
    return digits


def csd_adders(weights) -> int:
    """Adders a constant-weight dot product needs: nonzero digits minus one per nonzero weight
    (the lane sums then take one adder per lane beyond the first, as with multipliers)."""
    return sum(max(0, sum(d != 0 for d in naf(w)) - 1) for w in np.ravel(weights))


class CsdMultiplierArray(wiring.Component):
    """``p[k] = a[k] * w`` where ``b[k]`` is the digit code of ``w`` (see ``encode``).

    ``weights``: every weight each lane will see, shape (rows, n) — the ROM contents. Two
    stages: operand registers, then the shift-add sum registered (``latency = 2``).
    """

    latency = 2

    def __init__(self, n: int, a_shape, weights, w_shape=None):
        weights = np.asarray(weights, np.int64).reshape(-1, n)
        self.n = n
        self.a_shape = Shape.cast(a_shape)
        lo, hi = int(weights.min()), int(weights.max())
        self.w_shape = Shape.cast(w_shape) if w_shape is not None else Shape.cast(
            range(min(lo, -1) if lo < 0 else 0, max(hi, 1) + 1))
        self.p_shape = product_shape(self.a_shape, self.w_shape)
        # digit positions each lane ever uses
        self.positions = []
        for k in range(n):
            used = set()
            for w in weights[:, k]:
                used.update(i for i, d in enumerate(naf(w)) if d)
            self.positions.append(sorted(used))
        self.digits = max(1, max(len(p) for p in self.positions))
        # per digit: bit 0 nonzero, bit 1 negative
        self.code_shape = unsigned(2 * self.digits)
        super().__init__({
            "a": In(data.ArrayLayout(self.a_shape, n)),
            "b": In(data.ArrayLayout(self.code_shape, n)),
            "en": In(1),
            "p": Out(data.ArrayLayout(self.p_shape, n)),
        })

    def encode(self, row: Sequence[int]) -> list[int]:
        """Digit codes of one ROM row (one weight per lane)."""
        codes = []
        for k, w in enumerate(row):
            d = naf(w)
            code = 0
            for j, pos in enumerate(self.positions[k]):
                digit = d[pos] if pos < len(d) else 0
                if digit:
                    code |= (1 | (2 if digit < 0 else 0)) << (2 * j)
            codes.append(code)
        return codes

    def elaborate(self, platform):
        m = Module()
        for k in range(self.n):
            a = Signal(self.a_shape, name=f"a{k}")
            code = Signal(self.code_shape, name=f"code{k}")
            with m.If(self.en):
                m.d.sync += [a.eq(self.a[k]), code.eq(self.b[k])]
            terms = []
            for j, pos in enumerate(self.positions[k]):
                shifted = a << pos
                term = Mux(code[2 * j + 1], -shifted, shifted)
                terms.append(Mux(code[2 * j], term, 0))
            total = _sum_tree(terms) if terms else 0
            with m.If(self.en):
                m.d.sync += self.p[k].eq(total)
        return m


def _sum_tree(terms):
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
