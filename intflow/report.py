"""``intflow report``: compare several builds (each ``OUT/report.json``, written by
``intflow build``) in a terminal table, one JSON file and one self-contained HTML page.

Derived figures: resource utilisation, speed-up over the onnxruntime CPU latency measured in
the same build run, the cost model's error per resource ((estimate - used) / used), and the
Pareto front of latency against LUTs and against DSPs among the designs of the same model on
the same board (fewer resources and lower latency are both better).

The HTML page embeds its plots as base64 PNGs (matplotlib, Agg backend): it opens anywhere,
offline, with no external URL.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .compiler.errors import ModelError
from .files import write_text_atomic

RESOURCES = ("LUT", "FF", "DSP", "BRAM")
PARETO_RESOURCES = ("LUT", "DSP")
# benchmark goals (issue 7): cost-model error within this fraction for LUT/FF; DSP/BRAM exact
ESTIMATE_TOLERANCE = {"LUT": 0.15, "FF": 0.15, "DSP": 0.0, "BRAM": 0.0}

_NUMBER = "number"
_REQUIRED: list[tuple[str, str]] = [
    ("model", "string"), ("board", "string"), ("device", "string"), ("requant", "string"),
    *[(f"resources.{r}.{k}", _NUMBER) for r in RESOURCES for k in ("used", "available")],
    ("fmax_mhz.achieved", _NUMBER), ("fmax_mhz.constraint", _NUMBER),
    ("cycles.latency", _NUMBER), ("cycles.initiation_interval", _NUMBER),
    ("latency_us", _NUMBER), ("throughput_inferences_per_s", _NUMBER),
    ("mac_utilization", _NUMBER),
    ("onnxruntime_cpu_latency_us", "number or null"),  # null when it could not be measured
    ("bitstream", "string"), ("toolchain", "object"),
]


@dataclass
class Design:
    """One build: its report.json as read, plus what ``derive`` computes from it."""

    id: int
    source: str  # the report.json path as given on the command line
    report: dict
    layers: list[dict] = field(default_factory=list)  # [{"name", "cycles"}] in pipeline order
    layers_source: str | None = None  # "report.json" or "estimate.json (cost model)"
    estimates: dict = field(default_factory=dict)  # resource -> the cost model's figure | None
    derived: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return Path(self.report["model"]).stem

    @property
    def label(self) -> str:
        return f"#{self.id} {self.model} on {self.report['board']}"


# ---- reading --------------------------------------------------------------------------------

def _lookup(d: dict, path: str):
    cur = d
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    return cur


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(path: str, v, kind: str, file: str) -> None:
    ok = {"string": isinstance(v, str), "object": isinstance(v, dict),
          _NUMBER: _is_number(v) and v >= 0,
          "number or null": v is None or (_is_number(v) and v >= 0)}[kind]
    if not ok:
        want = "a non-negative number" if kind == _NUMBER else f"a {kind}"
        raise ModelError(f"'{path}' should be {want}, got {json.dumps(v)[:40]}", file=file)


def _read_layers(rep: dict, file: str) -> list[dict]:
    """``layers`` as a list of {"name"|"layer"|"engine", "cycles", ...} (the cost model's
    per-engine rows have this shape) or a mapping name -> cycles | {"cycles": n}."""
    raw = rep["layers"]
    if isinstance(raw, dict):
        raw = [{"name": k, **(v if isinstance(v, dict) else {"cycles": v})}
               for k, v in raw.items()]
    if not isinstance(raw, list):
        raise ModelError("'layers' should be a list or an object of per-layer cycles",
                         file=file)
    out = []
    for i, row in enumerate(raw):
        if not isinstance(row, dict) or not _is_number(row.get("cycles")):
            raise ModelError(f"'layers[{i}]' should hold a number 'cycles'", file=file)
        name = row.get("name") or row.get("engine") or row.get("layer") or f"layer {i}"
        out.append({"name": str(name), "cycles": int(row["cycles"]),
                    **({"kind": str(row["kind"])} if "kind" in row else {})})
    return out


def load(path: str, id: int = 1) -> Design:
    """Read and check one report.json (``path`` is OUT/ or the file itself). Raises
    ModelError naming the file on a missing/unreadable file or a missing required key."""
    p = Path(path)
    file = str(p / "report.json") if p.is_dir() else path
    if not Path(file).is_file():
        why = "no report.json in it (is it an 'intflow build' output?)" if p.is_dir() else (
            "no such file or directory")
        raise ModelError(why, file=path)
    try:
        rep = json.loads(Path(file).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read it: {getattr(e, 'strerror', None) or e}",
                         file=file) from None
    except json.JSONDecodeError as e:
        raise ModelError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                         file=file) from None
    if not isinstance(rep, dict):
        raise ModelError("should hold a JSON object (intflow build's report)", file=file)
    for key, kind in _REQUIRED:
        try:
            v = _lookup(rep, key)
        except KeyError:
            raise ModelError(f"missing required key '{key}'", file=file) from None
        _check_value(key, v, kind, file)
    if rep["latency_us"] <= 0:
        raise ModelError(f"'latency_us' should be positive, got {rep['latency_us']}", file=file)
    d = Design(id=id, source=file, report=rep)
    # the estimate beside each resource, else a top-level "estimate" (the cost model's own
    # dict, {"total": {...}, "layers": [...]}, or plain {"LUT": n, ...})
    top = rep.get("estimate") if isinstance(rep.get("estimate"), dict) else {}
    totals = top.get("total") if isinstance(top.get("total"), dict) else top
    for r in RESOURCES:
        if "estimate" in rep["resources"][r]:
            _check_value(f"resources.{r}.estimate", rep["resources"][r]["estimate"], _NUMBER,
                         file)
            d.estimates[r] = rep["resources"][r]["estimate"]
        else:
            d.estimates[r] = totals.get(r) if _is_number(totals.get(r)) else None
    if "layers" in rep:
        d.layers, d.layers_source = _read_layers(rep, file), "report.json"
    elif "layers" in top:
        d.layers, d.layers_source = _read_layers(top, file), "report.json (cost model)"
    else:  # intflow build saves the cost model's per-engine cycles beside report.json
        est = Path(file).parent / "estimate.json"
        try:
            layers = _read_layers(json.loads(est.read_text()), str(est))
        except (OSError, ValueError, KeyError, ModelError):
            layers = []
        if layers:
            d.layers, d.layers_source = layers, "estimate.json (cost model)"
    return d


# ---- derived figures ----------------------------------------------------------------------

def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For points (cost, latency), both to minimise: True where no other point is at least
    as good in both and strictly better in one. Equal points are all on the front."""
    return [not any(xj <= xi and yj <= yi and (xj < xi or yj < yi) for xj, yj in points)
            for xi, yi in points]


