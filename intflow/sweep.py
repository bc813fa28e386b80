"""``intflow sweep``: many designs of one model (boards x foldings x requantisation modes),
one Dask task each, on a LocalCluster or an existing Dask scheduler (issue 10).

The grid is the cartesian product of comma-separated axes::

    intflow sweep MODEL --board ecp5-85f,ice40-up5k --fold min,auto:8,max \\
        --requant ort,dyadic -o OUT/ [--random K --seed S] [--workers N | --scheduler ADDR]

Fold values: ``min``, ``max``, ``auto`` (the fastest folding whose estimate fits the board,
as ``intflow build --fold auto``), ``auto:N`` (``--fold auto --max-multipliers N``) or a
folding file ``FILE.json``. ``--random K`` builds K points of the grid drawn with ``--seed``.

Each task (``run_point``: a plain dict in, a plain dict out, so it pickles to any worker)
compiles and folds the model, estimates it (``compiler.dataflow.estimate`` plus the UART
wrapper, as ``boards/fit.py``) and *prunes* a point whose estimate does not fit the device;
then, by ``--stop-after``: ``estimate`` stops; ``sim`` runs the RTL under cocotb on a few
random samples and holds its outputs to the reference; ``build`` runs ``intflow build``'s own
code (``cli.cmd_build``: RTL simulation, place and route, report.json) into ``OUT/<point>/``.

Files: ``OUT/sweep.json`` (this sweep's points, rewritten as each one finishes),
``OUT/points/<point>.log`` and ``.json`` (the task's console output and result),
``OUT/<point>/`` (build output; ``intflow report OUT/*/report.json`` compares the finished
builds). A point is not run again when ``OUT/points/<point>.json`` holds a finished result
(ok or pruned) for the same key: SHA-256 of the model, the fold file, the point, the options,
intflow's own source and (builds) the toolchain versions. Failed points are retried on the
next run; place and route also has its own cache (boards/build.py).

Paths are made absolute: with ``--scheduler`` the workers must see the model and OUT/ at the
same paths (a shared file system) and have intflow installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import util as importlib_util
from pathlib import Path

from .compiler.errors import ModelError
from .files import write_text_atomic

STAGES = ("estimate", "sim", "build")
FINISHED = ("ok", "pruned")  # results a later run reuses; "failed"/"does not fit" are retried
BAUD = 115200
_FOLD = re.compile(r"^(min|max|auto|auto:([1-9][0-9]*))$")


# ---- the grid ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    board: str
    fold: str  # min | max | auto | auto:N | FILE.json
    requant: str

    @property
    def name(self) -> str:
        """Directory and log name: board_fold_requant, e.g. ecp5-85f_auto8_ort."""
        fold = self.fold.replace(":", "")
        if self.fold.endswith(".json"):
            fold = "file-" + re.sub(r"[^A-Za-z0-9_.-]", "-", Path(self.fold).stem)
        return f"{self.board}_{fold}_{self.requant}"


def split_axis(text: str, what: str) -> list[str]:
    """``a,b,c`` -> [a, b, c] without empty items or repeats (order kept)."""
    items = [s.strip() for s in text.split(",")]
    if not all(items):
        raise ModelError(f"--{what} {text!r}: an empty item (a comma too many?)")
    return list(dict.fromkeys(items))


def fold_options(fold: str) -> tuple[str, int | None]:
    """A fold value -> (``--fold``, ``--max-multipliers``): ``auto:8`` -> (auto, 8)."""
    m = _FOLD.match(fold)
    if m:
        return ("auto", int(m.group(2))) if m.group(2) else (fold, None)
    if fold.endswith(".json"):
        return fold, None
    raise ModelError(f"--fold {fold!r}: expected min, max, auto, auto:N (N >= 1) or a "
                     f"FILE.json folding")


def expand(boards: Sequence[str], folds: Sequence[str], requants: Sequence[str]) -> list[Point]:
    """Every board x fold x requant (in that order); unknown values raise ModelError."""
    from .boards import TARGETS
    from .compiler import REQUANT_MODES
    for b in boards:
        if b not in TARGETS:
            raise ModelError(f"--board {b!r}: unknown target; choose from {', '.join(TARGETS)}")
    for r in requants:
        if r not in REQUANT_MODES:
            raise ModelError(f"--requant {r!r}: choose from {', '.join(REQUANT_MODES)}")
    folds = [str(Path(f).absolute()) if f.endswith(".json") else f for f in folds]
    for f in folds:
        fold_options(f)
    points = [Point(b, f, r) for b in boards for f in folds for r in requants]
    names = [p.name for p in points]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ModelError(f"two fold files with the same name give the same point {dup[0]}; "
                         f"rename one")
    return points


def choose(points: list[Point], k: int | None, seed: int) -> list[Point]:
    """``k`` points drawn without replacement with ``seed`` (grid order kept); all if None."""
    if k is None or k >= len(points):
        return list(points)
    keep = set(random.Random(seed).sample(range(len(points)), k))
    return [p for i, p in enumerate(points) if i in keep]


# ---- cache keys -------------------------------------------------------------------------------

def _sha256_file(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"  # the task reports the error; the key only has to differ


def source_hash() -> str:
    """SHA-256 of intflow's own Python sources (tests excluded): a changed compiler, RTL
    generator or flow gives new keys, so no stale result is reused."""
    h = hashlib.sha256()
    for pkg in ("intflow", "intflow.compiler", "intflow.hw", "intflow.sim", "intflow.boards"):
        spec = importlib_util.find_spec(pkg)
        for root in spec.submodule_search_locations or []:
            for f in sorted(Path(root).rglob("*.py")):
                if "tests" in f.relative_to(root).parts:
                    continue
                h.update(f"{pkg}/{f.relative_to(root)}".encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def point_key(spec: dict, code: str, toolchain: dict | None) -> str:
    fields = {k: spec[k] for k in ("model", "board", "fold", "requant", "stop_after",
                                   "samples", "pnr_seed", "clock")}
    fold_file = spec["fold"] if spec["fold"].endswith(".json") else None
    doc = {"point": fields, "model_sha256": _sha256_file(spec["model"]),
           "fold_sha256": fold_file and _sha256_file(fold_file), "code": code,
           "toolchain": toolchain}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# ---- one task ---------------------------------------------------------------------------------

def _error_line(log: Path) -> str | None:
    """The last ``intflow: error:`` line intflow build printed (its reason for exit 1)."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines()
             if ln.startswith("intflow: error:")]
    return lines[-1].removeprefix("intflow: error:").strip() if lines else None


