"""The host side of a board running the UART wrapper (``intflow.hw.host_uart``): pack input
codes into bytes, send them over a serial port, read the output codes back.

Every read has a deadline: a board that is not programmed, runs another design, sits on another
port or baud rate, or lost bytes gives a ``BoardError`` naming what was expected and what came,
never a hang: reads poll (a port opened without a read timeout gets one of 50 ms), and a port
that fails (unplugged, closed) is a ``BoardError`` too. Each run starts with a break, which
resets the board's accelerator and framing. A byte the board drops (a framing error on its
receiver, ``hw/host_uart.py``) leaves its frame short: no answer, a ``BoardError`` naming the
port and the timeout, and the next run's break resynchronises.

>>> with Board("/dev/ttyUSB0", Link.from_report("out/report.json")) as b:
...     y = b.run(x_codes)                     # (samples, in_length) -> (samples, out_length)
>>> y = run_design(design, {"pixels": x}, "/dev/ttyUSB0")   # user arrays, like Design.run
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from .compiler.errors import ModelError

__all__ = ["BoardError", "Link", "Board", "pack_elements", "unpack_elements", "run_design"]


class BoardError(RuntimeError):
    """The board did not answer as the wire format says (exit 1 in the CLI)."""


def bytes_per_element(bits: int) -> int:
    return (bits + 7) // 8


def pack_elements(values: Iterable[int], bits: int) -> bytes:
    """Elements as ``ceil(bits/8)`` little-endian bytes each, two's complement in ``bits``."""
    n = bytes_per_element(bits)
    mask = (1 << bits) - 1
    return b"".join((int(v) & mask).to_bytes(n, "little") for v in np.ravel(values))


def unpack_elements(data: bytes, bits: int, signed: bool) -> np.ndarray:
    """Inverse of the board's output framing: little-endian words of ``ceil(bits/8)`` bytes,
    sign-extended to whole bytes by the board when ``signed``."""
    n = bytes_per_element(bits)
    if len(data) % n:
        raise ValueError(f"{len(data)} bytes is not a whole number of {n}-byte elements")
    return np.asarray([int.from_bytes(data[i:i + n], "little", signed=signed)
                       for i in range(0, len(data), n)], dtype=np.int64)


@dataclass(frozen=True)
class Link:
    """The wire format of one build: element widths and counts per inference, baud rate."""

    in_bits: int
    in_signed: bool
    in_length: int
    out_bits: int
    out_signed: bool
    out_length: int
    baud: int = 115200

    @property
    def in_frame(self) -> int:
        return self.in_length * bytes_per_element(self.in_bits)

    @property
    def out_frame(self) -> int:
        return self.out_length * bytes_per_element(self.out_bits)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_report(cls, path: str | Path) -> Link:
        """The ``host`` section of a build's report.json (``intflow build``)."""
        p = Path(path)
        if p.is_dir():
            p = p / "report.json"
        try:
            host = json.loads(p.read_text())["host"]
            return cls(**{f.name: host[f.name] for f in fields(cls)})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"no host link description in the build report: {e}",
                             file=str(p)) from None

    @classmethod
    def from_dataflow(cls, df, baud: int = 115200) -> Link:
        if len(df.inputs) != 1 or len(df.outputs) != 1:
            raise ModelError(f"the UART host link carries one input and one output stream; "
                             f"this network has {len(df.inputs)} and {len(df.outputs)}")
        si, so = df.streams[df.inputs[0]], df.streams[df.outputs[0]]
        return cls(si.dtype.bits, si.dtype.signed, si.length,
                   so.dtype.bits, so.dtype.signed, so.length, baud)


POLL = 0.05  # seconds a read may block: the deadline is checked between reads


