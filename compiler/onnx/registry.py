"""The table from ONNX op type to its lowering: one ONNX op per file, each registering here.

``LOWER[(domain, op_type)]`` turns a node into output values; ``FUSE[op_type]`` closes a
pending float op (DQ -> op -> Q) with the integer kernel onnxruntime fuses it into.
"""

from __future__ import annotations

from collections.abc import Callable

LOWER: dict[tuple[str, str], Callable] = {}
FUSE: dict[str, Callable] = {}


def lowers(op_type: str, domain: str = "") -> Callable:
    def deco(fn: Callable) -> Callable:
        LOWER[(domain, op_type)] = fn
        if domain == "":
            LOWER[("ai.onnx", op_type)] = fn
        return fn
    return deco


def fuses(op_type: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        FUSE[op_type] = fn
        return fn
    return deco


def supported_ops() -> list[str]:
    return sorted({op if d in ("", "ai.onnx") else f"{d}.{op}" for d, op in LOWER})


def fuse_inner(imp, inner, q, qnode):
    """Close the float op ``inner`` with Q parameters ``q`` (its kernel named after it). A float
    graph input is quantised by the host with ``q`` (the ops after it commute with Q)."""
    from .values import FloatInput
    if isinstance(inner, FloatInput):
        from .quantizelinear import host_quantize
        return host_quantize(imp, inner, q, qnode.output[0])
    fn = FUSE.get(inner.node.op_type)
    if fn is None:
        dom = inner.node.op_type
        raise imp.error(f"the float {dom} '{inner.node.name}' has no integer kernel", inner.node)
    saved, imp.node = imp.node, inner.node
    try:
        return fn(imp, inner, q, qnode)
    finally:
        imp.node = saved
