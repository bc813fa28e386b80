"""Folding (PE × SIMD per MVAU) and the analytical cost model.

Streams carry one element per beat, so an MVAU reading a row of ``k`` elements spends at least
``k`` cycles per row, and ``(n/pe)·(k/simd)`` cycles computing it: cycles per inference
``rows · max(k, n·k/(pe·simd), n)``. Every other engine moves one element per cycle. The
initiation interval of the pipeline is its slowest engine; ``auto_fold`` gives each MVAU the
fewest multipliers that keep it within the smallest II the budget allows (FINN's balancing).

After folding, ``choose_requant_styles`` makes each requant (an MVAU's ``params["requant"]``
or a Requant engine) sequential — ``hw/requant_serial.py``, no DSP block, ``T`` cycles per
word — wherever ``words per inference * T <= II``, so the II does not change; the choice is
recorded as ``style`` ("serial" or "pipelined") and ``radix`` in the params, which the cycle
model here, the estimate and ``hw/engines/elementwise.py``'s ``requant_unit`` read. An ort Add
of two streams is made sequential the same way (``hw/eltwise_add_serial.py``: the same unit
behind the exact fixed-point sum), its ``style``/``radix`` in the Add engine's params, and a
WindowAvg's threshold search (``hw/engines/window_avg.py``'s ``WindowAvgSerial``: one probe
at a time), its ``style`` in the engine's params.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .spec import Dataflow, Engine


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ---- serial requantisation (hw/requant_serial.py) -----------------------------------------
SERIAL_MANT = 24  # float32 significand bits
SERIAL_MAX_SHIFT = SERIAL_MANT + 2  # the right shift to the binary point, clamped (even)
SERIAL_MAX_CAP_BITS = SERIAL_MANT - 3  # outputs up to 21-bit magnitudes


def serial_requant_cycles(acc_bits: int, radix: int = 2) -> int:
    """Worst-case cycles from one accepted beat to the next of ``RequantOrtSerial`` (output
    taken at once): IDLE, NORM (shifts by 4 then 1, and the cycle that ends it), MUL
    (24 / log2 radix), PNORM, ROUND, SHR (26 / log2 radix), ROUND, FIN, OUT."""
    s = radix.bit_length() - 1
    norm = max(lz // 4 + lz % 4 for lz in range(acc_bits)) + 1
    return 1 + norm + SERIAL_MANT // s + 1 + 1 + SERIAL_MAX_SHIFT // s + 1 + 1 + 1


def serial_add_cycles(radix: int = 2) -> int:
    """Worst-case cycles per word of the sequential Add (``hw/eltwise_add_serial.py``): the
    serial unit's for a 48-bit sum, the widest it takes (the real sum is often narrower: the
    cycle model stays an upper bound without the fixed-point plan, which lives in hw)."""
    return serial_requant_cycles(2 * SERIAL_MANT, radix)


def add_serial_candidate(e: Engine) -> bool:
    """An ort Add of two streams (no constant operand): what the sequential Add computes
    (``hw/eltwise_add_serial.py`` still checks the sum's width and range, else pipelined)."""
    p = e.params
    return (e.kind == "Add" and p["attrs"].get("mode") == "ort" and not p.get("constants")
            and len(e.inputs) == 2)


def serial_search_cycles(bits: int) -> int:
    """Cycles per output word of ``WindowAvgSerial``'s threshold search over ``bits`` bits:
    accept, two per bit (ROM address, compare), the output beat."""
    return 2 * bits + 2


def avg_search_bits(p: dict) -> int:
    """Bits of a WindowAvg's level count (``levels`` thresholds: counts 0..levels)."""
    return max(1, np.atleast_2d(p["thresholds"]).shape[1].bit_length())


def requant_cycles_per_beat(rp: dict | None, acc_bits: int) -> int:
    """Cycles per word of a requant unit: 1 (pipelined) or the serial unit's worst case."""
    if rp is None or rp.get("style", "pipelined") != "serial":
        return 1
    return serial_requant_cycles(acc_bits, rp["radix"])


def mvau_cycles(p: dict, pe: int | None = None, simd: int | None = None) -> int:
    """rows * max(k, n*k/(pe*simd), n * T): T cycles per output word of a serial requant
    (the output shift register lets the next neuron fold compute meanwhile)."""
    pe = p["pe"] if pe is None else pe
    simd = p["simd"] if simd is None else simd
    k, n = p["k"], p["n"]
    t = requant_cycles_per_beat(p["requant"], p["acc_dtype"].bits)
    return p["rows"] * max(k, (n // pe) * (k // simd), n * t)


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
    if e.kind == "WindowAvg" and p.get("style") == "serial":
        return max(ins, outs * serial_search_cycles(avg_search_bits(p)))
    if e.kind == "Add" and p.get("style") == "serial":
        return outs * serial_add_cycles(p["radix"])
    if e.kind in ("Add", "Mul"):
        return outs
    if e.kind == "Requant":
        return ins * requant_cycles_per_beat(p, p["in_dtype"].bits)
    if e.kind == "ActMatMul":  # hw/engines/act_matmul.py: load W (once when shared), then
        # per row of A: k loads and n columns of k MACs + 1 emit
        loads = 1 if p["shared_w"] else p["batch"]
        return loads * p["k"] * p["n"] + p["batch"] * p["rows"] * (p["k"] + p["n"] * (p["k"] + 1))
    if e.kind == "Softmax":  # hw/engines/softmax.py per row: hand-over, sum, divide, emit
        # (the next row loads meanwhile)
        return p["rows"] * (2 * p["n"] + p["recip_bits"] + 1)
    if e.kind == "LayerNorm":  # hw/engines/layernorm.py per row: hand-over, V', isqrt, D,
        # divide, emit (the next row loads meanwhile)
        return p["rows"] * (p["n"] + 3 + p["sqrt_bits"] + p["recip_bits"])
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


def requant_sites(df: Dataflow) -> list[tuple[dict, int, int]]:
    """Every requant of the plan: (its params dict, words per inference, accumulator bits)."""
    out = []
    for e in df.engines:
        p = e.params
        if e.kind == "MVAU" and p["requant"] is not None:
            out.append((p["requant"], p["rows"] * p["n"], p["acc_dtype"].bits))
        elif e.kind == "Requant":
            out.append((p, df.streams[e.inputs[0]].length, p["in_dtype"].bits))
    return out


def serial_capable(rp: dict) -> bool:
    """``RequantOrtSerial`` computes this requant: ort mode, outputs up to 21 bits."""
    cap = max(rp["hi"] - rp["zero_point"], rp["zero_point"] - rp["lo"], 0) + 1
    return rp["mode"] == "ort" and cap.bit_length() <= SERIAL_MAX_CAP_BITS


def choose_requant_styles(df: Dataflow, *, serial: bool = True) -> int:
    """Make a requant sequential (``style`` "serial", the cheapest ``radix`` that does it)
    wherever its words per inference times the serial unit's cycles per word fit within the
    network's II, so the II does not change; the rest stay pipelined (one word a cycle, DSP
    blocks). ``serial=False`` keeps every requant pipelined. Returns the II."""
    for rp, _, _ in requant_sites(df):
        rp["style"], rp["radix"] = "pipelined", 1
    adds = [e for e in df.engines if add_serial_candidate(e)]
    for e in adds:
        e.params["style"], e.params["radix"] = "pipelined", 1
    avgs = [e for e in df.engines if e.kind == "WindowAvg"]
    for e in avgs:
        e.params["style"] = "pipelined"
    ii = initiation_interval(df)
    if not serial:
        return ii
    for e in avgs:
        outs = df.streams[e.outputs[0]].length
        if outs * serial_search_cycles(avg_search_bits(e.params)) <= ii:
            e.params["style"] = "serial"
    for e in adds:
        words = df.streams[e.outputs[0]].length
        for radix in (2, 4):
            if words * serial_add_cycles(radix) <= ii:
                e.params["style"], e.params["radix"] = "serial", radix
                break
    for rp, words, bits in requant_sites(df):
        if not serial_capable(rp) or bits > 2 * SERIAL_MANT:
            continue
        for radix in (2, 4):
            if words * serial_requant_cycles(bits, radix) <= ii:
                rp["style"], rp["radix"] = "serial", radix
                break
    assert initiation_interval(df) == ii
    return ii


def apply_fold(df: Dataflow, fold: str | None, *, max_multipliers: int | None = None,
               target_ii: int | None = None, serial_requant: bool = True) -> None:
    """``fold``: None or "min" (PE = SIMD = 1), "max" (fastest), "auto" (balanced within the
    budget), or a JSON file. Then the requant styles (``choose_requant_styles``)."""
    for rp, _, _ in requant_sites(df):  # fold as if every requant took a word a cycle
        rp["style"], rp["radix"] = "pipelined", 1
    for e in df.engines:  # and every Add
        if add_serial_candidate(e):
            e.params["style"], e.params["radix"] = "pipelined", 1
        elif e.kind == "WindowAvg":
            e.params["style"] = "pipelined"
    _apply_fold(df, fold, max_multipliers=max_multipliers, target_ii=target_ii)
    choose_requant_styles(df, serial=serial_requant)


def _apply_fold(df: Dataflow, fold: str | None, *, max_multipliers: int | None = None,
                target_ii: int | None = None) -> None:
    if fold in (None, "min"):
        for e in mvaus(df):
            set_fold(e, 1, 1)
    elif fold == "max":
        auto_fold(df)
    elif fold == "auto":
        auto_fold(df, max_multipliers=max_multipliers, target_ii=target_ii)
    else:
        fold_from_file(df, fold)
