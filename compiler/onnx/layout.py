"""Layout ops: Reshape, Flatten, Squeeze, Unsqueeze, Transpose.

They move values without changing them, so they apply equally to constants, codes and
dequantised codes (DQ -> Reshape -> Q with equal parameters is what onnxruntime's
DropQDQNodes rule runs as an integer Reshape).
"""

from __future__ import annotations

import numpy as np

from ..ir import QuantParams
from . import registry
from .registry import lowers
from .values import Codes, Const, Dequant, FloatInput, FloatOp, QConst


def _shape_of(imp, v) -> tuple[int, ...]:
    if isinstance(v, (FloatOp, FloatInput)):
        return tuple(v.shape)
    if isinstance(v, Const):
        return tuple(v.value.shape)
    if isinstance(v, QConst):
        return tuple(v.value.shape)
    if isinstance(v, (Codes, Dequant)):
        return tuple(v.shape)
    raise imp.error("layout op on a value that is not a tensor intflow tracks (a float result "
                    "before its QuantizeLinear?)")


def _apply(imp, v, new_shape, perm=None):
    """Reshape (perm None) or transpose ``v`` into ``new_shape``. A pending float result is
    reshaped after its QuantizeLinear closes it (layout commutes with elementwise Q)."""
    if isinstance(v, (FloatOp, FloatInput)):
        node = imp.node
        return FloatOp(node, [v], tuple(new_shape), {"_shape": list(new_shape),
                                                      "_perm": perm})
    def np_op(a):
        return np.transpose(a, perm) if perm is not None else a.reshape(new_shape)

    def requalify(q: QuantParams | None) -> QuantParams | None:
        if q is None or q.axis is None:
            return q
        if perm is not None:
            return QuantParams(q.scale, q.zero_point, q.dtype, perm.index(q.axis))
        raise imp.error("reshaping a per-channel quantised tensor is not supported")

    if isinstance(v, Const):
        return Const(np_op(v.value))
    if isinstance(v, QConst):
        return QConst(np_op(v.value), requalify(v.q))
    if isinstance(v, Dequant):
        inner = _apply(imp, v.src, new_shape, perm)
        return Dequant(inner)
    if isinstance(v, Codes):
        dt = imp.g.tensors[v.tensor].dtype
        if tuple(new_shape) == tuple(v.shape) and perm is None:
            return v
        if perm is not None:
            t = imp.emit("Transpose", [v.tensor], tuple(new_shape), dt,
                         {"perm": [int(p) for p in perm]})
        else:
            t = imp.emit("Reshape", [v.tensor], tuple(new_shape), dt,
                         {"shape": [int(s) for s in new_shape]})
        return Codes(t, tuple(new_shape), requalify(v.q))
    raise imp.error("layout op on an unsupported value")


def _resolve_reshape(imp, shape, target, allowzero):
    t = np.asarray(target)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer):
        raise imp.error(f"Reshape shape must be a 1-D integer tensor, got {t.dtype} of shape "
                        f"{list(t.shape)}")
    target = [int(x) for x in t]
    out = []
    for i, t in enumerate(target):
        if t == 0 and not allowzero:
            if i >= len(shape):
                raise imp.error(f"Reshape target {target} copies a dimension that does not exist")
            out.append(shape[i])
        else:
            out.append(t)
    total = int(np.prod(shape))
    if out.count(-1) > 1:
        raise imp.error(f"Reshape target {target} has more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        if known == 0 or total % known:
            raise imp.error(f"cannot reshape {list(shape)} to {target}")
        out[out.index(-1)] = total // known
    if int(np.prod(out)) != total or any(d < 0 for d in out):
        raise imp.error(f"cannot reshape {list(shape)} to {target}")
    return tuple(out)


@lowers("Reshape")
def reshape(imp, node, ins):
    shape = _shape_of(imp, ins[0])
    target = imp.const(ins[1], "Reshape shape")
    new = _resolve_reshape(imp, shape, target, imp.attrs(node).get("allowzero", 0))
    return [_apply(imp, ins[0], new)]


@lowers("Flatten")
def flatten(imp, node, ins):
    shape = _shape_of(imp, ins[0])
    axis = imp.attrs(node).get("axis", 1) % (len(shape) + 1) if shape else 0
    new = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
    return [_apply(imp, ins[0], new)]


def _axes(imp, node, ins):
    a = imp.attrs(node)
    if "axes" in a:
        return [int(x) for x in a["axes"]]
    if len(ins) > 1 and ins[1] is not None:
        return [int(x) for x in np.asarray(imp.const(ins[1], "axes")).ravel()]
    return None


@lowers("Squeeze")
def squeeze(imp, node, ins):
    shape = _shape_of(imp, ins[0])
    axes = _axes(imp, node, ins)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    if any(not -len(shape) <= a < len(shape) for a in axes):
        raise imp.error(f"Squeeze axes {axes} are out of range for the shape {list(shape)}")
    axes = [a % len(shape) for a in axes]
    if any(shape[a] != 1 for a in axes):
        raise imp.error(f"Squeeze axes {axes} are not of size 1 in {list(shape)}")
    new = tuple(d for i, d in enumerate(shape) if i not in axes)
    return [_apply(imp, ins[0], new)]


@lowers("Unsqueeze")
def unsqueeze(imp, node, ins):
    shape = list(_shape_of(imp, ins[0]))
    axes = _axes(imp, node, ins)
    if axes is None:
        raise imp.error("Unsqueeze needs axes")
    rank = len(shape) + len(axes)
    for a in sorted(x % rank for x in axes):
        shape.insert(a, 1)
    return [_apply(imp, ins[0], tuple(shape))]


@lowers("Transpose")
def transpose(imp, node, ins):
    shape = _shape_of(imp, ins[0])
    perm = imp.attrs(node).get("perm", list(range(len(shape)))[::-1])
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(len(shape))):
        raise imp.error(f"Transpose perm {perm} is not a permutation of the {len(shape)} axes "
                        f"of {list(shape)}")
    new = tuple(shape[p] for p in perm)
    return [_apply(imp, ins[0], new, perm)]


def fuse_layout(imp, op, q, qnode):
    codes = registry.fuse_inner(imp, op.inputs[0], q, qnode)
    return _apply(imp, codes, tuple(op.attrs["_shape"]), op.attrs["_perm"])


for _op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"):
    registry.FUSE[_op] = fuse_layout
