"""LayerNorm: the integer layer normalisation of ``compiler/ops/layernorm.py`` on rows of n.

Per row of codes c (``gamma`` and ``bias`` are in stream order within the row):

    xc = n c - S,  S = sum(c)
    V' = floor(V 2^(2T) / n) + E2,  V = sum(xc^2);  D = max(isqrt(V'), 1);  R = floor(2^K / D)
    Z  = (xc R + 2^(sh-1)) >> sh,  sh = K - T - P;   out = Z gamma + B

``V`` needs no pass of its own and no division by n: V = sum (n c_i - S)^2
= n^2 sum c^2 - 2 n S sum c + n S^2 = n (n Q2 - S^2) with Q2 = sum c^2, so
floor(V 2^(2T) / n) = (n Q2 - S^2) 2^(2T) exactly. S and Q2 accumulate while the row arrives.

Two halves joined by a double row buffer (2 n codes, read combinationally: LUT RAM), so a
row loads while the one before it is computed and emitted (a LayerNorm between two slow
neighbours, e.g. serial requants, would otherwise make them wait for each other in turn):
    front  n words into its half of the buffer; S += c, Q2 += c^2; then waits for the back
           to be idle and hands the row (half, S, Q2) over
    back   IDLE   takes a row from the front (1 cycle)
           VAR    1 cycle: V' = ((n Q2 - S^2) << 2T) + E2, the square root's start
           SQRT   ``sqrt_bits`` cycles of the digit-by-digit square root (two bits of V' a
                  cycle: if num >= res + one: num -= res + one, res = res/2 + one, else
                  res = res/2; one /= 4): exactly floor(sqrt(V'))
           RECIP  1 cycle: D = max(root, 1), the divider's start
           DIV    ``recip_bits`` cycles of a restoring divider, one quotient bit a cycle
                  (R = floor(2^K / D) < 2^recip_bits for D >= D_min = max(isqrt(E2), 1));
                  it waits for the previous row's output pipeline to drain (it reads R)
           EMIT   n words issued into a 2-stage pipeline (xc; Z; then Z gamma + B into the
                  output register), which moves whenever the output register is free and
                  drains during the next row: the three products are not chained in a cycle
Cycles per row with no stalls: n + 3 + sqrt_bits + recip_bits (the back; the front needs
n + 1), ``fold.engine_cycles``.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from .common import Reciprocal, payload_shape

__all__ = ["LayerNorm", "build", "layernorm_bounds"]


def _range(lo: int, hi: int) -> Shape:
    """The shape holding lo..hi and 0, at least 1 bit wide (an all-zero beta would make a
    0-bit ROM, which yosys cannot convert: a divide-by-zero trap in mem_from_memory)."""
    return Shape.cast(range(min(lo, 0), max(hi, 1) + 1))


def layernorm_bounds(c_lo: int, c_hi: int, n: int, t_bits: int, e2: int) -> dict:
    """The largest V' and the smallest and largest D of rows of ``n`` codes in [c_lo, c_hi].
    n Q2 - S^2 = sum over pairs (c_i - c_j)^2 is largest with k codes at c_lo and n - k at
    c_hi (a convex function of each code: its maximum is at a corner), k (n - k) range^2,
    largest at k = n // 2."""
    q_max = (n // 2) * (n - n // 2) * (c_hi - c_lo) ** 2
    vp_max = (q_max << (2 * t_bits)) + e2
    return {"q_max": q_max, "vp_max": vp_max, "d_min": max(math.isqrt(e2), 1),
            "d_max": max(math.isqrt(vp_max), 1)}


class LayerNorm(wiring.Component):
    def __init__(self, in_shape, out_shape, *, rows: int, n: int, gamma, bias, t_bits: int,
                 p_bits: int, k_bits: int, e2: int, sqrt_bits: int, recip_bits: int):
        self.in_shape, self.out_shape = Shape.cast(in_shape), Shape.cast(out_shape)
        self.rows, self.n = int(rows), int(n)
        if self.rows < 1 or self.n < 1:
            raise ValueError(f"LayerNorm: empty tensor ({rows} rows of {n})")
        self.gamma = [int(v) for v in np.ravel(gamma)]
        self.bias = [int(v) for v in np.ravel(bias)]
        if len(self.gamma) != self.n or len(self.bias) != self.n:
            raise ValueError(f"LayerNorm: {len(self.gamma)} gammas and {len(self.bias)} "
                             f"biases for rows of {self.n}")
        self.T, self.P, self.K, self.E2 = int(t_bits), int(p_bits), int(k_bits), int(e2)
        self.sh = self.K - self.T - self.P
        if self.sh < 1 or self.E2 < 0:
            raise ValueError(f"LayerNorm: needs K - T - P >= 1 and E2 >= 0 (K={k_bits}, "
                             f"T={t_bits}, P={p_bits}, E2={e2})")
        if self.in_shape.signed:
            self.c_lo, self.c_hi = -(1 << (self.in_shape.width - 1)), \
                (1 << (self.in_shape.width - 1)) - 1
        else:
            self.c_lo, self.c_hi = 0, (1 << self.in_shape.width) - 1
        b = layernorm_bounds(self.c_lo, self.c_hi, self.n, self.T, self.E2)
        self.b = b
        self.sqrt_bits, self.qbits = int(sqrt_bits), int(recip_bits)
        if 2 * self.sqrt_bits < b["vp_max"].bit_length():
            raise ValueError(f"LayerNorm: {sqrt_bits} square-root steps for a "
                             f"{b['vp_max'].bit_length()}-bit V'")
        if (1 << self.K) // b["d_min"] >= 1 << self.qbits:
            raise ValueError(f"LayerNorm: {recip_bits} reciprocal bits cannot hold 2^K/D_min")
        super().__init__({"i0": In(stream.Signature(self.in_shape)),
                          "o0": Out(stream.Signature(self.out_shape))})

    def elaborate(self, platform):
        m = Module()
        n, b = self.n, self.b
        c_lo, c_hi = self.c_lo, self.c_hi
        buf = m.submodules.buf = memory.Memory(shape=self.in_shape, depth=2 * n, init=[])
        grom = m.submodules.gamma = memory.Memory(
            shape=_range(min(self.gamma), max(self.gamma)), depth=n, init=self.gamma)
        brom = m.submodules.bias = memory.Memory(
            shape=_range(min(self.bias), max(self.bias)), depth=n, init=self.bias)
        bw = buf.write_port()
        br = buf.read_port(domain="comb")
        gr = grom.read_port(domain="comb")
        bb = brom.read_port(domain="comb")

        x = self.i0.payload
        o = self.o0
        s_shape = _range(n * c_lo, n * c_hi)
        q2_shape = Shape.cast(range(n * max(c_lo * c_lo, c_hi * c_hi) + 1))

        # front: one half of the buffer per row (half ``wb``), the running sums
        widx = Signal(range(n))
        wb = Signal()
        f_full = Signal()  # a whole row waits in half wb for the back
        f_s, f_q2 = Signal(s_shape), Signal(q2_shape)
        take = self.i0.valid & ~f_full
        m.d.comb += [self.i0.ready.eq(~f_full), bw.en.eq(take),
                     bw.addr.eq(Mux(wb, n + widx, widx)), bw.data.eq(x)]
        with m.If(take):
            first = widx == 0
            m.d.sync += [f_s.eq(Mux(first, 0, f_s) + x), f_q2.eq(Mux(first, 0, f_q2) + x * x),
                         widx.eq(Mux(widx == n - 1, 0, widx + 1))]
            with m.If(widx == n - 1):
                m.d.sync += f_full.eq(1)

        # back: the row in half ``rb`` with sums S, Q2
        idx = Signal(range(n))
        last = idx == n - 1
        rb = Signal()
        s, q2 = Signal(s_shape), Signal(q2_shape)
        vp_w = b["vp_max"].bit_length()
        steps = self.sqrt_bits
        num = Signal(vp_w)  # the square root's remainder
        res = Signal(vp_w + 1)
        one = Signal(2 * steps)
        step = Signal(range(max(steps, 1)))
        d = Signal(range(b["d_max"] + 1))
        qb = self.qbits
        div = Reciprocal(m, self.K, qb, b["d_max"])  # R = floor(2^K / D) < 2^qb
        r = div.r

        m.d.comb += br.addr.eq(Mux(rb, n + idx, idx))
        with m.If(o.ready):  # the output register empties when taken (EMIT may refill it)
            m.d.sync += o.valid.eq(0)

        # V' = (n Q2 - S^2) 2^(2T) + E2 (the module docstring: V = n (n Q2 - S^2))
        q = Signal(range(b["q_max"] + 1))
        m.d.comb += q.eq(n * q2 - s * s)
        vp = (q << (2 * self.T)) + self.E2
        # one square-root step
        t = Signal(vp_w + 1)
        m.d.comb += t.eq(res + one)
        # the output pipeline, shifted as one whenever the output register is free: stage A
        # holds xc = n c - S, stage B Z = (xc R + 2^(sh-1)) >> sh, then Z gamma + B goes out.
        # It drains during the next row; DIV (which rewrites R) waits until it is empty
        xc_max = n * (c_hi - c_lo)  # |n c - S| <= n (c_hi - c_lo)
        xc_shape = _range(-xc_max, xc_max)
        z_max = (xc_max * ((1 << qb) - 1) + (1 << (self.sh - 1))) >> self.sh
        a_v, b_v = Signal(), Signal()
        a_xc = Signal(xc_shape)
        a_i, b_i = Signal(range(n)), Signal(range(n))
        b_z = Signal(_range(-z_max - 1, z_max))
        adv = ~o.valid | o.ready
        empty = ~a_v & ~b_v
        m.d.comb += [gr.addr.eq(b_i), bb.addr.eq(b_i)]
        with m.If(adv):
            m.d.sync += [b_v.eq(a_v), b_i.eq(a_i),
                         b_z.eq((a_xc * r + (1 << (self.sh - 1))) >> self.sh), a_v.eq(0)]
            with m.If(b_v):
                m.d.sync += [o.valid.eq(1), o.payload.eq(b_z * gr.data + bb.data)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(f_full):  # take the front's row; the front goes on in the other half
                    m.d.sync += [rb.eq(wb), s.eq(f_s), q2.eq(f_q2), wb.eq(~wb), f_full.eq(0),
                                 idx.eq(0)]
                    m.next = "VAR"
            with m.State("VAR"):
                m.d.sync += [num.eq(vp), res.eq(0), one.eq(1 << (2 * (steps - 1))),
                             step.eq(steps - 1)]
                m.next = "SQRT"
            with m.State("SQRT"):
                with m.If(num >= t):
                    m.d.sync += [num.eq(num - t), res.eq((res >> 1) + one)]
                with m.Else():
                    m.d.sync += res.eq(res >> 1)
                m.d.sync += [one.eq(one >> 2), step.eq(step - 1)]
                with m.If(step == 0):
                    m.next = "RECIP"
            with m.State("RECIP"):
                m.d.sync += [d.eq(Mux(res == 0, 1, res)), *div.start()]
                m.next = "DIV"
            with m.State("DIV"):  # qb shifts replace every bit of R: no clearing needed
                with m.If(empty):
                    m.d.sync += div.step(d)
                    with m.If(div.done):
                        m.next = "EMIT"
            with m.State("EMIT"):
                with m.If(adv):
                    m.d.sync += [a_v.eq(1), a_i.eq(idx), a_xc.eq(n * br.data - s),
                                 idx.eq(Mux(last, 0, idx + 1))]
                    with m.If(last):
                        m.next = "IDLE"
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> LayerNorm:
    p = engine.params
    a = p["attrs"]
    return LayerNorm(payload_shape(streams[engine.inputs[0]].dtype),
                     payload_shape(streams[engine.outputs[0]].dtype), rows=p["rows"], n=p["n"],
                     gamma=p["gamma"], bias=p["bias"], t_bits=a["T"], p_bits=a["P"],
                     k_bits=a["K"], e2=a["E2"], sqrt_bits=p["sqrt_bits"],
                     recip_bits=p["recip_bits"])
