"""Clamp: y = min(max(x, lo), hi) — ReLU/ReLU6/Clip on codes. Usually fused into Requant."""

from __future__ import annotations

import numpy as np

from .base import Op


class Clamp(Op):
    name = "Clamp"

    @staticmethod
    def run(node, g, xs):
        return [np.clip(xs[0], node.attrs["lo"], node.attrs["hi"])]

    @staticmethod
    def bounds(node, g, ins):
        lo, hi = ins[0]
        a = node.attrs
        return [(min(max(lo, a["lo"]), a["hi"]), max(min(hi, a["hi"]), a["lo"]))]
