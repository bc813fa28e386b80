"""Slice: the elements ``start:end`` along one axis (ONNX Split lowers to one per output).

A layout op: it moves codes and never changes a value, so its range is the input's.
"""

from __future__ import annotations

from .base import Op


class Slice(Op):
    name = "Slice"

    @staticmethod
    def run(node, g, xs):
        a = node.attrs
        x = xs[0]
        index = [slice(None)] * x.ndim
        index[a["axis"] + 1] = slice(a["start"], a["end"])  # +1: the leading sample axis
        return [x[tuple(index)]]

    @staticmethod
    def bounds(node, g, ins):
        return [ins[0]]
