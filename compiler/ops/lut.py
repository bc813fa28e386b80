"""Lut: y = table[x - x_min], a table built at compile time.

Unary ops on 8-bit codes (QLinearSigmoid, QLinearLeakyRelu, requantising copies of
QLinearConcat, float islands DQ -> unary ops -> Q) become a table computed the way
onnxruntime computes its own: exact, and integer-only at run time. ``axis`` set: one table per
channel (e.g. BatchNormalization between DQ and Q), table shape (C, 2^bits).
"""

from __future__ import annotations

import numpy as np

from .base import Op


class Lut(Op):
    name = "Lut"

    @staticmethod
    def run(node, g, xs):
        x, table = xs
        idx = x - node.attrs["x_min"]
        axis = node.attrs.get("axis")
        if axis is None:
            return [table[idx]]
        c = np.arange(table.shape[0]).reshape(
            [-1 if i == axis + 1 else 1 for i in range(x.ndim)])
        return [table[c, idx]]

    @staticmethod
    def bounds(node, g, ins):
        t = g.const(node.inputs[1])
        return [(int(t.min()), int(t.max()))]
