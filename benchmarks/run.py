"""The benchmark suite (issue 7): example models x foldings x devices, built with the open
toolchain, measured against the project's goals and against onnxruntime on this machine.

    .venv/bin/python benchmarks/run.py [--models M ...] [--devices D ...] [--folds F ...]
        [--requant ort|dyadic] [--jobs 1] [--timeout S] [--plan-only | --render-only]
    make bench [BENCH_ARGS="..."]

writes ``benchmarks/results.json`` and ``benchmarks/RESULTS.md`` (generated from results.json)
after every point; a run holds exactly the points it was asked for. ``--plan-only`` prints
each point's folding and fit check; ``--render-only`` regenerates RESULTS.md. Build
directories: ``out/bench/<model>/<device>/<fold>/`` (``intflow build`` output: report.json,
bitstream), the build's console output beside them in ``<fold>.build.log``.

Per point (model, device, fold):
1. compile, fold and estimate (``compiler.dataflow.estimate``, plus the UART wrapper as in
   ``boards/fit.py``); an estimate larger than the device is recorded as
   "does not fit: <resource> <estimate>/<available>" and not placed and routed;
2. the design hash: SHA-256 of the elaborated top (RTLIL of the network inside the UART host
   wrapper), the toolchain versions and the build options. A point whose ``report.json`` was
   written for the same hash is not rebuilt (resumable); any change to the hardware, the
   folding, the tools or the options rebuilds it;
3. ``intflow build`` in a subprocess (RTL simulation for the cycle counts, place and route,
   report.json), one point at a time by default (``--jobs``).

Foldings: ``min`` is one multiplier per layer (``--fold min``). ``max`` is the maximum
throughput *on that device*: the fastest balanced folding whose estimate fits the device
(``boards.fit.device_budget``, built as ``--fold auto --max-multipliers N``). Where the
compiler's unconstrained ``--fold max`` fits, it is the same folding; results.json says whether
it is (``equals_unconstrained_max``).

Clocks: each device is built with its Fmax goal as the clock constraint (``--clock``: ECP5-85F
100 MHz, UP5K 50 MHz) and ``--allow-timing-fail``; on-chip latency is counted at
min(achieved Fmax, constraint), the clock the design is known to meet. onnxruntime's latency is
measured once per model in the same run: the int8 model, ORT_ENABLE_ALL, one thread, median of
200 single-sample runs (``intflow.ort.latency_us``).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS_JSON = BENCH / "results.json"
RESULTS_MD = BENCH / "RESULTS.md"
OUT = ROOT / "out" / "bench"
MODEL_DIR = ROOT / "examples" / "models"

MODELS = {
    "jet_mlp_qdq": "jet-tagging-shape MLP 16-64-32-32-5",
    "digits_mlp_qdq": "digits MLP (8x8 images)",
    "digits_cnn_qdq": "digits CNN (8x8 images)",
    "digits_cnn_w4_qdq": "digits CNN with 4-bit weights (LUT multipliers)",
    "pulse_cnn1d_qdq": "pulse 1D CNN",
    "mnist1d_cnn_qdq": "mnist1d 1D CNN (40 samples, 10 classes)",
}
# device -> the Fmax goal, used as the clock constraint of the build
DEVICES = {"ice40-up5k": 50.0, "ecp5-85f": 100.0}
FOLDS = {
    "min": "one multiplier per layer (--fold min)",
    "max": "fastest balanced folding whose estimate fits the device "
           "(--fold auto --max-multipliers N from boards.fit.device_budget)",
}
# models of the issue that have no example here (said so in RESULTS.md)
NOT_MEASURED: list[str] = []
SEED = 1
BAUD = 115200

# the goals of issue 7
MAC_UTILIZATION_GOAL = 0.90
FMAX_GOAL = DEVICES
MACS_PER_DSP_GOAL = 1.8  # UP5K: two 8-bit products per SB_MAC16
SPEEDUP_GOAL = {("jet_mlp_qdq", "ecp5-85f"): 10.0, ("digits_cnn_qdq", "ecp5-85f"): 4.0,
                ("digits_cnn_w4_qdq", "ecp5-85f"): 10.0}
ESTIMATE_TOLERANCE = {"LUT": 0.15, "FF": 0.15, "DSP": 0.0, "BRAM": 0.0}


@dataclass(frozen=True)
class Point:
    model: str
    device: str
    fold: str

    @property
    def key(self) -> str:
        return f"{self.model}/{self.device}/{self.fold}"

    def out(self) -> Path:
        return OUT / self.model / self.device / self.fold


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (commands and results.json)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def expand(models: list[str] | None = None, devices: list[str] | None = None,
           folds: list[str] | None = None) -> list[Point]:
    """The matrix (every model x device x fold, in that order) or the subset asked for."""
    chosen = []
    for given, known, what in ((models, MODELS, "model"), (devices, DEVICES, "device"),
                               (folds, FOLDS, "fold")):
        names = list(known) if not given else given
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown {what} {', '.join(unknown)}; choose from "
                             f"{', '.join(known)}")
        chosen.append(names)
    return [Point(m, d, f) for m in chosen[0] for d in chosen[1] for f in chosen[2]]


# ---- step 1: compile, fold, estimate, fit; the design hash ----------------------------------

def plan_point(p: Point, requant: str = "ort") -> dict:
    """Fold and estimate ``p``; when the estimate fits, the ``intflow build`` folding options
    and the design hash. Keys: fits, reason, fold_args, multipliers, estimate, predicted,
    initiation_interval, ii_bound, design_hash, equals_unconstrained_max."""
    from intflow.boards import get_target
    from intflow.boards.build import cache_key, elaborate, toolchain_versions
    from intflow.boards.fit import RESOURCES, device_budget, predicted_use
    from intflow.compiler.dataflow.estimate import estimate, requant_cost
    from intflow.compiler.dataflow.fold import apply_fold, engine_cycles, mvaus
    from intflow.design import compile as compile_design

    target = get_target(p.device)
    path = MODEL_DIR / f"{p.model}.onnx"
    d = compile_design(path, requant=requant, fold="min")
    info: dict = {"model_path": _rel(path)}
    if p.fold == "max":
        f = device_budget(d.graph, target)
        if f is None:  # not even the smallest folding's estimate fits: say by how much
            info["fold_args"] = ["--fold", "min"]
            info["no_folding_fits"] = True
        else:
            d.fold, d.max_multipliers = "auto", f.max_multipliers
            info["fold_args"] = ["--fold", "auto", "--max-multipliers", str(f.max_multipliers)]
    else:
        info["fold_args"] = ["--fold", "min"]
    df = d.dataflow()
    est = estimate(df, target.family)
    total = est["total"]
    predicted = predicted_use(total, target.family)
    # DSPs the MVAUs' requantisers take (the estimate's requant_cost): says why DSPs run out
    rq_dsp = sum(requant_cost(e.params.get("requant"), target.family)["DSP"] for e in mvaus(df))
    over = [f"{r} {predicted[r]:,}/{target.available[r]:,}"
            + (f" ({rq_dsp} of them in the requantisers)" if r == "DSP" and rq_dsp else "")
            for r in RESOURCES if predicted[r] > target.available[r]]
    bound = max(df.engines, key=lambda e: engine_cycles(e, df))
    info.update(
        multipliers=int(total["multipliers"]),
        estimate={r: int(total[r]) for r in RESOURCES},
        predicted=predicted,
        requantizer_dsp=rq_dsp,
        initiation_interval=int(est["initiation_interval"]),
        latency_estimate=int(est["latency_estimate"]),
        macs=int(est["macs"]),
        ii_bound={"engine": bound.name, "kind": bound.kind,
                  "cycles": int(engine_cycles(bound, df))},
        fits=not over,
        reason=None if not over else (
            "does not fit"
            + (" (not even the smallest folding)" if info.get("no_folding_fits") else "")
            + ": " + ", ".join(over)),
    )
    if p.fold == "max":
        unconstrained = copy.deepcopy(df)
        apply_fold(unconstrained, "max")
        info["equals_unconstrained_max"] = (
            estimate(unconstrained, target.family)["total"]["multipliers"]
            == total["multipliers"])
    if over:
        return info
    from intflow.hw.network import Network
    try:
        net = Network(df)
    except ValueError as e:
        info.update(fits=False, reason=f"no hardware for this network: {e}")
        return info
    si, so = df.streams[df.inputs[0]], df.streams[df.outputs[0]]
    files, _ = elaborate(net, target, baud=BAUD, in_depth=si.length, out_depth=so.length,
                         clock_mhz=DEVICES[p.device])
    options = {"point": p.key, "requant": requant, "seed": SEED, "baud": BAUD,
               "clock_mhz": DEVICES[p.device], "fold_args": info["fold_args"]}
    # the build cache's key: a SHA-256 of the elaborated files, tool versions and options
    info["design_hash"] = cache_key(files, toolchain_versions(target.family), options)
    return info


HASH_FILE = "design_hash.txt"


def already_built(out: Path, digest: str) -> bool:
    """A finished build of the same design: report.json beside the hash it was built for."""
    h = out / HASH_FILE
    return ((out / "report.json").is_file() and h.is_file()
            and h.read_text().strip() == digest)


# ---- step 2: the build -------------------------------------------------------------------------

def build_command(p: Point, fold_args: list[str], requant: str) -> list[str]:
    return ["intflow", "build", _rel(MODEL_DIR / f"{p.model}.onnx"),
            "--board", p.device, "-o", _rel(p.out()), *fold_args,
            "--requant", requant, "--clock", f"{DEVICES[p.device]:g}", "--seed", str(SEED),
            "--allow-timing-fail"]


def build_log(p: Point) -> Path:
    """Beside the build directory: ``intflow build`` refuses a directory it did not write."""
    return p.out().parent / f"{p.fold}.build.log"


def build_point(p: Point, info: dict, requant: str, timeout: float) -> tuple[str, str | None]:
    """Run ``intflow build`` for ``p`` (its output to ``build_log(p)``). Returns (status,
    reason): ok, does not fit (synthesis or place and route said so), failed."""
    out = p.out()
    for stale in ("report.json", HASH_FILE):  # a failed build must not leave an old report
        (out / stale).unlink(missing_ok=True)
    cmd = build_command(p, info["fold_args"], requant)
    argv = [sys.executable, "-c", "import sys; from intflow.cli import main; "
            "sys.argv[0] = 'intflow'; sys.exit(main())", *cmd[1:]]
    logfile = build_log(p)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        try:
            rc = subprocess.run(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return "failed", f"build timed out after {timeout:.0f} s (see {logfile})"
    text = logfile.read_text(errors="replace")
    errors = [ln for ln in text.splitlines() if ln.startswith("intflow: error:")]
    if rc == 0 and (out / "report.json").is_file():
        return "ok", None
    reason = errors[-1].removeprefix("intflow: error: ") if errors else f"exit {rc}"
    if "does not fit" in reason:
        return "does not fit", reason
    return "failed", reason


# ---- step 3: figures and goals -------------------------------------------------------------------

def figures(report: dict, ort_us: float | None) -> dict:
    """The derived figures of one build report."""
    fmax = report["fmax_mhz"]
    achieved, constraint = float(fmax["achieved"]), float(fmax["constraint"])
    clock = min(achieved, constraint)  # the clock this design is known to meet
    lat, ii = report["cycles"]["latency"], report["cycles"]["initiation_interval"]
    dsp = report["resources"]["DSP"]["used"]
    latency_us = lat / clock
    return {
        "clock_mhz": round(clock, 2),
        "latency_cycles": lat,
        "initiation_interval": ii,
        "cycles_source": report["cycles"]["source"],
        "latency_us": latency_us,
        "throughput_inferences_per_s": clock * 1e6 / ii,
        "mac_utilization": report["mac_utilization"],
        "macs": report["macs"],
        "multipliers": report["multipliers"],
        "macs_per_cycle_per_dsp": None if dsp == 0 else report["macs"] / ii / dsp,
        "onnxruntime_us": ort_us,
        "speedup_vs_onnxruntime": None if ort_us is None else ort_us / latency_us,
    }


def _ge(name: str, measured: float | None, goal: float, unit: str, fmt: str) -> dict:
    """A ">= goal" result; the miss is said as the shortfall and its share of the goal."""
    if measured is None:
        return {"goal": name, "target": f">= {goal:{fmt}}{unit}", "measured": None,
                "pass": None, "detail": "not measured"}
    ok = measured >= goal
    short = goal - measured
    if ok:
        detail = "met"
    elif unit == "x":  # a ratio: say the factor still missing
        detail = (f"missed by a factor of {goal / measured:.1f} ({measured:.2f}x against "
                  f"{goal:g}x)" if measured > 0 else "missed")
    elif unit == "%":
        detail = f"missed by {short:{fmt}} percentage points"
    else:
        detail = f"missed by {short:{fmt}}{unit} ({short / goal:.0%} below the goal)"
    return {"goal": name, "target": f">= {goal:{fmt}}{unit}",
            "measured": f"{measured:{fmt}}{unit}", "pass": ok, "detail": detail}


def estimate_within(resource: str, est: int, used: int) -> tuple[bool, float]:
    """(within ESTIMATE_TOLERANCE, relative error) of an estimate against what was used."""
    err = (est - used) / used if used else (0.0 if est == 0 else float("inf"))
    return abs(err) <= ESTIMATE_TOLERANCE[resource], err


def evaluate(point: dict) -> list[dict]:
    """Every goal of issue 7 that applies to this point, measured, pass/miss and by how much."""
    if point.get("status") != "ok":
        return []
    fig, rep = point["figures"], point["report"]
    model, device = point["model"], point["device"]
    goals = [_ge("MAC utilisation (MACs / (multipliers x II))", fig["mac_utilization"] * 100,
                 MAC_UTILIZATION_GOAL * 100, "%", ".1f"),
             _ge(f"Fmax ({rep['fmax_mhz'].get('source', '?')})",
                 float(rep["fmax_mhz"]["achieved"]), FMAX_GOAL[device], " MHz", ".1f")]
    if device == "ice40-up5k":
        goals.append(_ge("MACs per cycle per DSP", fig["macs_per_cycle_per_dsp"],
                         MACS_PER_DSP_GOAL, "", ".2f"))
    if (model, device) in SPEEDUP_GOAL:
        goals.append(_ge("latency vs onnxruntime (1 thread)", fig["speedup_vs_onnxruntime"],
                         SPEEDUP_GOAL[model, device], "x", ".1f"))
    for r, tol in ESTIMATE_TOLERANCE.items():
        used = rep["resources"][r]["used"]
        est = point["plan"]["predicted"][r]
        ok, err = estimate_within(r, est, used)
        target = f"within +-{tol:.0%}" if tol else "exact"
        detail = "met" if ok else (f"estimate {est:,} vs used {used:,}: "
                                   f"{err:+.0%}" if used else f"estimate {est:,} vs used 0")
        goals.append({"goal": f"{r} estimate (incl. UART wrapper)", "target": target,
                      "measured": f"{est:,} est / {used:,} used", "pass": ok,
                      "detail": detail})
    return goals


def why(point: dict, goal: dict) -> str | None:
    """What the recorded figures say about a missed goal (None when they say nothing)."""
    plan, fig, rep = point["plan"], point["figures"], point["report"]
    g = goal["goal"]
    if g.startswith("MAC utilisation"):
        b = plan["ii_bound"]
        return (f"the pipeline's II ({fig['initiation_interval']:,} cycles) is set by "
                f"{b['engine']} ({b['kind']}, {b['cycles']:,} cycles per inference); the MVAUs "
                f"that need fewer cycles idle for the rest of each interval, so the "
                f"{fig['multipliers']} multipliers do {fig['macs']:,} MACs in "
                f"{fig['multipliers'] * fig['initiation_interval']:,} multiplier-cycles")
    if g.startswith("Fmax"):
        cp = rep.get("critical_path")
        return f"critical path {cp}" if cp else None
    if g.startswith("MACs per cycle per DSP"):
        dsp = rep["resources"]["DSP"]["used"]
        return (f"{fig['multipliers']} multipliers on {dsp} DSPs (requantisers use DSPs too) "
                f"at {fig['mac_utilization']:.0%} MAC utilisation")
    if g.startswith("latency vs onnxruntime"):
        text = (f"{fig['latency_cycles']:,} cycles at {fig['clock_mhz']:g} MHz = "
                f"{fig['latency_us']:.2f} us vs onnxruntime {fig['onnxruntime_us']:.2f} us")
        if plan.get("equals_unconstrained_max"):
            text += (f"; this is the compiler's fastest folding: its II "
                     f"({plan['initiation_interval']:,} cycles estimated) is the floor of the "
                     f"dataflow, since streams carry one element per cycle and an MVAU reading "
                     f"rows of k elements needs rows x k cycles however many multipliers it has "
                     f"(wider streams would lift this floor)")
        return text
    return None


# ---- the run ----------------------------------------------------------------------------------

REPORT_KEYS = ("resources", "fmax_mhz", "timing_met", "cycles", "macs", "multipliers",
               "mac_utilization", "fold", "rtl_matches_reference", "toolchain", "bitstream",
               "bitstream_sha256", "latency_us", "latency_us_at_fmax")


def _critical_path(out: Path) -> str | None:
    """The first and last cell of nextpnr's critical path (report.json has no path)."""
    try:
        rep = json.loads((out / "build" / "nextpnr.json").read_text())
        path = rep["critical_paths"][0]["path"]
        return f"{path[0]['from']['cell']} -> {path[-1]['to']['cell']} ({len(path)} hops)"
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def collect(p: Point, info: dict, status: str, reason: str | None, resumed: bool,
            ort_us: float | None) -> dict:
    """One point of results.json."""
    point = {"model": p.model, "device": p.device, "fold": p.fold, "status": status,
             "reason": reason, "resumed": resumed, "out": _rel(p.out()),
             "design_hash": info.get("design_hash"), "plan": info}
    if status == "ok":
        report = json.loads((p.out() / "report.json").read_text())
        built = (p.out() / "report.json").stat().st_mtime
        point["built"] = dt.datetime.fromtimestamp(built, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        point["report"] = {k: report.get(k) for k in REPORT_KEYS}
        point["report"]["critical_path"] = _critical_path(p.out())
        point["figures"] = figures(report, ort_us)
        point["goals"] = evaluate(point)
    return point


def measure_ort(models: list[str]) -> dict[str, float]:
    """onnxruntime latency (us, one thread, median of 200) of each model, measured now."""
    from intflow import ort
    from intflow.check import random_inputs
    from intflow.compiler import compile_model
    out = {}
    for m in models:
        path = str(MODEL_DIR / f"{m}.onnx")
        out[m] = ort.latency_us(path, random_inputs(compile_model(path), 1, seed=0))
    return out


def machine() -> dict:
    flags, model = [], platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", None, platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    keep = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
            "amx_int8")
    import onnxruntime
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in keep if f in flags],
            "platform": platform.platform(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__}


