"""QONNX ``BipolarQuant(x, scale)``: y = (+1 if x >= 0 else -1) * scale (so -0.0 gives +scale).

Binary weights fold into codes -1/+1 (an int2 tensor); on dequantised codes it is a table; after
Conv/MatMul/Gemm it is the accumulator's sign (see ``qonnx_quant.bipolar_of_float``).
"""

from __future__ import annotations

import numpy as np

from ..dtypes import IntType
from . import registry
from .float_island import codes_range
from .lowering import emit_lut
from .qonnx_common import QONNX_DOMAINS, const_input, quant_params, scale_param
from .qonnx_quant import bipolar_of_float, unsupported
from .registry import lowers
from .values import Codes, Const, Dequant, FloatInput, FloatOp, QConst

BIPOLAR = IntType(True, 2)


def bipolar_codes(x: np.ndarray) -> np.ndarray:
    """qonnx's binary_quant before the scaling: where(x >= 0, 1, -1)."""
    return np.where(np.asarray(x, np.float32) >= 0, 1, -1).astype(np.int64)


@lowers("BipolarQuant", QONNX_DOMAINS[0])
def lower(imp, node, ins):
    if len(ins) != 2:
        raise imp.error(f"BipolarQuant has {len(ins)} inputs; it takes 2 (x, scale)")
    x = ins[0]
    scale = scale_param(imp, node, ins[1])
    zero = np.zeros(scale.shape, np.float32)
    if isinstance(x, Const) or (isinstance(x, Dequant) and isinstance(x.src, QConst)):
        v = const_input(imp, node, x, "input")
        q = quant_params(imp, node, scale, zero, BIPOLAR, tuple(v.shape))
        return [Dequant(QConst(bipolar_codes(v), q))]
    if not isinstance(x, (Dequant, FloatOp, FloatInput)):
        raise imp.error("BipolarQuant of an integer tensor is not supported")
    q = quant_params(imp, node, scale, zero, BIPOLAR, tuple(x.shape))
    if q.axis is not None:
        raise unsupported(imp, node, "per-channel BipolarQuant of an activation is not "
                          "supported")
    if isinstance(x, Dequant) and isinstance(x.src, Codes) and x.src.q is not None \
            and x.src.q.axis is None:
        from .. import host
        vals = host.dequantize(codes_range(x.src.q), x.src.q, sample_axis=False)
        return [Dequant(emit_lut(imp, x.src, bipolar_codes(vals), q, node.output[0]))]
    if isinstance(x, FloatOp):
        return [Dequant(bipolar_of_float(imp, node, x, q))]
    raise unsupported(imp, node, "BipolarQuant of a float graph input is not supported "
                      "(quantise the input first)")


for _dom in QONNX_DOMAINS[1:]:
    registry.LOWER[(_dom, "BipolarQuant")] = lower
