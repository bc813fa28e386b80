"""cocotb testbench of the network top (run by ``sim/network.py``, not by pytest directly).

It reads its job from the JSON file named by ``INTFLOW_SIM_CONFIG``: the input words of every
sample, the output words expected per sample, the stall probability, a seed, an optional
reset point, the watchdog and the probe layout; and writes what happened to ``result``.

Both ends are driven at the falling clock edge: the DUT's ``i__ready`` and ``o__valid`` come
from registers (FIFOs), so what is read there is what the next rising edge samples, and each
handshake is known the moment it is decided. While neither end can move (input refused or
exhausted, no output offered), the bench sleeps until one of them changes or a watchdog period
passes; a cycle is ``sim time // period`` either way. The watchdog reads the harness's idle
counter (cycles since any FIFO of the network moved): past the limit, it names the blocked
edges and the FIFO levels and fails the test.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, RisingEdge, Timer
from cocotb.utils import get_sim_time

PERIOD_NS = 10
EXTRA_CYCLES = 32  # watched after the last expected output word


def _cycle() -> int:
    return int(get_sim_time("ns")) // PERIOD_NS


def stall_report(cfg: dict, probe: str, idle: int, cycle: int) -> str:
    """Which edges are blocked, and every FIFO's level, from the probe bits (MSB first; an
    unknown bit makes its field '?')."""
    bits = probe[::-1]
    fields: dict[str, dict[str, int | str]] = {}
    for f in cfg["probe_fields"]:
        text = bits[f["offset"]:f["offset"] + f["width"]][::-1]
        v = int(text, 2) if set(text) <= {"0", "1"} else "?"
        fields.setdefault(f["edge"], {})[f["name"]] = v
    blocked, levels = [], []
    for e in cfg["edges"]:
        p = fields[e["stream"]]
        where = f"{e['stream']} ({e['producer']} -> {e['consumer']})"
        levels.append(f"{e['stream']} {p['level']}/{e['depth']}")
        if p["w_valid"] == 1 and p["w_ready"] == 0:
            blocked.append(f"{where}: full, its producer waits")
        if p["r_valid"] == 1 and p["r_ready"] == 0:
            blocked.append(f"{where}: holds data its consumer does not take")
    return (f"stall watchdog: no stream moved for {idle} cycles (cycle {cycle}); blocked: "
            f"{'; '.join(blocked) or 'none (every FIFO empty or idle: an engine waits)'}; "
            f"FIFO levels: {', '.join(levels)}")


@cocotb.test()
async def network(dut):
    with open(os.environ["INTFLOW_SIM_CONFIG"]) as f:
        cfg = json.load(f)
    result = {"error": None}
    t0 = time.perf_counter()
    try:
        await _run(dut, cfg, result)
    except Exception as e:  # recorded for the caller, then re-raised for the results XML
        where = [f for f in traceback.extract_tb(e.__traceback__)
                 if f.filename == __file__][-1]
        result["error"] = result["error"] or (f"{type(e).__name__}: {e} (testbench line "
                                              f"{where.lineno}: {where.line})")
        raise
    finally:
        result["seconds"] = time.perf_counter() - t0
        with open(cfg["result"], "w") as f:
            json.dump(result, f)


async def _run(dut, cfg: dict, result: dict) -> None:
    samples = cfg["inputs"]  # per sample, the input words (bit patterns)
    n_out = cfg["outputs_per_sample"]
    stall = float(cfg["stall"])
    rng = random.Random(cfg["seed"])
    watchdog = int(cfg["watchdog"])
    max_cycles = int(cfg["max_cycles"])
    reset_at = cfg.get("reset_at")  # [sample, beat] or None

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    n = len(samples)
    sample, beat = 0, 0  # next input word to offer
    offering = shown = False  # a word is offered / i__valid as last written
    out_sample = 0  # the sample the next output word belongs to
    words: dict[int, list[int]] = {}
    first_in: dict[int, int] = {}
    last_out: dict[int, int] = {}
    lost: list[int] = []
    start = _cycle()

    wakeups = 0
    while sample < n or offering or out_sample < n:
        wakeups += 1
        cycle = _cycle() - start  # handshakes decided now happen at edge cycle + 1
        if cycle > max_cycles:
            raise AssertionError(f"no result after {max_cycles} cycles: sample {sample} beat "
                                 f"{beat} in, {out_sample} samples out")
        if reset_at is not None and [sample, beat] == reset_at:
            # reset in the middle of this sample: it, and every sample not fully out, is lost
            reset_at = None
            dut.i__valid.value = 0
            offering = shown = False
            dut.rst.value = 1
            await RisingEdge(dut.clk)
            await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            dut.rst.value = 0
            lost += [s for s in range(out_sample, sample + 1)]
            for s in lost:
                words.pop(s, None)
                first_in.pop(s, None)
            sample, beat = sample + 1, 0
            out_sample = sample
            continue
        i_ready = int(dut.i__ready.value)
        o_valid = int(dut.o__valid.value)
        if not offering and sample < n and rng.random() >= stall:
            dut.i__payload.value = samples[sample][beat]
            offering = True
        if offering != shown:
            dut.i__valid.value = int(offering)
            shown = offering
        ready = rng.random() >= stall
        dut.o__ready.value = int(ready)
        if offering and i_ready:
            if beat == 0:
                first_in[sample] = cycle + 1
            beat += 1
            if beat == len(samples[sample]):
                sample, beat = sample + 1, 0
            offering = False
        if o_valid and ready:
            words.setdefault(out_sample, []).append(int(dut.o__payload.value.to_unsigned()))
            if len(words[out_sample]) == n_out:
                last_out[out_sample] = cycle + 1
                out_sample += 1
        # ``shown != offering``: the last input word is taken at the coming edge; i__valid
        # must drop right after it (next falling edge) before the bench may sleep, or the DUT
        # takes that word again on every cycle it sleeps
        if o_valid or i_ready and (offering or sample < n) or shown != offering:
            await FallingEdge(dut.clk)
            continue
        # neither end can move until the DUT changes: sleep until it does, or a watchdog
        # period passes, then check that something inside still moves
        waits = [RisingEdge(dut.o__valid), Timer(watchdog * PERIOD_NS, unit="ns")]
        if offering or sample < n:
            waits.append(RisingEdge(dut.i__ready))
        await First(*waits)
        await FallingEdge(dut.clk)
        idle = int(dut.idle.value)
        if idle >= watchdog:
            result["error"] = stall_report(cfg, str(dut.probe.value), idle, _cycle() - start)
            raise AssertionError(result["error"])
    end = _cycle() - start
    # nothing more may come out
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    for _ in range(EXTRA_CYCLES):
        await FallingEdge(dut.clk)
        if int(dut.o__valid.value):
            raise AssertionError(f"the network sent more than {n_out} words per sample "
                                 f"(an extra word at cycle {_cycle() - start})")
    result.update(words={str(k): v for k, v in words.items()},
                  first_in={str(k): v for k, v in first_in.items()},
                  last_out={str(k): v for k, v in last_out.items()}, lost=lost,
                  cycles=end, wakeups=wakeups)