def write_results(results: dict, path: Path = RESULTS_JSON) -> None:
    """Atomic: an interrupted run leaves the previous complete file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def run_suite(points: list[Point], results: dict, *, requant: str = "ort", jobs: int = 1,
              timeout: float = 7200.0, planner: Callable = plan_point,
              builder: Callable = build_point, log: Callable[[str], None] = print,
              save: Callable[[dict], None] = write_results,
              keep: list[dict] | None = None) -> dict:
    """Plan every point (in order), build those that fit and are not built yet, and save
    ``results`` after every point. ``planner``/``builder`` are replaceable for tests; ``keep``
    holds earlier points (``--merge``) that stay in front of this run's."""
    keep = list(keep or [])
    lock = threading.Lock()
    ort_us = results["onnxruntime"]["latency_us"]
    done: dict[str, dict] = {}

    def record(p: Point, point: dict) -> None:
        with lock:
            done[p.key] = point
            results["points"] = keep + [done[q.key] for q in points if q.key in done]
            save(results)
        extra = f": {point['reason']}" if point["reason"] else ""
        log(f"[{len(done)}/{len(points)}] {p.key}: {point['status']}"
            f"{' (resumed)' if point['resumed'] else ''}{extra}")

    def build_one(p: Point, info: dict) -> None:
        t0 = time.monotonic()
        log(f"building {p.key}: {shlex.join(build_command(p, info['fold_args'], requant))}")
        status, reason = builder(p, info, requant, timeout)
        if status == "ok":  # the hash of what report.json describes: the resume check
            (p.out() / HASH_FILE).write_text(info["design_hash"] + "\n")
        info["build_seconds"] = round(time.monotonic() - t0, 1)
        record(p, collect(p, info, status, reason, False, ort_us.get(p.model)))

    todo, twins = [], []
    for p in points:
        try:
            info = planner(p, requant)
        except Exception as e:  # noqa: BLE001 (a model the flow rejects is a result too)
            record(p, collect(p, {}, "failed", f"{type(e).__name__}: {e}", False, None))
            continue
        if not info["fits"]:
            record(p, collect(p, info, "does not fit" if info["reason"].startswith(
                "does not fit") else "failed", info["reason"], False, None))
        elif already_built(p.out(), info["design_hash"]):
            record(p, collect(p, info, "ok", None, True, ort_us.get(p.model)))
        elif twin := next((q for q, i in todo if i["design_hash"] == info["design_hash"]), None):
            twins.append((p, info, twin))  # e.g. UP5K "max" = "min" when the DSPs run out
        else:
            todo.append((p, info))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for f in [pool.submit(build_one, p, info) for p, info in todo]:
            f.result()
    for p, info, twin in twins:  # the same design as an earlier point: its build, not a rerun
        first = done[twin.key]
        info["same_design_as"] = twin.key
        info["build_seconds"] = 0.0
        if first["status"] == "ok":
            shutil.copytree(twin.out(), p.out(), symlinks=True, dirs_exist_ok=True)
        record(p, collect(p, info, first["status"], first["reason"], False,
                          ort_us.get(p.model) if first["status"] == "ok" else None))
    return results


