"""The UART host wrapper: a board top that streams inference inputs in and outputs back over a
serial line, around any accelerator with one input stream ``i`` and one output stream ``o``.

Wire format (8N1, least significant bit first, as every USB-UART bridge speaks):

- host -> board: each input element as ``ceil(in_bits / 8)`` bytes, little-endian; the low
  ``in_bits`` bits of the assembled word are the element (two's complement when signed);
- board -> host: each output element as ``ceil(out_bits / 8)`` bytes, little-endian, sign-extended
  to whole bytes when the output is signed, so the host reads plain ``<i2``/``<u1`` words.
- A *break* (the line held low for two characters or more, pyserial ``send_break``) resets the
  accelerator, the FIFOs and the byte framing: the host sends one before a run so a half-sent
  frame of an earlier, interrupted run cannot shift every later element.
- A *framing error* (a byte whose stop bit is low: noise, a wrong baud rate) drops that byte
  (``UARTRx.ferr`` pulses) and the receiver waits for the line to go high before it looks for
  the next start bit, so it never hangs. The frame then lacks a byte: the board sends nothing
  for it, the host times out with a ``BoardError``, and its next run's break resynchronises.

There is no flow control on the line, so the input FIFO holds a whole input frame: the host
sends one frame, the accelerator takes it at its own pace, and the output FIFO holds a whole
output frame, so a slow line never stalls the accelerator mid-inference.

``intflow/host.py`` is the matching host driver; ``boards/`` puts this on a board's UART pins.
"""

# no `from __future__ import annotations`: amaranth reads the signature annotations
from amaranth import C, Cat, Module, Shape, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "HostUART", "bytes_per_element", "stream_shapes"]


def bytes_per_element(bits: int) -> int:
    return (bits + 7) // 8


def stream_shapes(accelerator: wiring.Component) -> tuple[Shape, Shape]:
    """The payload shapes of ``accelerator``'s input stream ``i`` and output stream ``o``."""
    members = accelerator.signature.members
    for name in ("i", "o"):
        if name not in members or not members[name].is_signature:
            raise TypeError(f"the accelerator needs a stream port {name!r} (has "
                            f"{', '.join(members.keys()) or 'no ports'})")
    i, o = (Shape.cast(members[n].signature.members["payload"].shape) for n in ("i", "o"))
    return i, o


def divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per bit; the rounding error must stay well inside the 8N1 tolerance."""
    d = round(clk_hz / baud)
    if d < 4:
        raise ValueError(f"{baud} baud is too fast for a {clk_hz / 1e6:g} MHz clock "
                         f"(at least 4 cycles per bit)")
    err = abs(clk_hz / d - baud) / baud
    if err > 0.02:
        raise ValueError(f"{baud} baud from {clk_hz / 1e6:g} MHz is {err:.1%} off (over 2%)")
    return d


class UARTRx(wiring.Component):
    """8N1 receiver sampling mid-bit. ``o`` carries each good byte for one cycle (no ready: a
    UART cannot wait); bytes whose stop bit is low (breaks, noise) are dropped, and ``ferr``
    pulses for one cycle when that happens. ``brk`` pulses once when the line has been low for
    ``break_bits`` bit times."""

    rx: In(1, init=1)
    o: Out(stream.Signature(8, always_ready=True))
    brk: Out(1)
    ferr: Out(1)

    def __init__(self, divisor: int, break_bits: int = 20):
        self.divisor = divisor
        self.break_bits = break_bits
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(d * 3 // 2 + 1))
        bit = Signal(range(9))
        shreg = Signal(8)

        low = Signal(range(d * self.break_bits + 1))
        with m.If(rx):
            m.d.sync += low.eq(0)
        with m.Elif(low < d * self.break_bits):
            m.d.sync += low.eq(low + 1)
        m.d.comb += self.brk.eq(low == d * self.break_bits - 1)

        m.d.sync += [self.o.valid.eq(0), self.ferr.eq(0)]
        with m.FSM():
            with m.State("idle"):
                with m.If(~rx):
                    # the first data bit is sampled 1.5 bit times after the start edge
                    m.d.sync += [timer.eq(d + d // 2 - 1), bit.eq(0)]
                    m.next = "data"
            with m.State("data"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(bit == 8):
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "idle"
                    with m.Else():  # framing error or a break: drop the byte, wait for the
                        m.d.sync += self.ferr.eq(1)  # line to rise (a stop bit or idle)
                        m.next = "wait_high"
                with m.Else():
                    # LSB first: after eight shifts the first bit sits at bit 0
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1),
                                 timer.eq(d - 1)]
            with m.State("wait_high"):
                with m.If(rx):
                    m.next = "idle"
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: takes a byte from ``i`` whenever the line is idle."""

    i: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        timer = Signal(range(d))
        frame = Signal(10, init=0x3FF)  # stop, data[7:0], start; shifted out LSB first
        left = Signal(range(11))

        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq(left == 0)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq(Cat(C(0, 1), self.i.payload, C(1, 1))),
                         left.eq(10), timer.eq(d - 1)]
        with m.Elif(left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [frame.eq(frame.shift_right(1) | (1 << 9)), left.eq(left - 1),
                             timer.eq(d - 1)]
        return m


class HostUART(wiring.Component):
    """UART bytes -> input elements -> ``accelerator`` -> output elements -> UART bytes.

    ``in_depth``/``out_depth``: FIFO depths in elements, a whole input and output frame (the
    stream lengths of one inference) so that no byte is lost while the accelerator works.
    ``overflow`` goes high (until a break) if an input element arrived to a full FIFO."""

    rx: In(1, init=1)
    tx: Out(1, init=1)
    overflow: Out(1)

    def __init__(self, accelerator: wiring.Component, *, clk_hz: float, baud: int = 115200,
                 in_depth: int = 16, out_depth: int = 16):
        self.accelerator = accelerator
        self.in_shape, self.out_shape = stream_shapes(accelerator)
        self.clk_hz, self.baud = clk_hz, baud
        self.divisor = divisor(clk_hz, baud)
        self.in_depth, self.out_depth = max(2, in_depth), max(2, out_depth)
        super().__init__()

    @property
    def in_bytes(self) -> int:
        return bytes_per_element(self.in_shape.width)

    @property
    def out_bytes(self) -> int:
        return bytes_per_element(self.out_shape.width)

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]

        brk = urx.brk
        iw, ow = self.in_shape.width, self.out_shape.width
        m.submodules.accelerator = ResetInserter(brk)(self.accelerator)
        m.submodules.in_fifo = in_fifo = ResetInserter(brk)(
            SyncFIFOBuffered(width=iw, depth=self.in_depth))
        m.submodules.out_fifo = out_fifo = ResetInserter(brk)(
            SyncFIFOBuffered(width=ow, depth=self.out_depth))

        # bytes -> elements, little-endian
        nin = self.in_bytes
        word = Signal(8 * nin)
        got = Signal(range(nin + 1))
        shifted = urx.o.payload.shift_left(8 * (nin - 1)) | word.shift_right(8)
        m.d.comb += in_fifo.w_data.eq(shifted[:iw])
        with m.If(brk):
            m.d.sync += [got.eq(0), self.overflow.eq(0)]
        with m.Elif(urx.o.valid):
            with m.If(got == nin - 1):
                m.d.comb += in_fifo.w_en.eq(1)
                m.d.sync += got.eq(0)
                with m.If(~in_fifo.w_rdy):
                    m.d.sync += self.overflow.eq(1)
            with m.Else():
                m.d.sync += got.eq(got + 1)
            m.d.sync += word.eq(shifted)

        acc = self.accelerator
        m.d.comb += [acc.i.payload.eq(in_fifo.r_data), acc.i.valid.eq(in_fifo.r_rdy),
                     in_fifo.r_en.eq(acc.i.ready),
                     out_fifo.w_data.eq(acc.o.payload), out_fifo.w_en.eq(acc.o.valid),
                     acc.o.ready.eq(out_fifo.w_rdy)]

        # elements -> bytes, little-endian, sign-extended to whole bytes
        nout = self.out_bytes
        value = out_fifo.r_data.as_signed() if self.out_shape.signed else out_fifo.r_data
        out_word = Signal(8 * nout)
        sent = Signal(range(nout + 1))
        m.d.comb += utx.i.payload.eq(out_word[:8])
        with m.If(brk):
            m.d.sync += [sent.eq(0), utx.i.valid.eq(0)]
        with m.Elif(sent == 0):
            m.d.comb += out_fifo.r_en.eq(1)
            with m.If(out_fifo.r_rdy):
                m.d.sync += [out_word.eq(value), sent.eq(nout), utx.i.valid.eq(1)]
        with m.Elif(utx.i.ready):
            # utx.i.valid is high here: the byte in out_word[:8] is taken this cycle
            m.d.sync += [out_word.eq(out_word.shift_right(8)), sent.eq(sent - 1),
                         utx.i.valid.eq(sent != 1)]
        return m
