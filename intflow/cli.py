"""The ``intflow`` command line. Exit codes: 0 ok, 1 mismatch or failed build, 2 bad input."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np

from .compiler import REQUANT_MODES
from .compiler.errors import ModelError
from .rtl_check import rtl_cycles

DESCRIPTION = """\
intflow compiles a quantized ONNX model (onnxruntime QDQ or QOperator, MatMulInteger /
ConvInteger) into an integer-only dataflow graph, runs a numpy integer reference that is
bit-exact to onnxruntime, and (with the hardware issues) generates RTL and bitstreams.

exit codes: 0 ok, 1 mismatch or failed build, 2 bad input (one line naming file, node, reason)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the contract: one line on stderr, exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"wants a positive integer, got {text!r}")
    return n


def _input_shapes(a) -> dict[str, tuple[int, ...]]:
    """--input-shape NAME=d0,d1,... (repeatable) -> {name: dims}; a malformed one names the
    model it was meant for."""
    shapes = {}
    for text in a.input_shape:
        name, _, dims = text.partition("=")
        try:
            if not name or not dims:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise ModelError(f"--input-shape wants NAME=d0,d1,... (integers), got {text!r}",
                             file=a.model) from None
    return shapes


def _check_target(path: str, *, directory: bool) -> None:
    """Refuse, before any work, an output path that cannot be written or must not be
    replaced: a file where OUT/ should go, a directory where Y.npz should go, a parent that
    is a file, or an existing directory that is not an intflow output."""
    p = Path(path)
    if p.is_dir():
        if not directory:
            raise ModelError("is a directory; the outputs need a file name (Y.npz)", file=path)
        if any(p.iterdir()) and not (p / "graph.json").is_file():
            raise ModelError("exists and is not an intflow output directory (no graph.json); "
                             "refusing to replace it", file=path)
    elif p.exists() or p.is_symlink():
        if directory:
            raise ModelError("exists and is not a directory; refusing to replace it",
                             file=path)
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ModelError(f"cannot create it: '{parent}' is not a directory", file=path)
            break


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="quantized ONNX model (.onnx)")
    p.add_argument("--requant", choices=REQUANT_MODES, default="ort",
                   help="ort: bit-exact to onnxruntime's float32 requantisation, emulated in "
                        "integers (default); dyadic: gemmlowp/TFLite fixed-point multiplier "
                        "and shift, cheaper, bit-exact only to itself")
    p.add_argument("--input-shape", action="append", default=[],
                   metavar="NAME=d0,d1,...",
                   help="static shape of an input with dynamic dimensions besides the batch "
                        "axis (repeatable)")


