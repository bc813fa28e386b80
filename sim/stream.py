"""cocotb drivers for ``amaranth.lib.stream`` interfaces (valid/ready/payload), cocotbext-axi
style: a ``StreamSource`` drives a stream, a ``StreamSink`` takes it, a ``StreamMonitor`` watches
one and checks the stream rules, a ``Scoreboard`` compares what came out with what should
have. Sources and sinks take *pause generators* (iterators of bools, one per cycle: ``True``
pauses that cycle): random ``valid`` gaps on a source, ``ready`` back-pressure on a sink.

Timing (cocotbext-axi's model): every driver wakes on the rising clock edge, where the values it
reads are the ones the edge sampled (the DUT's registers update after the callback), decides
whether a beat moved (``valid & ready`` as sampled), and writes its next values, which settle
before the following edge. One trigger per driver per cycle keeps the Python side cheap.

Signals are found by amaranth's Verilog port names: stream ``i`` of the top component is
``i__valid``, ``i__ready``, ``i__payload`` (payloads are plain integers: pack them with
``intflow.hw.testbench.pack``).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Iterable, Iterator

import cocotb
from cocotb.triggers import Event, FallingEdge, RisingEdge

__all__ = ["StreamSource", "StreamSink", "StreamMonitor", "Scoreboard", "random_pause",
           "pattern_pause", "no_pause", "reset"]


# ---- pause generators -----------------------------------------------------------------------
def no_pause() -> Iterator[bool]:
    """Never pause: full rate."""
    return itertools.repeat(False)


def random_pause(probability: float, seed: int = 0) -> Iterator[bool]:
    """Pause each cycle independently with ``probability``."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


def pattern_pause(pattern: Iterable[int | bool]) -> Iterator[bool]:
    """Repeat a fixed pattern, e.g. ``[1, 1, 0]`` (two paused cycles out of three)."""
    return (bool(v) for v in itertools.cycle(list(pattern)))


async def reset(dut, cycles: int = 2) -> None:
    """Hold amaranth's synchronous ``rst`` for ``cycles`` clock cycles."""
    dut.rst.value = 1
    for _ in range(cycles):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


class _Port:
    def __init__(self, dut, name: str):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = dut.clk
        self.name = name


class StreamSource:
    """Drives stream ``name`` of ``dut`` with the words given to ``send``."""

    def __init__(self, dut, name: str, pause: Iterator[bool] | None = None):
        self.port = _Port(dut, name)
        self.pause = pause or no_pause()
        self.queue: deque[int] = deque()
        self.sent = 0
        self.first_cycle: int | None = None  # cycle of the first transfer
        self.cycle = 0
        self._idle = Event()
        self._busy = False  # a word is on the bus, not yet taken
        self.port.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, words: Iterable[int]) -> None:
        self.queue.extend(int(w) for w in words)
        self._idle.clear()

    async def wait(self) -> None:
        """Until every queued word has been taken."""
        if self.queue or self._busy:
            await self._idle.wait()

    async def _run(self) -> None:
        port = self.port
        edge = RisingEdge(port.clk)
        offering = driven = False
        while True:
            await edge
            self.cycle += 1
            if offering and port.ready.value:  # the beat moved at this edge
                offering = False
                self.sent += 1
                if self.first_cycle is None:
                    self.first_cycle = self.cycle
                if not self.queue:
                    self._busy = False
                    self._idle.set()
            if not offering and self.queue and not next(self.pause):
                port.payload.value = self.queue.popleft()
                offering = self._busy = True
            if offering != driven:
                port.valid.value = int(offering)
                driven = offering


class StreamSink:
    """Takes stream ``name`` of ``dut``, keeping every word in ``words``; checks the stream
    rules on the way (``errors``: a ``valid`` dropped or a payload changed before ``ready``)."""

    def __init__(self, dut, name: str, pause: Iterator[bool] | None = None):
        self.port = _Port(dut, name)
        self.pause = pause or no_pause()
        self.words: list[int] = []
        self.errors: list[str] = []
        self.last_cycle: int | None = None  # cycle of the latest transfer
        self.cycle = 0
        self._want = 0
        self._enough = Event()
        self.port.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def receive(self, count: int) -> list[int]:
        """Until ``count`` words have arrived in all; returns them."""
        self._want = count
        if len(self.words) < count:
            self._enough.clear()
            await self._enough.wait()
        return self.words[:count]

    async def _run(self) -> None:
        port = self.port
        edge = RisingEdge(port.clk)
        ready = False
        pending = None  # a payload offered and not taken: it must stay until taken
        while True:
            await edge
            self.cycle += 1
            if port.valid.value:
                word = port.payload.value.to_unsigned()
                if pending is not None and word != pending:
                    self.errors.append(f"{port.name}: cycle {self.cycle}: payload changed")
                if ready:
                    self.words.append(word)
                    self.last_cycle = self.cycle
                    pending = None
                    if len(self.words) >= self._want > 0:
                        self._enough.set()
                else:
                    pending = word
            elif pending is not None:
                self.errors.append(f"{port.name}: cycle {self.cycle}: valid dropped")
                pending = None
            new = not next(self.pause)
            if new != ready:
                ready = new
                port.ready.value = int(ready)


class StreamMonitor:
    """Watches stream ``name`` (driven by others) and checks the ``lib.stream`` rules: once
    ``valid`` is high it stays high, with the same payload, until ``ready`` takes the beat.
    Transfers are kept in ``words``; rule breaks in ``errors``."""

    def __init__(self, dut, name: str):
        self.port = _Port(dut, name)
        self.words: list[int] = []
        self.errors: list[str] = []
        self.cycle = 0
        self._task = cocotb.start_soon(self._run())

    async def _run(self) -> None:
        port = self.port
        edge = RisingEdge(port.clk)
        pending = None  # payload offered and not taken
        while True:
            await edge
            self.cycle += 1
            valid = bool(port.valid.value)
            word = port.payload.value.to_unsigned() if valid else None
            if pending is not None:
                if not valid:
                    self.errors.append(f"{port.name}: cycle {self.cycle}: valid dropped")
                elif word != pending:
                    self.errors.append(f"{port.name}: cycle {self.cycle}: payload changed")
            if valid and port.ready.value:
                self.words.append(word)
                pending = None
            else:
                pending = word if valid else None


class Scoreboard:
    """Compares received words with expected ones, in order."""

    def __init__(self, name: str = "scoreboard"):
        self.name = name
        self.compared = 0
        self.mismatches: list[tuple[int, int, int]] = []  # (index, expected, got)

    def compare(self, expected: Iterable[int], got: Iterable[int]) -> None:
        expected, got = list(expected), list(got)
        if len(expected) != len(got):
            self.mismatches.append((-1, len(expected), len(got)))
        for k, (e, g) in enumerate(zip(expected, got, strict=False)):
            self.compared += 1
            if e != g:
                self.mismatches.append((k, e, g))

    def check(self) -> None:
        if self.mismatches:
            k, e, g = self.mismatches[0]
            what = (f"length {g}, expected {e}" if k < 0 else
                    f"word {k}: got {g:#x}, expected {e:#x}")
            raise AssertionError(f"{self.name}: {len(self.mismatches)} mismatches of "
                                 f"{self.compared}; first: {what}")
