"""Conv over dequantised inputs: DQ(x), DQ(w), DQ(bias) -> Conv -> Q is QLinearConv.

onnxruntime fuses the pattern and uses the int32 bias unscaled when the bias scale is
(close to) f32(sx*sw) (ORT_KERNELS.md §9); otherwise it runs Conv in float — intflow then
rescales the bias to sx*sw and notes the float path.
"""

from __future__ import annotations

import numpy as np

from .qlinearconv import emit_qlinearconv
from .registry import fuses, lowers
from .values import Codes, Dequant, QConst


@lowers("Conv")
def lower(imp, node, ins):
    x, w = ins[0], ins[1]
    if not isinstance(x, Dequant) or not isinstance(w, Dequant):
        raise imp.error("Conv inputs must be DequantizeLinear outputs (a QDQ model); float "
                        "Conv is not supported: quantize the model with onnxruntime first")
    if not isinstance(w.src, QConst):
        raise imp.error("Conv weights must be constant")
    _, shape = _shape(imp, node, x, w)
    return [imp.pending_float(node, ins, shape)]


def _shape(imp, node, x, w):
    from .lowering import conv_geometry
    return conv_geometry(imp, imp.attrs(node), x.shape, w.src.value.shape)


@fuses("Conv")
def fuse(imp, op, q, qnode):
    x, w = op.inputs[0], op.inputs[1]
    b = op.inputs[2] if len(op.inputs) > 2 else None
    if not isinstance(x.src, Codes):
        raise imp.error("Conv of a constant input is not supported", op.node)
    bias = None
    if b is not None:
        if not (isinstance(b, Dequant) and isinstance(b.src, QConst)):
            raise imp.error("Conv bias must be a DequantizeLinear of an int32 constant",
                            op.node)
        bias = b.src.value.astype(np.int64)
        sx = np.float32(x.src.q.scale)
        expected = (sx * np.atleast_1d(w.src.q.scale)).astype(np.float32)
        got = np.broadcast_to(np.atleast_1d(b.src.q.scale), expected.shape)
        if not np.allclose(got, expected, rtol=1e-3, atol=0):
            # not fused by onnxruntime: rescale the bias to the accumulator's scale
            imp.float_path.append(op.node.name or "Conv")
            real = np.asarray(host_dequant(b.src), np.float64)
            bias = np.round(real / expected.astype(np.float64)).astype(np.int64)
    return emit_qlinearconv(imp, x.src, w.src, bias, op.attrs, q, qnode.output[0])


def host_dequant(c: QConst) -> np.ndarray:
    from .. import host
    return host.dequantize(c.value, c.q, sample_axis=False)
