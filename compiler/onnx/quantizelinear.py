"""QuantizeLinear: float -> codes. Where it closes a float op, the fused kernel is emitted.

Graph input -> host quantisation; constant -> quantised at compile time; DQ -> Q pair ->
identity or a requantising table; pending float op -> ``registry.FUSE[op]`` (the integer
kernel onnxruntime fuses DQ -> op -> Q into).
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from .. import host
from ..dtypes import INT8, ONNX_INT_TYPES, UINT8, IntType
from ..ir import HostInput
from . import registry
from .float_island import requant_table
from .lowering import emit_lut
from .registry import lowers
from .values import Codes, Const, Dequant, FloatInput, FloatOp, QConst, float_inputs_synthetic


def output_params(imp, node, ins, ndim):
    a = imp.attrs(node)
    default = UINT8
    if "output_dtype" in a and a["output_dtype"]:
        default = ONNX_INT_TYPES.get(a["output_dtype"])
        if default is None:
            raise imp.error(f"output_dtype {helper.tensor_dtype_to_string(a['output_dtype'])} "
                            "is not supported")
    if a.get("block_size"):
        raise imp.error("blocked quantisation (block_size) is not supported")
    zp = ins[2] if len(ins) > 2 else None
    q = imp.qparams(ins[1], zp, axis=a.get("axis", 1), ndim=ndim, default=default,
                    what="QuantizeLinear")
    # the output types of ONNX QuantizeLinear (int16/uint16/int4/uint4 from opset 21); a
    # uint8 zero point stored in a wider type would otherwise make a wider activation
    allowed = [UINT8, INT8] + ([IntType(s, b) for b in (16, 4) for s in (False, True)]
                               if imp.loaded.opset >= 21 else [])
    if q.dtype not in allowed:
        zps = np.unique(q.zero_point).tolist()
        raise imp.error(f"QuantizeLinear zero point is {q.dtype} (value "
                        f"{zps[0] if len(zps) == 1 else zps}); at opset {imp.loaded.opset} "
                        f"QuantizeLinear produces {', '.join(map(str, allowed))}")
    return q


def host_quantize(imp, x: FloatInput, q, base: str) -> Codes:
    """The host quantises a float graph input (QuantizeLinear run on the CPU side)."""
    t = imp.g.add_tensor(base, x.shape, q.dtype)
    imp.g.inputs.append(HostInput(t, x.onnx_name, x.dtype, x.shape, q))
    return Codes(t, x.shape, q)


@lowers("QuantizeLinear")
def lower(imp, node, ins):
    x = ins[0]
    if isinstance(x, FloatInput):
        q = output_params(imp, node, ins, len(x.shape))
        return [host_quantize(imp, x, q, node.output[0])]
    if isinstance(x, Const):
        if not np.issubdtype(x.value.dtype, np.floating):
            raise imp.error("QuantizeLinear of an integer constant is not supported")
        q = output_params(imp, node, ins, x.value.ndim)
        return [QConst(host.quantize(x.value, q, sample_axis=False), q)]
    if isinstance(x, Dequant):
        src = x.src
        q = output_params(imp, node, ins, len(x.shape))
        if isinstance(src, QConst):
            v = host.quantize(host.dequantize(src.value, src.q, sample_axis=False), q,
                              sample_axis=False)
            return [QConst(v, q)]
        if src.q.same_as(q):
            return [src]
        if src.q.axis is not None or q.axis is not None:
            raise imp.error("requantising a per-channel activation is not supported")
        return [emit_lut(imp, src, requant_table(src.q, q), q, node.output[0])]
    if isinstance(x, FloatOp):
        q = output_params(imp, node, ins, len(x.shape))
        fuse = registry.FUSE.get(x.node.op_type)
        if fuse is None:
            raise imp.error(f"the float {x.node.op_type} '{x.node.name}' between "
                            "DequantizeLinear and QuantizeLinear has no integer kernel")
        # the fused kernel is named after the float op it implements (Conv, MatMul, ...)
        imp.node = x.node
        try:
            out = fuse(imp, x, q, node)
        finally:
            imp.node = node
        if float_inputs_synthetic(x):
            imp.float_path.extend(_computing_nodes(x))
        return [out]
    raise imp.error("QuantizeLinear of an integer tensor is not supported")


_LAYOUT = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout"}


def _computing_nodes(x: FloatOp) -> list[str]:
    """The names of the float ops in a pending chain that compute (not layout), outermost
    last, for the float-path note: Flatten(GlobalAveragePool(...)) names the pool."""
    names: list[str] = []
    while isinstance(x, FloatOp):
        if x.node.op_type not in _LAYOUT:
            names.insert(0, x.node.name or x.node.op_type)
        x = x.inputs[0] if x.inputs else None
    return names
