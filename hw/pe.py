"""Processing element: SIMD lanes of multipliers -> adder tree -> accumulator -> requant.

One PE computes, for each input vector ``x`` (``K`` codes) and each of its ``N`` output channels
``n``, ``acc[n] = bias[n] + sum_k x[k] * w[n, k]`` — the IR's MatMul/Conv arithmetic with the
zero points folded into ``bias`` (``FoldZeroPoints``) — then requantises it to a code. The
weights live in a ROM addressed by a counter (block RAM; ``lib.memory.Memory``), so the PE
folds ``K`` over ``SF = ceil(K / simd)`` beats and ``N`` over channels (FINN's MVAU: this is one
of its PEs; the layer engine that replays the input vector to each PE comes later).

Input stream beats, for each vector: for ``n`` in ``0..N-1``, for ``s`` in ``0..SF-1``:
``x[s*simd : (s+1)*simd]`` (lanes past ``K`` are don't-care: their weights are zero). Output:
one beat per (vector, channel): ``{y}`` after requant, or ``{acc}`` without one.

Pipeline (stall-together, ``pipeline.py``): input and ROM registers, the multipliers' two
stages, one register per adder-tree level, the accumulator, then the requant unit's stages.
The accumulator wraps modulo ``2^acc_bits``: with the IR's proven width the final sum is exact.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.dataflow.multipliers import is_pow2_weights
from .csd import CsdMultiplierArray
from .lutmul import LutMultiplierArray
from .mac import MultiplierArray
from .pipeline import stall_together
from .requant import RequantDyadic, RequantOrt, requant_from_ir

__all__ = ["ProcessingElement", "pe_from_ir"]


class ProcessingElement(wiring.Component):
    """SIMD multiply-accumulate over a weight ROM, with an optional requant unit.

    Parameters
    ----------
    weights : integer array (N, K): row ``n`` holds output channel ``n``'s weights.
    x_shape : shape of an input code.
    simd : lanes (products per cycle).
    acc_shape : accumulator shape (the IR's proven width).
    bias : (N,) integers added to each sum (``None``: 0).
    requant : a ``RequantOrt``/``RequantDyadic`` for ``acc_shape`` with 1 or N channels, or
        ``None`` to output the accumulator.
    multiplier : ``"dsp"`` (``MultiplierArray``), ``"csd"`` (``CsdMultiplierArray``, no DSP),
        or ``"shiftadd"``/``"pow2"`` (``lutmul.LutMultiplierArray``, no DSP).
    target : ``MultiplierArray`` target (``"generic"``, ``"ice40"``, ``"ecp5"``) for ``"dsp"``.
    """

    def __init__(self, weights, x_shape, *, simd: int, acc_shape, bias=None,
                 requant: RequantOrt | RequantDyadic | None = None,
                 multiplier: str = "dsp", target: str = "generic"):
        w = np.asarray(weights, np.int64)
        if w.ndim != 2:
            raise ValueError("PE weights are (channels, K)")
        self.channels, self.k = w.shape
        self.simd = simd
        self.fold = math.ceil(self.k / simd)  # SF: beats per output
        padded = np.zeros((self.channels, self.fold * simd), np.int64)
        padded[:, :self.k] = w
        self.rows = padded.reshape(self.channels * self.fold, simd)  # ROM row = one beat
        self.x_shape = Shape.cast(x_shape)
        self.acc_shape = Shape.cast(acc_shape)
        self.bias = np.zeros(self.channels, np.int64) if bias is None else np.asarray(
            bias, np.int64).reshape(self.channels)
        self.multiplier, self.target = multiplier, target
        if multiplier == "dsp":
            lo, hi = int(w.min(initial=0)), int(w.max(initial=0))
            self.w_shape = Shape.cast(range(min(lo, -1) if lo < 0 else 0, max(hi, 1) + 1))
            self.lanes = MultiplierArray(simd, self.x_shape, self.w_shape, target)
            self.codes = [list(r) for r in self.rows]
        elif multiplier == "csd":
            self.lanes = CsdMultiplierArray(simd, self.x_shape, self.rows)
            self.codes = [self.lanes.encode(r) for r in self.rows]
        elif multiplier in ("shiftadd", "pow2"):  # hw/lutmul.py: run-time weights, no DSP
            lo, hi = int(w.min(initial=0)), int(w.max(initial=0))
            self.w_shape = Shape.cast(range(min(lo, -1) if lo < 0 else 0, max(hi, 1) + 1))
            if multiplier == "pow2" and not is_pow2_weights(w):
                raise ValueError("multiplier 'pow2' needs weights in {0, +-2^e}")
            self.lanes = LutMultiplierArray(simd, self.x_shape, self.w_shape, multiplier)
            self.codes = [list(r) for r in self.rows]
        else:
            raise ValueError(f"multiplier is 'dsp', 'csd', 'shiftadd' or 'pow2', not "
                             f"{multiplier!r}")
        self.requant = requant
        if requant is not None:
            if Shape.cast(requant.acc_shape) != self.acc_shape:
                raise ValueError("requant unit's accumulator shape differs from the PE's")
            if requant.channels not in (1, self.channels):
                raise ValueError("requant unit has neither 1 nor N channels")
            out = data.StructLayout({"y": requant.out_shape})
        else:
            out = data.StructLayout({"acc": self.acc_shape})
        self.tree_levels = max(0, (simd - 1).bit_length())
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({
                "x": data.ArrayLayout(self.x_shape, simd)}))),
            "o": Out(stream.Signature(out)),
        })

    @property
    def acc_latency(self) -> int:
        """Stages from a vector's last beat accepted to its sum leaving the accumulator."""
        return 1 + self.lanes.latency + self.tree_levels + 1

    @property
    def latency(self) -> int:
        """Cycles from a channel's last input beat accepted to its output valid."""
        return self.acc_latency + (self.requant.latency if self.requant is not None else 0)

    @property
    def initiation_interval(self) -> int:
        """Input beats (cycles at full rate) per output channel: ``SF``."""
        return self.fold

    def elaborate(self, platform):
        m = Module()
        chan_shape = unsigned(max(1, (self.channels - 1).bit_length()))
        acc_layout = data.StructLayout({"acc": self.acc_shape, "channel": chan_shape})
        if self.requant is not None:
            m.submodules.requant = rq = self.requant
            acc_out = stream.Signature(acc_layout).create(path=("acc",))
            m.d.comb += [rq.i.valid.eq(acc_out.valid), rq.i.payload.acc.eq(acc_out.payload.acc),
                         acc_out.ready.eq(rq.i.ready)]
            if rq.channels > 1:
                m.d.comb += rq.i.payload.channel.eq(acc_out.payload.channel)
            wiring.connect(m, rq.o, wiring.flipped(self.o))
        else:
            acc_out = stream.Signature(acc_layout).create(path=("acc",))
            m.d.comb += [self.o.valid.eq(acc_out.valid), self.o.payload.acc.eq(
                acc_out.payload.acc), acc_out.ready.eq(self.o.ready)]
        p = stall_together(m, self.i, acc_out, "pe")

        # stage 0: counters address the weight ROM (row = n * SF + s) and the bias ROM
        addr = Signal(range(len(self.rows)))
        s = Signal(range(self.fold))
        n = Signal(chan_shape)
        take = self.i.valid & p.en
        with m.If(take):
            m.d.sync += addr.eq(Mux(addr == len(self.rows) - 1, 0, addr + 1))
            m.d.sync += s.eq(Mux(s == self.fold - 1, 0, s + 1))
            with m.If(s == self.fold - 1):
                m.d.sync += n.eq(Mux(n == self.channels - 1, 0, n + 1))
        lanes = self.lanes
        m.submodules.lanes = lanes
        code_layout = data.ArrayLayout(lanes.b.shape().elem_shape, self.simd)
        w = p.rom(code_layout, self.codes, addr, name="weights")
        bias = p.rom(self.acc_shape, [int(b) for b in self.bias], n, name="bias")
        # stage 1: operands
        x = p.reg(self.i.payload.x)
        valid, first, last, chan = (p.reg(v) for v in (self.i.valid, s == 0,
                                                       s == self.fold - 1, n))
        m.d.comb += [lanes.en.eq(p.en), lanes.a.eq(x), lanes.b.eq(w)]
        # stages 2..: products, then the adder tree (one level per stage)
        valid, first, last, chan, bias = (p.delay(v, lanes.latency) for v in (
            valid, first, last, chan, bias))
        terms = [lanes.p[k] for k in range(self.simd)]
        while len(terms) > 1:
            terms = [p.reg(_trunc_sum(terms[i], terms[i + 1], self.acc_shape))
                     if i + 1 < len(terms) else p.reg(terms[i])
                     for i in range(0, len(terms), 2)]
            valid, first, last, chan, bias = (p.reg(v) for v in (valid, first, last, chan,
                                                                  bias))
        # accumulator, and the output register of the accumulated sum
        acc = Signal(self.acc_shape)
        total = Signal(self.acc_shape)
        m.d.comb += total.eq(Mux(first, bias, acc) + terms[0])
        with m.If(p.en & valid):
            m.d.sync += acc.eq(total)
        with m.If(p.en):
            m.d.sync += [acc_out.valid.eq(valid & last), acc_out.payload.acc.eq(total),
                         acc_out.payload.channel.eq(chan)]
        return m


def _trunc_sum(a, b, acc_shape: Shape):
    """``a + b``, kept no wider than the accumulator (sums are exact modulo its width)."""
    total = a + b
    if len(total) > acc_shape.width:
        return total[:acc_shape.width].as_signed() if acc_shape.signed else (
            total[:acc_shape.width])
    return total


def pe_from_ir(g, node, requant_node=None, *, simd: int, multiplier: str = "dsp",
               target: str = "generic", channels: slice | None = None) -> ProcessingElement:
    """A PE for an IR ``MatMul`` with constant weights, or a ``Conv`` (weights flattened to
    (C_out, C_in/group * kh * kw): one output channel's im2col window per vector), followed by
    its ``Requant`` node (optional). ``channels`` picks the PE's share of the output channels.

    Zero points must be folded already (``x_zero_point`` 0, as ``FoldZeroPoints`` leaves it)."""
    a = node.attrs
    if a.get("x_zero_point", 0) != 0 or a.get("w_zero_point", 0) != 0:
        raise ValueError(f"{node.name}: zero points not folded into the bias")
    if not g.is_const(node.inputs[1]):
        raise ValueError(f"{node.name}: weights are not constant")
    w = g.const(node.inputs[1])
    if node.op == "MatMul":
        w = w.T  # (K, N) -> (N, K)
    elif node.op == "Conv":
        w = w.reshape(w.shape[0], -1)
    else:
        raise ValueError(f"{node.name}: a PE computes MatMul or Conv, not {node.op}")
    bias = g.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    sel = channels or slice(None)
    w = w[sel]
    bias = None if bias is None else np.asarray(bias)[sel]
    xdt, accdt = g.tensors[node.inputs[0]].dtype, g.tensors[node.outputs[0]].dtype
    x_shape = signed(xdt.bits) if xdt.signed else unsigned(xdt.bits)
    acc_shape = signed(accdt.bits) if accdt.signed else unsigned(accdt.bits)
    rq = None
    if requant_node is not None:
        rq = requant_from_ir(g, requant_node, channels=sel)
    return ProcessingElement(w, x_shape, simd=simd, acc_shape=acc_shape, bias=bias,
                             requant=rq, multiplier=multiplier, target=target)