def folding_label(rep: dict) -> str:
    """``folding`` (a string, or engine -> {pe, simd}) or build's ``fold``: "PExSIMD ..."."""
    f = rep.get("folding", rep.get("fold"))
    if isinstance(f, str):
        return f
    if isinstance(f, dict) and f:
        parts = [f"{v.get('pe', '?')}x{v.get('simd', '?')}" if isinstance(v, dict) else str(v)
                 for v in f.values()]
        return " ".join(parts)
    return "-"


def estimate_error(used: float, estimate: float | None) -> float | None:
    """(estimate - used) / used; 0 when both are 0; None without an estimate or when the
    estimate is nonzero for nothing used (infinite relative error)."""
    if estimate is None:
        return None
    if used == 0:
        return 0.0 if estimate == 0 else None
    return (estimate - used) / used


def _cycles_error(cycles: dict) -> dict | None:
    """The cost model's latency and II against the simulation's (build writes
    ``cycles.estimate``), as (estimate - simulated) / simulated."""
    est = cycles.get("estimate")
    if not isinstance(est, dict):
        return None
    return {k: estimate_error(cycles[k], est[k]) for k in ("latency", "initiation_interval")
            if _is_number(est.get(k))} or None


def pareto_groups(designs: list[Design]) -> dict[tuple[str, str], list[Design]]:
    """The designs compared for a Pareto front: same model, same board."""
    groups: dict[tuple[str, str], list[Design]] = {}
    for d in designs:
        groups.setdefault((d.model, d.report["board"]), []).append(d)
    return groups