# ---- RESULTS.md -------------------------------------------------------------------------------

def _cell(v, fmt: str = ",") -> str:
    return "-" if v is None else format(v, fmt)


def _res(rep: dict, plan: dict, r: str) -> str:
    v = rep["resources"][r]
    return f"{v['used']:,} / {v['available']:,} (est {plan['predicted'][r]:,})"


def _fold(p: dict) -> str:
    """The fold's name, and whether ``max`` is the compiler's unconstrained ``--fold max``."""
    same = p.get("plan", {}).get("equals_unconstrained_max")
    return p["fold"] + (" (= --fold max)" if same else " (< --fold max)" if same is False
                        else "")


def _state(p: dict) -> str:
    reason = p.get("reason") or ""
    return reason if reason.startswith(p["status"]) else f"{p['status']}: {reason}"


def render(results: dict) -> str:
    """RESULTS.md from results.json."""
    m = results["machine"]
    ort = results["onnxruntime"]
    lines = [
        "# Benchmarks (generated by `benchmarks/run.py` from `benchmarks/results.json`)",
        "",
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, flags {' '.join(m['flags']) or '-'}; "
        f"{m['platform']}; Python {m['python']}  ",
        f"Requantisation: `{results['requant']}`; seed {results['seed']}",
        "",
        "Foldings: " + "; ".join(f"**{k}** = {v}" for k, v in results["folds"].items()) + ".",
        "Each device is built with its Fmax goal as the clock constraint ("
        + ", ".join(f"{d} {c:g} MHz" for d, c in results["devices"].items())
        + "); latency and throughput are at min(achieved Fmax, constraint). Resources are "
        "used / available (est = the cost model's estimate plus the UART host wrapper, as "
        "the fit check uses it). Cycles come from the RTL simulation (`cycles` source in "
        "results.json) unless marked.",
        "",
        f"onnxruntime {m['onnxruntime']} CPU latency, measured in the run that built each "
        "point (int8 QDQ model, ORT_ENABLE_ALL, one thread, median of 200 single-sample runs; "
        "the table's ORT column is the figure each point is compared with), latest: "
        + (", ".join(f"{k} {v:.1f} us" for k, v in ort["latency_us"].items()) or "-") + ".",
        "",
    ]
    for note in results.get("notes", []):  # what a reader must know about this run
        lines += [f"> {note}", ""]
    points = results["points"]
    for device in results["devices"]:
        rows = [p for p in points if p["device"] == device]
        if not rows:
            continue
        lines += [f"## {device}", "",
                  "| model | fold | status | mults | LUT | FF | DSP | BRAM | Fmax MHz | "
                  "latency cycles | II cycles | latency us | inferences/s | MAC util | "
                  "ORT us | speedup |",
                  "|---|---|---|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in rows:
            if p["status"] != "ok":
                lines.append(f"| {p['model']} | {_fold(p)} | {_state(p)} | "
                             f"{_cell(p['plan'].get('multipliers'))} |" + " |" * 12)
                continue
            f, rep, plan = p["figures"], p["report"], p["plan"]
            src = "" if f["cycles_source"].startswith("rtl") else " (est)"
            lines.append(
                f"| {p['model']} | {_fold(p)} | ok{' (resumed)' if p['resumed'] else ''} | "
                f"{f['multipliers']} | {_res(rep, plan, 'LUT')} | {_res(rep, plan, 'FF')} | "
                f"{_res(rep, plan, 'DSP')} | {_res(rep, plan, 'BRAM')} | "
                f"{rep['fmax_mhz']['achieved']:.1f} | {f['latency_cycles']:,}{src} | "
                f"{f['initiation_interval']:,}{src} | {f['latency_us']:.2f} | "
                f"{f['throughput_inferences_per_s']:,.0f} | {f['mac_utilization']:.0%} | "
                f"{_cell(f['onnxruntime_us'], '.1f')} | "
                f"{_cell(f['speedup_vs_onnxruntime'], '.1f')}x |")
        lines.append("")
    lines += ["## Goals", "",
              "| point | goal | target | measured | result |", "|---|---|---|---|---|"]
    misses = []
    for p in points:
        for g in evaluate(p):
            res = "pass" if g["pass"] else ("n/a" if g["pass"] is None else "**miss**")
            key = f"{p['model']}/{p['device']}/{p['fold']}"
            lines.append(f"| {key} | {g['goal']} | {g['target']} | {_cell(g['measured'], '')} "
                         f"| {res}{'' if g['pass'] else ': ' + g['detail']} |")
            if g["pass"] is False:
                misses.append((key, g, why(p, g)))
    lines.append("")
    if misses:
        lines += ["## Misses: by how much and why", ""]
        for key, g, reason in misses:
            lines.append(f"- {key}, {g['goal']}: {g['detail']}"
                         + (f"; {reason}." if reason else "."))
        lines.append("")
    unbuilt = [p for p in points if p["status"] != "ok"]
    if unbuilt:
        lines += ["## Points not built", ""]
        lines += [f"- {p['model']}/{p['device']}/{p['fold']}: {_state(p)}" for p in unbuilt]
        lines.append("")
    if results.get("not_measured"):
        lines += ["## Not measured", ""] + [f"- {n}" for n in results["not_measured"]] + [""]
    lines += ["## Published figures for context", "",
              "Other tools, devices and precisions: context, not a like-for-like comparison.",
              ""] + [f"- {c}" for c in CONTEXT]
    return "\n".join(lines) + "\n"


# Published figures, each with its source, copied only where the source text was read
# (paper abstracts, repository files); figures that could not be checked are left out.
CONTEXT: list[str] = [
    "hls4ml, jet-substructure tagging (the study the 16-64-32-32-5 MLP shape comes from): "
    "J. Duarte et al., \"Fast inference of deep neural networks in FPGAs for particle "
    "physics\", JINST 13 P07027 (2018), arXiv:1804.06913 "
    "(https://arxiv.org/abs/1804.06913): maps resource usage and latency of such networks on "
    "Xilinx FPGAs and demonstrates sub-microsecond latency. Its per-model latency/DSP "
    "figures could not be checked from the text available here, so none are quoted.",
    "FINN: Y. Umuroglu et al., \"FINN: A Framework for Fast, Scalable Binarized Neural "
    "Network Inference\", FPGA 2017, arXiv:1612.07119 (https://arxiv.org/abs/1612.07119): "
    "on a ZC706 (< 25 W system power), up to 12.3 million classifications/s at 0.31 us "
    "latency on MNIST (95.8 %), 21,906 classifications/s at 283 us on CIFAR-10/SVHN; "
    "binarized weights and activations (not int8).",
    "MLPerf Tiny with hls4ml and FINN: H. Borras et al., \"Open-source FPGA-ML codesign for "
    "the MLPerf Tiny Benchmark\", arXiv:2206.11791 (https://arxiv.org/abs/2206.11791): "
    "keyword spotting, anomaly detection and image classification on Pynq-Z2 and Arty "
    "A7-100T, latencies as low as 20 us and energy as low as 30 uJ per inference.",
    "MARLANN (8-bit CNN accelerator on the iCE40 UP5K, open toolchain): icetime Fmax "
    "23.42-27.31 MHz over 50 nextpnr runs, and 26.13-29.26 MHz in an earlier run "
    "(https://github.com/SymbioticEDA/MARLANN/blob/master/benchmark/perf.md); 154 MMACC/s at "
    "12 MHz and 256 MMACC/s at 20 MHz on the UP5K breakout board "
    "(https://github.com/SymbioticEDA/MARLANN/blob/master/power-test/README.md), i.e. "
    "256 / 20 = 12.8 MACs per cycle (our arithmetic; the UP5K has 8 SB_MAC16).",
]


# ---- command line -----------------------------------------------------------------------------

def new_results(command: str, requant: str) -> dict:
    return {"suite": "intflow benchmarks (issue 7)", "command": command,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(), "requant": requant, "seed": SEED,
            "devices": {d: c for d, c in DEVICES.items()}, "folds": dict(FOLDS),
            "onnxruntime": {"threads": 1, "latency_us": {}},
            "not_measured": list(NOT_MEASURED), "points": []}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", metavar="M", help=f"of {', '.join(MODELS)}")
    ap.add_argument("--devices", nargs="+", metavar="D", help=f"of {', '.join(DEVICES)}")
    ap.add_argument("--folds", nargs="+", metavar="F", help=f"of {', '.join(FOLDS)}")
    ap.add_argument("--requant", choices=("ort", "dyadic"), default="ort")
    ap.add_argument("--jobs", type=int, default=1,
                    help="builds at a time (default 1; the machine has few cores)")
    ap.add_argument("--timeout", type=float, default=7200.0, help="seconds per build")
    ap.add_argument("--render-only", action="store_true",
                    help="regenerate RESULTS.md from results.json, build nothing")
    ap.add_argument("--plan-only", action="store_true",
                    help="fold, estimate and hash every point, print them, build nothing")
    ap.add_argument("--merge", action="store_true",
                    help="keep the points of the existing results.json that this run does not "
                         "cover (e.g. rerun one device after a change)")
    a = ap.parse_args(argv)
    if a.render_only:
        if not RESULTS_JSON.is_file():
            print(f"benchmarks: error: {_rel(RESULTS_JSON)}: no results to render (run the "
                  f"suite first)", file=sys.stderr)
            return 2
        RESULTS_MD.write_text(render(json.loads(RESULTS_JSON.read_text())))
        print(f"wrote {RESULTS_MD.relative_to(ROOT)}")
        return 0
    if a.jobs < 1:
        ap.error("--jobs must be >= 1")
    try:
        points = expand(a.models, a.devices, a.folds)
    except ValueError as e:
        print(f"benchmarks: error: {e}", file=sys.stderr)
        return 2
    if a.plan_only:
        for p in points:
            info = plan_point(p, a.requant)
            state = "fits" if info["fits"] else info["reason"]
            built = "built" if info["fits"] and already_built(p.out(), info["design_hash"]) \
                else "not built"
            print(f"{p.key}: {' '.join(info['fold_args'])}, {info['multipliers']} multipliers, "
                  f"II {info['initiation_interval']:,}: {state} ({built})")
        return 0
    command = shlex.join([".venv/bin/python", "benchmarks/run.py",
                          *(argv if argv is not None else sys.argv[1:])])
    results = new_results(command, a.requant)
    keep: list[dict] = []
    if a.merge and RESULTS_JSON.is_file():
        old = json.loads(RESULTS_JSON.read_text())
        ours = {p.key for p in points}
        keep = [q for q in old["points"]
                if f"{q['model']}/{q['device']}/{q['fold']}" not in ours]
        results["onnxruntime"]["latency_us"].update(old["onnxruntime"]["latency_us"])
        results["command"] = f"{old['command']}; then {command}"
    models = list(dict.fromkeys(p.model for p in points))
    print(f"onnxruntime latency (1 thread) of {', '.join(models)} ...")
    results["onnxruntime"]["latency_us"].update(measure_ort(models))

    def save(r: dict) -> None:  # both files after every point: an interrupted run keeps them
        write_results(r)
        RESULTS_MD.write_text(render(r))

    run_suite(points, results, requant=a.requant, jobs=a.jobs, timeout=a.timeout, save=save,
              keep=keep)
    print(f"wrote {RESULTS_JSON.relative_to(ROOT)} and {RESULTS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
