"""LayerNorm: integer-only layer normalisation along the last axis (I-LayerNorm, I-BERT).

Float:  y = (x - mean) / sqrt(var + eps) * gamma + beta,   x = sx * (c - zx)  (zx cancels).
For each row of n codes c (all integers; isqrt = floor of the square root, e.g. by Newton's
iterations in hardware — any exact integer square root gives the same value):

    xc  = n * c - sum(c)                       # n * (c - mean), exact
    V   = sum(xc^2)                            # n^3 * var(c)
    V'  = floor(V * 2^(2T) / n) + E2           # E2 = round(n^2 * eps / sx^2 * 2^(2T))
    D   = max(isqrt(V'), 1)                    # ~ 2^T * n * sqrt(var(c) + eps / sx^2)
    R   = floor(2^K / D)                       # one integer division per row
    Z   = (xc * R + 2^(sh - 1)) >> sh          # sh = K - T - P: z * 2^P, z the normalised x
    acc = Z * gamma_q + B                      # B = round(beta / (s_gamma * 2^-P))

A following Requant maps acc (scale s_gamma * 2^-P) to the output codes.

Width proof of Z: with V > 0 the smallest V is n(n-1) (one code apart), so
u = sqrt(V 2^(2T) / n) >= 2^T sqrt(n - 1) >= 16 for T >= 4, n >= 2; D >= sqrt(u^2 - 1) - 1
>= 0.935 u; and |xc| <= sqrt((n - 1) V / n) (the largest deviation from a mean), so
|xc| 2^T / D <= sqrt(n - 1) / 0.935 < 1.07 sqrt(n - 1): |Z| <= 1.07 sqrt(n - 1) 2^P + 1.
(V = 0 gives xc = 0 and Z = 0.)

Inputs: x, gamma_q (n,), B (n,). Attrs: T (>= 4; 8 keeps the square root of the smallest
variance to 1e-4), P, K (R keeps P + 8 bits at the largest D when K >= log2(max D) + P + 8),
E2.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Op


def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(v)) of non-negative int64 values (float64 guess, then corrected)."""
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def z_bound(n: int, p_bits: int) -> int:
    """|Z| <= this (see the module docstring)."""
    return int(math.floor(1.07 * math.sqrt(max(n - 1, 0)) * (1 << p_bits))) + 2


class LayerNorm(Op):
    name = "LayerNorm"

    @staticmethod
    def run(node, g, xs):
        c, gamma, b = xs
        a = node.attrs
        n = c.shape[-1]
        xc = n * c - c.sum(axis=-1, keepdims=True)
        v = (xc * xc).sum(axis=-1, keepdims=True)
        vp = ((v << (2 * a["T"])) // n) + a["E2"]
        d = np.maximum(isqrt(vp), 1)
        r = (1 << a["K"]) // d
        sh = a["K"] - a["T"] - a["P"]
        z = (xc * r + (1 << (sh - 1))) >> sh
        return [z * gamma + b]

    @staticmethod
    def bounds(node, g, ins):
        n = g.tensors[node.inputs[0]].shape[-1]
        zb = z_bound(n, node.attrs["P"])
        gamma = g.const(node.inputs[1])
        b = g.const(node.inputs[2])
        gm = int(np.abs(gamma).max())
        return [(int(b.min()) - zb * gm, int(b.max()) + zb * gm)]