def _stages(spec: dict, result: dict, log: Path) -> None:
    """compile -> estimate -> prune -> sim | build, filling ``result`` in place."""
    import argparse

    from .boards import get_target
    from .boards.fit import RESOURCES, device_budget, overflows, predicted_use
    from .cli import cmd_build
    from .compiler.dataflow.estimate import estimate
    from .design import compile as compile_design
    from .host import Link
    from .rtl_check import rtl_cycles

    target = get_target(spec["board"])
    fold, max_mult = fold_options(spec["fold"])
    d = compile_design(spec["model"], requant=spec["requant"], fold=fold,
                       max_multipliers=max_mult)
    if fold == "auto" and max_mult is None:  # as intflow build: the device's budget
        f = device_budget(d.graph, target)
        if f is None:
            d.fold = "min"
        else:
            d.max_multipliers = f.max_multipliers
    df = d.dataflow()
    est = estimate(df, target.family)
    predicted = predicted_use(est["total"], target.family)  # plus the UART wrapper
    result["estimate"] = {"multipliers": int(est["total"]["multipliers"]),
                          "initiation_interval": int(est["initiation_interval"]),
                          "latency": int(est["latency_estimate"]), "macs": int(est["macs"]),
                          "predicted": predicted, "available": dict(target.available),
                          "fold": d.fold, "max_multipliers": d.max_multipliers}
    over = overflows(predicted, target.available)
    if over:
        result["status"] = "pruned"
        result["reason"] = f"estimate does not fit {target.device}: {', '.join(over)}"
        return
    Link.from_dataflow(df, BAUD)  # one input and one output stream, as a board build needs
    from .hw.network import Network
    try:
        Network(df)._MustUse__silence = True  # built to check it can be; never elaborated
    except ValueError as e:
        raise ModelError(f"no hardware for this network: {e}", file=spec["model"]) from None
    if spec["stop_after"] == "estimate":
        result["status"] = "ok"
        return
    if spec["stop_after"] == "sim":
        cycles, same = rtl_cycles(d, df, est, samples=spec["samples"])
        result["sim"] = {**cycles, "rtl_matches_reference": same, "samples": spec["samples"]}
        if same is None:
            result.update(status="failed", reason="no RTL simulator (see the log)")
        elif not same:
            result.update(status="failed", reason="the RTL outputs differ from the reference")
        else:
            result["status"] = "ok"
        return
    out = Path(spec["out"])
    args = argparse.Namespace(
        model=spec["model"], requant=spec["requant"], input_shape=[], board=spec["board"],
        out=str(out), fold=fold, max_multipliers=max_mult, target_ii=None,
        seed=spec["pnr_seed"], allow_timing_fail=True, baud=BAUD, clock=spec["clock"],
        no_cache=False, no_sim=False)
    rc = cmd_build(args)  # the same code path as `intflow build`
    report = out / "report.json"
    if rc != 0:
        if report.is_file():  # written before the RTL check failed: keep it out of OUT/*/
            os.replace(report, out / "report.rejected.json")
        sys.stdout.flush()  # the log is this task's redirected stdout: read it whole
        sys.stderr.flush()
        reason = _error_line(log) or f"intflow build exited {rc}"
        result.update(status="does not fit" if "does not fit" in reason else "failed",
                      reason=reason)
        return
    rep = json.loads(report.read_text())
    result["build"] = {
        "report": str(report), "resources": {r: rep["resources"][r]["used"] for r in RESOURCES},
        "fmax_mhz": rep["fmax_mhz"]["achieved"], "clock_mhz": rep["clock_mhz"],
        "timing_met": rep["timing_met"], "latency_us": rep["latency_us"],
        "cycles": rep["cycles"], "rtl_matches_reference": rep.get("rtl_matches_reference"),
        "bitstream": rep["bitstream"],
        # place and route reused from boards/build.py's cache (same RTL, tools, options)
        "pnr_cached": rep.get("build", {}).get("cached"),
        "pnr_seconds": rep.get("build", {}).get("seconds")}
    result["status"] = "ok"


