"""MatMulInteger and ConvInteger: exact int32 accumulators, no requantisation (ORT §8).

acc = sum (a - za)(b - zb); zero points per tensor, or per column of B (MatMulInteger) /
per output channel of W (ConvInteger).
"""

from __future__ import annotations

import numpy as np

from ..dtypes import INT32
from ..ir import QuantParams
from .lowering import emit_conv_acc, emit_matmul_acc
from .registry import lowers
from .values import Codes, Const, QConst


def _zp(imp, v, dtype, shape_c: int | None) -> np.ndarray:
    if v is None:
        return np.zeros((), np.int64)
    z = np.asarray(imp.const(v, "zero point")).astype(np.int64)
    if z.size == 1:
        return z.reshape(())
    if shape_c is not None and z.size == shape_c:
        return z.reshape(-1)
    raise imp.error(f"zero point of shape {list(z.shape)} is not supported")


def _unit_q(dtype, zp, axis=None) -> QuantParams:
    return QuantParams(np.ones(zp.shape, np.float32), zp, dtype, axis if zp.ndim else None)


def _activation(imp, v, zp_value, what) -> Codes:
    if not isinstance(v, Codes):
        raise imp.error(f"{what} must be an integer activation")
    dtype = imp.g.tensors[v.tensor].dtype
    zp = _zp(imp, zp_value, dtype, None)
    if zp.ndim:
        raise imp.error(f"{what} zero point must be a scalar")
    return Codes(v.tensor, v.shape, _unit_q(dtype, zp))


@lowers("MatMulInteger")
def matmul_integer(imp, node, ins):
    a = _activation(imp, ins[0], ins[2] if len(ins) > 2 else None, "MatMulInteger A")
    b = ins[1]
    if isinstance(b, Const):
        dtype = imp.int_type(b.value.dtype, "MatMulInteger B")
        zp = _zp(imp, ins[3] if len(ins) > 3 else None, dtype, b.value.shape[-1])
        bq = QConst(b.value.astype(np.int64), _unit_q(dtype, zp, b.value.ndim - 1))
    else:
        bq = _activation(imp, b, ins[3] if len(ins) > 3 else None, "MatMulInteger B")
    acc, shape = emit_matmul_acc(imp, a, bq, None, node.output[0])
    imp.g.tensors[acc].dtype = INT32
    return [Codes(acc, shape, None)]


@lowers("ConvInteger")
def conv_integer(imp, node, ins):
    x = _activation(imp, ins[0], ins[2] if len(ins) > 2 else None, "ConvInteger x")
    w = imp.const(ins[1], "ConvInteger w")
    dtype = imp.int_type(w.dtype, "ConvInteger w")
    zp = _zp(imp, ins[3] if len(ins) > 3 else None, dtype, w.shape[0])
    wq = QConst(w.astype(np.int64), _unit_q(dtype, zp, 0))
    acc, shape = emit_conv_acc(imp, x, wq, None, imp.attrs(node), node.output[0])
    imp.g.tensors[acc].dtype = INT32
    return [Codes(acc, shape, None)]


@lowers("DynamicQuantizeLinear")
def dynamic_quantize(imp, node, ins):
    raise imp.error("DynamicQuantizeLinear computes its scale from every input at run time "
                    "(onnxruntime.quantization.quantize_dynamic); a fixed integer datapath needs "
                    "static scales: quantize with quantize_static instead")
