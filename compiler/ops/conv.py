"""Conv: integer convolution, 1-D or 2-D, stride, padding, dilation, groups (depthwise).

acc[o] = sum_{c,k} (x[c, s*i + d*k] - x_zero_point) * w[o, c, k] + bias[o]

Padded positions hold ``pad_value`` (the input zero point, so they contribute 0 before the
zero point is folded into the bias, exactly as QLinearConv/ConvInteger treat padding).
Inputs: x, w (constant, zero point already subtracted), optional bias (constant int).
"""

from __future__ import annotations

import numpy as np

from .base import Op


def conv_int(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, *, strides: list[int],
             pads: list[int], dilations: list[int], group: int, pad_value: int,
             x_zero_point: int = 0) -> np.ndarray:
    """x (B, C, *spatial), w (O, C/group, *kernel) -> (B, O, *out_spatial), all int64."""
    nd = x.ndim - 2
    x = x.astype(np.int64) - x_zero_point
    pad_width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    x = np.pad(x, pad_width, constant_values=pad_value - x_zero_point)
    b, c = x.shape[:2]
    o = w.shape[0]
    k = w.shape[2:]
    out_sp = [
        (x.shape[2 + i] - dilations[i] * (k[i] - 1) - 1) // strides[i] + 1 for i in range(nd)
    ]
    cg, og = c // group, o // group
    xg = x.reshape(b, group, cg, *x.shape[2:])
    wg = w.astype(np.int64).reshape(group, og, cg, *k)
    acc = np.zeros((b, group, og, *out_sp), dtype=np.int64)
    for kidx in np.ndindex(*k):
        sl = tuple(
            slice(kidx[i] * dilations[i], kidx[i] * dilations[i]
                  + (out_sp[i] - 1) * strides[i] + 1, strides[i])
            for i in range(nd)
        )
        patch = xg[(slice(None), slice(None), slice(None), *sl)]  # (b, g, cg, *out)
        wk = wg[(slice(None), slice(None), slice(None), *kidx)]  # (g, og, cg)
        acc += np.einsum("bgc...,goc->bgo...", patch, wk)
    acc = acc.reshape(b, o, *out_sp)
    if bias is not None:
        acc += bias.astype(np.int64).reshape((o,) + (1,) * nd)
    return acc


def weighted_bounds(w2d: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row exact min/max of sum_k w[r, k] * x_k over independent x_k in [lo, hi]."""
    w2d = w2d.astype(np.int64)
    mx = np.maximum(w2d * lo, w2d * hi).sum(axis=1)
    mn = np.minimum(w2d * lo, w2d * hi).sum(axis=1)
    return mn, mx


class Conv(Op):
    name = "Conv"

    @staticmethod
    def run(node, g, xs):
        x, w = xs[0], xs[1]
        bias = xs[2] if len(xs) > 2 else None
        a = node.attrs
        shape = g.tensors[node.inputs[0]].shape
        s = x.shape[0]
        xb = x.reshape(s * shape[0], *shape[1:])
        y = conv_int(xb, w, bias, strides=a["strides"], pads=a["pads"],
                     dilations=a["dilations"], group=a["group"], pad_value=a["pad_value"],
                     x_zero_point=a.get("x_zero_point", 0))
        return [y.reshape(s, *g.tensors[node.outputs[0]].shape)]

    @staticmethod
    def bounds(node, g, ins):
        (lo, hi) = ins[0]
        zp = node.attrs.get("x_zero_point", 0)
        w = g.const(node.inputs[1])
        mn, mx = weighted_bounds(w.reshape(w.shape[0], -1), lo - zp, hi - zp)
        # padding holds pad_value - zp, which the weights also multiply
        pv = node.attrs["pad_value"] - zp
        if any(node.attrs["pads"]):
            pmn, pmx = weighted_bounds(w.reshape(w.shape[0], -1), min(lo - zp, pv),
                                       max(hi - zp, pv))
            mn, mx = np.minimum(mn, pmn), np.maximum(mx, pmx)
        if len(node.inputs) > 2:
            b = g.const(node.inputs[2])
            mn, mx = mn + b, mx + b
        return [(int(mn.min()), int(mx.max()))]

    @staticmethod
    def macs(node, g):
        w = g.tensors[node.inputs[1]]
        out = g.tensors[node.outputs[0]]
        per_out = int(np.prod(w.shape[1:]))
        return per_out * out.size
