"""SlidingWindow: im2col over a streamed image, with a line buffer.

Input: a C x H x W image in (h, w, c) order. Output: for each output pixel in raster order,
its kh·kw·C window in (ky, kx, c) order, ``pad_value`` where a tap falls outside the image
(``compiler/dataflow/model.py``'s ``sliding_window``; a 1-D convolution arrives as H = 1).

The buffer is a circular memory of ``B`` pixels x C elements: input pixel ``q`` (counted
over all inferences) lives in slot ``q mod B``. ``B`` is the largest distance between the
oldest pixel any window still needs and the newest one it reads — about ``(kh-1)·dh`` rows
plus ``kw`` pixels, the line buffer — plus one output row's stride of rows (a few pixels when
H = 1), so the writer fills the rows of the next windows while the current ones are read.

Writer and reader share two numbers per window, computed from its top-left corner
``(row_lo, col_lo)``: ``old``, the first pixel this window or any later one reads (everything
before it may be overwritten), and ``need``, the last pixel it reads (it may be emitted once
that pixel is in). The writer accepts pixel ``q`` while ``q < old + B``; the reader emits while
``need`` has been written. ``ahead`` marks a writer already in the next inference; the reader
emits an inference's last window only once the writer has finished that inference, so the
two never drift more than one inference apart. The read address moves by constants (one per
counter that wraps), reduced modulo the memory's depth, so ``B`` need not be a power of two.

One element per cycle out; the writer runs concurrently. Cycles per inference about
``max(H·W·C, OH·OW·kh·kw·C)`` once the pipeline is full.
"""

from __future__ import annotations

from amaranth import Module, Mux, Shape, Signal, Value
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from ...compiler.dataflow.window import window_geometry
from .common import payload_shape

__all__ = ["build", "SlidingWindow", "window_geometry"]