class Board:
    """A board on a serial port. ``serial``: an already open pyserial-like object (``read``,
    ``write``, ``send_break``, ``reset_input_buffer``) instead of opening ``port``; its read
    timeout is set to ``POLL`` when it has none (or a longer one), so no read outlives the
    deadline by more than that."""

    def __init__(self, port: str | None, link: Link, *, timeout: float = 1.0,
                 serial=None) -> None:
        self.port, self.link, self.timeout = port, link, timeout
        self._own = serial is None
        if serial is None:
            try:
                import serial as pyserial
            except ImportError:  # pragma: no cover - a dependency in pyproject
                raise BoardError("pyserial is not installed (pip install pyserial)") from None
            try:
                serial = pyserial.Serial(port, link.baud, timeout=POLL, write_timeout=timeout)
            except (pyserial.SerialException, ValueError) as e:
                raise BoardError(f"cannot open {port}: {e}") from None
        elif hasattr(serial, "timeout") and (serial.timeout is None or serial.timeout > POLL):
            serial.timeout = POLL  # a blocking read would never see the deadline
        self.ser = serial

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self.ser.close()

    def _where(self) -> str:
        return f"{self.port or 'the serial link'} at {self.link.baud} baud"

    def reset(self) -> None:
        """A break resets the board's accelerator and byte framing; stale bytes are dropped."""
        try:
            self.ser.send_break(duration=max(0.01, 40 / self.link.baud))
            time.sleep(max(0.002, 30 / self.link.baud))
            self.ser.reset_input_buffer()
        except Exception as e:  # pyserial's SerialException, OSError: the port went away
            raise BoardError(f"cannot reset {self._where()}: {e}") from None

    def _read_some(self, n: int) -> bytes:
        try:
            return self.ser.read(n)
        except Exception as e:  # pyserial's SerialException, OSError: the port went away
            raise BoardError(f"cannot read from {self._where()}: {e}") from None

    def _read(self, n: int, seconds: float, what: str) -> bytes:
        """``n`` bytes within ``seconds`` (checked between reads of at most ``POLL``)."""
        deadline = time.monotonic() + seconds
        data = bytearray()
        while len(data) < n:
            data += self._read_some(n - len(data))
            if len(data) < n and time.monotonic() > deadline:  # a trickle, too, runs out
                raise BoardError(
                    f"{what}: got {len(data)} of {n} bytes from {self._where()} within the "
                    f"{seconds:.2f} s timeout; is the board programmed with this build, on this "
                    f"port and baud rate?" + (" (a partial answer: bytes were lost or the build "
                                              "expects another frame size)" if data else ""))
        return bytes(data)

    def infer(self, codes: np.ndarray) -> np.ndarray:
        """One inference: ``in_length`` input codes (stream order) -> ``out_length`` codes."""
        lk = self.link
        codes = np.asarray(codes).ravel()
        if codes.size != lk.in_length:
            raise ValueError(f"one inference takes {lk.in_length} input elements, "
                             f"got {codes.size}")
        lo, hi = ((-(1 << (lk.in_bits - 1)), (1 << (lk.in_bits - 1)) - 1) if lk.in_signed
                  else (0, (1 << lk.in_bits) - 1))
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise ValueError(f"input codes outside [{lo}, {hi}] ({lk.in_bits}-bit "
                             f"{'signed' if lk.in_signed else 'unsigned'})")
        wire = (lk.in_frame + lk.out_frame) * 10 / lk.baud
        try:
            self.ser.write(pack_elements(codes, lk.in_bits))
        except Exception as e:  # pyserial's SerialTimeoutException, OSError
            raise BoardError(f"cannot write to {self._where()}: {e}") from None
        data = self._read(lk.out_frame, self.timeout + 2 * wire, "no complete answer")
        return unpack_elements(data, lk.out_bits, lk.out_signed)

    def run(self, codes: np.ndarray) -> np.ndarray:
        """``(samples, in_length)`` codes -> ``(samples, out_length)``, after a reset; extra
        bytes after an answer mean the board runs another design."""
        codes = np.asarray(codes).reshape(len(codes), -1)
        self.reset()
        out = np.stack([self.infer(x) for x in codes]) if len(codes) else np.zeros(
            (0, self.link.out_length), np.int64)
        extra = self._read_some(1)
        if extra:
            raise BoardError(f"{self._where()} sent more bytes than {self.link.out_frame} per "
                             f"inference: the board runs another design or baud rate")
        return out


def run_design(design, inputs: Mapping[str, np.ndarray], port: str | None, *,
               baud: int = 115200, timeout: float = 1.0, serial=None) -> dict[str, np.ndarray]:
    """``Design.run`` on a board: the user's arrays in, onnxruntime's output arrays out (host
    quantize and epilogue run here, the integer graph on the board)."""
    from .compiler import reference
    g = design.graph
    df = design.dataflow()
    link = Link.from_dataflow(df, baud)
    feeds = reference.to_codes(g, inputs)
    (h,), (o,) = g.inputs, g.outputs
    si, so = df.streams[df.inputs[0]], df.streams[df.outputs[0]]
    x = np.asarray(feeds[h.tensor]).reshape(len(feeds[h.tensor]), -1)[:, si.order]
    with Board(port, link, timeout=timeout, serial=serial) as b:
        y = b.run(x)
    flat = np.empty((len(y), so.length), np.int64)
    flat[:, np.asarray(df.output_orders[0])] = y  # the network's output order (hw/network.py)
    shape = g.tensors[o.tensor].shape
    env = {o.tensor: flat.reshape(len(y), *shape)}
    return reference.from_codes(g, env, {o.onnx_name: reference.sample_shape(shape)})
