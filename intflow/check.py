"""``intflow check MODEL``: whom to believe when numbers differ.

Runs onnxruntime at several optimisation levels, with and without
``session.qdqisint8allowed``, and compares each with the intflow reference, classifying every
differing element:

- ``u8s8 saturation``: equal to the u8×u8 oracle of the same session (onnxruntime's u8×s8
  kernel summed pairs of products in saturating int16: AVX2 CPUs without VNNI);
- ``float path``: this session runs ops between DequantizeLinear and QuantizeLinear in float
  (no QDQ fusion, or int8 QDQ without ``qdqisint8allowed``), whose rounding differs from the
  integer kernels and propagates through the layers after it;
- ``rounding tie``: one output step off where onnxruntime runs its integer kernels;
- ``real mismatch``: anything else — a bug in intflow or in onnxruntime.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx

from . import ort
from .compiler.ir import IntGraph
from .oracle import u8u8_oracle

SESSIONS = [("all", True), ("all", False), ("extended", True), ("basic", True),
            ("disable", True)]
INTEGER_SESSION = ("all", True)  # where onnxruntime runs its integer kernels: the truth


def cpu_flags() -> list[str]:
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd",
              "asimddp", "i8mm")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return [platform.machine()]
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
    return [platform.machine()] + [f for f in wanted if f in flags]


def random_inputs(g: IntGraph, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs spanning each input's quantisation range (a little beyond, to saturate)."""
    from .compiler.reference import sample_shape
    rng = np.random.default_rng(seed)
    out = {}
    for h in g.inputs:
        shape = (n, *sample_shape(g.tensors[h.tensor].shape))
        if h.quantize is None:
            t = g.tensors[h.tensor].dtype
            out[h.onnx_name] = rng.integers(t.min, t.max + 1, shape).astype(h.onnx_dtype)
            continue
        q = h.quantize
        s = float(np.max(q.scale))
        lo = (q.dtype.min - float(np.min(q.zero_point))) * s
        hi = (q.dtype.max - float(np.max(q.zero_point))) * s
        span = hi - lo
        out[h.onnx_name] = rng.uniform(lo - 0.05 * span, hi + 0.05 * span,
                                       shape).astype(np.float32)
    return out


def output_steps(g: IntGraph) -> dict[str, np.ndarray | float]:
    steps = {}
    for o in g.outputs:
        if o.kind == "dequantize" and o.quant is not None:
            steps[o.onnx_name] = float(np.max(o.quant.scale))
        elif o.kind == "int_to_float" and o.scale is not None:
            steps[o.onnx_name] = float(np.max(o.scale))
        else:
            steps[o.onnx_name] = 1.0
    return steps


def classify(ours, theirs, oracle, steps, integer_session: bool) -> dict[str, int]:
    counts = {"equal": 0, "u8s8 saturation": 0, "float path": 0, "rounding tie": 0,
              "real mismatch": 0}
    for k, want in theirs.items():
        got = np.asarray(ours[k], np.float64)
        want = np.asarray(want, np.float64)
        same = got == want
        counts["equal"] += int(same.sum())
        diff = ~same
        if oracle is not None:
            sat = diff & (got == np.asarray(oracle[k], np.float64))
            counts["u8s8 saturation"] += int(sat.sum())
            diff &= ~sat
        if not integer_session:
            # this session runs float ops between DQ and Q; their rounding propagates
            counts["float path"] += int(diff.sum())
            continue
        near = diff & (np.abs(got - want) <= steps[k] * 1.0001)
        counts["rounding tie"] += int(near.sum())
        counts["real mismatch"] += int((diff & ~near).sum())
    return counts


def first_unexplained(ours, theirs, oracle, steps) -> str | None:
    """Where the integer session's first rounding tie or real mismatch is (output name, flat
    index, both values), or None: what ``intflow check`` prints beside the counts."""
    for k, want in theirs.items():
        got = np.asarray(ours[k], np.float64).ravel()
        want = np.asarray(want, np.float64).ravel()
        diff = got != want
        if oracle is not None:
            diff &= got != np.asarray(oracle[k], np.float64).ravel()
        bad = np.flatnonzero(diff)
        if bad.size:
            i = int(bad[0])
            kind = "rounding tie" if abs(got[i] - want[i]) <= steps[k] * 1.0001 else \
                "real mismatch"
            return (f"{k}: {bad.size} of {want.size} elements; first at flat index {i} "
                    f"({kind}): intflow {got[i]!r}, onnxruntime {want[i]!r}")
    return None


def check(model: str, g: IntGraph, inputs: dict[str, np.ndarray]) -> tuple[list[dict], bool]:
    """Rows (one per onnxruntime session) and whether the integer session agrees (up to
    saturation on this CPU)."""
    import onnxruntime

    from .compiler.reference import run
    ours = run(g, inputs)
    steps = output_steps(g)
    base = onnx.load(model)
    oracle_model = u8u8_oracle(base)
    has_oracle = oracle_model != base
    rows = []
    ok = True
    # ops the importer noted as computed in float by onnxruntime (integer Softmax/LayerNorm,
    # ...): their differences are "float path" in the integer session too
    float_noted = any("in float between DequantizeLinear" in n for n in g.notes)
    with tempfile.TemporaryDirectory() as tmp:
        opath = str(Path(tmp) / "oracle.onnx")
        if has_oracle:
            onnx.save(oracle_model, opath)
        for level, int8 in SESSIONS:
            theirs = ort.run(model, inputs, level=level, int8_allowed=int8)
            oracle = ort.run(opath, inputs, level=level, int8_allowed=int8) if has_oracle \
                else None
            counts = classify(ours, theirs, oracle, steps,
                              (level, int8) == INTEGER_SESSION and not float_noted)
            total = sum(v.size for v in theirs.values())
            rows.append({"session": f"ORT_ENABLE_{level.upper()}" if level != "disable"
                         else "ORT_DISABLE_ALL", "qdqisint8allowed": int8, "elements": total,
                         **counts})
            if (level, int8) == INTEGER_SESSION:
                ok = counts["real mismatch"] == 0 and counts["rounding tie"] == 0
                rows[-1]["first difference"] = first_unexplained(ours, theirs, oracle, steps)
    for r in rows:
        r["onnxruntime"] = onnxruntime.__version__
    return rows, ok


def format_rows(rows: list[dict]) -> str:
    head = ("session", "int8 flag", "elements", "equal", "u8s8 saturation", "float path",
            "rounding tie", "real mismatch")
    table = [head] + [(r["session"], "1" if r["qdqisint8allowed"] else "0",
                       str(r["elements"]), str(r["equal"]), str(r["u8s8 saturation"]),
                       str(r["float path"]), str(r["rounding tie"]), str(r["real mismatch"]))
                      for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("first difference"):
            lines.append(f"{r['session']} (int8 flag {int(r['qdqisint8allowed'])}) differs "
                         f"at {r['first difference']}")
    return "\n".join(lines)
