"""GlobalAvgPool: acc = sum over the spatial axes of (x - x_zero_point).

The division is not here: the following Requant multiplies by S = f32(sx / f32(sy * f32(n)))
(QLinearGlobalAveragePool, ORT_KERNELS.md §6), so the pair is bit-exact to onnxruntime.
"""

from __future__ import annotations

import numpy as np

from .base import Op


class GlobalAvgPool(Op):
    name = "GlobalAvgPool"

    @staticmethod
    def run(node, g, xs):
        shape = g.tensors[node.inputs[0]].shape
        axes = tuple(range(3, len(shape) + 1))  # spatial axes after (S, N, C)
        y = (xs[0] - node.attrs["x_zero_point"]).sum(axis=axes, keepdims=True)
        return [y]

    @staticmethod
    def bounds(node, g, ins):
        shape = g.tensors[node.inputs[0]].shape
        n = int(np.prod(shape[2:]))
        zp = node.attrs["x_zero_point"]
        return [(n * (ins[0][0] - zp), n * (ins[0][1] - zp))]