class SlidingWindow(wiring.Component):
    def __init__(self, shape, params: dict):
        self.p = params
        self.geometry = window_geometry(params)
        self.shape = Shape.cast(shape)
        super().__init__({"i0": In(stream.Signature(shape)),
                          "o0": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        p = self.p
        c_n, h, w = p["channels"], p["height"], p["width"]
        (kh, kw), (sh, sw), (dh, dw) = p["kernel"], p["stride"], p["dilation"]
        pt, pl = p["pads"][0], p["pads"][1]
        oh, ow = p["out_height"], p["out_width"]
        hw = h * w
        b = self.geometry["pixels"]
        depth = b * c_n

        m.submodules.lines = mem = memory.Memory(shape=self.shape, depth=depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()

        # ---- reader state -------------------------------------------------------------------
        c = Signal(range(c_n), name="c")
        kx = Signal(range(kw), name="kx")
        ky = Signal(range(kh), name="ky")
        ox = Signal(range(ow), name="ox")
        oy = Signal(range(oh), name="oy")
        coord = range(-max(pt, pl) - 1, max(h, w) + max(p["pads"]) + max(kh * dh, kw * dw)
                      + max(sh, sw) + 1)
        row_lo = Signal(coord, init=-pt, name="row_lo")
        col_lo = Signal(coord, init=-pl, name="col_lo")
        r = Signal(coord, init=-pt, name="r")
        col = Signal(coord, init=-pl, name="col")
        raddr = Signal(range(depth), init=((-pt * w - pl) * c_n) % depth, name="raddr")
        ahead = Signal(name="ahead")  # the writer is in the next inference

        def clip(v: Value, lo: int, hi: int) -> Value:
            return Mux(v < lo, lo, Mux(v > hi, hi, v))

        pix = range(0, hw + b + 1)
        old = Signal(pix, name="old")
        need = Signal(pix, name="need")
        m.d.comb += [
            old.eq(Mux(row_lo < 0, 0, clip(row_lo, 0, h - 1) * w + clip(col_lo, 0, w - 1))),
            need.eq(clip(row_lo + (kh - 1) * dh, 0, h - 1) * w
                    + clip(col_lo + (kw - 1) * dw, 0, w - 1)),
        ]

        # ---- writer ------------------------------------------------------------------------
        wc = Signal(range(c_n), name="wc")
        wq = Signal(range(hw), name="wq")  # pixel being written (within its inference)
        waddr = Signal(range(depth), name="waddr")
        w_last = (wq == hw - 1) & (wc == c_n - 1)
        room = Mux(ahead, (wq + hw < old + b) & ~w_last, wq < old + b)
        m.d.comb += self.i0.ready.eq(room)
        wstep = self.i0.valid & room
        m.d.comb += [wp.addr.eq(waddr), wp.data.eq(self.i0.payload), wp.en.eq(wstep)]
        with m.If(wstep):
            m.d.sync += waddr.eq(Mux(waddr == depth - 1, 0, waddr + 1))
            with m.If(wc == c_n - 1):
                m.d.sync += [wc.eq(0), wq.eq(Mux(wq == hw - 1, 0, wq + 1))]
                with m.If(wq == hw - 1):
                    m.d.sync += ahead.eq(1)
            with m.Else():
                m.d.sync += wc.eq(wc + 1)

        # ---- reader ------------------------------------------------------------------------
        last_window = (oy == oh - 1) & (ox == ow - 1)
        ready_in = Mux(last_window, ahead, ahead | (need < wq))
        en = Signal()
        m.d.comb += en.eq(~self.o0.valid | self.o0.ready)
        step = ready_in & en
        m.d.comb += [rp.addr.eq(raddr), rp.en.eq(en)]
        pad = Signal()
        with m.If(en):
            m.d.sync += [self.o0.valid.eq(ready_in),
                         pad.eq((r < 0) | (r >= h) | (col < 0) | (col >= w))]
        m.d.comb += self.o0.payload.eq(Mux(pad, p["pad_value"], rp.data))

        # one adder moves raddr on, modulo depth, by the step the counters select (a constant
        # per branch, multiplexed: cheaper than an adder and a wrap per branch)
        dsel = Signal(range(depth), name="raddr_step")
        s_next = Signal(range(2 * depth), name="raddr_sum")
        m.d.comb += s_next.eq(raddr + dsel)
        raddr_next = Mux(s_next >= depth, s_next - depth, s_next)

        def advance(delta_pixels: int):
            """raddr moves ``delta_pixels`` pixels on, from channel C-1 to channel 0."""
            m.d.comb += dsel.eq((delta_pixels * c_n - (c_n - 1)) % depth)
            return raddr.eq(raddr_next)

        taps_back = (kh - 1) * dh * w + (kw - 1) * dw  # last tap -> first tap, in pixels
        with m.If(step):
            with m.If(c != c_n - 1):
                m.d.comb += dsel.eq(1 % depth)
                m.d.sync += [c.eq(c + 1), raddr.eq(raddr_next)]
            with m.Elif(kx != kw - 1):
                m.d.sync += [c.eq(0), kx.eq(kx + 1), col.eq(col + dw), advance(dw)]
            with m.Elif(ky != kh - 1):
                m.d.sync += [c.eq(0), kx.eq(0), ky.eq(ky + 1), col.eq(col_lo), r.eq(r + dh),
                             advance(dh * w - (kw - 1) * dw)]
            with m.Elif(ox != ow - 1):
                m.d.sync += [c.eq(0), kx.eq(0), ky.eq(0), ox.eq(ox + 1),
                             col_lo.eq(col_lo + sw), col.eq(col_lo + sw), r.eq(row_lo),
                             advance(sw - taps_back)]
            with m.Elif(oy != oh - 1):
                m.d.sync += [c.eq(0), kx.eq(0), ky.eq(0), ox.eq(0), oy.eq(oy + 1),
                             col_lo.eq(-pl), col.eq(-pl), row_lo.eq(row_lo + sh),
                             r.eq(row_lo + sh),
                             advance(sh * w - (ow - 1) * sw - taps_back)]
            with m.Else():
                m.d.sync += [c.eq(0), kx.eq(0), ky.eq(0), ox.eq(0), oy.eq(0),
                             col_lo.eq(-pl), col.eq(-pl), row_lo.eq(-pt), r.eq(-pt),
                             advance(hw - (oh - 1) * sh * w - (ow - 1) * sw - taps_back),
                             ahead.eq(0)]
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    shape = payload_shape(streams[engine.inputs[0]].dtype)
    if payload_shape(streams[engine.outputs[0]].dtype) != shape:
        raise ValueError(f"{engine.name}: SlidingWindow changes the word type")
    return SlidingWindow(shape, engine.params)
