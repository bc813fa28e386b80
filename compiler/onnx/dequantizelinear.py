"""DequantizeLinear: codes -> float, kept symbolic (a ``Dequant`` of the codes).

The float value is f32(f32(x - zp) * s) (ORT_KERNELS.md §2); it is only ever computed on the
host (graph outputs) or at compile time (tables); inside the graph the codes flow on.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import INT32
from .registry import lowers
from .values import Codes, Const, Dequant, QConst


@lowers("DequantizeLinear")
def lower(imp, node, ins):
    x = ins[0]
    a = imp.attrs(node)
    if a.get("block_size"):
        raise imp.error("blocked quantisation (block_size) is not supported")
    zp = ins[2] if len(ins) > 2 else None
    if isinstance(x, Const):
        if not np.issubdtype(x.value.dtype, np.integer):
            raise imp.error("DequantizeLinear input must be an integer tensor")
        dtype = imp.int_type(x.value.dtype, "DequantizeLinear input")
        q = imp.qparams(ins[1], zp, axis=a.get("axis", 1), ndim=x.value.ndim, default=dtype,
                        what="DequantizeLinear", shape=x.value.shape)
        if q.dtype != dtype:
            raise imp.error(f"zero point type {q.dtype} differs from the input type {dtype}")
        if dtype == INT32 and np.any(q.zero_point != 0):
            raise imp.error("an int32 DequantizeLinear requires zero point 0")
        return [Dequant(QConst(x.value.astype(np.int64), q))]
    if isinstance(x, Codes):
        dtype = imp.g.tensors[x.tensor].dtype
        q = imp.qparams(ins[1], zp, axis=a.get("axis", 1), ndim=len(x.shape),
                        default=x.q.dtype if x.q else dtype, what="DequantizeLinear",
                        shape=x.shape)
        if x.q is not None and q.dtype != x.q.dtype:
            raise imp.error(f"zero point type {q.dtype} differs from the input type "
                            f"{x.q.dtype}")
        return [Dequant(Codes(x.tensor, x.shape, q))]
    raise imp.error("DequantizeLinear input must be quantised codes")
