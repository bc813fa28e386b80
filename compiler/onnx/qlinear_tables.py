"""QLinearSigmoid and QLinearLeakyRelu (com.microsoft): 256-entry tables built the way
onnxruntime builds its own, T[c] = Q(f(f32(sx * (c - zx)))) (ORT_KERNELS.md §7)."""

from __future__ import annotations

from .float_island import lut_of
from .lowering import emit_lut
from .qlinearconv import as_codes
from .registry import lowers
from .values import FloatOp


def _lower(imp, node, ins):
    xq = imp.qparams(ins[1], ins[2], axis=None, ndim=None, what="X")
    yq = imp.qparams(ins[3], ins[4] if len(ins) > 4 else None, axis=None, ndim=None,
                     default=xq.dtype, what="Y")
    x = as_codes(imp, ins[0], xq, f"{node.op_type} X")
    # the float op this kernel implements, as a one-op float island
    op = FloatOp(node, [None], x.shape, imp.attrs(node))
    op.node = type(node)()
    op.node.CopyFrom(node)
    op.node.op_type = node.op_type.removeprefix("QLinear")
    table, _ = lut_of(imp, [op], x, yq)
    return [emit_lut(imp, x, table, yq, node.output[0])]


lowers("QLinearSigmoid", "com.microsoft")(_lower)
lowers("QLinearLeakyRelu", "com.microsoft")(_lower)
