"""Folding (PE × SIMD per MVAU) and the analytical cost model.

Streams carry one element per beat, so an MVAU reading a row of ``k`` elements spends at least
``k`` cycles per row, and ``(n/pe)·(k/simd)`` cycles computing it: cycles per inference
``rows · max(k, n·k/(pe·simd), n)``. Every other engine moves one element per cycle. The
initiation interval of the pipeline is its slowest engine; ``auto_fold`` gives each MVAU the
fewest multipliers that keep it within the smallest II the budget allows (FINN's balancing).
"""

from __future__ import annotations

import json
from pathlib import Path

from .spec import Dataflow, Engine


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def mvau_cycles(p: dict, pe: int | None = None, simd: int | None = None) -> int:
    pe = p["pe"] if pe is None else pe
    simd = p["simd"] if simd is None else simd
    k, n = p["k"], p["n"]
    return p["rows"] * max(k, (n // pe) * (k // simd), n)


def engine_cycles(e: Engine, df: Dataflow) -> int:
    """Cycles per inference of ``e`` at one element per beat on every stream."""
    p = e.params
    if e.kind == "MVAU":
        return mvau_cycles(p)
    if e.kind == "SlidingWindow":
        # the line buffer ingests pixels while it emits windows
        return max(p["channels"] * p["height"] * p["width"], df.streams[e.outputs[0]].length)
    ins = sum(df.streams[s].length for s in e.inputs)
    outs = sum(df.streams[s].length for s in e.outputs)
    if e.kind == "Fork":
        return ins
    if e.kind in ("Add", "Mul"):
        return outs
    return max(ins, outs)


def mvaus(df: Dataflow) -> list[Engine]:
    return [e for e in df.engines if e.kind == "MVAU"]


def set_fold(e: Engine, pe: int, simd: int) -> None:
    p = e.params
    if p["n"] % pe or p["k"] % simd:
        raise ValueError(f"{e.name}: PE {pe} must divide n={p['n']} and SIMD {simd} must "
                         f"divide k={p['k']}")
    p["pe"], p["simd"] = pe, simd


def cheapest_fold(p: dict, target: int) -> tuple[int, int] | None:
    """The (pe, simd) with the fewest multipliers meeting ``target`` cycles (ties: more SIMD,
    which keeps fewer accumulators)."""
    best = None
    for pe in divisors(p["n"]):
        for simd in divisors(p["k"]):
            if mvau_cycles(p, pe, simd) <= target:
                key = (pe * simd, pe)
                if best is None or key < best[0]:
                    best = (key, (pe, simd))
    return None if best is None else best[1]


def auto_fold(df: Dataflow, *, max_multipliers: int | None = None,
              target_ii: int | None = None) -> int:
    """Balance the pipeline: the smallest II reachable within ``max_multipliers`` (or the
    given ``target_ii``), each MVAU as cheap as that II allows. Returns the II estimate."""
    floor = max((engine_cycles(e, df) for e in df.engines if e.kind != "MVAU"), default=1)
    units = mvaus(df)
    floor = max([floor] + [mvau_cycles(e.params, e.params["n"], e.params["k"]) for e in units])
    candidates = sorted({mvau_cycles(e.params, pe, s) for e in units
                         for pe in divisors(e.params["n"]) for s in divisors(e.params["k"])}
                        | {floor})
    candidates = [c for c in candidates if c >= floor]
    if target_ii is not None:
        candidates = [c for c in candidates if c >= min(target_ii, candidates[-1])]
    for ii in candidates:
        folds = [cheapest_fold(e.params, ii) for e in units]
        if any(f is None for f in folds):
            continue
        if max_multipliers is not None and sum(pe * s for pe, s in folds) > max_multipliers:
            continue
        for e, (pe, s) in zip(units, folds):
            set_fold(e, pe, s)
        return max([ii] + [engine_cycles(e, df) for e in df.engines])
    for e in units:  # nothing fits the budget: the smallest design
        set_fold(e, 1, 1)
    return initiation_interval(df)


def fold_from_file(df: Dataflow, path: str) -> None:
    """Apply ``{"layer": {"pe": P, "simd": S}, ...}``; a layer is named by its engine name,
    its IntGraph node name, or the ONNX node that node came from."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the folding file: {e}") from None
    if not isinstance(spec, dict) or not all(
            isinstance(f, dict) and all(isinstance(f.get(k, 1), int) and f.get(k, 1) >= 1
                                        for k in ("pe", "simd")) for f in spec.values()):
        raise ValueError(f'{path}: the folding file must be {{"layer": {{"pe": P, "simd": S}}, '
                         "...} with integers P, S >= 1")
    units = mvaus(df)
    for key, f in spec.items():
        hits = [e for e in units if key == e.name or key in e.origin
                or any(o.rsplit("/", 1)[0] == key for o in e.origin)]
        if not hits:
            names = ", ".join(e.origin[0] for e in units)
            raise ValueError(f"{path}: no MVAU layer named {key!r} (layers: {names})")
        for e in hits:
            try:
                set_fold(e, int(f.get("pe", 1)), int(f.get("simd", 1)))
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None


def initiation_interval(df: Dataflow) -> int:
    return max(engine_cycles(e, df) for e in df.engines)


def apply_fold(df: Dataflow, fold: str | None, *, max_multipliers: int | None = None,
               target_ii: int | None = None) -> None:
    """``fold``: None or "min" (PE = SIMD = 1), "max" (fastest), "auto" (balanced within the
    budget), or a JSON file."""
    if fold in (None, "min"):
        for e in mvaus(df):
            set_fold(e, 1, 1)
    elif fold == "max":
        auto_fold(df)
    elif fold == "auto":
        auto_fold(df, max_multipliers=max_multipliers, target_ii=target_ii)
    else:
        fold_from_file(df, fold)
