"""Shape of any tracked tensor (static after loading), and constant folding of the shape
arithmetic torch exports (Shape -> Gather -> Unsqueeze -> Concat -> Reshape)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .registry import lowers
from .values import Codes, Const, Dequant, FloatInput, FloatOp, QConst


@lowers("Shape")
def shape(imp, node, ins):
    v = ins[0]
    if isinstance(v, (Const, QConst)):
        s = v.value.shape
    elif isinstance(v, (Codes, Dequant, FloatOp, FloatInput)):
        s = v.shape
    else:
        raise imp.error("Shape of an unsupported value")
    a = imp.attrs(node)
    s = list(s)[a.get("start", 0): a.get("end", len(s))]
    return [Const(np.array(s, dtype=np.int64))]


def fold_constant_node(imp, node: onnx.NodeProto, ins: list) -> list[Const]:
    """Evaluate a default-domain node whose inputs are all constants with onnx's reference
    evaluator (compile time only)."""
    names = [f"in{i}" for i in range(len(ins))]
    inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.value.dtype),
                                            v.value.shape) for n, v in zip(names, ins)]
    outs = [helper.make_tensor_value_info(f"out{i}", 0, None) for i in range(len(node.output))]
    n = helper.make_node(node.op_type, names, [o.name for o in outs], domain=node.domain)
    n.attribute.extend(node.attribute)
    g = helper.make_graph([n], "fold", inputs, outs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", imp.loaded.opset)])
    try:
        res = ReferenceEvaluator(m).run(None, {k: v.value for k, v in zip(names, ins)})
    except Exception as e:
        raise imp.error(f"cannot fold this constant computation: {e}") from None
    return [Const(np.asarray(r)) for r in res]


@lowers("Constant")
def constant(imp, node, ins):
    a = node.attribute[0]
    if a.name == "value":
        return [Const(numpy_helper.to_array(a.t))]
    v = helper.get_attribute_value(a)
    return [Const(np.asarray(v))]