def _fold_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fold", default="auto", metavar="min|max|auto|FILE.json",
                   help="PE x SIMD per layer: min (one multiplier per layer), max (fastest), "
                        "auto (balanced pipeline within --max-multipliers / --target-ii, "
                        "default), or a JSON file {layer: {\"pe\": P, \"simd\": S}}")
    p.add_argument("--max-multipliers", type=_positive, default=None, metavar="N",
                   help="multiplier budget for --fold auto (e.g. the device's DSP count)")
    p.add_argument("--target-ii", type=_positive, default=None, metavar="CYCLES",
                   help="initiation interval --fold auto aims for (the fewest multipliers "
                        "that reach it)")
    p.add_argument("--no-dsp", action="store_true",
                   help="no DSP blocks: LUT multipliers in every layer (low-bit and "
                        "power-of-two weights get them anyway) and no DSP inference in "
                        "synthesis (requant products in logic where the serial unit does "
                        "not fit the II)")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="intflow", description=DESCRIPTION,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="ONNX -> IntGraph (OUT/graph.json + constants.npz) and "
                       "a per-layer table",
                       description="Compile MODEL to the integer IR in OUT/ (graph.json, "
                       "constants.npz, layers.txt) and print the per-layer table: op, shapes, "
                       "input/weight/accumulator bits (proven from the real weights), MACs, "
                       "requant mode.")
    _common(c)
    c.add_argument("-o", "--out", required=True, help="output directory (written atomically)")
    _fold_args(c)

    r = sub.add_parser("run", help="run the model on X.npz, write Y.npz",
                       description="Run MODEL on the arrays in --inputs (an .npz keyed by "
                       "input name, leading axis = sample; or an .npy for one input) and write "
                       "every output, in the dtype onnxruntime returns, to --outputs.")
    _common(r)
    r.add_argument("--inputs", required=True, help="X.npz (or .npy for a one-input model)")
    r.add_argument("--outputs", required=True, help="Y.npz to write")
    r.add_argument("--engine", choices=("reference", "icarus", "verilator", "board"),
                   default="reference",
                   help="reference: the numpy integer reference; icarus, verilator: the "
                        "generated network's Verilog under cocotb on that simulator, every "
                        "output element from the RTL (prints latency and initiation interval "
                        "in cycles); board: a board programmed by 'intflow build' (the UART "
                        "wrapper) on --port")
    r.add_argument("--stall", type=float, default=0.3, metavar="P",
                   help="RTL engines: probability, each cycle, of an input gap and of output "
                        "back-pressure, each port on its own (default 0.3; 0 measures the "
                        "steady-state II)")
    r.add_argument("--taps", action="store_true",
                   help="RTL engines: record every layer's output stream and compare it with "
                        "the reference's value of that tensor; prints the first differing "
                        "layer (in dataflow order) with the element index, and exits 1 if "
                        "any layer differs")
    r.add_argument("--port", default=None,
                   help="engine board: the serial port (e.g. /dev/ttyUSB0, or a pyserial URL)")
    r.add_argument("--baud", type=_positive, default=115200,
                   help="engine board: the UART baud rate of the build (default 115200)")
    r.add_argument("--timeout", type=float, default=1.0, metavar="S",
                   help="engine board: seconds to wait for an answer beyond its transfer "
                        "time (default 1)")
    r.add_argument("--compare", action="store_true",
                   help="also run onnxruntime (ORT_ENABLE_ALL, session.qdqisint8allowed=1) "
                        "and report mismatching elements; exit 1 if any differ")
    r.add_argument("--samples", type=_positive, default=None, metavar="N",
                   help="run only the first N samples of --inputs")
    _fold_args(r)
    k = sub.add_parser("check", help="compare with onnxruntime in several sessions and explain "
                       "every difference",
                       description="Run MODEL through onnxruntime at ORT_ENABLE_ALL / EXTENDED / "
                       "BASIC / DISABLE_ALL, with and without session.qdqisint8allowed, and "
                       "classify each element that differs from intflow's reference: u8s8 "
                       "saturation (AVX2 CPUs without VNNI), float path (the session runs the op "
                       "in float between DQ and Q), rounding tie, or real mismatch. Exit 1 if "
                       "the integer-kernel session (ENABLE_ALL + qdqisint8allowed=1) differs "
                       "for any reason but saturation.")
    _common(k)
    k.add_argument("--inputs", help="X.npz (default: random inputs over the input range)")
    k.add_argument("--samples", type=_positive, default=64, help="random samples (default 64)")
    k.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    _build_parsers(sub)
    _report_parser(sub)
    _update_weights_parser(sub)
    _sweep_parser(sub)
    return ap


# ---- intflow build (boards/) ------------------------------------------------------------------

