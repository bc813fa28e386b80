"""Sequential requantisation: ``requant_ort`` over many cycles per beat, no DSP block.

``RequantOrtSerial`` computes exactly ``compiler/requant.py``'s ``requant_ort`` (as
``hw/requant.py``'s ``RequantOrt``) with one 48-bit work register ``P = {hi, lo}`` (24 + 24
bits), one 26-bit adder on ``hi`` and one adder on the exponent ``E``. It accepts a beat only
when idle and spends at most ``cycles_per_beat`` cycles on it (accept to accept):

    IDLE   |acc| (MW bits) at the top of lo (of P when MW > 24), E = MW + 1; acc == 0 -> FIN
    NORM   shift left by 4 (top four bits zero) or 1 until the top bit is set, E -= shift;
           then E += eoff. MW > 24: round |acc| to 24 bits half-even *into the multiply*
           (lo = hi, or 2^23 on a carry with E + 1; hi = inc ? mant : 0), since the
           multiply leaves P = hi + lo * mant
    MUL    24 / s shift-and-add steps (s = log2 radix): P = {hi + lo[s-1:0] * mant, lo} >> s
    PNORM  the product is in [2^46, 2^48): shift left once when P[47] is clear (E - 1)
    ROUND  R = hi + (guard & (sticky | hi[0])) (half-even; guard lo[23], sticky lo[22:0]),
           v = R * 2^E. Stored as hi = R >> j (j = 1, or 2 so that E is even for radix 4),
           the j bits below in lo, E += j: exact. E >= 0 saturates (v >= hi >= 2^21 > cap);
           E < -26 is clamped to -26 (v < 1/2 either way: rounds to 0)
    SHR    P >>= s (the multiply step with a zero addend), E += s, until E == 0: hi is the
           integer part of v, lo its fraction -> ROUND again (``final``): r = round(v)
    FIN    mag = min(r, cap) (cap as in ``ort_datapath``); y = clamp(+-mag + zero_point)
    OUT    ``o.valid`` until taken

The exponent bookkeeping is ``ort_datapath``'s: ``ve = ea24 + eoff + hi_bit + carry`` with
``eoff = exp - 1`` and the mantissa normalised to [2^23, 2^24) (``ort_rom_entries``); E starts
at MW + 1 (the +1 is the product's ``hi_bit``, taken back by PNORM's shift when it is clear).
Outputs need ``cap < 2^21`` (up to 21-bit codes; wider ones use the pipelined unit).

Radix 4 halves the multiply and the right shift (``3 * mant`` comes from the ROM). Per-channel
multipliers come from a small LUT ROM indexed by the channel latched at accept.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring

from ..compiler.dataflow.fold import SERIAL_MAX_CAP_BITS, SERIAL_MAX_SHIFT
from ..compiler.dataflow.fold import serial_requant_cycles as serial_cycles
from .requant import MANT, clamp, code_shape, ort_rom_entries, requant_signature

__all__ = ["RequantOrtSerial", "serial_cycles", "SERIAL_MAX_SHIFT"]


class RequantOrtSerial(wiring.Component):
    """``y = clip(rint(f32(f32(acc) * M[channel])) + zero_point, lo, hi)`` over many cycles.

    Parameters as ``hw.requant.RequantOrt`` (``acc_shape``, ``mant``, ``exp``, ``zero_point``,
    ``lo``, ``hi``), plus ``radix`` (2 or 4: multiplier bits per multiply step).
    Streams: ``i`` carries ``{acc[, channel]}``, ``o`` carries ``{y}``; ``i.ready`` only while
    idle. ``cycles_per_beat`` is the worst case; ``latency`` the worst accept-to-valid time.
    """

    def __init__(self, acc_shape, mant, exp, zero_point: int, lo: int, hi: int,
                 radix: int = 2):
        if radix not in (2, 4):
            raise ValueError(f"serial requant radix must be 2 or 4, not {radix}")
        self.acc_shape = Shape.cast(acc_shape)
        self.mant, self.eoff = ort_rom_entries(mant, exp)
        self.channels = len(self.mant)
        self.zero_point, self.lo, self.hi = int(zero_point), int(lo), int(hi)
        self.cap = max(self.hi - self.zero_point, self.zero_point - self.lo, 0) + 1
        if self.cap.bit_length() > SERIAL_MAX_CAP_BITS:
            raise ValueError("serial requant supports outputs up to 21 bits of magnitude")
        # |acc| <= 2^(w-1) for signed acc fits w unsigned bits
        self.mag_bits = self.acc_shape.width
        if not 1 <= self.mag_bits <= 2 * MANT:
            raise ValueError(f"serial requant: accumulator of {self.mag_bits} bits unsupported")
        self.radix = radix
        self.cycles_per_beat = serial_cycles(self.mag_bits, radix)
        self.latency = self.cycles_per_beat - 1  # accept to o.valid, worst case
        self.out_shape = code_shape(lo, hi)
        super().__init__(requant_signature(self.acc_shape, self.channels, self.out_shape))

    def elaborate(self, platform):
        m = Module()
        mw, s = self.mag_bits, self.radix.bit_length() - 1
        wide = mw > MANT  # |acc| must be rounded to 24 bits before the multiply
        emax = max(abs(e) for e in self.eoff) + 4 * MANT + 8
        e_shape = signed(emax.bit_length() + 1)
        eoff_shape = signed(max(abs(e) for e in self.eoff).bit_length() + 1)
        mult_w = MANT + 2  # 3 * mant < 2^26

        # ---- multiplier ROM (LUTs: one LUT4 per bit for up to 16 channels) ----------------
        fields = {"mant": unsigned(MANT), "eoff": eoff_shape}
        if s == 2:
            fields["mant3"] = unsigned(mult_w)
        rom_layout = data.StructLayout(fields)
        entries = [{"mant": a, "eoff": b, **({"mant3": 3 * a} if s == 2 else {})}
                   for a, b in zip(self.mant, self.eoff, strict=True)]
        if self.channels > 1:
            ch = Signal(range(self.channels), name="channel")
            rom = memory.Memory(shape=rom_layout, depth=self.channels, init=entries)
            m.submodules.rom = rom
            port = rom.read_port(domain="comb")
            m.d.comb += port.addr.eq(ch)
            par = port.data
        else:
            par = rom_layout.const(entries[0])

        P = Signal(2 * MANT, name="P")
        hi, lo = P[MANT:], P[:MANT]
        E = Signal(e_shape, name="E")
        sign, sat = Signal(), Signal()
        final = Signal()  # second ROUND pass: rounding v to an integer
        steps = MANT // s
        cnt = Signal(range(steps))
        y = Signal(self.out_shape, name="y")

        # half-even rounding at the hi/lo boundary: guard lo[23], sticky lo[22:0]
        guard, sticky = lo[MANT - 1], lo[:MANT - 1].any()
        inc = guard & (sticky | hi[0])

        # the one adder on P: hi + lo[s-1:0] * mant (MUL), hi + inc (ROUND), hi (SHR)
        mul, rnd = Signal(), Signal()
        if s == 1:
            mulsel = Mux(lo[0], par.mant, 0)
        else:
            mulsel = Mux(lo[1], Mux(lo[0], par.mant3, par.mant << 1), Mux(lo[0], par.mant, 0))
        total = Signal(mult_w, name="p_sum")
        m.d.comb += total.eq(hi + Mux(mul, mulsel, Mux(rnd, inc, 0)))
        shifted = Cat(lo, total)[s:s + 2 * MANT]  # {total, lo} >> s: MUL and SHR steps

        # the one adder on E
        e_delta = Signal(e_shape, name="e_delta")
        e_sum = Signal(e_shape, name="e_sum")
        m.d.comb += e_sum.eq(E + e_delta)

        acc = self.i.payload.acc
        if self.acc_shape.signed:
            neg = acc < 0
            mag = Mux(neg, -acc, acc)[:mw]
        else:
            neg = Const(0, 1)
            mag = acc
        m.d.comb += self.o.payload.y.eq(y)

        with m.FSM(name="serial"):
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    # |acc| at the top of lo (at the top of P when wider than 24 bits)
                    load = Cat(Const(0, 2 * MANT - mw), mag) if wide else \
                        Cat(Const(0, MANT - mw), mag, Const(0, MANT))
                    m.d.sync += [P.eq(load), E.eq(mw + 1), sign.eq(neg), sat.eq(0),
                                 final.eq(0), cnt.eq(0)]
                    if self.channels > 1:
                        m.d.sync += ch.eq(self.i.payload.channel)
                    with m.If(acc == 0):
                        m.next = "FIN"  # P = 0: r = 0
                    with m.Else():
                        m.next = "NORM"
            with m.State("NORM"):
                with m.If(P[-1] if wide else lo[-1]):
                    if wide:
                        # round |acc| to 24 bits into the multiply (P_final = hi + lo * mant)
                        top_all = hi.all()
                        carry = inc & top_all
                        m.d.sync += [lo.eq(Mux(carry, 1 << (MANT - 1), hi)),
                                     hi.eq(Mux(inc & ~top_all, par.mant, 0))]
                        m.d.comb += e_delta.eq(par.eoff + carry)
                    else:
                        m.d.comb += e_delta.eq(par.eoff)
                    m.d.sync += E.eq(e_sum)
                    m.next = "MUL"
                # (narrow: only lo shifts, hi stays 0: fewer sources on hi's registers)
                reg = P if wide else lo
                with m.Elif(reg[-4:] == 0):
                    m.d.sync += [reg.eq(reg << 4), E.eq(e_sum)]
                    m.d.comb += e_delta.eq(-4)
                with m.Else():
                    m.d.sync += [reg.eq(reg << 1), E.eq(e_sum)]
                    m.d.comb += e_delta.eq(-1)
            with m.State("MUL"):
                m.d.comb += mul.eq(1)
                m.d.sync += [P.eq(shifted), cnt.eq(cnt + 1)]
                with m.If(cnt == steps - 1):
                    m.next = "PNORM"
            with m.State("PNORM"):  # the product is in [2^46, 2^48)
                with m.If(~P[-1]):
                    m.d.sync += [P.eq(P << 1), E.eq(e_sum)]
                    m.d.comb += e_delta.eq(-1)
                m.next = "ROUND"
            with m.State("ROUND"):
                # R = hi + inc, v = R * 2^E, kept exactly as hi = R >> j with R's j low bits at
                # the top of lo (the rest of lo, the guard and sticky just used, cleared)
                m.d.comb += rnd.eq(1)
                if s == 1:
                    j = Const(1, 2)
                    m.d.sync += P.eq(Cat(Const(0, MANT - 1), shifted[MANT - 1:]))
                else:  # radix 4: j = 1 or 2, making E + j even for the two-bit right shifts
                    j = Mux(E[0] & ~final, 1, 2)
                    with m.If(j == 1):
                        m.d.sync += P.eq(Cat(Const(0, MANT - 1), total[:MANT + 1]))
                    with m.Else():
                        m.d.sync += P.eq(Cat(Const(0, MANT - 2), shifted[MANT - 2:]))
                m.d.comb += e_delta.eq(j)
                with m.If(final):
                    m.next = "FIN"
                with m.Elif(e_sum >= 0):  # v >= hi >= 2^21 > cap
                    m.d.sync += sat.eq(1)
                    m.next = "FIN"
                with m.Else():
                    m.d.sync += [E.eq(Mux(e_sum < -SERIAL_MAX_SHIFT, -SERIAL_MAX_SHIFT, e_sum)),
                                 final.eq(1)]
                    m.next = "SHR"
            with m.State("SHR"):
                m.d.sync += [P.eq(shifted), E.eq(e_sum)]
                m.d.comb += e_delta.eq(s)
                with m.If(e_sum == 0):
                    m.next = "ROUND"
            with m.State("FIN"):
                # r = R of the final ROUND: hi and the s bits below it (0 on the zero path)
                rr = Cat(lo[MANT - s:], hi)
                cb = self.cap.bit_length()
                over = sat | rr[cb:].any() | (rr[:cb] >= self.cap)
                mag_out = Mux(over, self.cap, rr[:cb])
                r = Mux(sign, -mag_out, mag_out)
                m.d.sync += y.eq(clamp(r + self.zero_point, self.lo, self.hi))
                m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
