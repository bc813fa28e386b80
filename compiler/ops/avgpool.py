"""AvgPool with a real window (QLinearAveragePool, ORT_KERNELS.md §6), bit-exact:

    xf  = f32(sx * (x - zx))               one rounding per code (a 2^bits table)
    s   = 0; s = f32(s + xf) for each in-bounds element, rows then columns
    cnt = prod(kernel) if count_include_pad else the in-bounds count
    y   = sat(rint(f32(f32(f32(s / cnt) / sy) + zy)))

emulated with the integer float32 operations of ``f32`` (no float in the datapath).
Whole-image windows with zero pads lower to GlobalAvgPool + Requant instead (onnxruntime
routes them to its global kernel).
"""

from __future__ import annotations

import numpy as np

from .. import f32
from ..requant import rint_saturating
from .base import Op
from .maxpool import window_positions


class AvgPool(Op):
    name = "AvgPool"

    @staticmethod
    def run(node, g, xs):
        a = node.attrs
        x, table = xs
        shape = g.tensors[node.inputs[0]].shape
        xm, xe = table[0], table[1]  # f32(sx * (c - zx)) as (mantissa, exponent) per code
        idx_code = x - a["x_min"]
        s = None
        cnt = None
        for idx, valid in window_positions(shape[2:], a):
            c = idx_code[(..., *idx)]
            term = f32.F32(np.where(valid, xm[c], 0), np.where(valid, xe[c], 0))
            s = term if s is None else f32.add(s, term)
            cnt = valid.astype(np.int64) if cnt is None else cnt + valid
        if a["count_include_pad"]:
            cnt = np.full_like(cnt, int(np.prod(a["kernel_shape"])))
        q = f32.div(s, f32.from_int(np.broadcast_to(cnt, s.m.shape)))
        q = f32.div(q, f32.F32(np.int64(a["sy"][0]), np.int64(a["sy"][1])))
        q = f32.add(q, f32.from_int(np.int64(a["zy"])))
        return [np.clip(rint_saturating(q), a["lo"], a["hi"])]

    @staticmethod
    def bounds(node, g, ins):
        return [(node.attrs["lo"], node.attrs["hi"])]