def _build_parsers(sub) -> None:
    from .boards import TARGETS
    b = sub.add_parser("build", help="bitstream + report.json for a board or a bare part",
                       description="Compile MODEL, generate the network inside the UART host "
                       "wrapper, synthesise, place and route and pack it with the open "
                       "toolchain (YoWASP yosys/nextpnr, icetime, Apycula), simulate the RTL "
                       "for its cycle counts and write OUT/report.json and the bitstream. Exit "
                       "1 when the design does not fit (with a folding that does) or misses "
                       "its clock constraint (unless --allow-timing-fail).")
    _common(b)
    b.add_argument("--board", required=True, metavar="BOARD",
                   help=f"target: {', '.join(TARGETS)}")
    b.add_argument("-o", "--out", required=True, help="output directory")
    _fold_args(b)
    b.add_argument("--seed", type=int, default=1,
                   help="nextpnr placement seed; the same seed gives the same bitstream")
    b.add_argument("--allow-timing-fail", action="store_true",
                   help="exit 0 even when Fmax is below the clock constraint")
    b.add_argument("--baud", type=_positive, default=115200, help="UART baud rate")
    b.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="run the design at MHZ: through the board's PLL, or as "
                        "the constraint on a bare part (default: the board's oscillator)")
    b.add_argument("--no-cache", action="store_true",
                   help="rebuild even when the same design, options and toolchain were built "
                        "before ($INTFLOW_BUILD_CACHE, default ~/.cache/intflow/builds)")
    b.add_argument("--no-sim", action="store_true",
                   help="skip the RTL simulation: cycles come from the cost model")


def cmd_build(a) -> int:
    import json
    import shutil

    from . import ort
    from .boards import get_target
    from .boards.build import BuildError, FitError, build
    from .boards.fit import device_budget, suggest_fold
    from .boards.report import format_report, make_report
    from .check import random_inputs
    from .compiler.dataflow.estimate import estimate
    from .compiler.dataflow.fold import mvaus
    from .design import compile as compile_design
    from .host import Link
    target = get_target(a.board)
    out = Path(a.out)
    _check_target(a.out, directory=True)
    d = compile_design(a.model, requant=a.requant, input_shapes=_input_shapes(a),
                       fold=a.fold, max_multipliers=a.max_multipliers, target_ii=a.target_ii,
                       no_dsp=getattr(a, "no_dsp", False))
    if a.fold == "auto" and a.max_multipliers is None and a.target_ii is None:
        f = device_budget(d.graph, target)
        if f is not None:
            d.max_multipliers = f.max_multipliers
            print(f"fold auto for {target.name}: {f.describe(target.available)}")
        else:  # the estimate says nothing fits: try the smallest, synthesis will tell
            d.fold = "min"
            print(f"fold auto for {target.name}: no folding's estimate fits "
                  f"{target.device}; building the smallest (--fold min)")
    df = d.dataflow()
    Link.from_dataflow(df, a.baud)  # the UART wrapper carries one input and one output stream
    est = estimate(df, target.family)
    try:
        from .hw.network import Network
        net = Network(df)
    except (ImportError, ValueError) as e:
        raise ModelError(f"no hardware for this network: {e}", file=a.model) from None
    d.save(out, hardware=True)
    print(f"building {a.model} for {target.description}")
    si, so = df.streams[df.inputs[0]], df.streams[df.outputs[0]]
    try:
        result = build(net, target, out / "build", seed=a.seed, baud=a.baud,
                       in_depth=si.length, out_depth=so.length, clock_mhz=a.clock,
                       cache_dir=False if a.no_cache else None, no_dsp=d.no_dsp)
    except FitError as e:
        print(f"intflow: error: {e}; {suggest_fold(df, target, e.used)}", file=sys.stderr)
        return 1
    except BuildError as e:
        print(f"intflow: error: {e}", file=sys.stderr)
        return 1
    bitstream = out / f"{target.name}{result.bitstream.suffix}"
    shutil.copyfile(result.bitstream, bitstream)
    if a.no_sim:
        cycles, rtl_ok = {"latency": est["latency_estimate"],
                          "initiation_interval": est["initiation_interval"],
                          "source": "estimate"}, None
    else:
        cycles, rtl_ok = rtl_cycles(d, df, est)
    try:
        ort_us = ort.latency_us(a.model, random_inputs(d.graph, 1, seed=0))
    except Exception:  # noqa: BLE001 onnxruntime cannot load every model (QONNX Quant ops)
        ort_us = None  # the report's null: not measured
    link = Link.from_dataflow(df, a.baud).to_json()
    fold = {e.name: {"pe": e.params["pe"], "simd": e.params["simd"]} for e in mvaus(df)}
    report = make_report(model=a.model, requant=a.requant, result=result, estimate=est,
                         cycles=cycles, onnxruntime_cpu_latency_us=ort_us,
                         bitstream=str(bitstream), seed=a.seed, fold=fold,
                         host={**link, "clock_hz": result.wrapper["clock_hz"]} | (
                             {"uart_note": target.uart_note} if target.uart_note else {}))
    report["rtl_matches_reference"] = rtl_ok
    report["no_dsp"] = d.no_dsp
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(format_report(report))
    print(f"wrote {out}/report.json")
    if rtl_ok is False:
        print("intflow: error: the RTL simulation differs from the reference", file=sys.stderr)
        return 1
    if not report["timing_met"]:
        f = report["fmax_mhz"]
        msg = (f"misses the {f['constraint']:g} MHz clock constraint by "
               f"{f['constraint'] - f['achieved']:.2f} MHz (achieved {f['achieved']:.2f} MHz, "
               f"{f['source']})")
        if a.allow_timing_fail:
            print(f"warning: {msg} (--allow-timing-fail)")
        else:
            print(f"intflow: error: {msg}; rerun with --allow-timing-fail to accept it, or "
                  f"another --seed", file=sys.stderr)
            return 1
    return 0


