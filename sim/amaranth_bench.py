"""Several streams at once in amaranth's simulator: the bench for dataflow engines and networks.

``run_streams`` drives any number of input streams (each with its own random ``valid`` gaps)
and drains any number of output streams (each with its own random back-pressure) of one
component, checking the stream rule that a stalled output beat does not change.
``check_engine`` runs one ``compiler.dataflow`` engine's component over several inferences
back to back and holds every output word to ``model.run_engine``.

Like ``hw.testbench.run_stream`` (single stream), the pump is one critical simulator process that
samples every handshake at the clock edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from amaranth import Shape, Value

from ..compiler.dataflow import model
from ..compiler.dataflow.spec import Engine, Stream
from ..hw.testbench import run_clocked

__all__ = ["StreamsRun", "run_streams", "check_engine", "to_bits", "from_bits"]


def to_bits(values, width: int) -> list[int]:
    """Two's complement bit patterns of integer ``values`` in ``width`` bits."""
    mask = (1 << width) - 1
    return [int(v) & mask for v in np.ravel(values)]


def from_bits(words, shape) -> np.ndarray:
    """Integers of the bit patterns ``words`` read as amaranth ``shape``."""
    s = Shape.cast(shape)
    out = []
    for w in words:
        w = int(w) & ((1 << s.width) - 1)
        if s.signed and w >> (s.width - 1):
            w -= 1 << s.width
        out.append(w)
    return np.asarray(out, np.int64)


@dataclass
class StreamsRun:
    """Output words per output stream, cycles simulated, and per stream the cycle of every
    accepted beat (inputs) or every taken beat (outputs)."""

    words: dict[str, list[int]]
    cycles: int
    beat_cycles: dict[str, list[int]]


def run_streams(dut, inputs: Mapping[str, Sequence[int]], outputs: Mapping[str, int], *,
                valid_rate: float = 1.0, ready_rate: float = 1.0, seed: int = 0,
                max_cycles: int | None = None, vcd: str | None = None) -> StreamsRun:
    """Send ``inputs[name]`` (bit patterns) into stream ``dut.<name>``; collect
    ``outputs[name]`` beats of each output stream ``dut.<name>``."""
    rng = np.random.default_rng(seed)
    ins = {k: [int(b) for b in v] for k, v in inputs.items()}
    total = sum(len(v) for v in ins.values()) + sum(outputs.values())
    slow = max(1, round(2 / max(min(valid_rate, ready_rate), 0.05)))
    max_cycles = max_cycles or 500 + 8 * total * slow
    in_names, out_names = list(ins), list(outputs)
    gaps = {k: rng.random(max_cycles + 1) >= valid_rate for k in in_names}
    stalls = {k: rng.random(max_cycles + 1) >= ready_rate for k in out_names}
    words: dict[str, list[int]] = {k: [] for k in out_names}
    beat_cycles: dict[str, list[int]] = {k: [] for k in in_names + out_names}
    stats = {"cycles": 0}
    si = [getattr(dut, k) for k in in_names]
    so = [getattr(dut, k) for k in out_names]
    sampled = [s.ready for s in si]
    for s in so:
        sampled += [s.valid, Value.cast(s.payload)]

    async def pump(ctx):
        pos = dict.fromkeys(in_names, 0)
        offered = dict.fromkeys(in_names, False)
        shown = dict.fromkeys(in_names, False)  # the valid bit as last set
        ready = dict.fromkeys(out_names, False)
        held: dict[str, int | None] = dict.fromkeys(out_names)

        def drive(cycle: int) -> None:
            for k, s in zip(in_names, si):
                if not offered[k] and pos[k] < len(ins[k]) and not gaps[k][cycle]:
                    ctx.set(Value.cast(s.payload), ins[k][pos[k]])
                    offered[k] = True
                if offered[k] != shown[k]:
                    shown[k] = offered[k]
                    ctx.set(s.valid, offered[k])
            for k, s in zip(out_names, so):
                r = not stalls[k][cycle]
                if r != ready[k]:
                    ready[k] = r
                    ctx.set(s.ready, r)

        def done() -> bool:
            return (all(pos[k] >= len(ins[k]) for k in in_names)
                    and all(len(words[k]) >= outputs[k] for k in out_names))

        drive(0)
        cycle = 0
        with ctx.critical():
            async for values in ctx.tick().sample(*sampled):
                values = values[2:]  # the clock and reset values come first
                for j, k in enumerate(in_names):
                    if offered[k] and values[j]:
                        pos[k] += 1
                        offered[k] = False
                        beat_cycles[k].append(cycle)
                base = len(in_names)
                for j, k in enumerate(out_names):
                    valid, word = values[base + 2 * j], values[base + 2 * j + 1]
                    if valid:
                        if held[k] is not None and word != held[k]:
                            raise AssertionError(f"cycle {cycle}: stalled payload of {k} "
                                                 "changed")
                        if ready[k]:
                            if len(words[k]) >= outputs[k]:
                                raise AssertionError(f"{k}: more than {outputs[k]} beats")
                            words[k].append(int(word))
                            beat_cycles[k].append(cycle)
                            held[k] = None
                        else:
                            held[k] = int(word)
                cycle += 1
                if done():
                    stats["cycles"] = cycle
                    return
                if cycle >= max_cycles:
                    state = ", ".join([f"{k} {pos[k]}/{len(ins[k])} in" for k in in_names]
                                      + [f"{k} {len(words[k])}/{outputs[k]} out"
                                         for k in out_names])
                    raise AssertionError(f"timeout after {max_cycles} cycles: {state}")
                drive(cycle)

    run_clocked(dut, pump, vcd)
    return StreamsRun(words, stats["cycles"], beat_cycles)


