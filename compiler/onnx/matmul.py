"""MatMul over dequantised inputs: DQ(a), DQ(b) -> MatMul -> Q is QLinearMatMul.

Without the trailing Q (a model output), onnxruntime runs MatMulIntegerToFloat; that case
is a host epilogue (``outputs.py``).
"""

from __future__ import annotations

from .qlinearmatmul import emit_qlinearmatmul
from .registry import fuses, lowers
from .values import Codes, Dequant


@lowers("MatMul")
def lower(imp, node, ins):
    a, b = ins
    if not isinstance(a, Dequant) or not isinstance(b, Dequant):
        raise imp.error("MatMul inputs must be DequantizeLinear outputs (a QDQ model); float "
                        "MatMul is not supported: quantize the model with onnxruntime first")
    bshape = b.shape
    if len(a.shape) < 2 or len(bshape) < 2:
        raise imp.error(f"MatMul operands of shapes {list(a.shape)} and {list(bshape)}: "
                        "intflow needs both at least 2-D")
    shape = (*a.shape[:-1], bshape[-1])
    return [imp.pending_float(node, ins, shape)]


@fuses("MatMul")
def fuse(imp, op, q, qnode):
    a, b = op.inputs
    if not isinstance(a.src, Codes):
        raise imp.error("MatMul with a constant left operand is not supported", op.node)
    return emit_qlinearmatmul(imp, a.src, b.src, q, qnode.output[0])
