"""FoldZeroPoints: move the input zero point of Conv/MatMul with constant weights into the bias.

sum_k (x_k - zx) w_k + b = sum_k x_k w_k + (b - zx * sum_k w_k)
Padding keeps ``pad_value = zx``, so padded taps still contribute zx * w - a constant part of
the same correction. The hardware then multiplies raw codes.
"""

from __future__ import annotations

import numpy as np

from ..ir import IntGraph
from .base import Transformation


class FoldZeroPoints(Transformation):
    def apply(self, g: IntGraph) -> tuple[IntGraph, bool]:
        changed = False
        for n in g.nodes:
            if n.op not in ("Conv", "MatMul") or not n.attrs.get("x_zero_point", 0):
                continue
            if not g.is_const(n.inputs[1]) or n.attrs.get("w_zero_point", 0):
                continue
            zx = n.attrs["x_zero_point"]
            w = g.const(n.inputs[1])
            if n.op == "Conv":
                wsum = w.reshape(w.shape[0], -1).sum(axis=1)
            else:
                wsum = w.sum(axis=0)
            bias = g.const(n.inputs[2]) if len(n.inputs) > 2 else np.zeros_like(wsum)
            new_bias = bias - zx * wsum
            name = g.add_const(n.name.replace("/", "_") + "_bias_folded", new_bias)
            n.inputs = [n.inputs[0], n.inputs[1], name]
            n.attrs["x_zero_point"] = 0
            changed = True
        if changed:
            g.prune()
        return g, changed