# ---- intflow update-weights (boards/update_weights.py) ----------------------------------------

def _update_weights_parser(sub) -> None:
    u = sub.add_parser("update-weights", help="new weights into a built bitstream, without "
                       "place and route",
                       description="Compile NEW.onnx with the requantisation and folding "
                       "recorded in OUT/report.json, check that only weights differ (graph, "
                       "shapes, widths, folding, requantisation: exit 2 naming what differs), "
                       "rewrite the block-RAM weight ROMs of OUT's bitstream (iCE40: icebram + "
                       "icepack; ECP5: ecpbram + ecppack; not Gowin), update report.json and "
                       "verify the new RTL on Icarus against the new model's reference.")
    u.add_argument("out", metavar="OUT/", help="an intflow build output directory")
    u.add_argument("model", metavar="NEW.onnx", help="the model with the new weights")
    u.add_argument("-o", "--out", dest="new_out", default=None, metavar="OUT2/",
                   help="write the updated build here (a new directory; default: OUT/ in "
                        "place)")
    u.add_argument("--input-shape", action="append", default=[], metavar="NAME=d0,d1,...",
                   help="as for intflow build")
    u.add_argument("--no-sim", action="store_true", help="skip the RTL simulation check")


def cmd_update_weights(a) -> int:
    import json

    from .boards.update_weights import update_weights
    from .compiler.dataflow.estimate import estimate
    t0 = time.perf_counter()
    shapes = _input_shapes(argparse.Namespace(input_shape=a.input_shape, model=a.model))
    r = update_weights(a.out, a.model, a.new_out, input_shapes=shapes)
    print(f"patched {r.roms} weight ROMs into {r.report['bitstream']} in {r.seconds:.1f} s "
          f"(no place and route)")
    ok = None
    if not a.no_sim:
        _, ok = rtl_cycles(r.design, r.df, estimate(r.df, r.report["family"]))
    r.report["rtl_matches_reference"] = ok
    (r.out / "report.json").write_text(json.dumps(r.report, indent=1) + "\n")
    print(f"wrote {r.out}/report.json ({time.perf_counter() - t0:.1f} s in all)")
    if ok is False:
        print("intflow: error: the RTL simulation differs from the reference", file=sys.stderr)
        return 1
    return 0


# ---- intflow sweep (intflow/sweep.py) ---------------------------------------------------------

