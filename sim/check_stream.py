"""cocotb test module: one stream in, one stream out, every output word compared exactly.

Run by ``sim.runner.run_stream_case``, which writes the case (input words, expected output
words, pause probabilities, seed) to the JSON file named by ``INTFLOW_STREAM_CASE``; the words
were computed by the compiler's numpy kernels on the host side. The test writes what it measured
(cycles from the first input transfer to the last output transfer) to the case's ``result``.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, with_timeout

from .stream import Scoreboard, StreamSink, StreamSource, random_pause, reset


@cocotb.test()
async def stream_matches_expected(dut):
    case = json.loads(open(os.environ["INTFLOW_STREAM_CASE"]).read())
    inputs = [int(w) for w in case["inputs"]]
    expected = [int(w) for w in case["expected"]]
    seed = int(case["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    source = StreamSource(dut, case["i"], random_pause(case["valid_pause"], seed))
    sink = StreamSink(dut, case["o"], random_pause(case["ready_pause"], seed + 1))
    await reset(dut)
    await ClockCycles(dut.clk, 2)
    source.send(inputs)
    slow = 1 / max(0.05, (1 - case["valid_pause"]) * (1 - case["ready_pause"]))
    budget_ns = 10 * (200 + 4 * round(slow) * (len(inputs) + len(expected)))
    words = await with_timeout(sink.receive(len(expected)), budget_ns, "ns")
    await ClockCycles(dut.clk, 20)  # nothing more may come out
    board = Scoreboard(dut._name)
    board.compare(expected, sink.words)
    errors = sink.errors
    cycles = (sink.last_cycle - source.first_cycle + 1) if words else 0
    with open(case["result"], "w") as f:
        json.dump({"words": board.compared, "cycles": cycles, "stream_errors": errors}, f)
    assert not errors, f"stream rules broken: {errors[:5]}"
    board.check()
