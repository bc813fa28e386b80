"""The per-layer table ``intflow compile`` prints: op, shapes, bit widths, MACs, requant."""

from __future__ import annotations

from .compiler.ir import IntGraph
from .compiler.ops import OPS

HEADER = ("layer", "op", "in shape", "out shape", "in", "weight", "acc/out", "MACs", "requant")


def layer_rows(g: IntGraph) -> list[tuple[str, ...]]:
    rows = []
    for n in g.nodes:
        x = g.tensors[n.inputs[0]]
        y = g.tensors[n.outputs[0]]
        w = "-"
        if n.op in ("Conv", "MatMul") and len(n.inputs) > 1:
            w = g.tensors[n.inputs[1]].dtype.name
        mode = n.attrs.get("mode", "-") if n.op in ("Requant", "Add") else "-"
        if n.op == "Requant" and n.attrs.get("axis") is not None:
            mode += "/ch"
        macs = OPS[n.op].macs(n, g)
        rows.append((n.origin[0] if n.origin else n.name, n.op, _shape(x.shape), _shape(y.shape),
                     x.dtype.name, w, y.dtype.name, f"{macs:,}" if macs else "-", mode))
    return rows


def _shape(s: tuple[int, ...]) -> str:
    return "x".join(map(str, s))


def format_table(g: IntGraph) -> str:
    rows = [HEADER, *layer_rows(g)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum(OPS[n.op].macs(n, g) for n in g.nodes)
    lines.append(f"total MACs per inference: {total:,}")
    return "\n".join(lines)
