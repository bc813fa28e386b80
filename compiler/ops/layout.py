"""Layout ops: Reshape (Flatten, Squeeze, Unsqueeze lower here), Transpose, Concat.

They move codes and never change a value.
"""

from __future__ import annotations

import numpy as np

from .base import Op


class Reshape(Op):
    name = "Reshape"

    @staticmethod
    def run(node, g, xs):
        return [xs[0].reshape(xs[0].shape[0], *g.tensors[node.outputs[0]].shape)]

    @staticmethod
    def bounds(node, g, ins):
        return [ins[0]]


class Transpose(Op):
    name = "Transpose"

    @staticmethod
    def run(node, g, xs):
        perm = [0] + [p + 1 for p in node.attrs["perm"]]
        return [np.transpose(xs[0], perm)]

    @staticmethod
    def bounds(node, g, ins):
        return [ins[0]]


class Concat(Op):
    name = "Concat"

    @staticmethod
    def run(node, g, xs):
        s = max(x.shape[0] for n, x in zip(node.inputs, xs) if not g.is_const(n))
        parts = []
        for name, x in zip(node.inputs, xs):
            if g.is_const(name):  # constants carry no sample axis
                x = np.broadcast_to(x, (s, *x.shape))
            parts.append(x)
        return [np.concatenate(parts, axis=node.attrs["axis"] + 1)]

    @staticmethod
    def bounds(node, g, ins):
        return [(min(b[0] for b in ins), max(b[1] for b in ins))]
