"""Analytical cost model: cycles and resources per engine, before any synthesis.

Cycles come from ``fold.engine_cycles``. Resources are first-order formulas per engine
(multipliers, memory bits, adder/accumulator widths), mapped to a device family's primitives;
the constants are calibrated against yosys/nextpnr runs (``benchmarks/``), and the build
report prints the estimate beside what place-and-route achieved.
"""

from __future__ import annotations

import math

from .fold import engine_cycles, initiation_interval
from .spec import Dataflow, Engine

# memory block sizes (bits) and widest port, DSP product width per family
FAMILIES = {
    "ice40": {"bram_bits": 4096, "bram_width": 16, "dsp_width": 16, "lut_ram": False},
    "ecp5": {"bram_bits": 18432, "bram_width": 36, "dsp_width": 18, "lut_ram": True},
    "gowin": {"bram_bits": 18432, "bram_width": 36, "dsp_width": 18, "lut_ram": True},
}
SMALL_MEMORY_BITS = 512  # below this yosys keeps a memory in LUTs/flip-flops


def memory_blocks(depth: int, width: int, family: str) -> int:
    f = FAMILIES[family]
    if depth * width <= SMALL_MEMORY_BITS or depth <= 1:
        return 0
    per_block_depth = f["bram_bits"] // min(width, f["bram_width"])
    return math.ceil(width / f["bram_width"]) * math.ceil(depth / per_block_depth)


def requant_cost(p: dict | None, family: str) -> dict:
    if p is None:
        return {"LUT": 0, "FF": 0, "DSP": 0}
    # ort: LZC + normalise + 24x24 multiply + two roundings; dyadic: 32x32 high multiply
    wide = 24 if p["mode"] == "ort" else 32
    dsp = math.ceil(wide / FAMILIES[family]["dsp_width"]) ** 2
    return {"LUT": 260 if p["mode"] == "ort" else 180, "FF": 220 if p["mode"] == "ort" else 160,
            "DSP": dsp}


def engine_cost(e: Engine, df: Dataflow, family: str) -> dict:
    p = e.params
    cost = {"LUT": 0, "FF": 0, "DSP": 0, "BRAM": 0, "multipliers": 0, "memory_bits": 0}
    if e.kind == "MVAU":
        pe, simd = p["pe"], p["simd"]
        mults = pe * simd
        wb, ib, ab = p["weight_dtype"].bits, p["in_dtype"].bits, p["acc_dtype"].bits
        depth, width = (p["n"] // pe) * (p["k"] // simd), mults * wb
        dsp_w = FAMILIES[family]["dsp_width"]
        dsp_mult = max(ib, wb) + 1 <= dsp_w + 1
        rq = requant_cost(p["requant"], family)
        cost.update(
            multipliers=mults,
            DSP=(mults if dsp_mult else 0) + rq["DSP"],
            LUT=(0 if dsp_mult else mults * ib * wb) + pe * simd * ab // 2 + pe * ab + 40
            + rq["LUT"] + 2 * p["k"] * ib // max(simd, 1) // 8,
            FF=pe * ab + 2 * p["k"] * ib + 3 * simd * ib + 60 + rq["FF"],
            BRAM=memory_blocks(depth, width, family)
            + memory_blocks(2 * p["k"] // simd, simd * ib, family),
            memory_bits=depth * width + 2 * p["k"] * ib)
    elif e.kind == "SlidingWindow":
        rows = (p["kernel"][0] - 1) * p["dilation"][0] + 1
        bits = rows * p["width"] * p["channels"] * p["dtype"].bits
        cost.update(BRAM=memory_blocks(rows * p["width"] * p["channels"], p["dtype"].bits,
                                       family),
                    LUT=120, FF=90, memory_bits=bits)
    elif e.kind in ("Reorder",):
        n = df.streams[e.inputs[0]].length
        bits = 2 * n * p["dtype"].bits
        cost.update(BRAM=2 * memory_blocks(n, p["dtype"].bits, family), LUT=60, FF=40,
                    memory_bits=bits)
    elif e.kind in ("GlobalSum", "WindowMax", "WindowAvg"):
        c = p["channels"]
        w = p.get("out_dtype", p.get("dtype")).bits if e.kind != "WindowAvg" else p["sum_bits"]
        cost.update(LUT=c * w // 2 + 60 + (300 if e.kind == "WindowAvg" else 0),
                    FF=min(c, 16) * w + 40, memory_bits=c * w)
    elif e.kind in ("Requant",):
        rq = requant_cost(p, family)
        cost.update(LUT=rq["LUT"], FF=rq["FF"], DSP=rq["DSP"])
    elif e.kind == "Lut":
        t = p["table"]
        cost.update(LUT=t.size * p["out_dtype"].bits // 4, memory_bits=t.size * 8)
    elif e.kind == "Add":
        cost.update(LUT=200, FF=150, DSP=2 if p["attrs"]["mode"] == "ort" else 4)
    else:
        cost.update(LUT=30, FF=20)
    for s in e.outputs:  # the FIFO on each outgoing edge
        st = df.streams[s]
        if st.depth > 4:
            cost["BRAM"] += memory_blocks(st.depth, st.dtype.bits, family)
            cost["memory_bits"] += st.depth * st.dtype.bits
        else:
            cost["FF"] += st.depth * (st.dtype.bits + 1)
            cost["LUT"] += 8
    return cost


def estimate(df: Dataflow, family: str = "ice40") -> dict:
    """Per-engine and total estimate: cycles, II, multipliers, LUT/FF/DSP/BRAM."""
    layers = []
    total = {"LUT": 0, "FF": 0, "DSP": 0, "BRAM": 0, "multipliers": 0, "memory_bits": 0}
    for e in df.engines:
        c = engine_cost(e, df, family)
        for k in total:
            total[k] += c[k]
        row = {"engine": e.name, "kind": e.kind, "layer": e.origin[0] if e.origin else "",
               "cycles": engine_cycles(e, df), **c}
        if e.kind == "MVAU":
            row.update(pe=e.params["pe"], simd=e.params["simd"],
                       macs=e.params["rows"] * e.params["k"] * e.params["n"])
        layers.append(row)
    ii = initiation_interval(df)
    macs = sum(r.get("macs", 0) for r in layers)
    return {"family": family, "initiation_interval": ii,
            "latency_estimate": sum(r["cycles"] for r in layers),
            "macs": macs, "mac_utilization": macs / max(1, total["multipliers"] * ii),
            "total": total, "layers": layers}


def format_estimate(est: dict) -> str:
    head = ("layer", "engine", "PE", "SIMD", "cycles", "mults", "LUT", "FF", "DSP", "BRAM")
    rows = [head]
    for r in est["layers"]:
        rows.append((r["layer"] or "-", r["kind"], str(r.get("pe", "-")),
                     str(r.get("simd", "-")), f"{r['cycles']:,}", str(r["multipliers"] or "-"),
                     str(r["LUT"]), str(r["FF"]), str(r["DSP"]), str(r["BRAM"])))
    t = est["total"]
    rows.append(("total", "", "", "", f"II {est['initiation_interval']:,}",
                 str(t["multipliers"]), str(t["LUT"]), str(t["FF"]), str(t["DSP"]),
                 str(t["BRAM"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"estimated MAC utilisation {est['mac_utilization']:.0%} "
                 f"({est['macs']:,} MACs / ({t['multipliers']} multipliers x II), "
                 f"{est['family']} primitives)")
    return "\n".join(lines)