def derive(designs: list[Design]) -> None:
    """Fill each design's ``derived`` dict (utilisation, speed-up, estimate errors, Pareto)."""
    for d in designs:
        r = d.report
        res = r["resources"]
        errors, worst = {}, None
        for k in RESOURCES:
            est = d.estimates[k]
            e = estimate_error(res[k]["used"], est)
            errors[k] = e
            if est is not None:
                mag = math.inf if e is None else abs(e)
                if worst is None or mag > worst[1]:
                    worst = (k, mag, e)
        ort_us = r["onnxruntime_cpu_latency_us"]
        f = r["fmax_mhz"]
        d.derived = {
            "id": d.id, "label": d.label, "model_name": d.model, "source": d.source,
            "folding": folding_label(r),
            "utilization": {k: (res[k]["used"] / res[k]["available"]
                                if res[k]["available"] else None) for k in RESOURCES},
            "estimate": dict(d.estimates),
            "cycles_estimate_error": _cycles_error(r["cycles"]),
            "estimate_error": errors,
            "estimate_error_worst": (None if worst is None else
                                     {"resource": worst[0], "error": worst[2]}),
            "estimate_within_goal": (None if worst is None else all(
                errors[k] is not None and abs(errors[k]) <= ESTIMATE_TOLERANCE[k] + 1e-12
                for k in RESOURCES if d.estimates[k] is not None)),
            "timing_met": f["achieved"] >= f["constraint"],
            "speedup_vs_onnxruntime_cpu": (None if ort_us is None
                                           else ort_us / r["latency_us"]),
            "pareto": {},
            "layers": d.layers, "layers_source": d.layers_source,
        }
    for group in pareto_groups(designs).values():
        for k in PARETO_RESOURCES:
            front = pareto_front([(d.report["resources"][k]["used"], d.report["latency_us"])
                                  for d in group])
            for d, on in zip(group, front):
                d.derived["pareto"][k] = on


# ---- terminal -------------------------------------------------------------------------------

