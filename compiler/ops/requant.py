"""Requant: accumulator -> output codes (per tensor or per channel), fused clamp.

Inputs: acc, then the multiplier constants — ``ort``: mantissa, exponent (float32 M split
exactly); ``dyadic``: m0 (Q31), shift. Attrs: mode, axis (channel axis of acc, or None),
zero_point, lo, hi (clamp bounds in output codes; a fused ReLU raises lo to the zero point).
"""

from __future__ import annotations

from .. import requant as rq
from .base import Op


def channel_shape(node, g) -> tuple[int, ...]:
    """Shape that broadcasts per-channel constants against (S, *acc_shape)."""
    axis = node.attrs.get("axis")
    shape = g.tensors[node.inputs[0]].shape
    if axis is None:
        return (1,) * (len(shape) + 1)
    out = [1] * (len(shape) + 1)
    out[axis + 1] = shape[axis]
    return tuple(out)


class Requant(Op):
    name = "Requant"

    @staticmethod
    def run(node, g, xs):
        a = node.attrs
        acc = xs[0]
        cs = channel_shape(node, g)
        p, q = xs[1].reshape(cs), xs[2].reshape(cs)
        if a["mode"] == "ort":
            y = rq.requant_ort(acc, p, q, a["zero_point"], a["lo"], a["hi"])
        else:
            y = rq.requant_dyadic(acc, p, q, a["zero_point"], a["lo"], a["hi"])
        return [y]

    @staticmethod
    def bounds(node, g, ins):
        return [(node.attrs["lo"], node.attrs["hi"])]
