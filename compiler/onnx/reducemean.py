"""ReduceMean between DequantizeLinear and QuantizeLinear (QDQ, and QOperator models, which
leave it in float too): onnxruntime has no integer kernel, so it sums the dequantised values
in float and divides by n. intflow computes it as GlobalAveragePool does (ORT_KERNELS.md §6):
an exact integer sum acc = sum(x - zx) over the axes, then Requant with
S = f32(sx / f32(sy * f32(n))) — within rounding of onnxruntime's float result, so the node is
listed in the float-path note.
"""

from __future__ import annotations

import numpy as np

from .lowering import emit_requant, per_tensor
from .registry import fuses, lowers
from .values import Codes, Dequant, describe


def _axes(imp, node, ins, rank: int) -> list[int]:
    a = imp.attrs(node)
    if "axes" in a:  # opset < 18
        axes = [int(x) for x in a["axes"]]
    elif len(ins) > 1 and ins[1] is not None:
        axes = [int(x) for x in np.asarray(imp.const(ins[1], "ReduceMean axes")).ravel()]
    else:
        axes = []
    if not axes:
        if a.get("noop_with_empty_axes", 0):
            raise imp.error("ReduceMean with noop_with_empty_axes=1 and no axes is not "
                            "supported")
        return list(range(rank))  # no axes: reduce over all of them
    if any(not -rank <= x < rank for x in axes):
        raise imp.error(f"ReduceMean axes {axes} are out of range for a {rank}-D tensor")
    norm = [x % rank for x in axes]
    if len(norm) != len(set(norm)):
        raise imp.error(f"ReduceMean axes {axes} repeat an axis")
    return sorted(norm)


@lowers("ReduceMean")
def lower(imp, node, ins):
    x = ins[0]
    if not (isinstance(x, Dequant) and isinstance(x.src, Codes)):
        got = describe(x) if x is not None else "nothing"
        raise imp.error(f"ReduceMean input must be a DequantizeLinear of an activation, got "
                        f"{got}")
    if x.src.q is None or x.src.q.scale.size != 1:
        raise imp.error("ReduceMean of a per-channel quantised tensor is not supported")
    shape = x.shape
    axes = _axes(imp, node, ins, len(shape))
    keepdims = int(imp.attrs(node).get("keepdims", 1))
    out = tuple(1 if i in axes else d for i, d in enumerate(shape) if keepdims or i not in axes)
    op = imp.pending_float(node, ins, out)
    op.attrs["_axes"], op.attrs["_keepdims"] = axes, keepdims
    return [op]


@fuses("ReduceMean")
def fuse(imp, op, q, qnode):
    x: Codes = op.inputs[0].src
    sx, zx = per_tensor(imp, x.q, "the ReduceMean input")
    sy, _ = per_tensor(imp, q, "the ReduceMean output")
    axes, keepdims = op.attrs["_axes"], op.attrs["_keepdims"]
    n = int(np.prod([x.shape[a] for a in axes]))
    if n >= 1 << 24:
        raise imp.error("ReduceMean over 2^24 or more elements")
    base = qnode.output[0]
    acc = imp.emit("ReduceSum", [x.tensor], op.shape,
                   attrs={"axes": axes, "keepdims": keepdims, "x_zero_point": zx}, base=base)
    s = np.float32(np.float32(sx) / np.float32(np.float32(sy) * np.float32(n)))
    if not 2.0 ** -32 <= s < 256:
        raise imp.error(f"ReduceMean rescale {s} outside onnxruntime's range [2^-32, 256)")
    if (op.node.name or op.node.op_type) not in imp.float_path:
        imp.float_path.append(op.node.name or op.node.op_type)
    return emit_requant(imp, acc, op.shape, np.array([s]), np.array([sx / (sy * n)]), q, None,
                        base)
