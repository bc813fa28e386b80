"""Sigmoid, LeakyRelu, BatchNormalization, Tanh, HardSigmoid, HardSwish, Neg, Abs, Floor,
Ceil, Round, Sign, Sqrt, Reciprocal, Softsign, Exp over dequantised values: float islands
(tables).

onnxruntime fuses DQ -> Sigmoid/LeakyRelu -> Q into QLinearSigmoid/QLinearLeakyRelu, whose
tables equal the float ops on every code (ORT_KERNELS.md §7); BatchNormalization between DQ
and Q runs in float per channel, so it becomes one table per channel.
"""

from __future__ import annotations

from .float_island import EXACT_UNARY
from .registry import lowers
from .values import Dequant, FloatOp


def pending_unary(imp, node, ins):
    """A unary float op over a dequantised tensor: kept pending until its QuantizeLinear makes
    a lookup table of the chain (float_island.py)."""
    x = ins[0]
    if isinstance(x, (Dequant, FloatOp)):
        return [imp.pending_float(node, ins, x.shape)]
    raise imp.error(f"{node.op_type} on a tensor that is not dequantised: only "
                    "DequantizeLinear -> op -> QuantizeLinear is supported")


# Tanh, HardSigmoid, HardSwish, Exp and the exactly rounded ops run in float in onnxruntime
# between DQ and Q (no QLinear kernel); their tables use float_island.py's float32 models
for _op in ("Sigmoid", "LeakyRelu", "BatchNormalization", "Tanh", "HardSigmoid", "HardSwish",
            "Exp", *EXACT_UNARY):
    lowers(_op)(pending_unary)


@lowers("Identity")
def identity(imp, node, ins):
    return [ins[0]]


@lowers("Dropout")
def dropout(imp, node, ins):
    return [ins[0], None]
