"""Run one engine's RTL in amaranth's simulator and hold its output words to ``run_engine``.

Inputs are ``samples`` inferences back to back in one stream (the engine must carry its state
over from one inference to the next with no reset), with random ``valid`` gaps on the input
and random ``ready`` back-pressure on the output (``hw/testbench.py``'s pump, which also
checks that a stalled output word does not change). ``check`` then runs the edge vectors
(``compiler/edge_vectors.py``: all-min, all-max, zero-point-only, alternating extremes) in a
second run with the same stalls, so every engine test reaches the accumulator and saturation
corners; the ``Result`` it returns is the first run's (its cycle counts are per ``x``).

``pump`` is a copy of ``hw/testbench.py``'s ``run_stream`` loop for components whose payload is
a plain ``Signal`` (that one wants a ``data.View``): one critical simulator process drives
both ends, sampling the handshakes at the clock edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from amaranth import Value

from intflow.compiler import compile_model
from intflow.compiler.dataflow.fold import mvau_cycles
from intflow.compiler.dataflow.model import run_engine
from intflow.compiler.dataflow.plan import plan
from intflow.compiler.dataflow.spec import Dataflow, Engine, Stream
from intflow.compiler.dtypes import IntType
from intflow.compiler.edge_vectors import KINDS, edge_vectors
from intflow.hw.engines import build
from intflow.hw.testbench import run_clocked

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "models"

_PLANS: dict[str, Dataflow] = {}


def example_plan(stem: str) -> Dataflow:
    """The dataflow plan of ``examples/models/<stem>.onnx`` (cached)."""
    if stem not in _PLANS:
        _PLANS[stem] = plan(compile_model(str(EXAMPLES / f"{stem}.onnx")))
    return _PLANS[stem]


def example_engines(stem: str, kind: str) -> list[tuple[Engine, dict[str, Stream]]]:
    df = example_plan(stem)
    return [(e, df.streams) for e in df.engines if e.kind == kind]


def stream(name: str, dtype: IntType, length: int) -> Stream:
    return Stream(name, dtype, (length,), np.arange(length))


def random_codes(rng: np.random.Generator, dtype: IntType, shape) -> np.ndarray:
    return rng.integers(dtype.min, dtype.max + 1, shape, dtype=np.int64)


class Result:
    def __init__(self, got: np.ndarray, want: np.ndarray, cycles: int):
        self.got, self.want, self.cycles = got, want, cycles


def pump(dut, beats: list[int], n_out: int, *, valid_rate: float, ready_rate: float,
         seed: int, max_cycles: int | None) -> tuple[list[int], int]:
    """Send ``beats`` into ``dut.i0``, collect ``n_out`` words of ``dut.o0``: (words, cycles)."""
    si, so = dut.i0, dut.o0
    rng = np.random.default_rng(seed)
    n_in = len(beats)
    slow = max(1, round(2 / max(min(valid_rate, ready_rate), 0.05)))
    max_cycles = max_cycles or 400 + 4 * (n_in + n_out) * slow
    gaps = rng.random(max_cycles + 1) >= valid_rate
    stalls = rng.random(max_cycles + 1) >= ready_rate
    out: list[int] = []
    stats = {"cycles": 0}
    i_payload, o_payload = Value.cast(si.payload), Value.cast(so.payload)
    mask = (1 << len(o_payload)) - 1

    async def process(ctx):
        state = {"k": 0, "offered": False, "valid": False, "ready": False}

        def drive(cycle: int) -> None:
            if not state["offered"] and state["k"] < n_in and not gaps[cycle]:
                ctx.set(i_payload, beats[state["k"]])
                state["offered"] = True
            if state["offered"] != state["valid"]:
                state["valid"] = state["offered"]
                ctx.set(si.valid, state["valid"])
            ready = not stalls[cycle]
            if ready != state["ready"]:
                state["ready"] = ready
                ctx.set(so.ready, ready)

        drive(0)
        cycle = 0
        held = None
        with ctx.critical():
            async for _, _, took, valid, word in ctx.tick().sample(si.ready, so.valid,
                                                                     o_payload):
                if state["offered"] and took:
                    state["k"] += 1
                    state["offered"] = False
                if valid:
                    word &= mask
                    if held is not None and word != held:
                        raise AssertionError(f"cycle {cycle}: stalled output word changed")
                    if state["ready"]:
                        out.append(word)
                        held = None
                    else:
                        held = word
                cycle += 1
                if len(out) >= n_out and state["k"] >= n_in:
                    stats["cycles"] = cycle
                    return
                if cycle >= max_cycles:
                    raise AssertionError(f"timeout after {max_cycles} cycles: {state['k']}/"
                                         f"{n_in} words in, {len(out)}/{n_out} out")
                drive(cycle)

    run_clocked(dut, process)
    return out, stats["cycles"]


def simulate(engine: Engine, streams: dict[str, Stream], x: np.ndarray, *,
             valid_rate: float = 1.0, ready_rate: float = 1.0, seed: int = 0,
             max_cycles: int | None = None) -> Result:
    """``x``: (samples, input length) codes. Returns the RTL's and the model's words."""
    dut = build(engine, streams)
    want = run_engine(engine, [x])[0]
    width = len(Value.cast(dut.i0.payload))
    beats = [int(v) & ((1 << width) - 1) for v in x.ravel()]
    if max_cycles is None and engine.kind == "MVAU":  # compute-bound when folded little
        slow = max(1, round(2 / max(min(valid_rate, ready_rate), 0.05)))
        max_cycles = 400 + 4 * slow * (x.size + want.size + len(x) * mvau_cycles(engine.params))
    words, cycles = pump(dut, beats, want.size, valid_rate=valid_rate, ready_rate=ready_rate,
                         seed=seed, max_cycles=max_cycles)
    out = Value.cast(dut.o0.payload).shape()
    got = np.array(words, dtype=object)
    if out.signed:
        got = np.where(got >= 1 << (out.width - 1), got - (1 << out.width), got)
    return Result(got.astype(np.int64).reshape(want.shape), want, cycles)


def edge_zero_point(engine: Engine) -> int:
    """The input code that stands for the real value 0 in ``engine``: its padding value
    (SlidingWindow, AvgPool rows), its GlobalSum zero point, else 0 (zero points folded)."""
    p = engine.params
    if "pad_value" in p:
        return int(p["pad_value"])
    if engine.kind == "GlobalSum":  # elsewhere "zero_point" is the output's (Requant)
        return int(p["zero_point"])
    return 0


def edge_inputs(engine: Engine, streams: dict[str, Stream]) -> np.ndarray:
    """The edge vectors of ``engine``'s input stream: (len(KINDS), input length)."""
    st = streams[engine.inputs[0]]
    return edge_vectors(st.dtype, st.length, edge_zero_point(engine))


def _assert_equal(engine: Engine, r: Result, labels: list[str]) -> None:
    bad = np.argwhere(r.got != r.want)
    if bad.size:
        s, i = bad[0]
        raise AssertionError(f"{engine.name}: {len(bad)} of {r.want.size} words differ; first "
                             f"at sample {s}{labels[s]} word {i}: got {r.got[s, i]}, want "
                             f"{r.want[s, i]}")


def check(engine: Engine, streams: dict[str, Stream], x: np.ndarray, *, edges: bool = True,
          **kw) -> Result:
    """``simulate`` and assert every output word equals ``run_engine``'s; then the same for
    the edge vectors (``edges=False`` skips them, for tests that need exactly ``x``)."""
    r = simulate(engine, streams, x, **kw)
    _assert_equal(engine, r, [""] * len(x))
    if edges:
        e = simulate(engine, streams, edge_inputs(engine, streams), **kw)
        _assert_equal(engine, e, [f" (edge vector {k})" for k in KINDS])
    return r
