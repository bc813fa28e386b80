"""Analytical cost model: cycles and resources per engine, before any synthesis.

Cycles come from ``fold.engine_cycles``. Resources are first-order formulas per engine
(multipliers, memory bits, adder/accumulator widths), mapped to a device family's primitives;
the constants are calibrated against yosys/nextpnr runs (``benchmarks/``), and the build
report prints the estimate beside what place-and-route achieved.
"""

from __future__ import annotations

import math

import numpy as np

from .fold import engine_cycles, initiation_interval
from .multipliers import lut_multiplier_luts, mvau_multiplier
from .spec import Dataflow, Engine
from .window import window_geometry

# memory block sizes (bits) and widest port, DSP product width per family
FAMILIES = {
    "ice40": {"bram_bits": 4096, "bram_width": 16, "dsp_width": 16, "lut_ram": False},
    "ecp5": {"bram_bits": 18432, "bram_width": 36, "dsp_width": 18, "lut_ram": True},
    "gowin": {"bram_bits": 18432, "bram_width": 36, "dsp_width": 18, "lut_ram": True},
}
SMALL_MEMORY_BITS = 512  # below this yosys keeps a memory in LUTs/flip-flops
ADD_SUM_BITS = 36  # the exact sum of the sequential ort Add for int8 codes (typical)


