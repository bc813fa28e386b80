"""``report.json`` of a build: what place and route achieved beside what the cost model
estimated, cycles from the RTL simulation, and the onnxruntime CPU latency of the same model.

Keys (the report issue and users' scripts read them; extra keys may be added, none removed):
``model, board, device, requant, resources{LUT,FF,DSP,BRAM: used, available, estimate},
fmax_mhz{achieved, constraint}, cycles{latency, initiation_interval}, latency_us,
throughput_inferences_per_s, mac_utilization, onnxruntime_cpu_latency_us, bitstream,
toolchain{yosys, nextpnr}``. Latency and throughput are at ``clock_mhz``, the clock the
bitstream runs at (the constraint); ``latency_us_at_fmax`` is what the achieved Fmax would give.
"""

from __future__ import annotations

from .build import RESOURCES, BuildResult
from .fit import predicted_use


def make_report(*, model: str, requant: str, result: BuildResult, estimate: dict,
                cycles: dict, onnxruntime_cpu_latency_us: float | None, bitstream: str,
                seed: int, fold: dict, host: dict) -> dict:
    """``cycles``: {"latency", "initiation_interval", "source"} (the RTL simulation's count,
    or the estimate's when no simulation ran). ``fold``: engine -> {"pe", "simd"}."""
    t = result.target
    fmax = result.fmax_mhz
    clock = float(fmax["constraint"])
    achieved = float(fmax["achieved"])
    lat, ii = int(cycles["latency"]), int(cycles["initiation_interval"])
    est_total = estimate["total"]
    # what synthesis counted includes the UART host wrapper around the network: so does the
    # estimate compared with it (boards/fit.py's measured wrapper cost)
    predicted = predicted_use(est_total, t.family)
    resources = {r: {"used": int(result.resources[r]["used"]),
                     "available": int(result.resources[r]["available"]),
                     "estimate": predicted[r]} for r in RESOURCES}
    for extra in sorted(set(result.resources) - set(RESOURCES)):  # iCE40 logic cells
        resources[extra] = dict(result.resources[extra])
    multipliers = int(est_total["multipliers"])
    return {
        "model": model,
        "board": t.name,
        "device": t.device,
        "package": t.package,
        "family": t.family,
        "requant": requant,
        "resources": resources,
        "fmax_mhz": {"achieved": round(achieved, 2), "constraint": clock,
                     **{k: (round(v, 2) if isinstance(v, float) else v)
                        for k, v in fmax.items() if k not in ("achieved", "constraint")}},
        "timing_met": achieved >= clock,
        "clock_mhz": clock,
        "cycles": {"latency": lat, "initiation_interval": ii, "source": cycles["source"],
                   "estimate": {"latency": int(estimate["latency_estimate"]),
                                "initiation_interval": int(estimate["initiation_interval"])}},
        "latency_us": lat / clock,
        "latency_us_at_fmax": lat / achieved,
        "throughput_inferences_per_s": clock * 1e6 / ii,
        "mac_utilization": estimate["macs"] / max(1, multipliers * ii),
        "macs": int(estimate["macs"]),
        "multipliers": multipliers,
        "onnxruntime_cpu_latency_us": (None if onnxruntime_cpu_latency_us is None
                                       else float(onnxruntime_cpu_latency_us)),
        "bitstream": bitstream,
        "bitstream_sha256": result.bitstream_sha256(),
        "seed": seed,
        "fold": fold,
        "host": host,
        "toolchain": dict(result.toolchain),
        "nextpnr_utilization": result.pnr_utilization,
        "build": {"key": result.key, "cached": result.cached,
                  "seconds": round(result.seconds, 1), "workdir": str(result.workdir)},
    }


def format_report(r: dict) -> str:
    """A few lines for the terminal."""
    lines = [f"{r['board']} ({r['device']}): bitstream {r['bitstream']}"]
    for name, v in r["resources"].items():
        est = f", estimate {v['estimate']:,}" if "estimate" in v else ""
        lines.append(f"  {name:5s} {v['used']:>7,} / {v['available']:,}{est}")
    f = r["fmax_mhz"]
    extra = "".join(f", {k} {f[k]:.1f}" for k in ("nextpnr", "icetime")
                    if isinstance(f.get(k), float) and f.get("source") != k)
    lines.append(f"  Fmax  {f['achieved']:.1f} MHz ({f['source']}{extra}) vs constraint "
                 f"{f['constraint']:g} MHz: {'met' if r['timing_met'] else 'MISSED'}")
    c = r["cycles"]
    lines.append(f"  cycles: latency {c['latency']:,}, II {c['initiation_interval']:,} "
                 f"({c['source']}); {r['latency_us']:.1f} us at {r['clock_mhz']:g} MHz, "
                 f"{r['throughput_inferences_per_s']:,.0f} inferences/s, MAC utilisation "
                 f"{r['mac_utilization']:.0%}")
    if r["onnxruntime_cpu_latency_us"] is not None:
        lines.append(f"  onnxruntime CPU (1 thread): {r['onnxruntime_cpu_latency_us']:.1f} us")
    return "\n".join(lines)