def run_point(spec: dict) -> dict:
    """The Dask task: one design from ``spec`` (see ``specs``) to a result dict. Never raises
    for a bad design: the error becomes ``status: failed`` with its reason."""
    import socket
    t0 = time.perf_counter()
    result = {"name": spec["name"], "point": spec["point"], "key": spec["key"],
              "stop_after": spec["stop_after"], "status": "failed", "reason": None,
              "cached": False, "worker": f"{socket.gethostname()}:{os.getpid()}",
              "log": spec["log"]}
    log = Path(spec["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with (open(log, "w", buffering=1) as f, contextlib.redirect_stdout(f),  # line-buffered:
          contextlib.redirect_stderr(f)):  # a running task's log can be followed
        try:
            _stages(spec, result, log)
        except ModelError as e:
            result.update(status="failed", reason=" ".join(str(e).split()))
        except Exception as e:  # noqa: BLE001 (any failure is this point's result)
            import traceback
            traceback.print_exc()
            result.update(status="failed", reason=f"{type(e).__name__}: {e}")
        print(f"sweep: {result['status']}" + (f": {result['reason']}" if result["reason"]
                                              else ""))
    result["seconds"] = round(time.perf_counter() - t0, 2)
    return result


# ---- the sweep --------------------------------------------------------------------------------

def specs(model: str, points: list[Point], out: Path, *, stop_after: str, samples: int,
          pnr_seed: int, clock: float | None, code: str | None = None) -> list[dict]:
    """The task arguments of every point, with their cache keys."""
    from .boards import get_target
    from .boards.build import toolchain_versions
    code = code or source_hash()
    tools: dict[str, dict] = {}
    out_specs = []
    for p in points:
        s = {"name": p.name, "point": asdict(p), "model": str(Path(model).absolute()),
             "board": p.board, "fold": p.fold, "requant": p.requant, "stop_after": stop_after,
             "samples": samples, "pnr_seed": pnr_seed, "clock": clock,
             "out": str(out.absolute() / p.name),
             "log": str(out.absolute() / "points" / f"{p.name}.log")}
        toolchain = None
        if stop_after == "build":
            fam = get_target(p.board).family
            toolchain = tools.setdefault(fam, toolchain_versions(fam))
        s["key"] = point_key(s, code, toolchain)
        out_specs.append(s)
    return out_specs


def _result_file(spec: dict) -> Path:
    return Path(spec["log"]).with_suffix(".json")


def _reusable(spec: dict) -> dict | None:
    """The finished result of an earlier run with the same key (OUT/points/<name>.json;
    a build's report.json must still be there), else None."""
    try:
        old = json.loads(_result_file(spec).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or old.get("key") != spec["key"] or (
            old.get("status") not in FINISHED):
        return None
    if spec["stop_after"] == "build" and old["status"] == "ok" and not Path(
            spec["out"], "report.json").is_file():
        return None
    return old


def _write_json(path: Path, doc: dict) -> None:
    write_text_atomic(path, json.dumps(doc, indent=1) + "\n")


def write_html(results: list[dict], path: str) -> int:
    """``intflow report``'s HTML page of the finished builds; returns how many."""
    from . import report
    files = [r["build"]["report"] for r in results
             if r["status"] == "ok" and r.get("build")]
    if not files:
        return 0
    designs = [report.load(f, i) for i, f in enumerate(files, start=1)]
    report.derive(designs)
    write_text_atomic(path, report.render_html(designs))
    return len(designs)


def _unfinished(spec: dict, stop_after: str, status: str, reason: str) -> dict:
    """The result of a point that did not run to its end (worker died, Ctrl-C)."""
    return {"name": spec["name"], "point": spec["point"], "key": spec["key"],
            "stop_after": stop_after, "status": status, "reason": reason, "cached": False,
            "worker": "?", "log": spec["log"], "seconds": 0.0}


def run_sweep(model: str, points: list[Point], out: str | os.PathLike,
              connect: Callable[[], contextlib.AbstractContextManager], *,
              stop_after: str = "build", samples: int = 2, pnr_seed: int = 1,
              clock: float | None = None, html: str | None = None, command: str = "",
              code: str | None = None, log: Callable[[str], None] = print) -> list[dict]:
    """Run every point as a task on the dask.distributed Client that ``connect()`` yields
    (called only when some point is not reused: a finished result with the same key is
    taken from OUT/points/); OUT/sweep.json is rewritten after every point. ``code``: the
    source part of the keys (default ``source_hash()``). Returns the results in grid
    order."""
    from distributed import as_completed
    if stop_after not in STAGES:
        raise ValueError(f"stop_after {stop_after!r}: choose from {', '.join(STAGES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = specs(model, points, out, stop_after=stop_after, samples=samples,
                 pnr_seed=pnr_seed, clock=clock, code=code)
    done: dict[str, dict] = {}
    t0 = time.perf_counter()
    doc = {"model": str(Path(model).absolute()), "command": command,
           "stop_after": stop_after, "workers": None, "points": []}
    _write_json(out / "sweep.json", doc)  # marks OUT as a sweep's from the start

    def record(r: dict) -> None:
        done[r["name"]] = r
        if not r["cached"]:
            _write_json(_result_file(r), r)
        doc["points"] = [done[s["name"]] for s in todo if s["name"] in done]
        doc["wall_seconds"] = round(time.perf_counter() - t0, 2)
        _write_json(out / "sweep.json", doc)
        why = f": {r['reason']}" if r["reason"] else ""
        how = "cached" if r["cached"] else f"{r['seconds']:.1f} s on {r['worker']}"
        log(f"[{len(done)}/{len(todo)}] {r['name']}: {r['status']}{why} ({how})")
        if html and r["status"] == "ok" and r.get("build") and not r["cached"]:
            write_html(list(done.values()), html)  # the report grows as builds finish

    run = []
    for s in todo:
        old = _reusable(s)
        if old:
            record({**old, "cached": True})
        else:
            run.append(s)
    if run:
        with connect() as client:
            doc["workers"] = len(client.scheduler_info()["workers"])
            futures = {client.submit(run_point, s, key=f"intflow-sweep-{s['key'][:16]}",
                                     pure=False, retries=0): s for s in run}
            try:
                for fut in as_completed(list(futures)):
                    s = futures[fut]
                    try:
                        r = fut.result()
                    except Exception as e:  # noqa: BLE001 (a worker died: this point failed)
                        r = _unfinished(s, stop_after, "failed", f"{type(e).__name__}: {e}")
                    record(r)
            except KeyboardInterrupt:
                # Ctrl-C: drop the queued tasks and stop the running ones (leaving the
                # client's context closes the local cluster, killing its worker processes);
                # what finished stays in OUT/ and a rerun resumes from it
                client.cancel(list(futures), force=True)
                for s in run:
                    if s["name"] not in done:
                        done[s["name"]] = _unfinished(s, stop_after, "cancelled",
                                                      "interrupted (Ctrl-C)")
                doc["points"] = [done[s["name"]] for s in todo if s["name"] in done]
                doc["wall_seconds"] = round(time.perf_counter() - t0, 2)
                doc["interrupted"] = True
                _write_json(out / "sweep.json", doc)
                log(f"interrupted: {sum(r['status'] == 'cancelled' for r in done.values())} "
                    f"designs cancelled; {out / 'sweep.json'} holds the finished ones (rerun "
                    "the same command to resume)")
                raise
    results = [done[s["name"]] for s in todo]
    doc["wall_seconds"] = round(time.perf_counter() - t0, 2)
    _write_json(out / "sweep.json", doc)
    if html:
        n = write_html(results, html)
        log(f"wrote {html} ({n} builds)" if n else f"no finished build: {html} not written")
    return results


# ---- the summary ------------------------------------------------------------------------------

def _figures(r: dict) -> tuple[dict[str, int], float, str] | None:
    """(resources, latency, unit) of a finished point: measured after a build, else the
    estimate's resources with the simulated (or estimated) latency in cycles."""
    if r["status"] != "ok":
        return None
    if r.get("build"):
        return r["build"]["resources"], float(r["build"]["latency_us"]), "us"
    lat = r["sim"]["latency"] if r.get("sim") else r["estimate"]["latency"]
    return r["estimate"]["predicted"], float(lat), "cycles"


def pareto(results: list[dict]) -> dict[str, set[str]]:
    """Per board, the points on the latency-vs-LUT or latency-vs-DSP Pareto front."""
    from .report import PARETO_RESOURCES, pareto_front
    front: dict[str, set[str]] = {}
    for board in dict.fromkeys(r["point"]["board"] for r in results):
        group = [(r, _figures(r)) for r in results
                 if r["point"]["board"] == board and _figures(r)]
        on = front.setdefault(board, set())
        for k in PARETO_RESOURCES:
            flags = pareto_front([(f[0][k], f[1]) for _, f in group])
            on.update(r["name"] for (r, _), flag in zip(group, flags) if flag)
    return front


def summary(results: list[dict]) -> str:
    """The end-of-sweep table; * marks the per-board Pareto front (latency vs LUT or DSP)."""
    front = pareto(results)
    head = ("point", "status", "mults", "II est", "LUT", "DSP", "BRAM", "latency", "Fmax",
            "time")
    rows = [head]
    for r in results:
        e = r.get("estimate") or {}
        f = _figures(r)
        res = f[0] if f else e.get("predicted", {})
        src = "" if r.get("build") else " (est)" if res else ""
        lat = "-" if not f else (f"{f[1]:.2f} us" if f[2] == "us" else f"{f[1]:,.0f} cyc")
        star = "*" if r["name"] in front.get(r["point"]["board"], ()) else " "
        rows.append((f"{star}{r['name']}", r["status"] + (" (cached)" if r["cached"] else ""),
                     str(e.get("multipliers", "-")), f"{e.get('initiation_interval', 0):,}"
                     if e else "-", *(f"{res[k]:,}{src}" if res else "-"
                                      for k in ("LUT", "DSP", "BRAM")),
                     lat, f"{r['build']['fmax_mhz']:.1f}" if r.get("build") else "-",
                     "-" if r["cached"] else f"{r['seconds']:.0f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in rows]
    counts = {s: sum(r["status"] == s for r in results)
              for s in ("ok", "pruned", "does not fit", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n)
                 + f" of {len(results)}; * = on the Pareto front of latency vs LUT or DSP "
                 f"(per board)")
    for r in results:
        if r["status"] in ("failed", "does not fit"):
            lines.append(f"  {r['name']}: {r['reason']} (log: {r['log']})")
    return "\n".join(lines)


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None):
    """A Client on ``scheduler``, else on a LocalCluster of ``workers`` single-threaded
    processes (builds hold the GIL and run tools in subprocesses: one task per process)."""
    import logging

    from distributed import Client, LocalCluster
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise ModelError(f"--scheduler {scheduler}: cannot connect to the Dask scheduler "
                             f"({e})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", memory_limit=0,  # any free port
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        yield client


def check_out(out: str) -> None:
    """Refuse an OUT that is a file, or a non-empty directory that is not a sweep's."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ModelError("exists and is not a directory; refusing to replace it", file=out)
    if p.is_dir() and any(p.iterdir()) and not (p / "sweep.json").is_file():
        raise ModelError("exists and is not an intflow sweep directory (no sweep.json); "
                         "refusing to write into it", file=out)


def main(a) -> int:
    """``intflow sweep`` (the CLI's handler; ``a`` from its subparser)."""
    from .design import compile as compile_design
    points = expand(split_axis(a.board, "board"), split_axis(a.fold, "fold"),
                    split_axis(a.requant, "requant"))
    points = choose(points, a.random, a.seed)
    check_out(a.out)
    compile_design(a.model, requant="ort")  # a bad model: exit 2 here, not N failed tasks
    command = shlex.join(["intflow", "sweep", a.model, "--board", a.board, "--fold", a.fold,
                          "--requant", a.requant, "-o", a.out, "--stop-after", a.stop_after]
                         + (["--random", str(a.random), "--seed", str(a.seed)] if a.random
                            else []))
    where = a.scheduler or f"a local cluster of {a.workers} worker processes"
    print(f"sweep of {len(points)} designs of {a.model} (stop after {a.stop_after}) on {where}")
    t0 = time.perf_counter()
    results = run_sweep(a.model, points, a.out, lambda: dask_client(a.workers, a.scheduler),
                        stop_after=a.stop_after, samples=a.samples, pnr_seed=a.pnr_seed,
                        clock=a.clock, html=a.html, command=command)
    print(summary(results))
    ok = sum(r["status"] == "ok" for r in results)
    print(f"{ok} of {len(results)} designs finished in {time.perf_counter() - t0:.1f} s "
          f"(wall, incl. cluster start); wrote {Path(a.out) / 'sweep.json'}"
          + (f"; compare the builds: intflow report {Path(a.out)}/*/report.json"
             if a.stop_after == "build" and ok else ""))
    return 0 if ok else 1