def _us(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def _rate(x: float) -> str:
    return (f"{x / 1e6:.2f} M/s" if x >= 1e6 else f"{x / 1e3:.1f} k/s" if x >= 1e3
            else f"{x:.1f} /s")


def _pct(e: float | None, signed: bool = True) -> str:
    if e is None:
        return "inf"
    if e == 0:
        return "exact" if signed else "0%"
    return f"{e:+.1%}" if signed else f"{e:.0%}"


def _speedup(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f}x" if s < 100 else f"{s:,.0f}x"


def _worst(d: Design) -> str:
    w = d.derived["estimate_error_worst"]
    return "-" if w is None else f"{w['resource']} {_pct(w['error'])}"


def _used(d: Design, k: str) -> str:
    v = d.report["resources"][k]
    u = d.derived["utilization"][k]
    return f"{v['used']:,}/{v['available']:,}" + ("" if u is None else f" {u:.0%}")


def _grid(head: Sequence[str], rows: list[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [line(head), "  ".join("-" * w for w in widths), *map(line, rows)]


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


def format_table(designs: list[Design]) -> str:
    """Two tables, one row per design: what each design is and uses; how fast it is."""
    res_rows = [(f"#{d.id}", _short(d.model, 24), d.report["board"], d.report["requant"],
                 _short(d.derived["folding"], 28),
                 *[_used(d, k) for k in RESOURCES]) for d in designs]
    perf_rows = []
    for d in designs:
        r, f = d.report, d.report["fmax_mhz"]
        c = r["cycles"]
        ort = r["onnxruntime_cpu_latency_us"]
        pareto = " ".join(k for k in PARETO_RESOURCES if d.derived["pareto"][k]) or "-"
        perf_rows.append((
            f"#{d.id}",
            f"{f['achieved']:.1f}/{f['constraint']:g}"
            + ("" if d.derived["timing_met"] else " MISSED"),
            f"{_us(r['latency_us'])} ({c['latency']:,})",
            f"{c['initiation_interval']:,}", _rate(r["throughput_inferences_per_s"]),
            f"{r['mac_utilization']:.0%}",
            _speedup(d.derived["speedup_vs_onnxruntime_cpu"])
            + ("" if ort is None else f" ({_us(ort)} us)"),
            _worst(d), pareto))
    lines = [f"{len(designs)} design{'s' * (len(designs) != 1)}"
             " (resources: used/available utilisation)", ""]
    lines += _grid(("#", "model", "board", "requant", "folding (PExSIMD)", *RESOURCES),
                   res_rows, right={5, 6, 7, 8})
    lines.append("")
    lines += _grid(("#", "Fmax MHz", "latency us (cycles)", "II", "throughput", "MAC util",
                    "vs onnxruntime CPU", "est. error", "Pareto"),
                   perf_rows, right={2, 3, 4, 5})
    lines += ["",
              "Fmax: achieved/constraint. Latency, throughput: at the constraint clock.",
              "MAC util: MACs / (multipliers x II). vs onnxruntime: its CPU latency / ours.",
              "est. error: the cost model's worst resource, (estimate - used) / used;",
              "  goal: LUT/FF within 15%, DSP/BRAM exact.",
              "Pareto: on the front of latency vs LUT / vs DSP, among designs of one model "
              "on one board."]
    return "\n".join(lines)


# ---- JSON -----------------------------------------------------------------------------------

def to_json(designs: list[Design]) -> dict:
    fronts: dict[str, dict[str, dict[str, list[int]]]] = {}  # model -> board -> resource
    for d in designs:
        m = fronts.setdefault(d.model, {}).setdefault(
            d.report["board"], {k: [] for k in PARETO_RESOURCES})
        for k in PARETO_RESOURCES:
            if d.derived["pareto"][k]:
                m[k].append(d.id)
    return {"generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "designs": [{"id": d.id, "source": d.source, "report": d.report,
                         "derived": d.derived} for d in designs],
            "pareto_front": fronts}


# ---- plots ----------------------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)  # each figure is laid out by tight_layout
    import matplotlib.pyplot as plt
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colors(designs: list[Design]) -> dict[str, str]:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
               "#e377c2", "#7f7f7f", "#bcbd22"]
    return {m: palette[i % len(palette)]
            for i, m in enumerate(dict.fromkeys(d.model for d in designs))}


