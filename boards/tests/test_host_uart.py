"""The UART host wrapper in amaranth's simulator: a bit-level UART model on both pins, a stand-in
accelerator, and exact byte framing (little-endian, sign extension, break reset)."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.sim import Simulator

from intflow.boards.tests.standin import StandIn, model
from intflow.compiler.errors import ModelError
from intflow.host import Board, BoardError, Link, pack_elements, unpack_elements
from intflow.hw.host_uart import HostUART, UARTRx, divisor

CLK_HZ, BAUD = 1_000_000, 250_000  # 4 cycles per bit keeps the simulation short


def simulate(dut: HostUART, chunks: list[tuple[str, object]], n_out: int,
             max_cycles: int = 60_000) -> tuple[bytes, int]:
    """Drive ``chunks`` (("bytes", b), ("bad_stop", b): bytes with a low stop bit, ("break",
    bits) or ("idle", bits)) into rx; collect ``n_out`` bytes from tx. Returns (bytes,
    cycles)."""
    d = dut.divisor
    received = bytearray()
    state = {"cycles": 0}

    async def host_tx(ctx):
        await ctx.tick().repeat(3 * d)
        for kind, arg in chunks:
            if kind in ("bytes", "bad_stop"):  # bad_stop: each byte's stop bit is low
                for byte in arg:
                    stop = 0 if kind == "bad_stop" else 1
                    for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [stop]:
                        ctx.set(dut.rx, bit)
                        await ctx.tick().repeat(d)
            else:
                ctx.set(dut.rx, 0 if kind == "break" else 1)
                await ctx.tick().repeat(d * arg)
                ctx.set(dut.rx, 1)
                await ctx.tick().repeat(2 * d)

    async def host_rx(ctx):
        cycles = 0
        while len(received) < n_out:
            await ctx.tick()
            cycles += 1
            assert cycles < max_cycles, f"only {len(received)} of {n_out} bytes came back"
            if ctx.get(dut.tx) == 0:  # start bit: sample each bit mid-way
                await ctx.tick().repeat(d // 2)
                assert ctx.get(dut.tx) == 0, "glitch instead of a start bit"
                byte = 0
                for k in range(8):
                    await ctx.tick().repeat(d)
                    byte |= ctx.get(dut.tx) << k
                await ctx.tick().repeat(d)
                assert ctx.get(dut.tx) == 1, "stop bit low"
                cycles += 9 * d + d // 2
                received.append(byte)
        state["cycles"] = cycles

    sim = Simulator(dut)
    sim.add_clock(1 / CLK_HZ)
    sim.add_testbench(host_tx, background=True)
    sim.add_testbench(host_rx)
    sim.run()
    return bytes(received), state["cycles"]


@pytest.mark.parametrize("in_shape,out_shape", [(signed(12), signed(20)),
                                                (unsigned(8), signed(9)),
                                                (signed(8), unsigned(16))])
def test_framing_round_trip(in_shape, out_shape):
    """Elements of any width cross the line as little-endian bytes and come back exactly."""
    rng = random.Random(in_shape.width * 100 + out_shape.width)
    group, lanes = 3, 2
    acc = StandIn(lanes=lanes, group=group, in_shape=in_shape, out_shape=out_shape)
    dut = HostUART(acc, clk_hz=CLK_HZ, baud=BAUD, in_depth=8, out_depth=4)
    lo, hi = ((-(1 << (in_shape.width - 1)), (1 << (in_shape.width - 1)) - 1)
              if in_shape.signed else (0, (1 << in_shape.width) - 1))
    xs = [lo, hi, 0] + [rng.randint(lo, hi) for _ in range(3 * group)]
    want = model(xs, lanes=lanes, group=group, out_bits=out_shape.width,
                 out_signed=out_shape.signed)
    out_bytes = (out_shape.width + 7) // 8
    got, _ = simulate(dut, [("bytes", pack_elements(xs, in_shape.width))],
                      len(want) * out_bytes)
    assert list(unpack_elements(got, out_shape.width, out_shape.signed)) == want
    # the wire format is plain little-endian, sign-extended to whole bytes
    assert got[:out_bytes] == (want[0] & ((1 << 8 * out_bytes) - 1)).to_bytes(out_bytes, "little")


def test_break_resets_a_half_sent_frame():
    """A frame cut short, then a break: the next frame is computed from a clean state."""
    group = 4
    dut = HostUART(StandIn(lanes=1, group=group), clk_hz=CLK_HZ, baud=BAUD)
    xs = [5, -7, 100, -128, 127, 3, 9, -1]
    want = model(xs, lanes=1, group=group)
    partial = pack_elements([11, 12], 8) + b"\x01"  # ignored: wiped by the break
    got, _ = simulate(dut, [("bytes", partial), ("break", 25), ("bytes", pack_elements(xs, 8))],
                      3 * len(want))
    assert list(unpack_elements(got, 24, True)) == want


def test_without_break_the_stale_state_shows():
    """The converse: the same stale bytes without a break do change the answer (so the test
    above is not vacuous)."""
    group = 4
    dut = HostUART(StandIn(lanes=1, group=group), clk_hz=CLK_HZ, baud=BAUD)
    xs = [5, -7, 100, -128, 127, 3, 9, -1]
    got, _ = simulate(dut, [("bytes", pack_elements([11, 12], 8)), ("idle", 20),
                            ("bytes", pack_elements(xs, 8))], 3 * 2)
    assert list(unpack_elements(got, 24, True)) != model(xs, lanes=1, group=group)


def test_receiver_drops_a_byte_with_a_low_stop_bit():
    """A framing error (stop bit 0) drops that byte, pulses ``ferr`` once, and the receiver
    takes the next byte normally once the line has been high (no hang)."""
    d = 4
    dut = UARTRx(d)
    got, ferr = [], []
    line = []  # (rx level, bit times)
    for byte, stop in [(0xA5, 1), (0x3C, 0), (0x5A, 1), (0x00, 0), (0x81, 1)]:
        line += [(0, 1)] + [((byte >> k) & 1, 1) for k in range(8)] + [(stop, 1), (1, 2)]

    async def drive(ctx):
        await ctx.tick().repeat(3 * d)
        for level, bits in line:
            ctx.set(dut.rx, level)
            await ctx.tick().repeat(d * bits)
        await ctx.tick().repeat(4 * d)

    async def watch(ctx):
        async for _, _, valid, payload, err in ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                 dut.ferr):
            if valid:
                got.append(payload)
            if err:
                ferr.append(len(got))

    sim = Simulator(dut)
    sim.add_clock(1 / CLK_HZ)
    sim.add_process(watch)
    sim.add_testbench(drive)
    sim.run()
    assert got == [0xA5, 0x5A, 0x81]
    assert ferr == [1, 2]  # one pulse per dropped byte, after the good byte before it


def test_framing_error_in_a_frame_drops_that_byte():
    """A stray byte with a low stop bit inside a frame is dropped: the frame around it is
    computed exactly as if it had not been sent."""
    group = 4
    dut = HostUART(StandIn(lanes=1, group=group), clk_hz=CLK_HZ, baud=BAUD)
    xs = [5, -7, 100, -128, 127, 3, 9, -1]
    want = model(xs, lanes=1, group=group)
    wire = pack_elements(xs, 8)
    got, _ = simulate(dut, [("bytes", wire[:3]), ("bad_stop", b"\x42"), ("idle", 1),
                            ("bytes", wire[3:])], 3 * len(want))
    assert list(unpack_elements(got, 24, True)) == want


def test_garbage_then_break_recovers():
    """Back-to-back bytes with low stop bits (a wrong baud rate) garble the framing; the
    wrapper does not hang, and the break before the next run makes it exact again."""
    group = 4
    dut = HostUART(StandIn(lanes=1, group=group), clk_hz=CLK_HZ, baud=BAUD)
    xs = [5, -7, 100, -128, 127, 3, 9, -1]
    want = model(xs, lanes=1, group=group)
    got, _ = simulate(dut, [("bad_stop", b"\x00\xff\x13\x37\x00"), ("bytes", b"\x55\xaa"),
                            ("break", 25), ("bytes", pack_elements(xs, 8))], 3 * len(want))
    assert list(unpack_elements(got, 24, True)) == want


def test_divisor_limits():
    assert divisor(12e6, 115200) == 104
    with pytest.raises(ValueError, match="too fast"):
        divisor(12e6, 6_000_000)
    with pytest.raises(ValueError, match="off"):
        divisor(1e6, 230400)  # 4.34 cycles per bit -> 4: 8.5% off


# ---- the host driver (intflow/host.py) against a simulated board on a fake serial port ------

class FakeBoard:
    """A pyserial-like port whose far end computes the stand-in's outputs per whole frame, as
    the wrapper does; ``mode`` breaks it: "silent", "partial" (drops the last byte), "chatty"
    (one byte too many)."""

    def __init__(self, link, mode: str = "ok", group: int = 4):
        self.link, self.mode, self.group = link, mode, group
        self.rx = bytearray()  # bytes the board has received (since the last break)
        self.pending = bytearray()  # bytes the board has sent, not yet read
        self.breaks = 0
        self.history: list[int] = []

    def write(self, data: bytes) -> int:
        self.rx += data
        nb = (self.link.in_bits + 7) // 8
        frame = self.link.in_length * nb
        while len(self.rx) >= frame:
            xs = unpack_elements(bytes(self.rx[:frame]), self.link.in_bits, self.link.in_signed)
            del self.rx[:frame]
            self.history += list(xs)  # the accelerator's state runs on from frame to frame
            ys = model(self.history, lanes=1, group=self.group,
                       out_bits=self.link.out_bits)[-self.link.out_length:]
            out = pack_elements(ys, self.link.out_bits)
            if self.mode == "silent":
                out = b""
            elif self.mode == "partial":
                out = out[:-1]
            elif self.mode == "chatty":
                out += b"\x00"
            self.pending += out
        return len(data)

    def read(self, n: int) -> bytes:
        if not self.pending:
            time.sleep(0.01)  # pyserial's read timeout
        got, self.pending = bytes(self.pending[:n]), self.pending[n:]
        return got

    def send_break(self, duration: float = 0.25) -> None:
        self.breaks += 1
        self.rx.clear()
        self.history.clear()

    def reset_input_buffer(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        pass


LINK = Link(in_bits=8, in_signed=True, in_length=8, out_bits=24, out_signed=True, out_length=2,
            baud=115200)


def test_driver_round_trip():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (5, 8))
    fake = FakeBoard(LINK)
    fake.write(b"\x01\x02\x03")  # a stale half frame from an interrupted run
    with Board(None, LINK, serial=fake) as b:
        y = b.run(x)
    assert fake.breaks == 1
    # the stand-in's taps carry over from sample to sample, as in the hardware
    want = np.asarray(model(x.ravel(), lanes=1, group=4)).reshape(5, 2)
    assert np.array_equal(y, want)


@pytest.mark.parametrize("mode,match", [("silent", "got 0 of 6 bytes"),
                                        ("partial", "got 5 of 6 bytes.*partial answer"),
                                        ("chatty", "more bytes than 6")])
def test_driver_errors_are_clear_and_bounded(mode, match):
    t0 = time.monotonic()
    with pytest.raises(BoardError, match=match):
        Board(None, LINK, serial=FakeBoard(LINK, mode), timeout=0.2).run(np.zeros((2, 8), int))
    assert time.monotonic() - t0 < 3


def test_driver_no_reply_names_port_and_timeout():
    """No answer at all: a BoardError naming the port, baud rate and timeout, within it."""
    t0 = time.monotonic()
    with pytest.raises(BoardError, match=r"got 0 of 6 bytes from /dev/ttyFAKE0 at 115200 baud "
                                         r"within the 0\.30 s timeout"):
        Board("/dev/ttyFAKE0", LINK, serial=FakeBoard(LINK, "silent"), timeout=0.3).run(
            np.zeros((1, 8), int))
    assert time.monotonic() - t0 < 0.3 + 0.25  # the timeout, one poll and the break


def _loop(**kw):
    import serial
    return serial.serial_for_url("loop://", **kw)


def test_driver_short_reply_on_a_real_pyserial_port():
    """pyserial's loop:// echoes the 2 input bytes where the board would answer 6: a short
    reply. Opened without a read timeout, which the driver replaces (no blocking read)."""
    link = Link(in_bits=8, in_signed=True, in_length=2, out_bits=24, out_signed=True,
                out_length=2, baud=115200)
    port = _loop(timeout=None)
    t0 = time.monotonic()
    with pytest.raises(BoardError, match=r"got 2 of 6 bytes from loop:// .*within the 0\.20 s "
                                         r"timeout.*partial answer"):
        Board("loop://", link, serial=port, timeout=0.2).run(np.ones((1, 2), int))
    assert time.monotonic() - t0 < 0.2 + 0.25
    port.close()


def test_driver_garbage_reply_on_a_real_pyserial_port():
    """loop:// echoes 8 bytes where the board would answer 6: more bytes than the frame (a
    board running another design) is an error, not a wrong answer taken as right."""
    port = _loop(timeout=0.05)
    with pytest.raises(BoardError, match=r"loop:// at 115200 baud sent more bytes than 6"):
        Board("loop://", LINK, serial=port, timeout=0.2).run(np.ones((1, 8), int))
    port.close()


class DeadPort(FakeBoard):
    """A port that fails as an unplugged USB-UART does (pyserial raises on read)."""

    def read(self, n: int) -> bytes:
        import serial
        raise serial.SerialException("device reports readiness to read but returned no data")


class TricklePort(FakeBoard):
    """A line delivering a byte every 50 ms (noise, a far too slow baud rate)."""

    def read(self, n: int) -> bytes:
        time.sleep(0.05)
        return b"\x00"


def test_driver_deadline_holds_against_a_trickle():
    t0 = time.monotonic()
    with pytest.raises(BoardError, match=r"got [1-4] of 6 bytes .*within the 0\.10 s timeout"):
        Board("/dev/ttyFAKE0", LINK, serial=TricklePort(LINK), timeout=0.1).infer(
            np.zeros(8, int))
    assert time.monotonic() - t0 < 0.1 + 0.15


def test_driver_port_failure_is_a_board_error():
    with pytest.raises(BoardError, match="cannot read from /dev/ttyFAKE0 .*returned no data"):
        Board("/dev/ttyFAKE0", LINK, serial=DeadPort(LINK)).run(np.zeros((1, 8), int))
    closed = _loop(timeout=0.05)
    closed.close()
    with pytest.raises(BoardError, match="cannot reset loop://"):
        Board("loop://", LINK, serial=closed).run(np.zeros((1, 8), int))


def test_driver_checks_inputs_and_ports():
    b = Board(None, LINK, serial=FakeBoard(LINK))
    with pytest.raises(ValueError, match="8 input elements"):
        b.infer(np.zeros(7, int))
    with pytest.raises(ValueError, match="outside"):
        b.infer(np.full(8, 200))
    with pytest.raises(BoardError, match="cannot open /nonexistent/tty"):
        Board("/nonexistent/tty", LINK)


def test_packing_is_little_endian_twos_complement():
    assert pack_elements([-2, 1], 12) == b"\xfe\x0f\x01\x00"
    assert list(unpack_elements(b"\xfe\xff\x01\x00", 12, True)) == [-2, 1]
    assert list(unpack_elements(b"\xfe\xff", 16, False)) == [65534]


def test_link_from_a_build_report(tmp_path):
    import json
    host = {**LINK.to_json(), "clock_hz": 12e6, "uart_note": "extra keys are fine"}
    (tmp_path / "report.json").write_text(json.dumps({"host": host}))
    assert Link.from_report(tmp_path) == LINK
    (tmp_path / "report.json").write_text("{}")
    with pytest.raises(ModelError, match="no host link"):
        Link.from_report(tmp_path / "report.json")


class ReferenceBoard(FakeBoard):
    """A board running a whole network: the integer reference on each input frame."""

    def __init__(self, design):
        from intflow.compiler import reference
        self.design, self.reference = design, reference
        self.df = design.dataflow()
        super().__init__(Link.from_dataflow(self.df))

    def write(self, data: bytes) -> int:
        g, df, lk = self.design.graph, self.df, self.link
        self.rx += data
        frame = lk.in_frame
        while len(self.rx) >= frame:
            xs = unpack_elements(bytes(self.rx[:frame]), lk.in_bits, lk.in_signed)
            del self.rx[:frame]
            (h,), (o,) = g.inputs, g.outputs
            flat = np.empty(lk.in_length, np.int64)
            flat[df.streams[df.inputs[0]].order] = xs
            env = self.reference.run_codes(
                g, {h.tensor: flat.reshape(1, *g.tensors[h.tensor].shape)})
            y = env[o.tensor].reshape(-1)[np.asarray(df.output_orders[0])]
            self.pending += pack_elements(y, lk.out_bits)
        return len(data)


def test_run_design_equals_the_reference():
    """User arrays in, onnxruntime's arrays out, the network on the far side of the link."""
    from pathlib import Path

    import intflow
    from intflow.check import random_inputs
    from intflow.host import run_design
    model = Path(__file__).resolve().parents[2] / "examples" / "models" / "digits_mlp_qdq.onnx"
    d = intflow.compile(model, fold="min")
    x = random_inputs(d.graph, 4, seed=3)
    got = run_design(d, x, None, serial=ReferenceBoard(d))
    want = d.run(x)
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k])


def test_cli_run_on_a_port_that_answers_garbage(tmp_path, capsys):
    """``intflow run --engine board`` on pyserial's loop:// (it echoes the input frame where
    the board would answer): exit 1 with one clear line, within the timeout, no traceback."""
    from pathlib import Path

    from intflow.cli import main
    root = Path(__file__).resolve().parents[2]
    x = np.load(root / "examples" / "data" / "digits_mlp_qdq.npz")["pixels"][:2]
    np.save(tmp_path / "x.npy", x)
    t0 = time.monotonic()
    rc = main(["run", str(root / "examples" / "models" / "digits_mlp_qdq.onnx"), "--inputs",
               str(tmp_path / "x.npy"), "--outputs", str(tmp_path / "y.npz"), "--engine",
               "board", "--port", "loop://", "--timeout", "0.2"])
    err = capsys.readouterr().err
    assert rc == 1 and time.monotonic() - t0 < 10
    assert err.startswith("intflow: error: loop:// at 115200 baud sent more bytes than") and \
        "Traceback" not in err, err
    assert not (tmp_path / "y.npz").exists()
