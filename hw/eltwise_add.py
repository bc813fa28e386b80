"""Elementwise add with rescale (residual Add), bit-exact to ``compiler/ops/add.py``.

``EltwiseAddOrt`` is onnxruntime's QLinearAdd fma chain (ORT_KERNELS.md §4), e.g. for the
"b inner" order ``y = sat(cvt(fma(a, Ra, fma(b, Rb, fix))))`` on raw codes. The inner fma
depends on one code only: its float32 results for every code are a compile-time table (exact,
from ``compiler/f32.py``), read from a ROM. The outer fma adds ``a * Ra`` (exact) to the table
value: both lie on the grid ``2^g``, ``g`` the least exponent among ``Ra`` and the table
entries, so their exact sum ``S`` is an integer in units of ``2^g`` (the constants fix ``g``
and the width). ``f32(S * 2^g)`` then ``rint`` are exactly ``RequantOrt``'s datapath with
``M = 2^g`` (a product by a power of two rounds nothing) and zero point 0; ``cvt``'s overflow
to INT32_MIN (the lowest code) is kept. ``2 + ORT_STAGES`` stages.

``EltwiseAddDyadic`` is TFLite's quantised Add as the IR's ``dyadic`` mode defines it:
``sa = requant_dyadic((a - za) << 20, Ma)``, ``sb`` likewise, then
``y = requant_dyadic(sa + sb, Mc, zc, lo, hi)``: two ``RequantDyadic`` scalings side by side,
an adder, and a third scaling, zero point and clamp, in ``2 * DYADIC_SCALE_STAGES + 2``
stages.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, Shape, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..compiler import f32
from .pipeline import stall_together
from .requant import (
    DYADIC_ROM,
    DYADIC_SCALE_STAGES,
    MANT,
    ORT_STAGES,
    code_shape,
    dyadic_rom_entries,
    dyadic_scale,
    offset_clamp,
    ort_datapath,
)

__all__ = ["EltwiseAddOrt", "EltwiseAddDyadic", "eltwise_add_from_ir"]


def _codes(shape: Shape) -> np.ndarray:
    """Every value of ``shape``, indexed by its bit pattern."""
    idx = np.arange(1 << shape.width, dtype=np.int64)
    if shape.signed:
        idx = np.where(idx >= 1 << (shape.width - 1), idx - (1 << shape.width), idx)
    return idx


def add_signature(a_shape: Shape, b_shape: Shape, out_shape: Shape) -> dict:
    """The ports of both Add units: ``i`` carries ``{a, b}``, ``o`` ``{y}``."""
    return {"i": In(stream.Signature(data.StructLayout({"a": a_shape, "b": b_shape}))),
            "o": Out(stream.Signature(data.StructLayout({"y": out_shape})))}

class EltwiseAddOrt(wiring.Component):
    """``y = add_ort(a, b)`` with the IR ``Add`` node's ``ort`` attributes (``ra``, ``rb``,
    ``fix`` as float32 (mantissa, exponent) pairs, ``order``, ``lo``, ``hi``).

    Streams: ``i`` carries ``{a, b}`` (raw codes), ``o`` carries ``{y}``."""

    latency = 2 + ORT_STAGES

    def __init__(self, a_shape, b_shape, attrs: dict):
        if attrs.get("mode", "ort") != "ort":
            raise ValueError("EltwiseAddOrt implements the ort Add")
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.attrs = dict(attrs)
        self.lo, self.hi = int(attrs["lo"]), int(attrs["hi"])
        self.out_shape = code_shape(self.lo, self.hi)
        inner_is_b = attrs["order"] == "b_inner"
        self.table_operand = "b" if inner_is_b else "a"
        self.linear_operand = "a" if inner_is_b else "b"
        t_shape = self.b_shape if inner_is_b else self.a_shape
        l_shape = self.a_shape if inner_is_b else self.b_shape
        r_t = attrs["rb"] if inner_is_b else attrs["ra"]
        r_l = attrs["ra"] if inner_is_b else attrs["rb"]
        fix = f32.F32(np.int64(attrs["fix"][0]), np.int64(attrs["fix"][1]))
        inner = f32.fma(f32.from_int(_codes(t_shape)), f32.F32(np.int64(r_t[0]),
                                                               np.int64(r_t[1])), fix)
        m_l, e_l = int(r_l[0]), int(r_l[1])
        if m_l == 0:
            raise ValueError("QLinearAdd input scale ratio is zero")
        exps = [e_l] + [int(e) for m, e in zip(inner.m, inner.e, strict=True) if m != 0]
        self.grid = g = min(exps)
        self.table = [int(m) << (int(e) - g) if m != 0 else 0
                      for m, e in zip(inner.m, inner.e, strict=True)]
        self.m_l, self.shift_l = m_l, e_l - g
        l_max = max(abs(int(v)) for v in _codes(l_shape)[[0, -1]]) if l_shape.signed else (
            (1 << l_shape.width) - 1)
        l_max = max(l_max, 1 << (l_shape.width - 1))
        bound = (l_max * m_l << self.shift_l) + max(abs(t) for t in self.table)
        self.sum_shape = signed(bound.bit_length() + 1)
        self.table_shape = signed(max(abs(t) for t in self.table).bit_length() + 1)
        super().__init__(add_signature(self.a_shape, self.b_shape, self.out_shape))

    def elaborate(self, platform):
        m = Module()
        p = stall_together(m, self.i, self.o, "addo")
        t = Value.cast(self.i.payload[self.table_operand])
        lin = Value.cast(self.i.payload[self.linear_operand])
        # 1: the inner fma from the table, the linear operand alongside
        inner = p.rom(self.table_shape, self.table, t.as_unsigned(), name="inner")
        lin = p.reg(lin)
        # 2: the exact outer sum in units of 2^grid
        total = p.reg(((lin * self.m_l) << self.shift_l) + inner, self.sum_shape)
        # 3..: f32(total * 2^grid), rint, clamp; M = 2^grid is mantissa 2^23
        par = data.StructLayout({"mant": MANT, "eoff": signed(16)}).const(
            {"mant": 1 << (MANT - 1), "eoff": self.grid - (MANT - 1) - 1})
        y = ort_datapath(p, total, par, 0, self.lo, self.hi, cvt_overflow_low=True)
        p.output(self.i.valid, self.latency, self.o, {"y": y})
        return m


class EltwiseAddDyadic(wiring.Component):
    """``y = add_dyadic(a, b)`` with the IR ``Add`` node's ``dyadic`` attributes.

    Streams: ``i`` carries ``{a, b}`` (codes), ``o`` carries ``{y}``."""

    latency = 2 * DYADIC_SCALE_STAGES + 2

    def __init__(self, a_shape, b_shape, attrs: dict):
        if attrs.get("mode", "dyadic") != "dyadic":
            raise ValueError("EltwiseAddDyadic implements the dyadic Add")
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.attrs = dict(attrs)
        self.out_shape = code_shape(attrs["lo"], attrs["hi"])
        super().__init__(add_signature(self.a_shape, self.b_shape, self.out_shape))

    def elaborate(self, platform):
        m = Module()
        a = self.attrs
        p = stall_together(m, self.i, self.o, "add")

        def par(mult):
            (entry,) = dyadic_rom_entries([mult[0]], [mult[1]])
            return DYADIC_ROM.const(entry)

        left = int(a["left_shift"])
        xa = (Value.cast(self.i.payload.a) - int(a["za"])) << left
        xb = (Value.cast(self.i.payload.b) - int(a["zb"])) << left
        sa, na = dyadic_scale(p, xa, par(a["ma"]))
        sb, nb = dyadic_scale(p, xb, par(a["mb"]))
        # the int32 clip of requant_dyadic's output range is a no-op here: |sa| <= |xa| / 2
        total, nc = dyadic_scale(p, sa + sb, par(a["mc"]))
        y = offset_clamp(p, total, int(a["zc"]), int(a["lo"]), int(a["hi"]))
        assert na == nb and na + nc + 2 == self.latency
        p.output(self.i.valid, self.latency, self.o, {"y": y})
        return m


def eltwise_add_from_ir(g, node) -> EltwiseAddOrt | EltwiseAddDyadic:
    """The unit for an IR ``Add`` node (either mode; both inputs' types from the IR)."""
    shapes = []
    for name in node.inputs[:2]:
        dt = g.tensors[name].dtype
        shapes.append(Shape(dt.bits, dt.signed))
    cls = EltwiseAddOrt if node.attrs["mode"] == "ort" else EltwiseAddDyadic
    return cls(shapes[0], shapes[1], node.attrs)