def plots(designs: list[Design]) -> list[tuple[str, str, str]]:
    """[(id, caption, base64 PNG)] for the HTML page."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    colors = _colors(designs)
    out = []

    # latency vs LUT and vs DSP, Pareto front per model and board (color: model, marker:
    # board)
    markers = dict(zip(dict.fromkeys(d.report["board"] for d in designs), "os^Dvp*hX<>"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    lat = [d.report["latency_us"] for d in designs]
    ort = [d.report["onnxruntime_cpu_latency_us"] for d in designs
           if d.report["onnxruntime_cpu_latency_us"]]
    span = max(lat + ort) / min(lat + ort)
    for ax, k in zip(axes, PARETO_RESOURCES):
        drawn: set[str] = set()
        for (model, board), group in pareto_groups(designs).items():
            color = colors[model]
            pts = [(d.report["resources"][k]["used"], d.report["latency_us"], d) for d in group]
            front = sorted((x, y) for x, y, d in pts if d.derived["pareto"][k])
            if front:
                ax.plot([p[0] for p in front], [p[1] for p in front], drawstyle="steps-post",
                        color=color, lw=1.5, alpha=0.6)
            for x, y, d in pts:
                on = d.derived["pareto"][k]
                ax.scatter([x], [y], s=70 if on else 45, zorder=3, marker=markers[board],
                           facecolors=color if on else "white", edgecolors=color, lw=1.6)
                ax.annotate(f"#{d.id}", (x, y), textcoords="offset points", xytext=(6, 4),
                            fontsize=9)
            ort_m = {d.report["onnxruntime_cpu_latency_us"] for d in group} - {None}
            if ort_m and model not in drawn:  # one onnxruntime line per model
                drawn.add(model)
                ax.axhline(min(ort_m), color=color, ls="--", lw=1, alpha=0.7)
                ax.annotate(f"onnxruntime CPU ({model})", (0.01, min(ort_m)),
                            xycoords=("axes fraction", "data"), fontsize=8, color=color,
                            va="bottom")
        if span > 20:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel(f"{k} used")
        ax.set_ylabel("latency (µs)")
        ax.set_title(f"latency vs {k}")
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
    handles = [plt.Line2D([], [], marker="o", color=c, lw=1.5, label=m)
               for m, c in colors.items()]
    if len(markers) > 1:
        handles += [plt.Line2D([], [], marker=mk, color="k", ls="", label=b)
                    for b, mk in markers.items()]
    handles += [plt.Line2D([], [], marker="o", color="k", ls="", label="on the Pareto front"),
                plt.Line2D([], [], marker="o", color="k", ls="", markerfacecolor="white",
                           label="dominated")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5),
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    out.append(("latency-vs-resources",
                "Latency against LUTs and DSPs. Filled points and the step line: the Pareto "
                "front of each model on each board (no other design of that model on that "
                "board is both smaller and faster). Dashed: onnxruntime on the CPU.", _png(fig)))

    # estimate vs actual per resource
    with_est = [d for d in designs
                if any(d.derived["estimate"][k] is not None for k in RESOURCES)]
    if with_est:
        fig, axes = plt.subplots(1, 4, figsize=(12, 3.6))
        xs = range(len(with_est))
        for ax, k in zip(axes, RESOURCES):
            used = [d.report["resources"][k]["used"] for d in with_est]
            est = [d.derived["estimate"][k] or 0 for d in with_est]
            ax.bar([x - 0.2 for x in xs], est, 0.4, color="#bbbbbb", hatch="//",
                   edgecolor="#666666", label="estimate")
            ax.bar([x + 0.2 for x in xs], used, 0.4,
                   color=[colors[d.model] for d in with_est], label="place and route")
            top = max(used + est + [1])
            for x, d, u in zip(xs, with_est, used):
                e = d.derived["estimate_error"][k]
                if d.derived["estimate"][k] is None:
                    txt, bad = "n/a", False
                else:
                    txt = _pct(e)
                    bad = e is None or abs(e) > ESTIMATE_TOLERANCE[k] + 1e-12
                ax.annotate(txt, (x, max(u, d.derived["estimate"][k] or 0)),
                            textcoords="offset points", xytext=(0, 3), ha="center",
                            fontsize=8, color="#c00000" if bad else "#333333")
            ax.set_ylim(0, top * 1.2)
            ax.set_xticks(list(xs), [f"#{d.id}" for d in with_est])
            tol = ESTIMATE_TOLERANCE[k]
            ax.set_title(f"{k} (goal: {'exact' if tol == 0 else f'±{tol:.0%}'})")
            ax.grid(True, axis="y", alpha=0.3)
        axes[0].legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        out.append(("estimate-vs-actual",
                    "The cost model's estimate (hatched) beside what place and route used, per "
                    "resource; red labels miss the goal.", _png(fig)))

    # per-layer cycles
    with_layers = [d for d in designs if d.layers]
    if with_layers:
        heights = [0.6 + 0.28 * len(d.layers) for d in with_layers]
        fig, axes = plt.subplots(len(with_layers), 1, squeeze=False,
                                 figsize=(10, sum(heights) + 0.3),
                                 gridspec_kw={"height_ratios": heights})
        for ax, d in zip(axes[:, 0], with_layers):
            names = [x["name"] for x in d.layers][::-1]
            cyc = [x["cycles"] for x in d.layers][::-1]
            peak = max(cyc)
            ax.barh(names, cyc, color=[colors[d.model] if c == peak else "#c7c7c7"
                                       for c in cyc])
            ii = d.report["cycles"]["initiation_interval"]
            ax.axvline(ii, color="k", ls=":", lw=1)
            for y, c in enumerate(cyc):
                ax.annotate(f"{c:,}", (c, y), textcoords="offset points", xytext=(3, 0),
                            va="center", fontsize=8)
            ax.set_xlim(0, max(peak, ii) * 1.15)
            ax.set_title(f"{d.label}: cycles per layer (II {ii:,}, dotted; "
                         f"from {d.layers_source})", fontsize=10, loc="left")
            ax.tick_params(axis="y", labelsize=8)
        axes[-1, 0].set_xlabel("cycles per inference")
        fig.tight_layout()
        out.append(("layer-cycles",
                    "Cycles per inference in each layer; the coloured bar is the slowest "
                    "layer, which sets the initiation interval.", _png(fig)))

    # speed-up over onnxruntime
    with_ort = [d for d in designs if d.derived["speedup_vs_onnxruntime_cpu"] is not None]
    if with_ort:
        fig, ax = plt.subplots(figsize=(max(4.5, 1.0 + 0.8 * len(with_ort)), 3.4))
        s = [d.derived["speedup_vs_onnxruntime_cpu"] for d in with_ort]
        ax.bar([f"#{d.id}" for d in with_ort], s, color=[colors[d.model] for d in with_ort])
        ax.axhline(1, color="k", lw=1)
        for x, v in enumerate(s):
            ax.annotate(_speedup(v), (x, v), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=8)
        if max(s) / max(min(s), 1e-9) > 50:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, max(max(s), 1) * 1.15)
        ax.set_ylabel("onnxruntime CPU latency / FPGA latency")
        ax.set_title("speed-up over onnxruntime (1 CPU thread)")
        ax.grid(True, axis="y", alpha=0.3)
        fig.tight_layout()
        out.append(("speedup", "On-chip latency against onnxruntime on the CPU, same model, "
                    "measured in the same build run (above 1: the FPGA is faster).",
                    _png(fig)))
    return out


# ---- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1480px;padding:0 16px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#666;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #e2e2e2;border-radius:8px;padding:10px 14px;min-width:220px}
.card b{display:block;font-size:18px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;background:#fff;font-size:13px;width:100%}
.scroll{overflow-x:auto}
th,td{padding:5px 6px;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
th{background:#f0f0f3;position:sticky;top:0;cursor:pointer;user-select:none;
white-space:normal;vertical-align:bottom}
td.wrap{white-space:normal;max-width:130px}td small{color:#777}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.pareto td:first-child{border-left:4px solid #2ca02c}
.bar{height:4px;background:#eee;border-radius:2px;margin-top:2px}
.bar i{display:block;height:4px;border-radius:2px;background:#4c78a8}
.bad{color:#c00000;font-weight:600}.ok{color:#2a7a2a}
.tag{display:inline-block;font-size:11px;padding:0 5px;border-radius:3px;background:#e4f2e4;
color:#276127;margin-right:3px}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:5px}
figure{background:#fff;border:1px solid #e2e2e2;border-radius:8px;margin:14px 0;padding:10px}
figure img{max-width:100%;display:block;margin:auto}
figcaption{color:#555;font-size:13px;margin-top:6px}
details{margin-top:20px}code{font-size:12px}
"""

