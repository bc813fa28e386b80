"""Multipliers and the multiply-accumulate unit: exact products of 2-16-bit operands.

``MultiplierArray`` computes ``n`` independent products ``a[k] * b[k]`` with two pipeline
stages (operand registers, product registers) on a clock enable, in one of three forms:

- ``target="generic"``: behavioural ``a * b`` (yosys maps it onto DSP blocks itself; the only form
  amaranth's simulator can run);
- ``target="ice40"``: ``SB_MAC16`` instances. Operands of at most 8 bits use its dual 8x8 mode,
  two products per DSP (top: ``A[15:8] * B[15:8]`` into ``O[31:16]``, bottom: ``A[7:0] * B[7:0]``
  into ``O[15:0]``), wider ones the 16x16 mode. Input registers ``A_REG``/``B_REG`` and the
  8x8 product registers (or ``PIPELINE_16x16_MULT_REG2``) are the two stages;
- ``target="ecp5"``: one ``MULT18X18D`` per product with its input and output registers
  (``REG_INPUTA/B_CLK``, ``REG_OUTPUT_CLK``), which yosys does not infer on its own.

All three give the same products with the same latency (2); signedness is per operand.
``Mac`` is the stream-level unit: ``acc = sum(a * b)`` over a vector framed by ``first``/``last``.
The accumulator wraps modulo ``2^acc_bits``: a sum whose proven bound fits is exact even when
partial sums do not (two's complement addition is exact modulo ``2^acc_bits``).
"""

from __future__ import annotations

from amaranth import (
    Cat,
    ClockSignal,
    Const,
    Instance,
    Module,
    Mux,
    Shape,
    Signal,
    Value,
    signed,
    unsigned,
)
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import stall_together

__all__ = ["MultiplierArray", "Mac", "product_shape", "TARGETS"]

TARGETS = ("generic", "ice40", "ecp5")


def product_shape(a_shape, b_shape) -> Shape:
    """Exact shape of ``a * b``: ``a + b`` bits, signed when either operand is."""
    a, b = Shape.cast(a_shape), Shape.cast(b_shape)
    width = a.width + b.width
    return signed(width) if (a.signed or b.signed) else unsigned(width)


def _extend(v, shape: Shape, width: int):
    """``v`` (of ``shape``) sign- or zero-extended to ``width`` bits."""
    v = Value.cast(v)
    if shape.width == width:
        return v
    fill = v[-1] if shape.signed else Const(0, 1)
    return Cat(v, fill.replicate(width - shape.width))


