"""FuseClamp: a Clamp after a Requant/Add/Mul/AvgPool (its only reader) narrows the producer's
[lo, hi]; a Clamp after a Lut is folded into the table. Clamps of a producer's full range
disappear."""

from __future__ import annotations

import numpy as np

from ..ir import IntGraph
from .base import Transformation

CLAMPING = ("Requant", "Add", "Mul", "AvgPool")


class FuseClamp(Transformation):
    def apply(self, g: IntGraph) -> tuple[IntGraph, bool]:
        outs = g.output_names()
        for n in g.nodes:
            if n.op != "Clamp":
                continue
            src = g.producer(n.inputs[0])
            if src is None or n.inputs[0] in outs or len(g.consumers(n.inputs[0])) != 1:
                continue
            lo, hi = n.attrs["lo"], n.attrs["hi"]
            if src.op in CLAMPING:
                src.attrs["lo"] = min(max(src.attrs["lo"], lo), hi)
                src.attrs["hi"] = max(min(src.attrs["hi"], hi), lo)
            elif src.op == "Lut":
                t = g.constants[src.inputs[1]]
                g.constants[src.inputs[1]] = np.clip(t, lo, hi)
            else:
                continue
            self._bypass(g, n, src)
            return g, True
        return g, False

    @staticmethod
    def _bypass(g: IntGraph, clamp, src) -> None:
        """Let ``src`` write the clamp's output tensor and drop the clamp."""
        old, new = src.outputs[0], clamp.outputs[0]
        src.outputs = [new]
        g.tensors[new].dtype = g.tensors[old].dtype
        g.nodes.remove(clamp)
        del g.tensors[old]