def memory_blocks(depth: int, width: int, family: str, *, ram: bool = False,
                  forced: bool = False) -> int:
    """Block RAMs for a memory of ``depth`` words of ``width`` bits (``ram``: written;
    ``forced``: a ROM ``hw/engines/mvau.py`` puts in block RAM). iCE40/Gowin: ROMs under
    ``SMALL_MEMORY_BITS`` stay in logic; on iCE40 (no LUT RAM) yosys puts every written
    memory of 8 words or more into block RAM, however small (measured: a 3 x 8 x 8-bit line
    buffer and an 18 x 8-bit input buffer each take one SB_RAM40_4K). ECP5: yosys'
    memory_libmap picks the cheaper of its costs, 128 per DP16KD/PDPW16KD against LUT RAM
    (``lut_ram``) or, for a ROM, about one LUT4 per bit per 16 words."""
    f = FAMILIES[family]
    if depth <= 1 or (ram and lut_ram(depth, width, family)):
        return 0
    if family == "ecp5":
        blocks = ecp5_blocks(depth, width)
        if not ram and not forced and width * -(-depth // 16) <= ECP5_BLOCK_COST * blocks:
            return 0  # measured: 32 x 35-bit tables stay in LUTs, 64 x 35-bit go to a block
        return blocks
    small = depth * width <= SMALL_MEMORY_BITS
    if small and not (ram and not f["lut_ram"] and depth >= 8):
        return 0
    per_block_depth = f["bram_bits"] // min(width, f["bram_width"])
    return math.ceil(width / f["bram_width"]) * math.ceil(depth / per_block_depth)


# ECP5 block RAM aspect ratios (width, depth): DP16KD up to 18 bits, PDPW16KD 36 bits wide
ECP5_BRAM_MODES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
ECP5_BLOCK_COST = 128  # yosys techlibs/lattice/brams_16kd.txt; a TRELLIS_DPR16X4 costs 4
# memory_libmap's extra cost of LUT RAM deeper than one 16-word cell, per bit and per extra
# cell: fitted to 60 memories of the benchmark builds (36 x 64 bits in LUT RAM but 64 x 48
# and 216 x 8 in blocks put it between 0.44 and 0.5)
ECP5_LUT_RAM_MUX_COST = 0.47


def ecp5_blocks(depth: int, width: int) -> int:
    """Blocks of the ECP5 mode that needs the fewest."""
    return min(-(-width // w) * -(-depth // d) for w, d in ECP5_BRAM_MODES)


def lut_ram(depth: int, width: int, family: str) -> int:
    """LUTs of a written memory kept in distributed RAM (16 x 4-bit cells of 4 LUTs); 0 where
    it is not. ECP5: where memory_libmap's cost is below the block RAMs' (e.g. 144 x 8 and
    36 x 64 bits in LUT RAM, 216 x 8 and 64 x 32 in blocks); Gowin: up to 64 words."""
    if not FAMILIES[family]["lut_ram"] or depth <= 1:
        return 0
    cells = math.ceil(depth / 16) * math.ceil(width / 4)
    if family == "ecp5":
        cost = 4 * cells + ECP5_LUT_RAM_MUX_COST * (math.ceil(depth / 16) - 1) * width
        return 4 * cells if cost < ECP5_BLOCK_COST * ecp5_blocks(depth, width) else 0
    return 4 * cells if depth <= 64 else 0


def rom_blocks(depth: int, width: int, family: str) -> int:
    """Block RAMs of a ROM that ``hw/engines/mvau.py`` forces into block RAM (at least 16
    words and more than ``SMALL_MEMORY_BITS``, depth padded to 32 words); 0 otherwise."""
    if depth < 16 or depth * width <= SMALL_MEMORY_BITS:
        return 0
    return memory_blocks(-(-depth // 32) * 32, width, family, forced=True)


def _channels(p: dict) -> int:
    """Distinct (multiplier, exponent) pairs: 1 means a per-tensor constant (no ROM)."""
    return len(set(zip(np.ravel(p["mult"]).tolist(), np.ravel(p["exp"]).tolist(),
                       strict=True)))


def requant_cost(p: dict | None, family: str, acc_bits: int = 24) -> dict:
    """One requant unit. Pipelined (``hw/requant.py``), measured with yosys on the bare unit
    (benchmarks/UNITS.md, 24/32-bit accumulators, 16 channels): ort iCE40 626/737 LUT,
    668/696 FF, ECP5 655/758 LUT; dyadic iCE40 367 LUT, ~485 FF, ECP5 ~530 LUT; linear in the
    width between. Serial (``hw/requant_serial.py``, no DSP), measured inside the example CNNs
    (iCE40, fold min): 285 LUT (18-bit acc, 8 channels), 321 (20 bits, 16), 318 (21, 16),
    314 (19, 10), 206 (12 bits, per tensor); about 80 FF; radix 4 (bare unit: 452 LUT where
    radix 2 took 344, 21 bits, 16 channels) adds the 3*mant ROM column
    and the addend multiplexer."""
    if p is None:
        return {"LUT": 0, "FF": 0, "DSP": 0}
    w = acc_bits
    if p.get("style", "pipelined") == "serial":
        ch = _channels(p)
        rom = 0 if ch <= 1 else 40 + 5 * ch // 2
        lut = 150 + 4 * w + rom
        if p.get("radix", 2) == 4:
            lut += 80 + (0 if ch <= 1 else 3 * ch // 2)
        if family != "ice40":  # ECP5: 381 LUT (19 bits, 10 channels) where iCE40 took 314
            lut = lut * 6 // 5
        return {"LUT": lut, "FF": 66 + max(1, (ch - 1).bit_length()) + 10, "DSP": 0}
    wide = 24 if p["mode"] == "ort" else 32
    dsp = math.ceil(wide / FAMILIES[family]["dsp_width"]) ** 2
    if p["mode"] == "ort":
        lut = 290 + 14 * w if family == "ice40" else 346 + 13 * w
        ff = 584 + 7 * w // 2 if family == "ice40" else 550 + 4 * w  # ECP5: 609-630 FF
    else:
        lut = 367 if family == "ice40" else 530
        ff = 440 + 3 * w // 2
    if p.get("no_dsp"):  # --no-dsp: synthesis maps the products to logic. A per-tensor
        # multiplier is a constant (yosys reduces it to shift-adds): measured on the digits MLP
        # (dyadic, fold min) +115 LUT (iCE40) / +165 (ECP5) per DSP it replaces. A per-channel
        # one (from a ROM) is a whole soft multiplier, scaled from the measured u8 x s8 one
        # (155 / 287 LUT): not fitted
        ice = family == "ice40"
        per = (115 if ice else 165) if _channels(p) <= 1 else (350 if ice else 650)
        lut, dsp = lut + dsp * per, 0
    return {"LUT": lut, "FF": ff, "DSP": dsp}


def fifo_cost(depth: int, bits: int, family: str) -> dict:
    """The buffer on an edge (``hw/network.py``): a ``SkidBuffer`` up to 2 words (two
    registers and a multiplexer), else a ``SyncFIFOBuffered`` (at least 3 deep). Measured on
    iCE40: 3 x 8 bits 20 LUT / 29 FF; 258 x 8 bits 78 LUT / 55 FF / 1 block."""
    if depth <= 2:  # measured (hierarchical, iCE40): 8 bits 15 LUT / 18 FF; 12 bits 19 / 26
        return {"LUT": bits + 7, "FF": 2 * bits + 2, "BRAM": 0, "memory_bits": 0}
    depth = max(depth, 3)
    if depth <= 4:
        return {"LUT": 2 * bits + 4, "FF": depth * bits + 5, "BRAM": 0, "memory_bits": 0}
    lb = max(1, (depth - 1).bit_length())
    return {"LUT": 50 + 3 * lb, "FF": 15 + 3 * lb + 2 * bits,
            "BRAM": memory_blocks(depth, bits, family, ram=True), "memory_bits": depth * bits}


def engine_cost(e: Engine, df: Dataflow, family: str) -> dict:
    """LUT/FF/DSP/BRAM of one engine and the FIFOs on its outgoing edges. The constants are
    fitted to hierarchical yosys runs (``synth_ice40 -dsp -noflatten``) of the example CNNs at
    fold min, per engine (LUT = SB_LUT4 on iCE40, LUT4 + 2 per CCU2C on ECP5)."""
    p = e.params
    cost = {"LUT": 0, "FF": 0, "DSP": 0, "BRAM": 0, "multipliers": 0, "memory_bits": 0}
    if e.kind == "MVAU":
        pe, simd = p["pe"], p["simd"]
        mults = pe * simd
        wb, ib, ab = p["weight_dtype"].bits, p["in_dtype"].bits, p["acc_dtype"].bits
        depth, width = (p["n"] // pe) * (p["k"] // simd), mults * wb
        dsp_w = FAMILIES[family]["dsp_width"]
        kind = mvau_multiplier(p)  # LUT products for low-bit/power-of-two/--no-dsp weights
        dsp_mult = kind == "dsp" and max(ib, wb) + 1 <= dsp_w + 1
        rq = requant_cost(p["requant"], family, ab)
        addr = max(1, (depth - 1).bit_length())
        # control and address counters, then per extra SIMD lane (the input buffer's byte
        # writes and read, an adder of the tree) and per extra multiplier (products, tree,
        # accumulator and output registers); LUT multipliers where no DSP fits. Measured
        # ECP5 (pipelined requant aside, LUT RAM aside): 141 (1 x 1), 730 (1 x 8), 938 (2 x 8)
        lut = (20 + 2 * ab + 10 * addr + (simd - 1) * 27 * ab // 10
               + (mults - 1) * 14 * ab // 10
               + (0 if dsp_mult else mults * lut_multiplier_luts(kind, ib, wb, family))
               + lut_ram(2 * p["k"] // simd, simd * ib, family))
        ff = 60 + 3 * ab + 2 * addr + pe * (2 * ab + simd * (ib + wb)) - (ab + ib + wb)
        # weights and bias ROMs (block RAM from 16 words and 512 bits, the rule of
        # hw/engines/mvau.py's rom_in_bram; padded to 32 words), the ping-pong input buffer
        w_blocks = rom_blocks(depth, width, family)
        bram = (w_blocks + rom_blocks(p["n"] // pe, pe * ab, family)
                + memory_blocks(2 * p["k"] // simd, simd * ib, family, ram=True))
        rom_lut = 0 if w_blocks else depth * width // 16
        cost.update(multipliers=mults, DSP=(mults if dsp_mult else 0) + rq["DSP"],
                    LUT=lut + rom_lut + rq["LUT"], FF=ff + rq["FF"], BRAM=bram,
                    memory_bits=depth * width + 2 * p["k"] * ib)
    elif e.kind == "SlidingWindow":
        # the buffer holds the pixels from a window's first to its last plus a stride's
        # lead of the writer (window.py, as the hardware sizes it); measured iCE40 LUT:
        # 174-212 for 3x3 and 2x2 kernels, 125-141 for 1D, less about 20 since the read
        # address has one adder (digits CNN, flat: -90 for 4)
        kh = p["kernel"][0]
        words = window_geometry(p)["pixels"] * p["channels"]
        cost.update(BRAM=memory_blocks(words, p["dtype"].bits, family, ram=True),
                    LUT=(90 + 25 * min(kh, 3)) * (13 if family == "ecp5" else 10) // 10,
                    FF=80, memory_bits=words * p["dtype"].bits)
    elif e.kind in ("Reorder",):
        n = df.streams[e.inputs[0]].length
        bits = 2 * n * p["dtype"].bits
        cost.update(BRAM=2 * memory_blocks(n, p["dtype"].bits, family, ram=True), LUT=60,
                    FF=40, memory_bits=bits)
    elif e.kind in ("GlobalSum", "WindowMax"):
        # per-channel state in a memory (a block RAM on iCE40): measured 34 LUT / 39 FF
        # (WindowMax, 8 bits) and 46 / 49 (GlobalSum, 12 bits), 16 channels
        c = p["channels"]
        w = p.get("out_dtype", p.get("dtype")).bits
        cost.update(LUT=20 + 2 * w, FF=15 + 3 * w, memory_bits=c * w,
                    BRAM=memory_blocks(c, w, family, ram=True))
    elif e.kind == "WindowAvg":
        # a (sum_bits + 1)-bit comparison per threshold bit (a binary search over the
        # levels), the fixed-point table and the threshold ROMs; measured iCE40 (pulse CNN,
        # 33-bit sums, 255 levels, 16 channels): 1,430 LUT, 504 FF, 8 blocks
        c, w = p["channels"], p["sum_bits"] + 1
        counts, levels = np.atleast_2d(p["thresholds"]).shape
        bits = max(1, levels.bit_length())
        table = np.size(p["fixed_table"])
        bram = (memory_blocks(table, w, family) + memory_blocks(counts << (bits - 1), w + 1,
                                                                 family)
                + memory_blocks(c, w, family, ram=True))
        cost.update(LUT=300 + 4 * bits * w, FF=230 + bits * w, BRAM=bram,
                    memory_bits=c * w + table * w + counts * levels * w)
        if p.get("style") == "serial":
            # WindowAvgSerial: one comparator, one threshold ROM of counts x 2^bits words;
            # measured iCE40 (the same pool): 766 LUT, 142 FF, 8 blocks (the sums' rounding
            # dominates now)
            bram = (memory_blocks(table, w, family) + memory_blocks(counts << bits, w + 1,
                                                                     family)
                    + memory_blocks(c, w, family, ram=True))
            cost.update(LUT=250 + 15 * w, FF=40 + 3 * w, BRAM=bram)
    elif e.kind in ("Requant",):
        rq = requant_cost(p, family, p["in_dtype"].bits)
        cost.update(LUT=rq["LUT"], FF=rq["FF"], DSP=rq["DSP"])
    elif e.kind == "Lut":
        t = p["table"]
        cost.update(LUT=t.size * p["out_dtype"].bits // 4, memory_bits=t.size * 8)
    elif e.kind == "Add" and p.get("style") == "serial":
        # hw/eltwise_add_serial.py: the serial requant unit (per tensor) on the exact sum
        # (about 36 bits for int8 codes: a 25-bit mantissa times the outer code plus the
        # table), the sum's adder and the operand register; the product on DSP blocks as in
        # the pipelined Add, the inner table in block RAM
        # (measured, digits CNN, hierarchical iCE40: 489 LUT / 85 FF / 2 DSP / 2 blocks; the
        # serial unit's 36-bit "wide" mode costs more than an MVAU's narrow one)
        rq = requant_cost({"style": "serial", "radix": p["radix"], "mult": [1], "exp": [0]},
                          family, ADD_SUM_BITS)
        cost.update(LUT=rq["LUT"] + 5 * ADD_SUM_BITS + 15, FF=rq["FF"] + 8, DSP=2,
                    BRAM=2 if family == "ice40" else 1)
    elif e.kind == "Add":
        # measured (int8, ort): iCE40 753 LUT / 339 FF / 2 DSP / 2 blocks (the inner table)
        ort = p["attrs"]["mode"] == "ort"
        cost.update(LUT=(750 if family == "ice40" else 900) if ort else 340,
                    FF=340 if ort else 800,
                    DSP=2 if ort else (4 if family == "ice40" else 8),
                    BRAM=(2 if family == "ice40" else 1) if ort else 0)
    elif e.kind == "ActMatMul":
        # one multiplier (a DSP when the operands fit it), the W buffer (k x n words) and the
        # row buffer (k words) read combinationally: LUT RAM on ECP5, flip-flops and read
        # multiplexers on iCE40 (no LUT RAM); not fitted to synthesis yet
        ib = max(df.streams[s].dtype.bits for s in e.inputs)
        ab = p["out_dtype"].bits
        words = p["k"] * p["n"] + p["k"]
        ram = lut_ram(words, ib, family)
        cost.update(multipliers=1, DSP=1, memory_bits=words * ib,
                    LUT=60 + 3 * ab + (ram or words * ib // 2),
                    FF=40 + 2 * ab + (0 if ram else words * ib))
    elif e.kind in ("Softmax", "LayerNorm"):
        cost.update(row_engine_cost(e, family))
    elif e.kind == "Fork":
        cost.update(LUT=5, FF=10)
    else:
        cost.update(LUT=30, FF=20)
    for s in e.outputs:  # the FIFO on each outgoing edge
        st = df.streams[s]
        f = fifo_cost(st.depth, st.dtype.bits, family)
        for k in f:
            cost[k] += f[k]
    return cost


def _dsps(a_bits: int, b_bits: int, family: str) -> int:
    """DSP blocks of an a x b multiplier tiled from the family's square products."""
    w = FAMILIES[family]["dsp_width"]
    return math.ceil(a_bits / w) * math.ceil(b_bits / w)


def row_engine_cost(e: Engine, family: str) -> dict:
    """Softmax and LayerNorm (``hw/engines/softmax.py``, ``layernorm.py``): a double row buffer
    of 2 n codes read combinationally (LUT RAM on ECP5 up to 64 words, else flip-flops and a read
    multiplexer), ROMs in logic, one restoring divider (a subtract and compare of the
    divisor's width, ~3 LUT a bit), the multipliers on DSP blocks, and for LayerNorm the
    digit-by-digit square root and the adders of the products. Measured alone (yosys
    synth_ecp5, LUT4 + 2 per CCU2C, int8 rows of 8, tests/test_transformer_rtl.py's
    attention_tail): Softmax 278 LUT / 128 FF / 2 DSP (the exp table is mostly zero bits:
    ~1 LUT per 32 ROM bits), LayerNorm 580 LUT / 291 FF / 5 DSP."""
    p = e.params
    n, ib = p["n"], p["in_dtype"].bits
    ram = lut_ram(2 * n, ib, family)
    buf_lut, buf_ff = (ram, 0) if ram else (n * ib, 2 * n * ib)
    qb = p["recip_bits"]
    if e.kind == "Softmax":
        table = np.asarray(p["table"])[:1 << ib]
        tb = int(table.max()).bit_length()
        sw = (n * int(table.max())).bit_length() + 1  # S and the remainder
        dsp = _dsps(tb, qb, family)
        rom = table.size * tb
        lut = 60 + rom // 32 + 3 * sw + 2 * qb + 2 * ib
        ff = 20 + 2 * sw + qb + ib + p["out_dtype"].bits
        return {"LUT": lut + buf_lut, "FF": ff + buf_ff, "DSP": dsp, "BRAM": 0,
                "multipliers": 0, "memory_bits": 2 * n * ib + rom}
    vw = 2 * p["sqrt_bits"]  # V' and the square root's registers
    dw = p["sqrt_bits"] + 1  # D and the remainder
    xw = ib + max(n - 1, 1).bit_length() + 2  # xc = n c - S
    gb = max(int(np.abs(p["gamma"]).max()), 1).bit_length() + 1
    bb = max(int(np.abs(p["bias"]).max()), 1).bit_length() + 1
    zw = max(xw + qb - (p["attrs"]["K"] - p["attrs"]["T"] - p["attrs"]["P"]), 2)
    dsp = (_dsps(ib, ib, family) + _dsps(xw, xw, family) + _dsps(xw, qb, family)
           + _dsps(zw, gb, family))
    rom = n * (gb + bb)
    lut = 80 + rom // 12 + 5 * vw + 3 * dw + 2 * qb + 8 * xw + 2 * ib
    ff = 30 + 3 * vw + 2 * dw + qb + 2 * xw + p["out_dtype"].bits
    return {"LUT": lut + buf_lut, "FF": ff + buf_ff, "DSP": dsp, "BRAM": 0, "multipliers": 0,
            "memory_bits": 2 * n * ib + rom}


def logic_cells(total: dict, family: str) -> int:
    """iCE40 logic cells (a LUT4, a carry and a flip-flop each): what place and route must
    fit into the device's 5,280, more than the LUTs because many flip-flops cannot share a
    cell with their LUT (measured: 4,340 LUT + 2,492 FF packed into 6,005 cells)."""
    if family != "ice40":
        return total["LUT"]
    return total["LUT"] + 2 * total["FF"] // 3


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
                       macs=e.params["rows"] * e.params["k"] * e.params["n"],
                       multiplier=mvau_multiplier(e.params))
        rp = e.params.get("requant") if e.kind == "MVAU" else (
            e.params if e.kind == "Requant" else None)
        if rp is not None:  # "serial/2": the sequential unit, radix 2
            style = rp.get("style", "pipelined")
            row["requant"] = f"serial/{rp['radix']}" if style == "serial" else style
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
        kind = r["kind"] + (" (serial rq)" if r.get("requant", "").startswith("serial") else "")
        if r.get("multiplier", "dsp") != "dsp":  # LUT products (compiler/dataflow/multipliers)
            kind += f" ({r['multiplier']})"
        rows.append((r["layer"] or "-", kind, str(r.get("pe", "-")),
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