def check_engine(engine: Engine, streams: dict[str, Stream], xs: Sequence[np.ndarray], *,
                 build=None, valid_rate: float = 0.7, ready_rate: float = 0.7,
                 seed: int = 0, edges: bool = True) -> StreamsRun:
    """Run ``engine``'s component on ``xs`` (one (S, length) code array per input stream, S
    inferences back to back) and assert every output word equals ``model.run_engine``; then
    (``edges``) the same on the edge vectors (``compiler/edge_vectors.py``), input j's kinds
    rotated by j so that two operands also meet as min with max. Returns the first run."""
    if build is None:
        from ..hw.engines import build
    dut = build(engine, streams)
    want = model.run_engine(engine, [np.asarray(x, np.int64) for x in xs])
    ins = {}
    for j, (name, x) in enumerate(zip(engine.inputs, xs)):
        width = Shape.cast(getattr(dut, f"i{j}").payload.shape()).width
        assert np.asarray(x).shape[1] == streams[name].length, name
        ins[f"i{j}"] = to_bits(x, width)
    outs = {f"o{j}": int(np.asarray(w).size) for j, w in enumerate(want)}
    run = run_streams(dut, ins, outs, valid_rate=valid_rate, ready_rate=ready_rate, seed=seed)
    for j, (name, w) in enumerate(zip(engine.outputs, want)):
        got = from_bits(run.words[f"o{j}"], getattr(dut, f"o{j}").payload.shape())
        w = np.asarray(w, np.int64).ravel()
        bad = np.flatnonzero(got != w)
        if bad.size:
            i = int(bad[0])
            raise AssertionError(f"{engine.name} -> {name}: {bad.size}/{w.size} words differ; "
                                 f"first at {i} (inference {i // streams[name].length}, "
                                 f"position {i % streams[name].length}): RTL {got[i]}, "
                                 f"model {w[i]}")
    if edges:
        from ..compiler.edge_vectors import edge_vectors
        corners = [np.roll(edge_vectors(streams[n].dtype, streams[n].length), j, axis=0)
                   for j, n in enumerate(engine.inputs)]
        check_engine(engine, streams, corners, build=build, valid_rate=valid_rate,
                     ready_rate=ready_rate, seed=seed + 1, edges=False)
    return run
