"""ProveWidths: every tensor's integer type from exact range analysis over the real constants.

Input codes span their whole type; each op's ``bounds`` gives the exact min/max of its
output given its inputs' ranges and the actual weights (e.g. Conv: per output channel,
sum_k max(w_k*lo, w_k*hi) + bias). The tensor's type becomes the narrowest holding that range,
so accumulators are as wide as the weights require and no wider.
"""

from __future__ import annotations

from ..dtypes import IntType
from ..errors import ModelError
from ..ir import IntGraph
from ..ops import OPS
from .base import Transformation


def tensor_bounds(g: IntGraph) -> dict[str, tuple[int, int]]:
    b: dict[str, tuple[int, int]] = {}
    for h in g.inputs:
        t = g.tensors[h.tensor].dtype
        b[h.tensor] = (t.min, t.max)
    for name, v in g.constants.items():
        b[name] = (int(v.min()), int(v.max())) if v.size else (0, 0)
    for n in g.nodes:
        outs = OPS[n.op].bounds(n, g, [b[i] for i in n.inputs])
        for name, r in zip(n.outputs, outs):
            b[name] = (int(r[0]), int(r[1]))
    return b


class ProveWidths(Transformation):
    def apply(self, g: IntGraph) -> tuple[IntGraph, bool]:
        changed = False
        b = tensor_bounds(g)
        host_out = {o.tensor for o in g.outputs if o.kind == "codes"}
        for n in g.nodes:
            for name in n.outputs:
                lo, hi = b[name]
                t = IntType.fit(lo, hi)
                if name in host_out:
                    t = _at_least(g.tensors[name].dtype, t)
                if t.bits > 48:
                    raise ModelError(f"accumulator needs {t.bits} bits (at most 48): are the "
                                     "weights, biases or their scales absurd?", node=n.name,
                                     op=n.op)
                if g.tensors[name].dtype != t:
                    g.tensors[name].dtype = t
                    changed = True
        return g, changed


def _at_least(declared: IntType, proven: IntType) -> IntType:
    """Outputs returned to the host as codes keep their declared ONNX type when it is wider."""
    return declared if declared.contains(proven.min, proven.max) else proven
