"""Softmax: integer-only softmax along the last axis (I-ViT's Shiftmax structure).

For each row of codes x (8-bit, input scale s):

    d = max(x) - x                      # 0 .. 2^bits - 1
    e = table[d]                        # table[d] = round(2^E * exp(-s * d)), built at compile
                                        # time; table[0] = 2^E
    S = sum(e)                          # >= 2^E: the row's maximum contributes 2^E
    R = floor(2^F / S)                  # one integer division per row; F >= E + M + log2(n) + 2
                                        # keeps R's relative error below 2^-(M+2)
    p = (e * R) >> (F - M)              # softmax(x) * 2^M, truncated; 0 <= p <= 2^M

I-ViT evaluates exp with shifts (2^(x log2 e) with a linear 2^-r); with 8-bit inputs the
exponential is only ever needed at 2^bits points, so a table of them is both cheaper in
hardware than the shift logic and exact to 2^-E. A following Requant maps p (scale 2^-M) to
the output codes of the QuantizeLinear that closes the float Softmax.

Inputs: x, table (2^bits,). Attrs: E (table fraction bits), F (reciprocal bits), M (output
fraction bits).
"""

from __future__ import annotations

import numpy as np

from .base import Op


def exp_table(scale: float, bits: int, e_bits: int) -> np.ndarray:
    """table[d] = round(2^E * exp(-scale * d)) for d in 0 .. 2^bits - 1 (float64, then int)."""
    d = np.arange(1 << bits, dtype=np.float64)
    return np.round(np.exp(-float(scale) * d) * float(1 << e_bits)).astype(np.int64)


class Softmax(Op):
    name = "Softmax"

    @staticmethod
    def run(node, g, xs):
        x, table = xs
        a = node.attrs
        d = x.max(axis=-1, keepdims=True) - x
        e = table[d]
        s = e.sum(axis=-1, keepdims=True)
        r = (1 << a["F"]) // s
        return [(e * r) >> (a["F"] - a["M"])]

    @staticmethod
    def bounds(node, g, ins):
        # e <= S gives e * floor(2^F / S) <= 2^F, so p <= 2^M
        return [(0, 1 << node.attrs["M"])]