class MultiplierArray(wiring.Component):
    """``p[k] = a[k] * b[k]`` for ``k < n``, two stages later, advancing when ``en`` is high."""

    latency = 2

    def __init__(self, n: int, a_shape, b_shape, target: str = "generic"):
        if target not in TARGETS:
            raise ValueError(f"unknown multiplier target {target!r} (one of {TARGETS})")
        self.n = n
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        for s in (self.a_shape, self.b_shape):
            if not 1 <= s.width <= 16:
                raise ValueError(f"multiplier operands are 1-16 bits, not {s}")
        self.p_shape = product_shape(a_shape, b_shape)
        self.target = target
        super().__init__({
            "a": In(data.ArrayLayout(self.a_shape, n)),
            "b": In(data.ArrayLayout(self.b_shape, n)),
            "en": In(1),
            "p": Out(data.ArrayLayout(self.p_shape, n)),
        })

    @property
    def dsp_count(self) -> int:
        """DSP blocks used by the ``ice40``/``ecp5`` forms (``generic``: left to yosys)."""
        if self.target == "ice40" and self._dual_8x8:
            return (self.n + 1) // 2
        return self.n

    @property
    def _dual_8x8(self) -> bool:
        return self.a_shape.width <= 8 and self.b_shape.width <= 8

    def elaborate(self, platform):
        m = Module()
        if self.target == "generic":
            for k in range(self.n):
                a = Signal(self.a_shape, name=f"a{k}")
                b = Signal(self.b_shape, name=f"b{k}")
                with m.If(self.en):
                    m.d.sync += [a.eq(self.a[k]), b.eq(self.b[k]), self.p[k].eq(a * b)]
        elif self.target == "ice40":
            self._ice40(m)
        else:
            self._ecp5(m)
        return m

    # ---- iCE40 SB_MAC16 -----------------------------------------------------------------
    def _sb_mac16(self, m, name, a16, b16, dual: bool):
        o = Signal(32, name=f"{name}_o")
        zero = Const(0, 1)
        m.submodules[name] = Instance(
            "SB_MAC16",
            p_NEG_TRIGGER=Const(0, 1), p_C_REG=Const(0, 1), p_A_REG=Const(1, 1),
            p_B_REG=Const(1, 1), p_D_REG=Const(0, 1),
            p_TOP_8x8_MULT_REG=Const(int(dual), 1), p_BOT_8x8_MULT_REG=Const(int(dual), 1),
            p_PIPELINE_16x16_MULT_REG1=Const(0, 1),
            p_PIPELINE_16x16_MULT_REG2=Const(int(not dual), 1),
            # output select: 2 = 8x8 product (F top, G bottom), 3 = 16x16 product (H)
            p_TOPOUTPUT_SELECT=Const(2 if dual else 3, 2),
            p_TOPADDSUB_LOWERINPUT=Const(0, 2), p_TOPADDSUB_UPPERINPUT=Const(0, 1),
            p_TOPADDSUB_CARRYSELECT=Const(0, 2),
            p_BOTOUTPUT_SELECT=Const(2 if dual else 3, 2),
            p_BOTADDSUB_LOWERINPUT=Const(0, 2), p_BOTADDSUB_UPPERINPUT=Const(0, 1),
            p_BOTADDSUB_CARRYSELECT=Const(0, 2),
            p_MODE_8x8=Const(int(dual), 1),
            p_A_SIGNED=Const(int(self.a_shape.signed), 1),
            p_B_SIGNED=Const(int(self.b_shape.signed), 1),
            i_CLK=ClockSignal(), i_CE=self.en,
            i_A=a16, i_B=b16, i_C=Const(0, 16), i_D=Const(0, 16),
            i_AHOLD=zero, i_BHOLD=zero, i_CHOLD=zero, i_DHOLD=zero,
            i_IRSTTOP=zero, i_IRSTBOT=zero, i_ORSTTOP=zero, i_ORSTBOT=zero,
            i_OLOADTOP=zero, i_OLOADBOT=zero, i_ADDSUBTOP=zero, i_ADDSUBBOT=zero,
            i_OHOLDTOP=zero, i_OHOLDBOT=zero, i_CI=zero, i_ACCUMCI=zero, i_SIGNEXTIN=zero,
            o_O=o,
        )
        return o

    def _ice40(self, m):
        if self._dual_8x8:
            # lane 2j in the bottom half, lane 2j+1 in the top half; 8-bit products are
            # exact in 16 bits (|s8 * s8| <= 2^14, u8 * s8 in [-32640, 32385], u8 * u8 < 2^16)
            for j in range((self.n + 1) // 2):
                lanes = [2 * j, 2 * j + 1] if 2 * j + 1 < self.n else [2 * j]
                a16 = Cat(*(_extend(self.a[k], self.a_shape, 8) for k in lanes))
                b16 = Cat(*(_extend(self.b[k], self.b_shape, 8) for k in lanes))
                o = self._sb_mac16(m, f"mac16_{j}", a16, b16, dual=True)
                for h, k in enumerate(lanes):
                    m.d.comb += self.p[k].eq(o[16 * h:16 * h + 16].as_signed()
                                             if self.p_shape.signed else o[16 * h:16 * h + 16])
        else:
            for k in range(self.n):
                o = self._sb_mac16(m, f"mac16_{k}", _extend(self.a[k], self.a_shape, 16),
                                   _extend(self.b[k], self.b_shape, 16), dual=False)
                m.d.comb += self.p[k].eq(o)

    # ---- ECP5 MULT18X18D ----------------------------------------------------------------
    def _ecp5(self, m):
        for k in range(self.n):
            a18 = _extend(self.a[k], self.a_shape, 18)
            b18 = _extend(self.b[k], self.b_shape, 18)
            p36 = Signal(36, name=f"p36_{k}")
            # unused inputs (C, cascade, CLK1-3, CE1-3, RST) are left unconnected, as yosys'
            # own mapping does: nextpnr-ecp5 cannot always route constants to them
            ports = {}
            for i in range(18):
                ports[f"i_A{i}"] = a18[i]
                ports[f"i_B{i}"] = b18[i]
            for i in range(36):
                ports[f"o_P{i}"] = p36[i]
            ports["i_CLK0"] = ClockSignal()
            ports["i_CE0"] = self.en
            regs = {}
            for reg in ("INPUTA", "INPUTB", "OUTPUT"):
                regs.update({f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": "CE0",
                             f"p_REG_{reg}_RST": "RST0"})
            m.submodules[f"mult18_{k}"] = Instance(
                "MULT18X18D",
                p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
                p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT",
                p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE", p_HIGHSPEED_CLK="NONE",
                p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED",
                p_CLK3_DIV="ENABLED",
                i_SIGNEDA=Const(int(self.a_shape.signed), 1),
                i_SIGNEDB=Const(int(self.b_shape.signed), 1),
                **regs, **ports,
            )
            m.d.comb += self.p[k].eq(p36)


class Mac(wiring.Component):
    """Multiply-accumulate over vectors: ``acc = sum(a[t] * b[t])`` for the beats from the one
    with ``first`` set to the one with ``last`` set (both on a one-beat vector).

    Streams: ``i`` carries ``{a, b, first, last}``; ``o`` carries ``{acc}``, one beat per
    vector. ``latency`` is from the ``last`` beat accepted to the sum valid.
    """

    latency = 3

    def __init__(self, a_shape, b_shape, acc_shape, target: str = "generic"):
        self.a_shape, self.b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        self.acc_shape = Shape.cast(acc_shape)
        self.target = target
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "a": self.a_shape, "b": self.b_shape, "first": 1, "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"acc": self.acc_shape}))),
        })

    def elaborate(self, platform):
        m = Module()
        p = stall_together(m, self.i, self.o, "mac")
        m.submodules.mul = mul = MultiplierArray(1, self.a_shape, self.b_shape, self.target)
        m.d.comb += [mul.en.eq(p.en), mul.a[0].eq(self.i.payload.a),
                     mul.b[0].eq(self.i.payload.b)]
        valid = p.delay(self.i.valid, mul.latency)
        first = p.delay(self.i.payload.first, mul.latency)
        last = p.delay(self.i.payload.last, mul.latency)
        acc = Signal(self.acc_shape)
        total = Mux(first, 0, acc) + mul.p[0]
        with m.If(p.en & valid):
            m.d.sync += acc.eq(total)
        with m.If(p.en):
            m.d.sync += [self.o.valid.eq(valid & last), self.o.payload.acc.eq(total)]
        return m
