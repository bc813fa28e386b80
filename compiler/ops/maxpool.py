"""MaxPool on codes: max over the in-bounds part of each window (padding ignored); a window
entirely in the padding gives ``empty`` (onnxruntime: the lowest code of the ONNX type).

Exact in onnxruntime too (MaxPool u8/s8, NhwcMaxPool): ORT_KERNELS.md §8.
"""

from __future__ import annotations

import numpy as np

from .base import Op
from .pool_geometry import pooled_size

NEG = -(1 << 62)


def window_positions(shape_sp, a):
    """Yield (index tuple per spatial dim arrays) for every kernel offset, with validity."""
    nd = len(shape_sp)
    k, s, p, d = a["kernel_shape"], a["strides"], a["pads"], a["dilations"]
    out = [pooled_size(shape_sp[i], k[i], s[i], p[i], p[i + nd], d[i], a.get("ceil_mode", 0))
           for i in range(nd)]
    for kidx in np.ndindex(*k):
        idx = []
        valid = np.ones(out, dtype=bool)
        for i in range(nd):
            pos = np.arange(out[i]) * s[i] - p[i] + kidx[i] * d[i]
            ok = (pos >= 0) & (pos < shape_sp[i])
            shape = [1] * nd
            shape[i] = out[i]
            valid = valid & ok.reshape(shape)
            idx.append(np.clip(pos, 0, shape_sp[i] - 1).reshape(shape))
        yield tuple(idx), valid


class MaxPool(Op):
    name = "MaxPool"

    @staticmethod
    def run(node, g, xs):
        x = xs[0]
        shape = g.tensors[node.inputs[0]].shape
        out_shape = g.tensors[node.outputs[0]].shape
        lead = x.shape[: x.ndim - (len(shape) - 2)]
        y = np.full((*lead, *out_shape[2:]), NEG, dtype=np.int64)
        for idx, valid in window_positions(shape[2:], node.attrs):
            v = x[(..., *idx)]
            y = np.maximum(y, np.where(valid, v, NEG))
        if "empty" in node.attrs:  # windows entirely in the padding: the type's lowest code
            y = np.where(y == NEG, node.attrs["empty"], y)
        return [y]

    @staticmethod
    def bounds(node, g, ins):
        if "empty" in node.attrs:
            return [(min(ins[0][0], node.attrs["empty"]), ins[0][1])]
        return [ins[0]]


def has_empty_window(shape_sp, a) -> bool:
    """True when some window lies entirely in the padding (possible with dilation)."""
    covered = None
    for _, valid in window_positions(shape_sp, a):
        covered = valid if covered is None else covered | valid
    return covered is not None and not covered.all()
