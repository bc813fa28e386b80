"""GELU as onnxruntime's quantizer leaves it: float islands of unary steps between Q/DQ pairs.

At opset 17 ``quantize_static`` keeps GELU decomposed, x -> Div(sqrt 2) -> Erf -> Q, then
Add(1), Mul(x) and Mul(0.5), each closed by its own Q/DQ pair. Each step over one dequantised
tensor is a function of that tensor's code alone, so DQ -> Div(c) -> Erf -> Q becomes one
exact table (``float_island.py`` evaluates MLAS's erf in exact float32 steps); Add(1) and
Mul(0.5) of a quantised constant are QLinearAdd/QLinearMul, Mul(x) of two activations is
QLinearMul. The fused forms (com.microsoft Gelu, ONNX Gelu from opset 20) are tables too.

This file registers the float ops of those islands: Erf, Gelu, and Div/Sub by a constant
scalar (Mul/Add by a constant scalar over one dequantised tensor lower in qlinearmul.py and
qlinearadd.py).
"""

from __future__ import annotations

from .registry import lowers
from .unary import pending_unary
from .values import Const, Dequant, FloatOp, QConst

for _op in ("Erf", "Gelu"):
    lowers(_op)(pending_unary)
lowers("Gelu", "com.microsoft")(pending_unary)


def _is_scalar_const(v) -> bool:
    if isinstance(v, Const):
        return v.value.size == 1
    return isinstance(v, Dequant) and isinstance(v.src, QConst) and v.src.value.size == 1


def _pending_binary_scalar(imp, node, ins):
    """Div/Sub of a dequantised tensor and a constant scalar (either side)."""
    if len(ins) == 2:
        for x, c in ((ins[0], ins[1]), (ins[1], ins[0])):
            if isinstance(x, (Dequant, FloatOp)) and _is_scalar_const(c):
                return [imp.pending_float(node, ins, x.shape)]
    raise imp.error(f"{node.op_type} is supported only between a dequantised tensor and a "
                    "constant scalar (a float island closed by QuantizeLinear)")


for _op in ("Div", "Sub"):
    lowers(_op)(_pending_binary_scalar)
