"""Add and Mul: elementwise on two streams of equal length and order, or on one stream and a
constant operand stored in stream order (``params["constants"][i]``, read from a ROM by
position).

The ort Add and Mul end in the same float32 step, ``y = clip(cvt(v))`` with ``v`` a float32
result (rounded once, half-even, to 24 significant bits) and ``cvt`` x86's round-half-even
with INT32_MIN for ``|rint(v)| >= 2^31``. The hardware never forms ``v``: it forms the *exact*
value ``S * 2^E`` before that rounding (or a stand-in proven to round the same way) as one
wide integer ``S``, then rounds to 24 bits and to an integer (``round24_rint``).

Why a stand-in works (used below): ``f(v) = rint(round24(v))`` is 0 on [-1/2, 1/2] (1/2 is a
float32, ``rint`` ties to even) and elsewhere changes value only at float32s or midpoints of
neighbouring float32s in binades at or above 2^-1, all multiples of 2^-25. So ``f`` is constant
on every open interval between consecutive multiples of ``2^Q`` for any ``Q <= -25``: replacing
a term's bits below ``2^Q`` by one half-step sticky bit (``2^(Q-1)`` when anything was cut)
keeps the sum inside the same open interval, provided every other term is a multiple of 2^Q.

Add, ``ort`` (``compiler/ops/add.py::add_ort``; b_inner shown, a_inner swaps the roles):
``v = fma(a, Ra, inner[b])`` with ``inner[b] = fma(b, Rb, fix)`` a float32 that depends on the
code ``b`` alone: a table made at build time with ``compiler/f32.py`` and stored as exact
fixed-point integers (or floor + sticky on the 2^Q grid when its exponents reach far below
Ra's); then ``S = a * (mRa << (eRa - E)) + T[b]``, one multiply-add, exactly.

Add, ``dyadic`` (``add_dyadic``): TFLite's ``(a - za) << 20`` and ``(b - zb) << 20`` through
two ``MultiplyByQuantizedMultiplier`` (``hw.requant.dyadic_scale``), summed, through a third,
plus the zero point, clamped.

Mul (QLinearMul, ``model.run_engine``): ``p = (a - za)(b - zb)`` exactly, ``t = f32(f32(p) * R)``
(round ``|p|`` to 24 bits, multiply by R's mantissa, round to 24 bits: the results kept at
their own scale, so ``t`` is a multiple of 2^eR), then ``v = f32(t + zc)``: ``S = ±t + zc``
exactly at scale ``2^min(eR, 0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler import f32
from ...compiler.dataflow.spec import Engine, Stream
from ...compiler.dtypes import IntType
from ..pipeline import Pipeline
from ..requant import DYADIC_ROM, count_leading_zeros, dyadic_rom_entries, dyadic_scale
from .common import payload_shape

MANT = 24  # float32 significand bits
GRID = -25  # f = rint(round24(.)) is constant between multiples of 2^GRID (module docstring)


# ---- build-time arithmetic (exact Python integers) -------------------------------------------
def rne_shift(x: int, s: int) -> int:
    """``x / 2^s`` rounded half-even (``x >= 0``, ``s >= 0``)."""
    if s <= 0:
        return x << -s
    q, r = x >> s, x & ((1 << s) - 1)
    half = 1 << (s - 1)
    return q + (r > half or (r == half and q & 1))


def round24_rint(s: int, e: int, lo: int, hi: int) -> int:
    """``clip(cvt(round24(s * 2^e)), lo, hi)``: the rounding ``round24_rint`` does in RTL."""
    mag = abs(s)
    sh = max(mag.bit_length() - MANT, 0)
    m24, ev = rne_shift(mag, sh), e + sh  # value m24 * 2^ev, 24 significant bits
    if m24 << max(ev, 0) >= (1 << 31) << max(-ev, 0):
        return lo  # cvt gives INT32_MIN
    r = rne_shift(m24, -ev) if ev < 0 else m24 << ev
    return min(max(-r if s < 0 else r, lo), hi)


def _f32_int(p) -> tuple[int, int]:
    return int(p[0]), int(p[1])


@dataclass
class AddOrtPlan:
    """``S = outer_code * coef + table[inner_code - inner_min]`` at scale ``2^e``."""

    outer: int  # operand index (0 = a, 1 = b) multiplied by coef
    coef: int
    e: int
    inner_min: int
    table: list[int]


def add_ort_plan(attrs: dict, in_dtypes: list[IntType]) -> AddOrtPlan:
    """The fixed-point form of ``add_ort`` for these attributes (module docstring)."""
    b_inner = attrs["order"] == "b_inner"
    outer, inner = (0, 1) if b_inner else (1, 0)
    r_out = _f32_int(attrs["ra"] if b_inner else attrs["rb"])
    r_in = f32.F32(*(np.int64(v) for v in (attrs["rb"] if b_inner else attrs["ra"])))
    fix = f32.F32(*(np.int64(v) for v in attrs["fix"]))
    dt = in_dtypes[inner]
    if dt.bits > 12:
        raise ValueError(f"Add: the {2 ** dt.bits}-entry table of a {dt.bits}-bit operand "
                         "is too large (at most 12 bits)")
    codes = np.arange(dt.min, dt.max + 1, dtype=np.int64)
    t = f32.fma(f32.from_int(codes), r_in, fix)
    tm, te = [int(v) for v in t.m], [int(v) for v in t.e]
    m_out, e_out = r_out
    if m_out == 0:
        e_out = 0
    q = min(GRID, e_out)
    exact_e = min([e_out] + [e for m, e in zip(tm, te) if m])
    if exact_e >= q - 1:  # every term a multiple of 2^exact_e: keep them exactly
        e = exact_e
        table = [m << (x - e) for m, x in zip(tm, te)]
    else:  # floor on the 2^q grid, plus a half-step sticky bit where bits were cut
        e = q - 1
        table = []
        for m, x in zip(tm, te):
            if x >= q:
                table.append(m << (x - e))
            else:
                fl = m >> (q - x)
                table.append(2 * fl + (m != fl << (q - x)))
    return AddOrtPlan(outer, m_out << (e_out - e), e, dt.min, table)


def add_ort_fixed(a, b, attrs: dict, in_dtypes: list[IntType]) -> np.ndarray:
    """``add_ort`` computed the way the RTL computes it (a test of the derivation)."""
    plan = add_ort_plan(attrs, in_dtypes)
    a, b = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    x, y = (a, b) if plan.outer == 0 else (b, a)
    out = [round24_rint(int(u) * plan.coef + plan.table[int(w) - plan.inner_min], plan.e,
                        attrs["lo"], attrs["hi"]) for u, w in zip(x.ravel(), y.ravel())]
    return np.asarray(out, np.int64).reshape(a.shape)


def _round_keep(mag: int) -> int:
    """``mag`` rounded half-even to 24 significant bits, at its own scale."""
    sh = max(mag.bit_length() - MANT, 0)
    return rne_shift(mag, sh) << sh


def mul_fixed(a, b, attrs: dict) -> np.ndarray:
    """QLinearMul computed the way the RTL computes it (a test of the derivation)."""
    m_r, e_r = _f32_int(attrs["r"])
    e = min(e_r, 0)
    out = []
    for u, w in zip(*(np.ravel(v) for v in np.broadcast_arrays(a, b))):
        p = (int(u) - attrs["za"]) * (int(w) - attrs["zb"])
        t = _round_keep(_round_keep(abs(p)) * m_r)
        s = (-t if p < 0 else t) << (e_r - e)
        out.append(round24_rint(s + (attrs["zc"] << -e), e, attrs["lo"], attrs["hi"]))
    return np.asarray(out, np.int64).reshape(np.broadcast(a, b).shape)


# ---- RTL building blocks on a stall-together pipeline -----------------------------------------
def _signed(v: Value) -> Value:
    v = Value.cast(v)
    return v if v.shape().signed else Cat(v, Const(0, 1)).as_signed()


def _range_shape(lo: int, hi: int) -> Shape:
    return Shape.cast(range(min(lo, 0), max(hi, 0) + 1))


def round_keep(p: Pipeline, mag: Value) -> tuple[Value, int]:
    """``mag`` (unsigned) rounded half-even to 24 significant bits at its own scale: 3 stages.
    Narrow values pass unchanged, with no stage."""
    mag = Value.cast(mag)
    width = len(mag)
    if width <= MANT:
        return mag, 0
    lz = p.reg(count_leading_zeros(mag))
    mag = p.reg(mag)
    # drop = bits(mag) - 24 when positive: the rounding position
    d = _signed(Const(width - MANT, unsigned((width - MANT).bit_length()))) - _signed(lz)
    sh = Mux(d < 0, 0, d)[:max(1, (width - MANT).bit_length())]
    q = mag >> sh
    rem = mag & ((Const(1, 1) << sh) - 1)[:width]
    half = ((Const(1, 1) << sh) >> 1)[:width]
    up = (rem > half) | ((rem == half) & (sh != 0) & q[0])
    q = p.reg(q + up, unsigned(MANT + 1))
    sh = p.reg(sh)
    return p.reg((q << sh)[:width + 1], unsigned(width + 1)), 3


def round24_rint_rtl(p: Pipeline, s: Value, e: int, lo: int, hi: int) -> tuple[Value, int]:
    """``clip(cvt(round24(s * 2^e)), lo, hi)`` for a signed (or unsigned) value ``s``:
    7 stages, the result combinational at the last one.

    1 sign, |s|  2 leading zeros  3 normalise  4 round to 24 bits (value m24 * 2^ev)
    5 shift amount, overflow (|v| >= 2^31 <=> ev >= 8, as m24 >= 2^23)
    6 m24 * 2^(ev + 25): integer part, guard, sticky  7 round half-even; sign and clamp."""
    s = Value.cast(s)
    width = len(s)
    # 1
    if s.shape().signed:
        sign = p.reg(s < 0)
        mag = p.reg(Mux(s < 0, -s, s)[:width], unsigned(width))
    else:
        sign, mag = Const(0, 1), p.reg(s)
    pad = max(0, MANT + 2 - width)
    if pad:
        mag, e, width = Cat(Const(0, pad), mag), e - pad, width + pad
    # 2
    lz = p.reg(count_leading_zeros(mag))
    mag, sign = p.reg(mag), p.reg(sign)
    # 3
    norm = p.reg((mag << lz)[:width], unsigned(width))
    lz, sign = p.reg(lz), p.reg(sign)
    # 4
    top = norm[width - MANT:]
    guard = norm[width - MANT - 1]
    sticky = norm[:width - MANT - 1].any()
    rounded = top + (guard & (sticky | top[0]))
    carry = rounded[MANT]
    ev_lo, ev_hi = width - MANT + e - (width - 1), width - MANT + e + 1
    ev_shape = _range_shape(ev_lo - 1, ev_hi + 1)
    ev = p.reg(Const(width - MANT + e, ev_shape) - _signed(lz) + _signed(carry), ev_shape)
    m24 = p.reg(Mux(carry, 1 << (MANT - 1), rounded[:MANT]), unsigned(MANT))
    nz = p.reg(norm[width - 1])
    sign = p.reg(sign)
    # 5
    ovf = p.reg(nz & (ev >= 8))
    sh = p.reg(Mux(ev < -(MANT + 1), 0, Mux(ev > 7, 32, ev + MANT + 1))[:6], unsigned(6))
    m24, sign = p.reg(m24), p.reg(sign)
    # 6
    shifted = (m24 << sh)[:MANT + 32]
    q = p.reg(shifted[MANT + 1:])
    guard = p.reg(shifted[MANT])
    sticky = p.reg(shifted[:MANT].any())
    ovf, sign = p.reg(ovf), p.reg(sign)
    # 7
    r = p.reg(q + (guard & (sticky | q[0])), unsigned(32))
    ovf, sign = p.reg(ovf), p.reg(sign)
    rs = Mux(sign, -_signed(r), _signed(r))
    return Mux(ovf, lo, Mux(rs < lo, lo, Mux(rs > hi, hi, rs))), 7


def _dyadic_par(pair):
    return DYADIC_ROM.const(dyadic_rom_entries([pair[0]], [pair[1]])[0])


# ---- the engine ---------------------------------------------------------------------------
class Binary(wiring.Component):
    """Add or Mul of two operands, each a stream or a constant ROM (one per position)."""

    def __init__(self, kind: str, attrs: dict, in_dtypes: list[IntType], out_dtype: IntType,
                 constants: dict, length: int):
        if kind not in ("Add", "Mul"):
            raise ValueError(f"binary engine for {kind}?")
        self.kind, self.attrs = kind, dict(attrs)
        self.in_dtypes, self.out_dtype = list(in_dtypes), out_dtype
        self.constants = {int(k): [int(v) for v in np.ravel(c)] for k, c in constants.items()}
        self.length = int(length)
        for k, c in self.constants.items():
            if len(c) != self.length:
                raise ValueError(f"{kind}: constant operand {k} has {len(c)} values for a "
                                 f"stream of {self.length}")
        self.streamed = [i for i in range(2) if i not in self.constants]
        if not self.streamed:
            raise ValueError(f"{kind} of two constants")
        if kind == "Add" and self.attrs["mode"] == "ort":
            try:
                self.plan = add_ort_plan(self.attrs, self.in_dtypes)
            except ValueError:
                self._MustUse__silence = True  # never elaborated: not a forgotten component
                raise
        sig = {f"i{j}": In(stream.Signature(payload_shape(self.in_dtypes[i])))
               for j, i in enumerate(self.streamed)}
        sig["o0"] = Out(stream.Signature(payload_shape(out_dtype)))
        super().__init__(sig)

    def elaborate(self, platform):
        m = Module()
        o = self.o0
        en = Signal()
        m.d.comb += en.eq(~o.valid | o.ready)
        p = Pipeline(m, en, self.kind.lower())
        ins = [getattr(self, f"i{j}") for j in range(len(self.streamed))]
        valid = Signal()
        m.d.comb += valid.eq(Cat(*(s.valid for s in ins)).all())
        for j, s in enumerate(ins):  # a beat moves when every stream operand has one
            others = [t.valid for k, t in enumerate(ins) if k != j]
            m.d.comb += s.ready.eq(en & (Cat(*others).all() if others else 1))
        # stage 1: both operand codes
        ops: list[Value] = [None, None]
        if self.constants:
            pos = Signal(range(self.length))
            with m.If(en & valid):
                m.d.sync += pos.eq(Mux(pos == self.length - 1, 0, pos + 1))
        for i in range(2):
            shape = payload_shape(self.in_dtypes[i])
            if i in self.constants:
                ops[i] = p.rom(shape, self.constants[i], pos, name=f"const{i}")
            else:
                ops[i] = p.reg(ins[self.streamed.index(i)].payload, shape, name=f"x{i}")
        if self.kind == "Mul":
            y, stages = self._mul(p, *ops)
        elif self.attrs["mode"] == "ort":
            y, stages = self._add_ort(p, *ops)
        else:
            y, stages = self._add_dyadic(p, *ops)
        self.latency = 1 + stages + 1
        p.output(valid, self.latency, o, y)
        return m

    def _add_ort(self, p: Pipeline, a: Value, b: Value) -> tuple[Value, int]:
        plan = self.plan
        x, w = (a, b) if plan.outer == 0 else (b, a)
        idx_bits = max(1, (len(plan.table) - 1).bit_length())
        tshape = _range_shape(min(plan.table), max(plan.table))
        t = p.rom(tshape, plan.table, (w - plan.inner_min)[:idx_bits], name="inner")  # 2
        x = p.reg(x)
        s = p.reg(x * plan.coef + t)  # 3
        y, n = round24_rint_rtl(p, s, plan.e, self.attrs["lo"], self.attrs["hi"])
        return y, 2 + n

    def _add_dyadic(self, p: Pipeline, a: Value, b: Value) -> tuple[Value, int]:
        at = self.attrs
        left = at["left_shift"]
        sa, n = dyadic_scale(p, (a - at["za"]) << left, _dyadic_par(at["ma"]))
        sb, _ = dyadic_scale(p, (b - at["zb"]) << left, _dyadic_par(at["mb"]))
        s = p.reg(sa + sb)
        y, n2 = dyadic_scale(p, s, _dyadic_par(at["mc"]))
        v = y + at["zc"]
        lo, hi = at["lo"], at["hi"]
        return Mux(v < lo, lo, Mux(v > hi, hi, v)), n + 1 + n2

    def _mul(self, p: Pipeline, a: Value, b: Value) -> tuple[Value, int]:
        at = self.attrs
        m_r, e_r = _f32_int(at["r"])
        e = min(e_r, 0)
        prod = p.reg((a - at["za"]) * (b - at["zb"]))  # 2
        width = len(prod)
        sign = p.reg(prod < 0)  # 3
        mag = p.reg(Mux(prod < 0, -prod, prod)[:width], unsigned(width))
        mag, n1 = round_keep(p, mag)
        sign = p.delay(sign, n1)
        t = p.reg(mag * m_r)
        sign = p.reg(sign)
        t, n2 = round_keep(p, t)
        sign = p.delay(sign, n2)
        t = _signed(t)
        s = p.reg(Mux(sign, -t, t) * (1 << (e_r - e)) + (at["zc"] << -e))
        y, n3 = round24_rint_rtl(p, s, e, at["lo"], at["hi"])
        return y, 1 + 1 + n1 + 1 + n2 + 1 + n3


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    p = engine.params
    if p.get("style") == "serial":  # fold.choose_requant_styles: the sequential ort Add
        from ..eltwise_add_serial import build_serial_add
        unit = build_serial_add(engine)
        if unit is not None:
            return unit
    return Binary(engine.kind, p["attrs"], p["in_dtypes"], p["out_dtype"], p["constants"],
                  streams[engine.outputs[0]].length)
