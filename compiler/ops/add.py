"""Add: residual/eltwise addition of two code tensors with rescaling (QLinearAdd).

``ort`` mode, bit-exact to onnxruntime's QLinearAdd (ORT_KERNELS.md §4), constants split into
exact float32 (mantissa, exponent) pairs at compile time:
    Ra = f32(sa/sc), Rb = f32(sb/sc)
    b_inner (two spans, or B broadcast):  y = sat(cvt(fma(a, Ra, fma(b, Rb, fixA))))
    a_inner (A broadcast along the innermost axis): y = sat(cvt(fma(b, Rb, fma(a, Ra, fixB))))
with fixA = f32(zc - fma(Ra, za, f32(Rb*zb))), fixB = f32(zc - fma(Rb, zb, f32(Ra*za))).
Codes enter raw; cvt gives INT32_MIN (-> lowest code) for |v| >= 2^31.

``dyadic`` mode: TFLite's quantised Add (left shift 20, two input multipliers, one output
multiplier), bit-exact to its own definition.
"""

from __future__ import annotations

import numpy as np

from .. import f32
from .. import requant as rq
from .base import Op


def _pair(p) -> f32.F32:
    return f32.F32(np.int64(p[0]), np.int64(p[1]))


def add_ort(a, b, attrs) -> np.ndarray:
    ra, rb, fix = _pair(attrs["ra"]), _pair(attrs["rb"]), _pair(attrs["fix"])
    fa = f32.from_int(np.asarray(a, np.int64))
    fb = f32.from_int(np.asarray(b, np.int64))
    if attrs["order"] == "b_inner":
        v = f32.fma(fa, ra, f32.fma(fb, rb, fix))
    else:
        v = f32.fma(fb, rb, f32.fma(fa, ra, fix))
    return np.clip(f32.cvt(v), attrs["lo"], attrs["hi"])


def add_dyadic(a, b, attrs) -> np.ndarray:
    left = attrs["left_shift"]
    xa = (np.asarray(a, np.int64) - attrs["za"]) << left
    xb = (np.asarray(b, np.int64) - attrs["zb"]) << left
    sa = rq.requant_dyadic(xa, attrs["ma"][0], attrs["ma"][1], 0, rq.INT32_MIN, rq.INT32_MAX)
    sb = rq.requant_dyadic(xb, attrs["mb"][0], attrs["mb"][1], 0, rq.INT32_MIN, rq.INT32_MAX)
    return rq.requant_dyadic(sa + sb, attrs["mc"][0], attrs["mc"][1], attrs["zc"],
                             attrs["lo"], attrs["hi"])


def _operand(node, g, x, i):
    """Constants have no sample axis; give them one so numpy broadcasting lines up."""
    return x[None] if g.is_const(node.inputs[i]) else x


class Add(Op):
    name = "Add"

    @staticmethod
    def run(node, g, xs):
        a, b = _operand(node, g, xs[0], 0), _operand(node, g, xs[1], 1)
        out_shape = g.tensors[node.outputs[0]].shape
        # right-align per-inference shapes under the leading sample axis
        a = a.reshape(a.shape[0], *((1,) * (len(out_shape) - a.ndim + 1)), *a.shape[1:])
        b = b.reshape(b.shape[0], *((1,) * (len(out_shape) - b.ndim + 1)), *b.shape[1:])
        if node.attrs["mode"] == "ort":
            return [add_ort(a, b, node.attrs)]
        return [add_dyadic(a, b, node.attrs)]

    @staticmethod
    def bounds(node, g, ins):
        return [(node.attrs["lo"], node.attrs["hi"])]
