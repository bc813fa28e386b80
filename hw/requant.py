"""Requantisation units: accumulator -> output code, bit-exact to ``compiler/requant.py``.

``RequantOrt`` computes ``requant_ort`` (onnxruntime's ``y = sat(rint(f32(f32(acc) * M)) + zy)``,
ORT_KERNELS.md §3) in integers, one short step per stage (``ORT_STAGES``):

    1  |acc| and its sign                       8  the product's top 24 bits, guard, sticky
    2  leading-zero count                       9  round them half-even: v = vm * 2^ve
    3  normalise (shift the leading one up)     10 binary point: shift amount, saturation
    4  round to 24 significant bits (half-even) 11 shift vm to the binary point
    5  24 x 24 multiply: four 12 x 12 products  12 integer part vs the saturation cap,
    6  ... cross products summed                   guard and sticky bits
    7  ... the product                          13 round half-even, saturate the magnitude
                                                14 sign, + zero point, clamp to [lo, hi]

``RequantDyadic`` computes ``requant_dyadic`` (TFLite ``MultiplyByQuantizedMultiplier``:
saturating left shift, ``SaturatingRoundingDoublingHighMul``, ``RoundingDivideByPOT``), zero point
and clamp, in ``DYADIC_SCALE_STAGES + 2`` stages.

Both take per-tensor multipliers as constants and per-channel ones from a ROM indexed by the
payload's ``channel`` field; the zero point and clamp bounds are per tensor (as in the IR). The
latency (input accepted to output valid, in cycles) is the unit's ``latency`` attribute; one beat
is accepted per cycle.
"""

from __future__ import annotations

import numpy as np
from amaranth import Cat, Const, Module, Mux, Shape, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..compiler import requant as rq
from .pipeline import Pipeline, stall_together

__all__ = ["RequantOrt", "RequantDyadic", "requant_from_ir", "ort_datapath", "dyadic_scale",
           "split_product", "offset_clamp", "requant_signature", "count_leading_zeros", "clamp",
           "code_shape",
           "ORT_STAGES", "DYADIC_SCALE_STAGES", "DYADIC_ROM", "dyadic_rom_entries"]

MANT = 24  # float32 significand bits, hidden bit included
ORT_STAGES = 14  # RequantOrt's pipeline depth (its latency)
DYADIC_SCALE_STAGES = 8  # dyadic_scale's registers; RequantDyadic adds two


def code_shape(lo: int, hi: int) -> Shape:
    """The narrowest shape holding ``[lo, hi]``."""
    return Shape.cast(range(int(lo), int(hi) + 1))


def _channel_layout(acc_shape: Shape, channels: int) -> data.StructLayout:
    fields = {"acc": acc_shape}
    if channels > 1:
        fields["channel"] = unsigned(max(1, (channels - 1).bit_length()))
    return data.StructLayout(fields)


def requant_signature(acc_shape: Shape, channels: int, out_shape: Shape) -> dict:
    """The ports every requant unit has: ``i`` carries ``{acc[, channel]}``, ``o`` ``{y}``."""
    return {"i": In(stream.Signature(_channel_layout(acc_shape, channels))),
            "o": Out(stream.Signature(data.StructLayout({"y": out_shape})))}


def count_leading_zeros(x: Value) -> Value:
    """Leading zeros of ``x`` (meaningless for ``x == 0``): a tree of half-width encoders.

    ``x`` is padded at the bottom to a power of two, which does not change the count of a
    nonzero value. Each node returns (all zero, count); a node's count is the upper half's when
    that half has a one, else the half's width plus the lower half's count."""
    width = len(x)
    n = 1 << max(0, (width - 1).bit_length())
    x = Cat(Const(0, n - width), x) if n > width else x

    def node(v: Value):
        if len(v) == 1:
            return ~v[0], Const(0, 0)
        h = len(v) // 2
        zl, cl = node(v[:h])
        zh, ch = node(v[h:])
        return zl & zh, Mux(zh, Cat(cl, Const(1, 1)), Cat(ch, Const(0, 1)))

    return node(x)[1]


def _as_signed(v: Value) -> Value:
    """``v`` as a signed value of the same numeric value (one more bit when unsigned)."""
    v = Value.cast(v)
    return v if v.shape().signed else Cat(v, Const(0, 1)).as_signed()


def clamp(v: Value, lo: int, hi: int) -> Value:
    """``min(max(v, lo), hi)``."""
    return Mux(v < lo, lo, Mux(v > hi, hi, v))