_SORT_JS = """
(function () {
  var table = document.getElementById("designs");
  var body = table.tBodies[0];
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("sorted-asc");
      table.querySelectorAll("th").forEach(function (h) {
        h.classList.remove("sorted-asc", "sorted-desc");
      });
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _td(text: str, sort=None, cls: str = "", title: str | None = None, raw: bool = False) -> str:
    v = text if sort is None else sort
    attrs = f' data-v="{_e(v)}"' + (f' class="{cls}"' if cls else "") + (
        f' title="{_e(title)}"' if title else "")
    return f"<td{attrs}>{text if raw else _e(text)}</td>"


def _table_html(designs: list[Design], colors: dict[str, str]) -> str:
    head = ["#", "model", "board", "requant", "folding (PE×SIMD)", *RESOURCES, "Fmax MHz",
            "latency µs", "II", "throughput /s", "MAC util", "vs onnxruntime", "est. error",
            "Pareto"]
    rows = []
    for d in designs:
        r, x = d.report, d.derived
        cells = [_td(f"#{d.id}", d.id, title=d.source),
                 _td(f'<span class="dot" style="background:{colors[d.model]}"></span>'
                     f"{_e(d.model)}", d.model, title=r["model"], raw=True),
                 _td(r["board"], title=r["device"]), _td(r["requant"]),
                 _td(x["folding"], cls="wrap")]
        for k in RESOURCES:
            v, u = r["resources"][k], x["utilization"][k]
            bar = "" if u is None else (
                f'<div class="bar"><i style="width:{min(u, 1) * 100:.1f}%"></i></div>')
            cells.append(_td(f"{v['used']:,}<small> / {v['available']:,}</small>{bar}",
                             v["used"], "n",
                             title=None if u is None else f"{u:.1%} of the device", raw=True))
        f = r["fmax_mhz"]
        cells.append(_td(f"{f['achieved']:.1f}<small> / {f['constraint']:g}</small>"
                         + ("" if x["timing_met"] else '<br><span class="bad">missed</span>'),
                         f["achieved"], "n", raw=True))
        c = r["cycles"]
        cells.append(_td(f"{_us(r['latency_us'])}<br><small>{c['latency']:,} cycles</small>",
                         r["latency_us"], "n", raw=True))
        cells.append(_td(f"{c['initiation_interval']:,}", c["initiation_interval"], "n"))
        cells.append(_td(_rate(r["throughput_inferences_per_s"]).replace(" /s", "")
                         .replace("/s", ""), r["throughput_inferences_per_s"], "n"))
        cells.append(_td(f"{r['mac_utilization']:.0%}", r["mac_utilization"], "n"))
        s = x["speedup_vs_onnxruntime_cpu"]
        ort = r["onnxruntime_cpu_latency_us"]
        cells.append(_td(_speedup(s), -1 if s is None else s, "n",
                         title=None if ort is None else f"onnxruntime CPU {ort:.1f} µs"))
        w = x["estimate_error_worst"]
        cls = "" if x["estimate_within_goal"] is None else (
            "ok" if x["estimate_within_goal"] else "bad")
        cells.append(_td(_worst(d), -1 if w is None else (
            1e9 if w["error"] is None else abs(w["error"])), cls,
            title="; ".join(f"{k} {_pct(x['estimate_error'][k])}" for k in RESOURCES
                            if x["estimate"][k] is not None) or None))
        tags = "".join(f'<span class="tag">{k}</span>' for k in PARETO_RESOURCES
                       if x["pareto"][k])
        cells.append(_td(tags or "–", sum(x["pareto"].values()), "wrap", raw=True))
        pareto = ' class="design pareto"' if any(x["pareto"].values()) else ' class="design"'
        rows.append(f'<tr{pareto} data-design="{d.id}">{"".join(cells)}</tr>')
    ths = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (f'<table id="designs"><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _cards(designs: list[Design]) -> str:
    cards = []
    for model in dict.fromkeys(d.model for d in designs):
        g = [d for d in designs if d.model == model]
        fast = min(g, key=lambda d: d.report["latency_us"])
        small = min(g, key=lambda d: (d.report["resources"]["LUT"]["used"],
                                      d.report["latency_us"]))
        s = fast.derived["speedup_vs_onnxruntime_cpu"]
        cards.append(
            f'<div class="card"><span>{_e(model)}: lowest latency</span>'
            f"<b>{_us(fast.report['latency_us'])} µs</b>"
            f"<span>#{fast.id} on {_e(fast.report['board'])}"
            f"{'' if s is None else f', {_speedup(s)} the speed of onnxruntime (CPU)'}"
            "</span></div>")
        cards.append(
            f'<div class="card"><span>{_e(model)}: fewest LUTs</span>'
            f"<b>{small.report['resources']['LUT']['used']:,} LUT</b>"
            f"<span>#{small.id} on {_e(small.report['board'])}, "
            f"{_us(small.report['latency_us'])} µs</span></div>")
    return f'<div class="cards">{"".join(cards)}</div>'


def _estimate_cell(d: Design, k: str) -> str:
    est, used = d.derived["estimate"][k], d.report["resources"][k]["used"]
    if est is None:
        return f'<td class="n">- / {used:,} <small>(no estimate)</small></td>'
    e = d.derived["estimate_error"][k]
    bad = e is None or abs(e) > ESTIMATE_TOLERANCE[k] + 1e-12
    return (f'<td class="n">{est:,} / {used:,} <small class="{"bad" if bad else "ok"}">'
            f"({_pct(e)})</small></td>")


def render_html(designs: list[Design], images: list[tuple[str, str, str]] | None = None) -> str:
    """One self-contained page: summary cards, the table, the plots (base64 PNG)."""
    images = plots(designs) if images is None else images
    colors = _colors(designs)
    figs = "".join(
        f'<figure id="fig-{_e(i)}"><img class="plot" alt="{_e(cap)}" '
        f'src="data:image/png;base64,{b64}"><figcaption>{_e(cap)}</figcaption></figure>'
        for i, cap, b64 in images)
    est_rows = "".join(
        f"<tr><td>#{d.id}</td><td>{_e(d.model)} on {_e(d.report['board'])}</td>"
        + "".join(_estimate_cell(d, k) for k in RESOURCES) + "</tr>" for d in designs)
    sources = "".join(
        f"<li>#{d.id}: <code>{_e(d.source)}</code> — bitstream "
        f"<code>{_e(d.report['bitstream'])}</code>; "
        + _e(", ".join(f"{k} {v}" for k, v in d.report["toolchain"].items()))
        + (f"; per-layer cycles from {_e(d.layers_source)}" if d.layers_source else "")
        + "</li>" for d in designs)
    est_head = "".join(f"<th>{k} estimate / used</th>" for k in RESOURCES)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = len(designs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>intflow report: {n} design{'s' * (n != 1)}</title>
<style>{_CSS}</style></head>
<body>
<h1>intflow report</h1>
<div class="sub">{n} design{'s' * (n != 1)} compared, generated {when}. Latency and
throughput at each bitstream's clock constraint; onnxruntime: the same model on one CPU thread,
measured in the same build run.</div>
{_cards(designs)}
<h2>Designs</h2>
<p class="sub">Click a column to sort. A green edge marks a design on a Pareto front
(latency vs LUT or DSP, among designs of the same model).</p>
<div class="scroll">{_table_html(designs, colors)}</div>
<h2>Plots</h2>
{figs}
<h2>Cost-model estimate / place and route</h2>
<table id="estimates"><thead><tr><th>#</th><th>design</th>{est_head}</tr></thead>
<tbody>{est_rows}</tbody></table>
<details><summary>Sources and toolchains</summary><ul>{sources}</ul></details>
<script>{_SORT_JS}</script>
</body></html>
"""


# ---- command --------------------------------------------------------------------------------

def run(paths: Sequence[str], html_path: str | None = None,
        json_path: str | None = None) -> list[Design]:
    """Read every report, print the table, write the JSON and HTML asked for."""
    designs = [load(p, i) for i, p in enumerate(paths, start=1)]
    derive(designs)
    print(format_table(designs))
    if json_path:
        write_text_atomic(json_path, json.dumps(to_json(designs), indent=1) + "\n")
        print(f"wrote {json_path}")
    if html_path:
        write_text_atomic(html_path, render_html(designs))
        print(f"wrote {html_path} (open it in a browser)")
    return designs
