"""cocotb testbench of the network top (run by ``sim/network.py``, not by pytest directly).

It reads its job from the JSON file named by ``INTFLOW_SIM_CONFIG``: per input port the input
words of every sample, per output port the words expected per sample, the stall probability
(or an output hold: every output not ready for a stretch of cycles), a seed, an optional reset
point, the watchdog, the probe layout and whether to record taps; and writes what happened to
``result``. Every port has its own random stream, so several inputs and outputs stall
independently.

Both ends are driven at the falling clock edge: the DUT's ``i__ready`` and ``o__valid`` come
from registers (FIFOs), so what is read there is what the next rising edge samples, and each
handshake is known the moment it is decided. While no port can move (inputs refused or
exhausted, no output offered), the bench sleeps until one of them changes or a watchdog period
passes; a cycle is ``sim time // period`` either way. The watchdog reads the harness's idle
counter (cycles since any FIFO of the network moved): past the limit, it names the blocked
edges and the FIFO levels and fails the test.

Taps: a second coroutine reads ``tap_we``/``tap_data`` once per cycle, after the falling edge
has settled (``ReadOnly``), and records every word written into every edge's FIFO.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge, Timer
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


class _In:
    """One input port: its words per sample and where the bench is in them."""

    def __init__(self, dut, name: str, samples: list[list[int]], seed) -> None:
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.samples = samples
        self.rng = random.Random(seed)
        self.sample = self.beat = 0  # next word to offer
        self.offering = self.shown = False  # a word is offered / valid as last written

    def more(self) -> bool:
        return self.sample < len(self.samples)


class _Out:
    def __init__(self, dut, name: str, n_out: int, seed) -> None:
        self.name = name
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.n_out = n_out
        self.rng = random.Random(seed)
        self.sample = 0  # the sample the next output word belongs to
        self.words: dict[int, list[int]] = {}


def _held(hold, cycle: int) -> bool:
    """Whether the outputs are held not-ready at ``cycle`` (``hold``: [start, cycles])."""
    return hold is not None and hold[0] <= cycle < hold[0] + hold[1]


async def _record_taps(dut, cfg: dict, taps: dict[str, list[int]]) -> None:
    """Every word written into every edge FIFO, in order (read mid-cycle, settled)."""
    fields = [(f["edge"], f["bit"], f["offset"], f["width"]) for f in cfg["tap_fields"]]
    while True:  # started at a falling edge: this cycle's writes are the first
        await ReadOnly()
        we = dut.tap_we.value
        we = we.to_unsigned() if we.is_resolvable else 0  # X before the first edge
        if we:
            bits = str(dut.tap_data.value)  # MSB first; a field may hold X (recorded as -1)
            top = len(bits)
            for edge, bit, offset, width in fields:
                if we >> bit & 1:
                    text = bits[top - offset - width:top - offset]
                    taps[edge].append(int(text, 2) if set(text) <= {"0", "1"} else -1)
        await FallingEdge(dut.clk)


async def _run(dut, cfg: dict, result: dict) -> None:
    seed = cfg["seed"]
    ins = [_In(dut, name, samples, f"{seed}/in/{k}")
           for k, (name, samples) in enumerate(zip(cfg["in_ports"], cfg["inputs"]))]
    outs = [_Out(dut, name, n_out, f"{seed}/out/{k}")
            for k, (name, n_out) in enumerate(zip(cfg["out_ports"], cfg["outputs_per_sample"]))]
    stall = float(cfg["stall"])
    hold = cfg.get("out_hold")  # [start cycle, cycles]: every output not ready
    watchdog = int(cfg["watchdog"])
    max_cycles = int(cfg["max_cycles"])
    reset_at = cfg.get("reset_at")  # [sample, beat] of input 0, or None
    n = len(ins[0].samples)

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    for p in ins:
        p.valid.value = 0
        p.payload.value = 0
    for q in outs:
        q.ready.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    taps: dict[str, list[int]] = {f["edge"]: [] for f in cfg.get("tap_fields", [])}
    if cfg.get("taps"):
        cocotb.start_soon(_record_taps(dut, cfg, taps))

    first_in: dict[int, int] = {}
    last_out: dict[int, int] = {}
    done: dict[int, int] = {}  # sample -> outputs that have all its words
    lost: list[int] = []
    start = _cycle()

    wakeups = 0
    while any(p.more() or p.offering for p in ins) or any(q.sample < n for q in outs):
        wakeups += 1
        cycle = _cycle() - start  # handshakes decided now happen at edge cycle + 1
        if cycle > max_cycles:
            raise AssertionError(
                f"no result after {max_cycles} cycles: "
                + ", ".join(f"{p.name} at sample {p.sample} beat {p.beat}"
                            for p in ins)
                + "; " + ", ".join(f"{q.sample} samples out of {q.name}" for q in outs))
        if reset_at is not None and [ins[0].sample, ins[0].beat] == reset_at:
            # reset in the middle of this sample: it, and every sample not fully out of
            # every output, is lost; every input goes on with the first sample none of its
            # words went in
            reset_at = None
            dut.rst.value = 1
            for p in ins:
                p.valid.value = 0
                p.offering = p.shown = False
            await RisingEdge(dut.clk)
            await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            dut.rst.value = 0
            nxt = max([ins[0].sample + 1] + [p.sample + (p.beat > 0) for p in ins])
            lost += list(range(min(q.sample for q in outs), nxt))
            for s in lost:
                first_in.pop(s, None)
                done.pop(s, None)
                for q in outs:
                    q.words.pop(s, None)
            for p in ins:
                p.sample, p.beat = nxt, 0
            for q in outs:
                q.sample = nxt
            continue
        i_ready = [int(p.ready.value) for p in ins]
        o_valid = [int(q.valid.value) for q in outs]
        for p in ins:
            if not p.offering and p.more() and p.rng.random() >= stall:
                p.payload.value = p.samples[p.sample][p.beat]
                p.offering = True
            if p.offering != p.shown:
                p.valid.value = int(p.offering)
                p.shown = p.offering
        ready = [q.rng.random() >= stall and not _held(hold, cycle) for q in outs]
        for q, r in zip(outs, ready):
            q.ready.value = int(r)
        for p, rdy in zip(ins, i_ready):
            if p.offering and rdy:
                if p.beat == 0:
                    first_in[p.sample] = min(first_in.get(p.sample, cycle + 1), cycle + 1)
                p.beat += 1
                if p.beat == len(p.samples[p.sample]):
                    p.sample, p.beat = p.sample + 1, 0
                p.offering = False
        for q, v, r in zip(outs, o_valid, ready):
            if v and r:
                if q.sample >= n:
                    raise AssertionError(f"{q.name} sent more than {q.n_out} words per sample "
                                         f"(an extra word at cycle {cycle + 1})")
                q.words.setdefault(q.sample, []).append(int(q.payload.value.to_unsigned()))
                if len(q.words[q.sample]) == q.n_out:
                    done[q.sample] = done.get(q.sample, 0) + 1
                    if done[q.sample] == len(outs):
                        last_out[q.sample] = cycle + 1
                    q.sample += 1
        # ``shown != offering``: the last input word is taken at the coming edge; valid must
        # drop right after it (next falling edge) before the bench may sleep, or the DUT takes
        # that word again on every cycle it sleeps
        if (any(o_valid) or any(r and (p.offering or p.more()) for p, r in zip(ins, i_ready))
                or any(p.shown != p.offering for p in ins)):
            await FallingEdge(dut.clk)
            continue
        # no port can move until the DUT changes: sleep until it does, or a watchdog period
        # passes, then check that something inside still moves
        waits = [RisingEdge(q.valid) for q in outs] + [Timer(watchdog * PERIOD_NS, unit="ns")]
        waits += [RisingEdge(p.ready) for p in ins if p.offering or p.more()]
        await First(*waits)
        await FallingEdge(dut.clk)
        idle = int(dut.idle.value)
        if idle >= watchdog:
            result["error"] = stall_report(cfg, str(dut.probe.value), idle, _cycle() - start)
            raise AssertionError(result["error"])
    end = _cycle() - start
    # nothing more may come out
    for p in ins:
        p.valid.value = 0
    for q in outs:
        q.ready.value = 1
    for _ in range(EXTRA_CYCLES):
        await FallingEdge(dut.clk)
        for q in outs:
            if int(q.valid.value):
                raise AssertionError(f"the network sent more than {q.n_out} words per sample "
                                     f"on {q.name} (an extra word at cycle {_cycle() - start})")
    result.update(words=[{str(k): v for k, v in q.words.items()} for q in outs],
                  first_in={str(k): v for k, v in first_in.items()},
                  last_out={str(k): v for k, v in last_out.items()}, lost=lost,
                  cycles=end, wakeups=wakeups, taps=taps if cfg.get("taps") else None)