def split_product(p: Pipeline, a: Value, b: Value) -> Value:
    """``a * b`` in three stages, one adder deep each: four half-width products (each one DSP
    block, or a small LUT multiplier); then the two cross products summed while the outer two
    are placed side by side (``al * bl < 2^(ka+kb)``: no overlap, no adder); then the final sum.
    Signed operands keep the sign in the upper half: ``a = ah * 2^ka + al``, ``al`` unsigned."""
    a, b = Value.cast(a), Value.cast(b)
    ka, kb = max(1, len(a) // 2), max(1, len(b) // 2)
    ah = a[ka:].as_signed() if a.shape().signed else a[ka:]
    bh = b[kb:].as_signed() if b.shape().signed else b[kb:]
    al, bl = a[:ka], b[:kb]
    signed = a.shape().signed or b.shape().signed
    shape = Shape(len(a) + len(b), signed)
    if not len(ah) or not len(bh):  # a one-bit operand: nothing to split
        return p.delay(p.reg(a * b), 2)
    # 1: products
    ll, lh, hl, hh = p.reg(al * bl), p.reg(al * bh), p.reg(ah * bl), p.reg(ah * bh)
    # 2: cross products summed; outer products side by side
    cross = p.reg((lh << kb) + (hl << ka))
    outer = p.reg(Cat(ll[:ka + kb], hh).as_signed() if signed else Cat(ll[:ka + kb], hh))
    # 3: the product
    return p.reg(outer + cross, shape)


def _round_half_even(top: Value, guard: Value, sticky: Value) -> Value:
    """``top`` plus one where the dropped part exceeds half, or is half and ``top`` is odd."""
    return top + (guard & (sticky | top[0]))


# ---- ort ------------------------------------------------------------------------------------
def ort_rom_entries(mant, exp) -> tuple[list[int], list[int]]:
    """(mantissa, exponent offset) per channel, mantissas normalised to [2^23, 2^24).

    A subnormal M (mantissa below 2^23) is shifted up with the exponent lowered by as much: the
    same value, so ``requant_ort`` (which rounds values, not representations) is unchanged.
    The offset is ``exp - 1``: stage 6 gives ``v = vm * 2^(ea24 + top + carry + exp - 1)`` where
    ``ea24 = bits(|acc|)`` (+1 on a rounding carry) and ``top`` is the product's top bit."""
    ms, es = [], []
    for m, e in zip(np.ravel(mant), np.ravel(exp), strict=True):
        m, e = int(m), int(e)
        if not 0 < m < (1 << MANT):
            raise ValueError(f"requant mantissa {m} out of range (M must be > 0)")
        while m < (1 << (MANT - 1)):
            m, e = m << 1, e - 1
        ms.append(m)
        es.append(e - 1)
    return ms, es


class RequantOrt(wiring.Component):
    """``y = clip(rint(f32(f32(acc) * M[channel])) + zero_point, lo, hi)``, M = mant * 2^exp.

    Parameters
    ----------
    acc_shape : amaranth shape of the accumulator (the IR's proven width, signed or unsigned).
    mant, exp : the multiplier(s) as split by ``compiler.requant.ort_multiplier``: one value per
        tensor, or one per channel (then the input payload has a ``channel`` field).
    zero_point, lo, hi : output zero point and clamp bounds (a fused ReLU raises ``lo``).

    Streams: ``i`` carries ``{acc[, channel]}``, ``o`` carries ``{y}``.
    """

    latency = ORT_STAGES

    def __init__(self, acc_shape, mant, exp, zero_point: int, lo: int, hi: int):
        self.acc_shape = Shape.cast(acc_shape)
        self.mant, self.eoff = ort_rom_entries(mant, exp)
        self.channels = len(self.mant)
        self.zero_point, self.lo, self.hi = int(zero_point), int(lo), int(hi)
        self.out_shape = code_shape(lo, hi)
        super().__init__(requant_signature(self.acc_shape, self.channels, self.out_shape))

    def elaborate(self, platform):
        m = Module()
        p = stall_together(m, self.i, self.o, "ort")
        rom_shape = data.StructLayout({
            "mant": unsigned(MANT),
            "eoff": signed(max(2, max(abs(e) for e in self.eoff).bit_length() + 1)),
        })
        entries = [{"mant": a, "eoff": b} for a, b in zip(self.mant, self.eoff, strict=True)]
        chan = self.i.payload.channel if self.channels > 1 else Const(0, 1)
        par = p.rom(rom_shape, entries, chan)  # read with stage 1
        y = ort_datapath(p, self.i.payload.acc, par, self.zero_point, self.lo, self.hi)
        p.output(self.i.valid, self.latency, self.o, {"y": y})
        return m


def ort_datapath(p: Pipeline, acc: Value, par, zero_point: int, lo: int, hi: int, *,
                 cvt_overflow_low: bool = False) -> Value:
    """The ``ORT_STAGES`` stages of ``RequantOrt`` on pipeline ``p`` (``par`` arrives at
    stage 1); the result is combinational at the last stage (the caller registers it).

    ``cvt_overflow_low``: x86 ``cvtps2dq`` semantics for ``|rint(v)| >= 2^31`` (the "integer
    indefinite" INT32_MIN, hence ``lo`` after the clamp) instead of saturating by sign — what
    QLinearAdd/QLinearMul do (ORT_KERNELS.md §4, §5); requantisation clamps in float first."""
    acc = Value.cast(acc)
    width = len(acc)
    # 1: sign and magnitude (|acc| <= 2^(width-1) fits in width bits)
    if acc.shape().signed:
        sign = p.reg(acc < 0)
        mag = p.reg(Mux(acc < 0, -acc, acc)[:width], unsigned(width))
    else:
        sign, mag = Const(0, 1), p.reg(acc)
    # 2: leading zeros
    lz = p.reg(count_leading_zeros(mag))
    mag, sign, par = p.reg(mag), p.reg(sign), p.reg(par)
    # 3: normalise: the leading one moves to bit width-1
    norm = p.reg((mag << lz)[:width], unsigned(width))
    lz, sign, par = p.reg(lz), p.reg(sign), p.reg(par)
    # 4: round |acc| to 24 significant bits; ea24 = bit length of |acc| (+1 on carry)
    if width > MANT:
        drop = width - MANT
        top = norm[drop:]
        sticky = norm[:drop - 1].any() if drop > 1 else Const(0, 1)
        rounded = _round_half_even(top, norm[drop - 1], sticky)
        carry = rounded[MANT]
        am = Mux(carry, 1 << (MANT - 1), rounded[:MANT])
        ea24 = width - lz + carry
    else:
        am = norm << (MANT - width)
        ea24 = width - lz
    am = p.reg(am, unsigned(MANT))
    ea24 = p.reg(ea24, unsigned((width + 1).bit_length()))
    sign, par = p.reg(sign), p.reg(par)
    # 5-7: 24 x 24 multiply (am and the mantissa are registers: DSP operand registers)
    prod = split_product(p, am, par.mant)
    e_sum = p.delay(ea24 + par.eoff, 3)  # v's exponent, less the product rounding's
    sign = p.delay(sign, 3)
    # 8: the product's top 24 bits, guard and sticky (it has 47 or 48; zero stays zero)
    hi_bit = prod[2 * MANT - 1]
    vm_top = p.reg(Mux(hi_bit, prod[MANT:], prod[MANT - 1:2 * MANT - 1]))
    guard = p.reg(Mux(hi_bit, prod[MANT - 1], prod[MANT - 2]))
    sticky = p.reg(Mux(hi_bit, prod[:MANT - 1].any(), prod[:MANT - 2].any()))
    e_sum = p.reg(e_sum + hi_bit)
    sign = p.reg(sign)
    # 9: round them half-even
    rounded = _round_half_even(vm_top, guard, sticky)
    carry = rounded[MANT]
    vm = p.reg(Mux(carry, 1 << (MANT - 1), rounded[:MANT]), unsigned(MANT))
    ve = p.reg(e_sum + carry)  # v = vm * 2^ve
    sign = p.reg(sign)
    # 10: r = rint(vm * 2^ve). |r| >= cap saturates: then r + zero_point is past the clamp on
    # the side of its sign. vm >= 2^23, so ve >= left saturates; below, shift vm left by
    # t = ve + 25 (clamped to 0: for ve <= -25 the result is 0, as is vm >> 25 rounded).
    cap = max(hi - zero_point, zero_point - lo, 0) + 1
    left = max(0, cap.bit_length() - (MANT - 1))
    # (acc == 0 leaves ve meaningless: vm == 0 tells it apart, every other acc has vm >= 2^23)
    sat = p.reg((ve >= left) & vm.any())
    t = p.reg(Mux(ve < -(MANT + 1), 0, ve + MANT + 1)[:(MANT + 1 + left).bit_length()])
    # |r| >= 2^31 exactly when ve >= 8 (vm < 2^24: below that r < 2^31, and vm >= 2^23)
    big = p.reg((ve >= 8) & vm.any()) if cvt_overflow_low else Const(0, 1)
    vm, sign = p.reg(vm), p.reg(sign)
    # 11: shifted = vm * 2^(ve + 25): integer part above bit 25, guard bit 24, sticky below
    shifted = p.reg((vm << t)[:2 * MANT + 1 + left])
    sat, sign, big = p.reg(sat), p.reg(sign), p.reg(big)
    # 12: the integer part q, its comparisons with the cap, guard and sticky. Rounding can
    # only lift q = cap - 1 to cap, so q's low bits suffice for the increment at stage 12.
    q = shifted[MANT + 1:]
    mag_shape = unsigned(cap.bit_length())
    q_low = p.reg(q[:mag_shape.width])
    over = p.reg(sat | (q >= cap))
    at_edge = p.reg(q == cap - 1)
    guard, sticky = p.reg(shifted[MANT]), p.reg(shifted[:MANT].any())
    sign, big = p.reg(sign), p.reg(big)
    # 13: round half-even, saturate the magnitude at cap
    up = guard & (sticky | q_low[0])
    rmag = p.reg(Mux(over | (at_edge & up), cap, q_low + up)[:mag_shape.width], mag_shape)
    sign, big = p.reg(sign), p.reg(big)
    # 14 (output register): sign, zero point, clamp
    rs = Mux(sign, -rmag, rmag)
    return Mux(big, lo, clamp(rs + zero_point, lo, hi))


# ---- dyadic ---------------------------------------------------------------------------------
class RequantDyadic(wiring.Component):
    """``requant_dyadic``: TFLite ``MultiplyByQuantizedMultiplier`` + zero point + clamp.

    Parameters
    ----------
    acc_shape : amaranth shape of the accumulator (up to 32 bits, signed or unsigned).
    m0, shift : from ``compiler.requant.dyadic_multiplier`` (Q31 multiplier in [2^30, 2^31) or
        0, shift in [-31, 30]), one per tensor or one per channel (``channel`` field).
    zero_point, lo, hi : output zero point and clamp bounds.
    """

    latency = DYADIC_SCALE_STAGES + 2

    def __init__(self, acc_shape, m0, shift, zero_point: int, lo: int, hi: int):
        self.acc_shape = Shape.cast(acc_shape)
        self.m0 = [int(v) for v in np.ravel(m0)]
        self.shift = [int(v) for v in np.ravel(shift)]
        if len(self.m0) != len(self.shift):
            raise ValueError("m0 and shift differ in length")
        for a, s in zip(self.m0, self.shift, strict=True):
            if not (0 <= a < (1 << 31) and -31 <= s <= 30):
                raise ValueError(f"dyadic multiplier ({a}, {s}) out of range")
        self.channels = len(self.m0)
        self.zero_point, self.lo, self.hi = int(zero_point), int(lo), int(hi)
        self.out_shape = code_shape(lo, hi)
        super().__init__(requant_signature(self.acc_shape, self.channels, self.out_shape))

    def elaborate(self, platform):
        m = Module()
        p = stall_together(m, self.i, self.o, "dyadic")
        chan = self.i.payload.channel if self.channels > 1 else Const(0, 1)
        par = p.rom(DYADIC_ROM, dyadic_rom_entries(self.m0, self.shift), chan)
        y = dyadic_datapath(p, self.i.payload.acc, par, self.zero_point, self.lo, self.hi)
        p.output(self.i.valid, self.latency, self.o, {"y": y})
        return m


# per multiplier: Q31 mantissa, left/right shift, and the accumulator bounds past which the
# left shift saturates (acc << left > INT32_MAX exactly when acc > INT32_MAX >> left, and
# acc << left < INT32_MIN when acc < INT32_MIN >> left): narrow comparisons
DYADIC_ROM = data.StructLayout({"m0": unsigned(31), "left": unsigned(5), "right": unsigned(5),
                                "sat_hi": signed(32), "sat_lo": signed(32)})


def dyadic_rom_entries(m0, shift) -> list[dict]:
    out = []
    for a, s in zip(m0, shift, strict=True):
        left = max(int(s), 0)
        out.append({"m0": int(a), "left": left, "right": max(-int(s), 0),
                    "sat_hi": rq.INT32_MAX >> left, "sat_lo": rq.INT32_MIN >> left})
    return out


def dyadic_datapath(p: Pipeline, acc: Value, par, zero_point: int, lo: int, hi: int) -> Value:
    """``RequantDyadic``'s stages on pipeline ``p`` (``par`` arrives at stage 1); the result
    is combinational at the last stage (the caller registers it)."""
    y, stages = dyadic_scale(p, acc, par)
    assert stages == DYADIC_SCALE_STAGES
    return offset_clamp(p, y, zero_point, lo, hi)


def offset_clamp(p: Pipeline, y: Value, offset: int, lo: int, hi: int) -> Value:
    """``clamp(y + offset, lo, hi)`` over two stages, one carry chain deep each: ``y`` is
    compared with ``lo - offset`` and ``hi - offset`` while only the low bits of ``y + offset``
    are formed (the clamp bounds fit in them); the last stage selects (combinational: the
    caller's output register)."""
    width = max(Shape.cast(range(lo, hi + 1)).width, 1)
    below = p.reg(y < lo - offset)
    above = p.reg(y > hi - offset)
    low = p.reg((y + offset)[:width])
    low = low.as_signed() if lo < 0 else low
    return Mux(below, lo, Mux(above, hi, low))


def dyadic_scale(p: Pipeline, acc: Value, par) -> tuple[Value, int]:
    """``rounding_divide_by_pot(srdhm(clip(acc << left), m0), right)`` in
    ``DYADIC_SCALE_STAGES`` stages, the result a register of the last one. Returns
    (result, stages)."""
    acc = Value.cast(acc)
    # 1: operands (``par`` arrives here)
    acc = p.reg(acc)
    # 2: x = clip(acc << left) to int32
    shifted = acc << par.left
    if len(shifted) > (32 if shifted.shape().signed else 31):
        x = p.reg(Mux(acc > par.sat_hi, rq.INT32_MAX,
                      Mux(acc < par.sat_lo, rq.INT32_MIN, shifted[:32].as_signed())), signed(32))
    else:
        x = p.reg(shifted)
    par = p.reg(par)
    # 3-5: 32 x 31 multiply (x and m0 are registers: DSP operand registers)
    ab = split_product(p, x, par.m0)
    par = p.delay(par, 3)
    # 6: SaturatingRoundingDoublingHighMul. gemmlowp adds 2^30 (ab >= 0) or 1 - 2^30 (ab < 0)
    # and truncates toward zero; for ab < 0 that is ceil((ab + 1 - 2^30) / 2^31)
    # = floor((ab + 2^30) / 2^31), the same as for ab >= 0: one add, one arithmetic shift.
    # (Its INT32_MIN * INT32_MIN saturation cannot occur: m0 < 2^31.)
    q = p.reg(_as_signed((ab + (1 << 30)) >> 31), signed(33))  # |q| <= 2^31
    par = p.reg(par)
    # 7: RoundingDivideByPOT: floor(q / 2^right) + 1 when the remainder exceeds half (or
    # equals it and q >= 0): round half away from zero.
    ext = Cat(Const(0, 32), q).as_signed() >> par.right
    frac = ext[:32]
    up = frac[31] & (~q[-1] | frac[:31].any())
    fl = p.reg(ext[32:].as_signed(), signed(33))
    up = p.reg(up)
    # 8: the rounded quotient
    return p.reg(fl + up, signed(33)), DYADIC_SCALE_STAGES


def requant_from_ir(g, node, channels: slice | None = None):
    """The requant unit for an IR ``Requant`` node (``RequantOrt`` or ``RequantDyadic``);
    ``channels`` keeps a share of per-channel multipliers (a PE's output channels)."""
    a = node.attrs
    dt = g.tensors[node.inputs[0]].dtype
    acc_shape = signed(dt.bits) if dt.signed else unsigned(dt.bits)
    p, q = np.ravel(g.const(node.inputs[1])), np.ravel(g.const(node.inputs[2]))
    if channels is not None and len(p) > 1:
        p, q = p[channels], q[channels]
    cls = RequantOrt if a["mode"] == "ort" else RequantDyadic
    return cls(acc_shape, p, q, a["zero_point"], a["lo"], a["hi"])
