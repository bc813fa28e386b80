"""``intflow update-weights OUT/ NEW.onnx``: new weights into an existing bitstream, no place
and route.

NEW.onnx is compiled with the requantisation and the folding recorded in ``OUT/report.json``;
its dataflow must equal the built one in everything but the contents of the patchable weight
and bias ROMs (``boards/bram.py``): same engines, streams, widths (the proven accumulator
widths included), folding, requantisation parameters and the weights of ROMs left in logic.
The placeholder design it elaborates to must hash to the built one (``bram.json``), which makes
the patched bitstream the one a fresh build with the same seed would give, bit for bit. Any
difference is a ``ModelError`` naming it (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..compiler.dataflow.multipliers import mvau_multiplier
from ..compiler.dataflow.spec import Dataflow
from ..compiler.errors import ModelError
from . import bram

__all__ = ["compare_dataflows", "update_weights", "UpdateResult"]

DESIGN_FILES = ("graph.json", "constants.npz", "layers.txt", "estimate.json", "estimate.txt")


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _show(v) -> str:
    if isinstance(v, np.ndarray | dict | list | tuple):
        return ""
    return f" {v} ->"


def compare_dataflows(old: Dataflow, new: Dataflow) -> list[str]:
    """What differs between two plans besides the patchable ROMs' contents, one line each
    (empty: the same hardware)."""
    if [(e.kind, e.name) for e in old.engines] != [(e.kind, e.name) for e in new.engines]:
        return [f"the layers differ: {[e.name for e in old.engines]} -> "
                f"{[e.name for e in new.engines]}"]
    diffs = []
    for name in sorted(set(old.streams) | set(new.streams)):
        a, b = old.streams.get(name), new.streams.get(name)
        if a is None or b is None:
            diffs.append(f"stream {name} {'appears' if a is None else 'disappears'}")
            continue
        for f in ("dtype", "shape", "depth"):
            if getattr(a, f) != getattr(b, f):
                diffs.append(f"stream {name}: {f} {getattr(a, f)} -> {getattr(b, f)}")
        if not _same(a.order, b.order):
            diffs.append(f"stream {name}: element order differs")
    if old.inputs != new.inputs or old.outputs != new.outputs:
        diffs.append("the network's inputs or outputs differ")
    old_roms = {(s.engine, s.rom.name): s.rom for s in bram.rom_images(old)}
    new_roms = {(s.engine, s.rom.name): s.rom for s in bram.rom_images(new)}
    for ea, eb in zip(old.engines, new.engines, strict=True):
        if ea.inputs != eb.inputs or ea.outputs != eb.outputs:
            diffs.append(f"layer {ea.name}: its connections differ")
        keys = (set(ea.params) | set(eb.params)) - {"weights", "bias", "rom_placeholder"}
        for k in sorted(keys):
            va, vb = ea.params.get(k), eb.params.get(k)
            if not _same(va, vb):
                what = "a proven width" if k.endswith("dtype") else "a parameter"
                diffs.append(f"layer {ea.name}: {k} ({what}){_show(va)} {vb}"
                             if _show(va) else f"layer {ea.name}: {k} differs ({what})")
        if ea.kind != "MVAU":
            for k in ("weights", "bias"):
                if k in ea.params and not _same(ea.params[k], eb.params.get(k)):
                    diffs.append(f"layer {ea.name}: {k} differ ({ea.kind} has no ROM to patch)")
            continue
        ka, kb = mvau_multiplier(ea.params), mvau_multiplier(eb.params)
        if ka != kb:  # e.g. power-of-two weights got shift-only multipliers (hw/lutmul.py)
            diffs.append(f"layer {ea.name}: its multipliers differ ({ka} -> {kb}): rebuild")
        for rom in ("weights", "bias"):
            a, b = old_roms[(ea.name, rom)], new_roms[(eb.name, rom)]
            if (a.width, a.depth, a.bram) != (b.width, b.depth, b.bram):
                diffs.append(f"layer {ea.name}: the {rom} ROM's shape differs")
            elif not a.bram and a.words != b.words:
                why = (" (the bias holds the input zero point times the weight sums, so it "
                       "changes with them)" if rom == "bias" else "")
                diffs.append(f"layer {ea.name}: its {rom} changed{why}, and its {rom} ROM "
                             f"({a.depth} words of {a.width} bits) is logic, not block RAM, "
                             f"so it cannot be patched: rebuild (intflow build)")
    return diffs


class UpdateResult:
    def __init__(self, out: Path, report: dict, design, df, seconds: float, roms: int) -> None:
        self.out, self.report, self.design, self.df = out, report, design, df
        self.seconds, self.roms = seconds, roms


def _load_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"no {path.name}: {what}", file=str(path.parent)) from None
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path.name}: {e}", file=str(path.parent)) from None


def update_weights(out_dir: str, model: str, new_out: str | None = None, *,
                   input_shapes: dict | None = None,
                   log: Callable[[str], None] = print) -> UpdateResult:
    """Patch NEW weights from ``model`` into the build in ``out_dir`` (in place, or into a copy
    ``new_out``); returns the new report (written) and the compiled design for verification."""
    from ..design import Design
    from ..design import compile as compile_design
    from ..hw.network import Network
    from . import get_target
    from .build import BuildError, design_sha256, elaborate
    from .target import Target
    t0 = time.monotonic()
    out = Path(out_dir)
    report = _load_json(out / "report.json", "not an intflow build output (intflow build)")
    rec = _load_json(out / "build" / bram.RECORD, "built before update-weights existed: "
                     "rebuild once with intflow build")
    missing = [k for k in ("model", "board", "requant", "fold", "bitstream") if k not in report]
    if missing:
        raise ModelError(f"report.json lacks {', '.join(missing)}", file=out_dir)
    if new_out is not None and (Path(new_out).exists() or Path(new_out).is_symlink()):
        raise ModelError("exists; update-weights -o wants a new directory", file=new_out)
    target: Target = get_target(report["board"])  # a ModelError for an unknown one
    if not rec.get("patched") or target.family not in bram.PATCH_FAMILIES:
        raise ModelError(f"{target.name} ({target.family}): the open tools cannot rewrite "
                         f"block RAM in a {target.family} bitstream (Apycula has no BRAM "
                         f"patch tool); rebuild with intflow build", file=out_dir)

    with tempfile.TemporaryDirectory(prefix="intflow-update-") as tmp:
        fold_file = Path(tmp) / "fold.json"
        fold_file.write_text(json.dumps(report["fold"]))
        d = compile_design(model, requant=report["requant"], input_shapes=input_shapes,
                           fold=str(fold_file))
        df = d.dataflow()
        from ..compiler import IntGraph
        try:
            old_graph = IntGraph.load(out)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the built graph: {e}", file=out_dir) from None
        old_df = Design(report["model"], old_graph, str(fold_file)).dataflow()
        diffs = compare_dataflows(old_df, df)
        if diffs:
            more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
            raise ModelError("does not match the build in " + out_dir + ": "
                             + "; ".join(diffs[:3]) + more, file=model)
        slots = bram.rom_images(df)
        ph = bram.read_placeholders(rec)
        if set(ph) != {(s.engine, s.rom.name) for s in slots if s.rom.bram}:
            raise ModelError("the build's patchable ROMs differ from this model's",
                             file=model)
        try:
            net = Network(bram.with_placeholders(df, ph))
        except ValueError as e:
            raise ModelError(f"no hardware for this network: {e}", file=model) from None
        el = rec["elaborate"]
        try:
            files, _ = elaborate(net, target, **el)
        except BuildError as e:
            raise ModelError(str(e), file=model) from None
        if design_sha256(files) != rec["design_sha256"]:
            raise ModelError("does not match the build in " + out_dir + ": the generated "
                             "hardware differs beyond the weight ROMs", file=model)

        dest = out if new_out is None else Path(new_out)
        if new_out is not None:
            shutil.copytree(out, dest, symlinks=True)
        work = dest / "build"
        try:  # first the bitstream: a failed patch leaves OUT/ as it was
            bram.patch(target.family, work, bram.slot_pairs(slots, ph), log)
        except (bram.PatchError, BuildError) as e:
            raise ModelError(f"patching the bitstream failed: {e}", file=str(work)) from None
        saved = Path(tmp) / "design"  # then the new IR, estimate and RTL
        d.save(saved, hardware=True)
        for name in DESIGN_FILES:
            if (saved / name).exists():
                shutil.copyfile(saved / name, dest / name)
        if (saved / "rtl").is_dir():
            shutil.rmtree(dest / "rtl", ignore_errors=True)
            shutil.copytree(saved / "rtl", dest / "rtl")
    bit = work / {"ice40": "top.bin", "ecp5": "top.bit"}[target.family]
    final = dest / Path(report["bitstream"]).name
    shutil.copyfile(bit, final)
    seconds = time.monotonic() - t0
    previous = report["model"]
    report.update(model=model, bitstream=str(final),
                  bitstream_sha256=hashlib.sha256(final.read_bytes()).hexdigest())
    report["weights_update"] = {"previous_model": previous,
                                "roms_patched": len(ph), "seconds": round(seconds, 2)}
    return UpdateResult(dest, report, d, df, seconds, len(ph))
