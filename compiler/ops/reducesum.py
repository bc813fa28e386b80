"""ReduceSum: acc = sum over ``axes`` of (x - x_zero_point), ``keepdims`` as in ONNX.

The mean's division is not here: the following Requant multiplies by
S = f32(sx / f32(sy * f32(n))) (as GlobalAvgPool + Requant do for QLinearGlobalAveragePool).
"""

from __future__ import annotations

import numpy as np

from .base import Op


def reduced_count(node, g) -> int:
    """n: how many input elements each output element sums."""
    shape = g.tensors[node.inputs[0]].shape
    return int(np.prod([shape[a] for a in node.attrs["axes"]]))


class ReduceSum(Op):
    name = "ReduceSum"

    @staticmethod
    def run(node, g, xs):
        a = node.attrs
        axes = tuple(ax + 1 for ax in a["axes"])  # +1: the leading sample axis
        y = (xs[0] - a["x_zero_point"]).sum(axis=axes, keepdims=bool(a["keepdims"]))
        return [y]

    @staticmethod
    def bounds(node, g, ins):
        n = reduced_count(node, g)
        zp = node.attrs["x_zero_point"]
        return [(n * (ins[0][0] - zp), n * (ins[0][1] - zp))]
