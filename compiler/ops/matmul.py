"""MatMul: integer matrix product with a constant or activation right operand.

acc[..., n] = sum_k (x[..., k] - x_zero_point) * (w[k, n] - w_zero_point) + bias[n]

Gemm lowers here too (transposes and alpha folded at compile time). With constant weights the
weight zero point is already subtracted from ``w`` and the x zero point is folded into
``bias`` by the ``FoldZeroPoints`` pass.
"""

from __future__ import annotations

import numpy as np

from .base import Op
from .conv import weighted_bounds


class MatMul(Op):
    name = "MatMul"

    @staticmethod
    def run(node, g, xs):
        a = node.attrs
        x = xs[0].astype(np.int64) - a.get("x_zero_point", 0)
        w = xs[1].astype(np.int64) - a.get("w_zero_point", 0)
        y = np.matmul(x, w)
        if len(xs) > 2:
            y = y + xs[2].astype(np.int64)
        return [y.reshape(x.shape[0], *g.tensors[node.outputs[0]].shape)]

    @staticmethod
    def bounds(node, g, ins):
        (lo, hi) = ins[0]
        zp = node.attrs.get("x_zero_point", 0)
        if g.is_const(node.inputs[1]):
            w = g.const(node.inputs[1]) - node.attrs.get("w_zero_point", 0)
            mn, mx = weighted_bounds(w.T, lo - zp, hi - zp)  # w is 2-D (K, N)
        else:
            (wlo, whi) = ins[1]
            wz = node.attrs.get("w_zero_point", 0)
            k = g.tensors[node.inputs[0]].shape[-1]
            corners = [p * q for p in (lo - zp, hi - zp) for q in (wlo - wz, whi - wz)]
            mn, mx = np.array([k * min(corners)]), np.array([k * max(corners)])
        if len(node.inputs) > 2:
            b = g.const(node.inputs[2])
            mn, mx = mn + b, mx + b
        return [(int(np.min(mn)), int(np.max(mx)))]

    @staticmethod
    def macs(node, g):
        k = g.tensors[node.inputs[0]].shape[-1]
        return k * g.tensors[node.outputs[0]].size
