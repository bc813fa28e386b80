"""Mul: eltwise product of two code tensors (QLinearMul, ORT_KERNELS.md §5).

R = f32(f32(sa*sb)/sc);  p = (a - za)(b - zb) exact;  y = sat(cvt(f32(f32(f32(p) * R) + zc)))
(zc added in float before rounding, no fma).
"""

from __future__ import annotations

import numpy as np

from .. import f32
from .add import _operand
from .base import Op


class Mul(Op):
    name = "Mul"

    @staticmethod
    def run(node, g, xs):
        a = node.attrs
        x, y = _operand(node, g, xs[0], 0), _operand(node, g, xs[1], 1)
        out_shape = g.tensors[node.outputs[0]].shape
        x = x.reshape(x.shape[0], *((1,) * (len(out_shape) - x.ndim + 1)), *x.shape[1:])
        y = y.reshape(y.shape[0], *((1,) * (len(out_shape) - y.ndim + 1)), *y.shape[1:])
        p = (x - a["za"]) * (y - a["zb"])
        r = f32.F32(np.int64(a["r"][0]), np.int64(a["r"][1]))
        v = f32.add(f32.mul(f32.from_int(p), r), f32.from_int(np.int64(a["zc"])))
        return [np.clip(f32.cvt(v), a["lo"], a["hi"])]

    @staticmethod
    def bounds(node, g, ins):
        return [(node.attrs["lo"], node.attrs["hi"])]