SWEEP_EPILOG = """\
grid: each of --board, --fold, --requant takes a comma-separated list; the sweep is their
cartesian product (board x fold x requant), e.g.
  intflow sweep m.onnx --board ecp5-85f,ice40-up5k --fold min,auto:4,auto:8,max \\
      --requant ort,dyadic -o out/sweep/          (2 x 4 x 2 = 16 designs)
fold values: min, max, auto (the fastest folding whose estimate fits the board, as intflow
build), auto:N (--fold auto --max-multipliers N), or FILE.json (a folding file).
--random K builds K designs of the grid drawn with --seed.

each design is a Dask task: compile -> estimate (a design whose estimate does not fit the
board is pruned, not placed and routed) -> --stop-after estimate | sim (RTL on --samples
random inputs, held to the reference) | build (intflow build: RTL simulation, place and
route, OUT/<design>/report.json). A failed design is reported and the sweep goes on. Results
already in OUT/sweep.json for the same model, options, intflow source and toolchain are
reused. Compare the builds with: intflow report OUT/*/report.json
exit 0 when at least one design finished, 1 when none did, 2 on bad input.
"""


def _sweep_parser(sub) -> None:
    from .sweep import STAGES
    s = sub.add_parser("sweep", help="build a grid of designs (boards x foldings x requant) "
                       "as Dask tasks",
                       description="Sweep MODEL over boards, foldings and requantisation "
                       "modes on a Dask LocalCluster (--workers) or an existing scheduler "
                       "(--scheduler), writing OUT/sweep.json, a log per design and the "
                       "build directories.", epilog=SWEEP_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help="quantized ONNX model (.onnx)")
    s.add_argument("--board", required=True, metavar="B1,B2,...",
                   help="targets (see intflow build --help)")
    s.add_argument("--fold", default="auto", metavar="F1,F2,...",
                   help="foldings: min, max, auto, auto:N, FILE.json (default auto)")
    s.add_argument("--requant", default="ort", metavar="ort,dyadic",
                   help="requantisation modes (default ort)")
    s.add_argument("-o", "--out", required=True, help="output directory (OUT/sweep.json, "
                   "OUT/points/: logs and results, OUT/<design>/)")
    s.add_argument("--stop-after", choices=STAGES, default="build",
                   help="last stage of each design (default build)")
    s.add_argument("--random", type=_positive, default=None, metavar="K",
                   help="K designs of the grid drawn at random (with --seed)")
    s.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    s.add_argument("--workers", type=_positive, default=2,
                   help="worker processes of the local cluster (default 2)")
    s.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run on this Dask scheduler instead of a local cluster (its workers "
                        "need intflow and the model and OUT/ at the same paths)")
    s.add_argument("--samples", type=_positive, default=2,
                   help="random samples of the --stop-after sim RTL check (default 2)")
    s.add_argument("--pnr-seed", type=int, default=1, help="nextpnr placement seed")
    s.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="as intflow build --clock")
    s.add_argument("--html", metavar="report.html",
                   help="write intflow report's HTML page of the finished builds (rewritten "
                        "as builds finish)")


def cmd_sweep(a) -> int:
    from .sweep import main as sweep_main
    return sweep_main(a)


# ---- intflow report ----------------------------------------------------------------------------

def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="compare builds: a table, JSON, an HTML page with plots",
                       description="Read OUT/report.json of each build (intflow build) and "
                       "print a table: resources used of available, Fmax, latency, II, "
                       "throughput, MAC utilisation, speed-up over onnxruntime on the CPU, the "
                       "cost model's estimate error and the latency/resource Pareto front. "
                       "--json writes every design with the derived figures; --html one "
                       "self-contained page with the table and plots.")
    p.add_argument("outs", nargs="+", metavar="OUT/",
                   help="build directories (or their report.json files)")
    p.add_argument("--html", metavar="report.html", help="write a self-contained HTML page")
    p.add_argument("--json", metavar="all.json", help="write all designs and derived figures")


def cmd_report(a) -> int:
    from .report import run
    run(a.outs, html_path=a.html, json_path=a.json)
    return 0


