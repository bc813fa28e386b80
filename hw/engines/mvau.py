"""MVAU: FINN's matrix-vector-activation unit, folded over ``pe`` x ``simd`` multipliers.

For each of ``rows`` input vectors of ``k`` words, emits ``n`` words
``requant(bias[j] + sum_i x[i] * weights[j, i], channel=j)`` for ``j = 0..n-1`` (without a
requant, the accumulator itself), as ``compiler/dataflow/model.py``'s ``mvau``.

Datapath (``nf = n / pe`` neuron folds, ``sf = k / simd`` synapse folds):

- input buffer: a memory of ``2 * sf`` words of ``simd`` elements, two banks (ping-pong). The
  input stream fills one bank element by element (byte-enable writes) while the other is read;
  a bank is released after its last read, so the next vector streams in during the compute.
- weights: a ROM of ``nf * sf`` words of ``pe * simd`` weights, read in step with the input
  word (address ``fold * sf + s``); biases: a ROM of ``nf`` words of ``pe`` values.
- compute: per cycle one (neuron fold, synapse fold): ``pe * simd`` products (registered, as a
  DSP's output register; DSP blocks, or logic for low-bit, power-of-two or ``--no-dsp``
  weights: ``hw/lutmul.py``, chosen by ``compiler/dataflow/multipliers.py``), per PE an
  adder tree and an accumulator of ``acc_dtype`` width,
  loaded with the bias on the fold's first beat. Two's complement wraps, so the final sum is
  exact whenever it fits ``acc_dtype`` (the compiler proved it does).
- output: after a neuron fold's last beat the ``pe`` sums move to a shift register that feeds
  one word per cycle into ``hw/requant.py``'s unit (channel ``j``) or straight to ``o0``; the
  compute stalls only when the next fold finishes before the shift register has emptied.

Cycles per row: ``max(k, nf * max(sf, pe))`` = ``max(k, nf * sf, n)`` (``pe`` divides ``n``);
per inference ``rows`` times that, plus the pipeline's fill (about 3 + requant latency).

ROM images (``MVAU.roms``): a ROM of at least ``BRAM_MIN_DEPTH`` words and more than
``SMALL_MEMORY_BITS`` bits (the estimate's block-RAM rule) is *patchable*: it carries yosys'
``ram_style = "block"`` so it always lands in block RAM, its depth is padded to a multiple of
``BRAM_DEPTH_ALIGN`` words (free: every BRAM mode is 256-word aligned), and ``placeholder``
may replace its contents (``boards/bram.py`` builds with unique random placeholders and then
rewrites them in the bitstream with icebram/ecpbram). Smaller ROMs keep the real weights and
are left to yosys (LUTs); changing them needs a new place and route.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from amaranth import Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.estimate import SMALL_MEMORY_BITS
from ...compiler.dataflow.multipliers import MULTIPLIERS, is_pow2_weights, mvau_multiplier
from ...compiler.dataflow.spec import Engine, Stream
from ..lutmul import lut_product
from .common import payload_shape
from .elementwise import requant_unit
from .window_max import nested_counters

__all__ = ["build", "MVAU", "tree_sum", "RomImage", "rom_in_bram", "rom_images",
           "engine_roms", "BRAM_MIN_DEPTH", "BRAM_DEPTH_ALIGN"]

# A patchable ROM's every 256-word (iCE40) / 512-word (ECP5) slice of one bit holds at least
# 32 placeholder bits, enough to make each slice unique (icebram/ecpbram find them by content)
# and unlike any other memory's slice (2^-32 per pair).
BRAM_MIN_DEPTH = 16
BRAM_DEPTH_ALIGN = 32


def rom_in_bram(depth: int, width: int) -> bool:
    """Whether a ROM of ``depth`` words of ``width`` bits is forced into (patchable) BRAM."""
    return depth >= BRAM_MIN_DEPTH and depth * width > SMALL_MEMORY_BITS


@dataclass(frozen=True)
class RomImage:
    """One ROM's contents as raw words (element ``e`` of a word at bits ``e*bits``, two's
    complement), ``depth`` words (padded when in BRAM, the padding zero)."""
    name: str  # "weights" | "bias"
    width: int  # bits per word
    elem_bits: int
    signed: bool
    words: tuple[int, ...]
    bram: bool

    @property
    def depth(self) -> int:
        return len(self.words)

    def elements(self, words: Sequence[int] | None = None) -> list[list[int]]:
        """``words`` (default: this image's) unpacked into per-element integers."""
        b = self.elem_bits
        mask, n = (1 << b) - 1, self.width // b
        out = []
        for w in self.words if words is None else words:
            row = [(int(w) >> (e * b)) & mask for e in range(n)]
            if self.signed:
                row = [v - (1 << b) if v >> (b - 1) else v for v in row]
            out.append(row)
        return out


def _image(name: str, values: np.ndarray, shape: Shape) -> RomImage:
    """``values`` [depth, elements] -> raw words; padded to BRAM_DEPTH_ALIGN if in BRAM."""
    depth, n = values.shape
    b = shape.width
    mask = (1 << b) - 1
    words = [sum((int(v) & mask) << (e * b) for e, v in enumerate(row)) for row in values]
    bram = rom_in_bram(depth, n * b)
    if bram:
        words += [0] * (-depth % BRAM_DEPTH_ALIGN)
    return RomImage(name, n * b, b, shape.signed, tuple(words), bram)


def tree_sum(values: list[Value]) -> Value:
    """A balanced adder tree (``log2`` levels instead of a chain)."""
    values = list(values)
    while len(values) > 1:
        pairs = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        values = pairs + ([values[-1]] if len(values) % 2 else [])
    return values[0]


class MVAU(wiring.Component):
    """See the module doc. ``weights`` (n, k) and ``bias`` (n,) are integer arrays; ``requant``
    a params dict (``compiler.dataflow.plan``'s) or ``None``. ``multiplier``: ``"dsp"``
    (``*``, DSP blocks), or ``"shiftadd"``/``"pow2"`` (``hw/lutmul.py``: logic only)."""

    def __init__(self, *, x_shape, w_shape, acc_shape, out_shape, rows: int, weights, bias,
                 pe: int, simd: int, requant: dict | None,
                 placeholder: dict[str, Sequence[int]] | None = None, multiplier: str = "dsp"):
        self.weights = np.asarray(weights, np.int64)
        self.n, self.k = self.weights.shape
        self.bias = np.broadcast_to(np.asarray(bias, np.int64), (self.n,))
        if self.n % pe or self.k % simd:
            raise ValueError(f"PE {pe} must divide n={self.n}, SIMD {simd} must divide "
                             f"k={self.k}")
        self.pe, self.simd = pe, simd
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier is one of {MULTIPLIERS}, not {multiplier!r}")
        if multiplier == "pow2" and not is_pow2_weights(self.weights):
            raise ValueError("multiplier 'pow2' needs every weight in {0, +-2^e}")
        self.multiplier = multiplier
        self.nf, self.sf = self.n // pe, self.k // simd
        self.rows = rows
        self.x_shape, self.w_shape = Shape.cast(x_shape), Shape.cast(w_shape)
        self.acc_shape = Shape.cast(acc_shape)
        self.requant = requant_unit(requant, self.acc_shape) if requant is not None else None
        self.roms = rom_images(self.weights, self.bias, pe, simd, self.w_shape, self.acc_shape)
        self.placeholder = dict(placeholder or {})
        for name, words in self.placeholder.items():
            rom = self.roms[name]
            if not rom.bram or len(words) != rom.depth:
                raise ValueError(f"placeholder for the {name} ROM: it must be a BRAM ROM of "
                                 f"{rom.depth} words (bram={rom.bram}, got {len(words)})")
        super().__init__({"i0": In(stream.Signature(x_shape)),
                          "o0": Out(stream.Signature(out_shape))})

    def cycles_per_row(self) -> int:
        return max(self.k, self.nf * max(self.sf, self.pe))

    def elaborate(self, platform):
        m = Module()
        pe, simd, nf, sf = self.pe, self.simd, self.nf, self.sf

        # ---- input buffer: two banks of sf words of simd elements ----------------------------
        m.submodules.xbuf = xbuf = memory.Memory(
            shape=data.ArrayLayout(self.x_shape, simd), depth=2 * sf, init=[])
        wp = xbuf.write_port(granularity=1)
        rp_x = xbuf.read_port()
        full = Signal(2)  # bank holds a whole vector not yet read to the end
        wb = Signal()  # bank being filled
        rb = Signal()  # bank being read
        can_write = ~full.bit_select(wb, 1)
        m.d.comb += self.i0.ready.eq(can_write)
        wstep = self.i0.valid & can_write
        (lane, lane_last), (word, word_last) = nested_counters(m, wstep, [simd, sf], "mvau_w")
        m.d.comb += [wp.addr.eq(Mux(wb, sf, 0) + word),
                     wp.en.eq(Mux(wstep, Const(1, simd) << lane, 0))]
        for s in range(simd):
            m.d.comb += wp.data[s].eq(self.i0.payload)
        filled = wstep & lane_last & word_last

        # ---- weight and bias ROMs --------------------------------------------------------
        m.submodules.wrom = wrom = self._rom(
            "weights", data.ArrayLayout(data.ArrayLayout(self.w_shape, simd), pe),
            lambda row: [row[p * simd:(p + 1) * simd] for p in range(pe)])
        rp_w = wrom.read_port()
        m.submodules.brom = brom = self._rom("bias", data.ArrayLayout(self.acc_shape, pe),
                                             lambda row: row)
        rp_b = brom.read_port()

        # ---- compute pipeline: stage 0 issues addresses, 1 has the words, 2 the products ----
        adv = Signal()  # the compute pipeline moves (defined below by the output side)
        issue = full.bit_select(rb, 1)
        step0 = issue & adv
        (s_i, s_last), (f_i, f_last) = nested_counters(m, step0, [sf, nf], "mvau_r")
        waddr = Signal(range(max(2, nf * sf)))
        with m.If(step0):
            m.d.sync += waddr.eq(Mux(s_last & f_last, 0, waddr + 1))
        m.d.comb += [rp_x.addr.eq(Mux(rb, sf, 0) + s_i), rp_x.en.eq(adv),
                     rp_w.addr.eq(waddr), rp_w.en.eq(adv),
                     rp_b.addr.eq(f_i), rp_b.en.eq(adv)]
        released = step0 & s_last & f_last  # the bank's last word is being read
        with m.If(released):
            m.d.sync += rb.eq(~rb)
        with m.If(filled):
            m.d.sync += wb.eq(~wb)
        set_mask = Mux(filled, Mux(wb, 2, 1), 0)
        clear_mask = Mux(released, Mux(rb, 2, 1), 0)
        m.d.sync += full.eq((full | set_mask) & ~clear_mask)

        v1, first1, last1 = Signal(), Signal(), Signal()
        v2, first2, last2 = Signal(), Signal(), Signal()
        prod = [[Signal(Shape.cast((rp_x.data[s] * rp_w.data[p][s]).shape()),
                        name=f"prod{p}_{s}") for s in range(simd)] for p in range(pe)]
        bias2 = Signal(data.ArrayLayout(self.acc_shape, pe))
        with m.If(adv):
            m.d.sync += [v1.eq(issue), first1.eq(s_i == 0), last1.eq(s_last),
                         v2.eq(v1), first2.eq(first1), last2.eq(last1),
                         bias2.eq(rp_b.data)]
            for p in range(pe):
                for s in range(simd):
                    m.d.sync += prod[p][s].eq(lut_product(
                        self.multiplier, rp_x.data[s], rp_w.data[p][s], self.x_shape,
                        self.w_shape))

        acc = [Signal(self.acc_shape, name=f"acc{p}") for p in range(pe)]
        acc_next = [Signal(self.acc_shape, name=f"acc_next{p}") for p in range(pe)]
        for p in range(pe):
            m.d.comb += acc_next[p].eq(Mux(first2, bias2[p], acc[p]) + tree_sum(prod[p]))
        with m.If(adv & v2):
            m.d.sync += [acc[p].eq(acc_next[p]) for p in range(pe)]
        emit = v2 & last2

        # ---- output: pe sums shifted out one per cycle --------------------------------------
        busy = Signal()
        count = Signal(range(pe))
        buf = [Signal(self.acc_shape, name=f"out{p}") for p in range(pe)]
        sink_ready = Signal()
        take = busy & sink_ready
        count_last = count == pe - 1
        m.d.comb += adv.eq(~emit | ~busy | (take & count_last))
        with m.If(take):
            m.d.sync += [count.eq(count + 1), busy.eq(~count_last)]
            m.d.sync += [buf[p].eq(buf[p + 1]) for p in range(pe - 1)]
        with m.If(emit & adv):
            m.d.sync += [busy.eq(1), count.eq(0)]
            m.d.sync += [buf[p].eq(acc_next[p]) for p in range(pe)]

        if self.requant is None:
            m.d.comb += [self.o0.valid.eq(busy), self.o0.payload.eq(buf[0]),
                         sink_ready.eq(self.o0.ready)]
        else:
            m.submodules.requant = rq = self.requant
            m.d.comb += [rq.i.valid.eq(busy), rq.i.payload.acc.eq(buf[0]),
                         sink_ready.eq(rq.i.ready)]
            if rq.channels > 1:
                (j, _), = nested_counters(m, take, [self.n], "mvau_j")
                m.d.comb += rq.i.payload.channel.eq(j)
            m.d.comb += [self.o0.valid.eq(rq.o.valid), rq.o.ready.eq(self.o0.ready),
                         self.o0.payload.eq(rq.o.payload.y)]
        return m


    def _rom(self, name: str, layout, nest) -> memory.Memory:
        """The ``name`` ROM: its image (or placeholder) words unpacked into ``layout``;
        a BRAM one with yosys' ``ram_style = "block"`` so it never becomes logic."""
        rom = self.roms[name]
        rows = rom.elements(self.placeholder.get(name))
        attrs = {"ram_style": "block"} if rom.bram else None
        return memory.Memory(shape=layout, depth=rom.depth, init=[nest(r) for r in rows],
                             attrs=attrs)


def rom_images(weights: np.ndarray, bias: np.ndarray, pe: int, simd: int, w_shape: Shape,
               acc_shape: Shape) -> dict[str, RomImage]:
    """The weight ROM (word ``fold * sf + s`` holds weights [p][lane] of neurons
    ``fold * pe + p``, inputs ``s * simd + lane``) and the bias ROM (word ``fold``: [p])."""
    n, k = weights.shape
    nf, sf = n // pe, k // simd
    w = weights.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3)  # [fold, s, p, lane]
    b = np.broadcast_to(np.asarray(bias, np.int64), (n,))
    return {"weights": _image("weights", w.reshape(nf * sf, pe * simd), w_shape),
            "bias": _image("bias", b.reshape(nf, pe), acc_shape)}


def engine_roms(engine: Engine) -> dict[str, RomImage]:
    """An MVAU engine's ROM images with its real contents (without building the unit)."""
    p = engine.params
    return rom_images(np.asarray(p["weights"], np.int64), p["bias"], p.get("pe", 1),
                      p.get("simd", 1), payload_shape(p["weight_dtype"]),
                      payload_shape(p["acc_dtype"]))


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    p = engine.params
    pe, simd = p.get("pe", 1), p.get("simd", 1)
    if p["n"] % pe or p["k"] % simd:
        raise ValueError(f"{engine.name}: PE {pe} must divide n={p['n']}, SIMD {simd} must "
                         f"divide k={p['k']}")
    return MVAU(x_shape=payload_shape(streams[engine.inputs[0]].dtype),
                w_shape=payload_shape(p["weight_dtype"]),
                acc_shape=payload_shape(p["acc_dtype"]),
                out_shape=payload_shape(streams[engine.outputs[0]].dtype),
                rows=p["rows"], weights=p["weights"], bias=p["bias"], pe=pe, simd=simd,
                requant=p["requant"], placeholder=p.get("rom_placeholder"),
                multiplier=mvau_multiplier(p))
