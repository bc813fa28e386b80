"""Split: one tensor into parts along an axis (sizes from the ``split`` input, the opset < 13
attribute, or equal parts; ``num_outputs`` from opset 18).

A layout op: each part keeps the input's values and quantisation, so it applies to constants,
codes (QOperator) and dequantised codes (QDQ: DQ -> Split -> Q runs as an integer Split) as
one IR ``Slice`` per part.
"""

from __future__ import annotations

import numpy as np

from ..ir import QuantParams
from .registry import lowers
from .values import Codes, Const, Dequant, QConst, describe


def _shape(v) -> tuple[int, ...]:
    return tuple(v.value.shape) if isinstance(v, (Const, QConst)) else tuple(v.shape)


def split_sizes(imp, node, ins, dim: int) -> list[int]:
    """The part lengths along the split axis (length ``dim``), validated."""
    a = imp.attrs(node)
    n_out = len(node.output)
    if len(ins) > 1 and ins[1] is not None:
        sizes = np.asarray(imp.const(ins[1], "Split sizes"))
        if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer):
            raise imp.error(f"Split sizes must be a 1-D integer tensor, got {sizes.dtype} of "
                            f"shape {list(sizes.shape)}")
        sizes = [int(s) for s in sizes]
    elif "split" in a:  # opset < 13
        sizes = [int(s) for s in a["split"]]
    else:
        n = int(a.get("num_outputs", n_out))
        if n != n_out:
            raise imp.error(f"Split num_outputs {n} but the node has {n_out} outputs")
        if "num_outputs" in a:  # opset 18: ceil(dim / n) each, the last part smaller
            chunk = -(-dim // n)
            sizes = [min(chunk, max(dim - i * chunk, 0)) for i in range(n)]
        else:
            if dim % n:
                raise imp.error(f"Split of an axis of length {dim} into {n} equal parts")
            sizes = [dim // n] * n
    if len(sizes) != n_out or any(s <= 0 for s in sizes) or sum(sizes) != dim:
        raise imp.error(f"Split sizes {sizes} do not cut an axis of length {dim} into "
                        f"{n_out} non-empty parts")
    return sizes


def _slice_q(q: QuantParams | None, axis: int, start: int, end: int) -> QuantParams | None:
    """The part's quantisation: per-channel parameters along the split axis are cut too."""
    if q is None or q.axis != axis:
        return q
    return QuantParams(q.scale[start:end], q.zero_point[start:end], q.dtype, q.axis)


def _part(imp, v, axis: int, start: int, end: int, base: str):
    if isinstance(v, Dequant):
        return Dequant(_part(imp, v.src, axis, start, end, base), synthetic=v.synthetic)
    if isinstance(v, (Const, QConst)):
        index = [slice(None)] * v.value.ndim
        index[axis] = slice(start, end)
        value = v.value[tuple(index)]
        return Const(value) if isinstance(v, Const) else QConst(
            value, _slice_q(v.q, axis, start, end))
    if isinstance(v, Codes):
        shape = list(v.shape)
        shape[axis] = end - start
        t = imp.emit("Slice", [v.tensor], tuple(shape), imp.g.tensors[v.tensor].dtype,
                     {"axis": axis, "start": start, "end": end}, base=base)
        return Codes(t, tuple(shape), _slice_q(v.q, axis, start, end))
    raise imp.error(f"Split of {describe(v)} is not supported (split integer codes, "
                    "dequantised codes or constants)")


@lowers("Split")
def lower(imp, node, ins):
    x = ins[0]
    if x is None:
        raise imp.error("Split has no input")
    if isinstance(x, Dequant) and not isinstance(x.src, (Codes, QConst)):
        raise imp.error(f"Split of {describe(x.src)} is not supported")
    shape = _shape(x) if isinstance(x, (Const, QConst, Codes, Dequant)) else None
    if shape is None:
        raise imp.error(f"Split of {describe(x)} is not supported (split integer codes, "
                        "dequantised codes or constants)")
    axis = int(imp.attrs(node).get("axis", 0))
    if not -len(shape) <= axis < len(shape):
        raise imp.error(f"Split axis {axis} is out of range for the shape {list(shape)}")
    axis %= len(shape)
    sizes = split_sizes(imp, node, ins, shape[axis])
    outs, start = [], 0
    for name, size in zip(node.output, sizes):
        outs.append(_part(imp, x, axis, start, start + size, name or node.name))
        start += size
    return outs