def cmd_check(a) -> int:
    from .arrays import load_inputs
    from .check import check, cpu_flags, format_rows, random_inputs
    from .design import compile as compile_design
    d = compile_design(a.model, requant=a.requant, input_shapes=_input_shapes(a))
    inputs = (load_inputs(a.inputs, d.graph) if a.inputs
              else random_inputs(d.graph, a.samples, a.seed))
    rows, ok = check(a.model, d.graph, inputs)
    import onnxruntime
    print(f"onnxruntime {onnxruntime.__version__}; CPU: {' '.join(cpu_flags())}")
    print(format_rows(rows))
    for n in d.graph.notes:
        print(f"note: {n}")
    print("intflow agrees with onnxruntime's integer kernels" if ok else
          "intflow DIFFERS from onnxruntime's integer kernels (see 'rounding tie' / 'real "
          "mismatch')")
    return 0 if ok else 1


def cmd_compile(a) -> int:
    from .design import compile as compile_design
    t0 = time.perf_counter()
    _check_target(a.out, directory=True)
    d = compile_design(a.model, requant=a.requant, input_shapes=_input_shapes(a),
                       fold=a.fold, max_multipliers=a.max_multipliers, target_ii=a.target_ii,
                       no_dsp=getattr(a, "no_dsp", False))
    hardware = True
    try:
        d.dataflow()
    except ModelError as e:
        if a.fold not in ("auto", "min", "max"):
            raise  # a folding file that does not fit the model
        hardware = False
        d.graph.notes.append(f"no hardware for this graph yet: {e.reason}")
    try:
        d.save(a.out, hardware=hardware)
    except OSError as e:
        raise ModelError(f"cannot write the output directory: {e.strerror or e}",
                         file=a.out) from None
    print(d.table())
    if hardware:
        print()
        print((Path(a.out) / "estimate.txt").read_text().rstrip())
    for n in d.graph.notes:
        print(f"note: {n}")
    written = "graph.json, constants.npz, layers.txt" + (
        ", estimate.json, rtl/intflow_network.v, rtl/ports.json" if hardware else "")
    print(f"wrote {a.out}/{{{written}}} ({time.perf_counter() - t0:.2f} s)")
    return 0


def cmd_run(a) -> int:
    from .arrays import load_inputs, save_outputs
    from .design import compile as compile_design
    _check_target(a.outputs, directory=False)
    d = compile_design(a.model, requant=a.requant, input_shapes=_input_shapes(a),
                       fold=a.fold, max_multipliers=a.max_multipliers, target_ii=a.target_ii,
                       no_dsp=getattr(a, "no_dsp", False))
    inputs = load_inputs(a.inputs, d.graph)
    if a.samples is not None:
        inputs = {k: v[: a.samples] for k, v in inputs.items()}
    n = next(iter(inputs.values())).shape[0]
    rtl = a.engine in ("icarus", "verilator")
    if a.taps and not rtl:
        raise ModelError(f"--taps records the RTL's streams: not with --engine {a.engine} "
                         "(use icarus or verilator)")
    if (a.port is None) == (a.engine == "board"):
        raise ModelError("--engine board needs --port" if a.port is None else
                         "--port is for --engine board")
    t0 = time.perf_counter()
    if a.engine == "board":
        outs = _run_board(a, d, inputs)
        if outs is None:
            return 1
    else:
        outs = d.run(inputs, engine=a.engine, stall=a.stall, taps=a.taps)
    dt = time.perf_counter() - t0
    save_outputs(a.outputs, outs)
    print(f"{a.engine}: {n} samples in {dt:.3f} s -> {a.outputs} "
          f"({', '.join(f'{k} {list(v.shape)} {v.dtype}' for k, v in outs.items())})")
    if d.last_cycles is not None:
        c = d.last_cycles
        ii = c["initiation_interval"]
        print(f"cycles ({a.engine}, stall {c['stall']:g}): latency {c['latency']:,} (first "
              f"input -> last output of a sample), initiation interval "
              f"{f'{ii:,}' if ii is not None else 'n/a (one sample)'}")
        if ii:
            from .compiler.dataflow.fold import mvaus
            units = mvaus(d.dataflow())
            macs = sum(e.params["rows"] * e.params["k"] * e.params["n"] for e in units)
            mults = sum(e.params["pe"] * e.params["simd"] for e in units)
            if mults:
                print(f"MAC utilisation {macs / (mults * ii):.0%} ({macs:,} MACs per inference "
                      f"/ ({mults} multipliers x II {ii:,}))"
                      + ("; II measured with stalls, --stall 0 gives the steady state"
                         if c["stall"] else ""))
    for note in d.graph.notes:
        print(f"note: {note}")
    taps_differ = False
    if a.taps:
        from .sim.network import format_taps
        print(format_taps(*d.last_taps))
        taps_differ = bool(d.last_taps[0])
    if a.compare:
        return _compare(a.model, inputs, outs) or int(taps_differ)
    return int(taps_differ)


