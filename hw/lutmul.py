"""Multipliers without DSP blocks: products of a run-time code by a low-bit or power-of-two
weight in plain logic (no ``*`` operator, so yosys' DSP inference has nothing to map).

- ``shift_add_product``: a ``B``-bit weight in two's complement is
  ``w = -w_{B-1} 2^{B-1} + sum_{i<B-1} w_i 2^i`` (unsigned: all ``B`` terms positive), so
  ``x * w = sum_i w_i (x << i)`` with the top term subtracted when signed: ``B`` AND-masked
  copies of ``x`` and ``B - 1`` adders in a balanced tree (4-bit weights: 3 adders).
- ``pow2_product``: a weight that is 0 or +-2^e. In two's complement both ``2^e`` and
  ``-2^e`` have their lowest set bit at ``e`` and bit ``e - 1`` clear, while every higher set
  bit of ``-2^e`` has its lower neighbour set, so ``onehot_i = w_i & ~w_{i-1}`` selects the
  shift: ``|x * w| = OR_i onehot_i (x << i)`` (at most one term nonzero), negated when the
  sign bit is set. One negation instead of ``B - 1`` adders; exact only for such weights.

``LutMultiplierArray`` has ``mac.MultiplierArray``'s interface and latency (operand registers,
then product registers), so it is a drop-in for a PE's lanes. The weights stay raw codes,
so weight ROMs (and their block-RAM patching) are the same as with DSP multipliers.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.dataflow.multipliers import MULTIPLIERS
from .mac import product_shape

__all__ = ["shift_add_product", "pow2_product", "lut_product", "LutMultiplierArray"]


def _as_signed(x: Value, shape: Shape) -> Value:
    """``x`` as a signed value of the same integer (one zero bit on top when unsigned)."""
    return x.as_signed() if shape.signed else Cat(x, Const(0, 1)).as_signed()


def _tree(values: list[Value]) -> Value:
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def shift_add_product(x, w, x_shape, w_shape) -> Value:
    """``x * w`` as shift-adds over the bits of ``w`` (any width; no DSP)."""
    x, w = Value.cast(x), Value.cast(w)
    xs, ws = Shape.cast(x_shape), Shape.cast(w_shape)
    signed = xs.signed or ws.signed
    xv = _as_signed(x, xs) if signed else x
    top = ws.width - 1 if ws.signed else ws.width
    terms = [Mux(w[i], xv, 0) << i for i in range(top)]
    total = _tree(terms) if terms else Const(0, 1)
    if ws.signed:  # the sign bit weighs -2^(B-1)
        total = total - (Mux(w[ws.width - 1], xv, 0) << (ws.width - 1))
    return total


def pow2_product(x, w, x_shape, w_shape) -> Value:
    """``x * w`` for ``w`` in {0, +-2^e} (see the module doc); wrong for other weights."""
    x, w = Value.cast(x), Value.cast(w)
    xs, ws = Shape.cast(x_shape), Shape.cast(w_shape)
    pshape = product_shape(xs, ws)
    xv = _as_signed(x, xs) if pshape.signed else x
    hits = []  # x * 2^i where bit i is the weight's lowest set bit: one term is nonzero
    for i in range(ws.width):
        onehot = w[i] if i == 0 else w[i] & ~w[i - 1]
        hits.append(Mux(onehot, xv, 0) << i)
    m = hits[0]
    for h in hits[1:]:
        m = m | h
    if not ws.signed:
        return m
    return Mux(w[ws.width - 1], -m, m)


def lut_product(kind: str, x, w, x_shape, w_shape) -> Value:
    """``x * w`` by multiplier ``kind`` (``compiler/dataflow/multipliers.py``)."""
    if kind == "shiftadd":
        return shift_add_product(x, w, x_shape, w_shape)
    if kind == "pow2":
        return pow2_product(x, w, x_shape, w_shape)
    if kind == "dsp":
        return Value.cast(x) * Value.cast(w)
    raise ValueError(f"multiplier is one of {MULTIPLIERS}, not {kind!r}")


class LutMultiplierArray(wiring.Component):
    """``p[k] = a[k] * b[k]`` in logic, two stages later, advancing when ``en`` is high."""

    latency = 2
    dsp_count = 0

    def __init__(self, n: int, a_shape, b_shape, kind: str = "shiftadd"):
        if kind not in ("shiftadd", "pow2"):
            raise ValueError(f"LUT multiplier is 'shiftadd' or 'pow2', not {kind!r}")
        self.n, self.kind = n, kind
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.p_shape = product_shape(a_shape, b_shape)
        super().__init__({
            "a": In(data.ArrayLayout(self.a_shape, n)),
            "b": In(data.ArrayLayout(self.b_shape, n)),
            "en": In(1),
            "p": Out(data.ArrayLayout(self.p_shape, n)),
        })

    def elaborate(self, platform):
        m = Module()
        for k in range(self.n):
            a = Signal(self.a_shape, name=f"a{k}")
            b = Signal(self.b_shape, name=f"b{k}")
            prod = lut_product(self.kind, a, b, self.a_shape, self.b_shape)
            with m.If(self.en):
                # the exact product fits p_shape: the assignment drops only sign copies
                m.d.sync += [a.eq(self.a[k]), b.eq(self.b[k]), self.p[k].eq(prod)]
        return m