def _run_board(a, d, inputs):
    """``intflow run --engine board``: the outputs, or None after printing a board error
    (exit 1); a port that cannot be opened is a usage error (ModelError, exit 2)."""
    from .host import BoardError, Link, run_design
    Link.from_dataflow(d.dataflow(), a.baud)  # one input and one output stream, or exit 2
    try:
        import serial
    except ImportError:
        raise ModelError("--engine board needs pyserial (pip install pyserial)") from None
    try:
        port = serial.serial_for_url(a.port, a.baud, timeout=0.05, write_timeout=a.timeout)
    except (serial.SerialException, ValueError) as e:
        raise ModelError(f"cannot open serial port {a.port}: {e}") from None
    try:
        return run_design(d, inputs, a.port, baud=a.baud, timeout=a.timeout, serial=port)
    except BoardError as e:
        print(f"intflow: error: {e}", file=sys.stderr)
        return None
    finally:
        port.close()


def _count_diff(label: str, outs, truth) -> int:
    bad = 0
    for k, want in truth.items():
        got = outs[k]
        diff = np.flatnonzero(np.asarray(got) != np.asarray(want))
        bad += diff.size
        msg = f"{label}: {k}: {want.size - diff.size}/{want.size} elements equal"
        if diff.size:
            i = int(diff[0])
            msg += (f"; first difference at flat index {i}: intflow {got.ravel()[i].item()!r}, "
                    f"onnxruntime {want.ravel()[i].item()!r}")
        print(msg)
    return bad


def _compare(model: str, inputs, outs) -> int:
    """Compare with onnxruntime; where this CPU's u8s8 kernel may saturate (AVX2 without
    VNNI), also with the u8u8 oracle, which is what onnxruntime computes on VNNI/ARM CPUs."""
    import tempfile

    import onnx

    from . import ort
    from .oracle import u8u8_oracle
    bad = _count_diff("onnxruntime", outs, ort.run(model, inputs))
    if not bad:
        return 0
    oracle = u8u8_oracle(onnx.load(model))
    if oracle == onnx.load(model):
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "oracle.onnx")
        onnx.save(oracle, path)
        exact = _count_diff("onnxruntime u8u8 oracle (exact sums)", outs, ort.run(path, inputs))
    if not exact:
        print("intflow equals onnxruntime's exact kernels; this CPU's u8s8 kernel saturates "
              "int16 pair sums (AVX2 without VNNI), which is where the differences come from")
    return 1 if exact else 0


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, one line already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        return {"compile": cmd_compile, "run": cmd_run, "check": cmd_check,
                "build": cmd_build, "report": cmd_report,
                "update-weights": cmd_update_weights, "sweep": cmd_sweep}[a.command](a)
    except ModelError as e:
        # one line, whatever a library put into the reason
        print(" ".join(f"intflow: error: {e}".split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("intflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
