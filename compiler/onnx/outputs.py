"""Graph outputs: which host epilogue turns the accelerator's integers into onnxruntime's
output (codes as they are, DequantizeLinear, or the float accumulator of
MatMulIntegerToFloat / float-output QGemm)."""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..ir import HostOutput
from .lowering import emit_matmul_acc, per_tensor, scale_vector
from .values import Codes, Const, Dequant, FloatAcc, FloatOp, QConst, describe


def emit_float_acc(imp, a: Codes, b: QConst, bias, scale, base, cls=FloatAcc) -> FloatAcc:
    acc, shape = emit_matmul_acc(imp, a, b, bias, base)
    return cls(acc, shape, np.asarray(scale, np.float32).reshape(-1))


def matmul_integer_to_float(imp, op: FloatOp, bias: np.ndarray | None) -> FloatAcc:
    """DQ(a), DQ(b) -> MatMul [-> Add(float bias)] with no Q: y = f32(f32(f32(acc) *
    f32(sa*sb)) + bias), multiply and add rounded separately (ORT_KERNELS.md §3)."""
    a, b = op.inputs
    if not isinstance(a, Dequant) or not isinstance(a.src, Codes):
        raise imp.error("MatMul output needs a dequantised activation on the left", op.node)
    sa, _ = per_tensor(imp, a.src.q, "the MatMul input")
    s = (np.float32(sa) * scale_vector(b.src.q)).astype(np.float32)
    fa = emit_float_acc(imp, a.src, b.src, None, s, op.node.output[0])
    fa.bias = bias
    return fa


def lower_outputs(imp) -> None:
    m = imp.loaded.model
    for vo in m.graph.output:
        v = imp.env.get(vo.name)
        imp.node = None
        dt = str(np.dtype(helper.tensor_dtype_to_np_dtype(vo.type.tensor_type.elem_type)))
        if isinstance(v, FloatOp) and v.node.op_type == "MatMul":
            v = matmul_integer_to_float(imp, v, None)
        elif isinstance(v, FloatOp) and v.node.op_type == "Add" and isinstance(
                v.inputs[0], FloatOp) and v.inputs[0].node.op_type == "MatMul" and isinstance(
                v.inputs[1], Const):
            v = matmul_integer_to_float(imp, v.inputs[0],
                                        np.asarray(v.inputs[1].value, np.float32))
        elif isinstance(v, FloatOp) and v.node.op_type == "Gemm":
            from .gemm import gemm_bias, gemm_operands
            a, b = gemm_operands(imp, v.inputs[0].src, v.inputs[1].src, v.attrs)
            bias = gemm_bias(imp, v)
            sa, _ = per_tensor(imp, a.q, "the Gemm input")
            alpha = np.float32(v.attrs.get("alpha", 1.0))
            s = (np.float32(alpha * np.float32(sa)) * scale_vector(b.q)).astype(np.float32)
            if bias is not None:
                from .gemm import check_bias_shape
                bias = check_bias_shape(imp, bias, b.value.shape[1])
            v = emit_float_acc(imp, a, b, bias, s, vo.name)
        if isinstance(v, FloatOp):
            from .float_island import float_table, unary_chain
            chain, leaf = unary_chain(v)
            if chain and isinstance(leaf, Dequant) and isinstance(leaf.src, Codes) and \
                    leaf.src.q.axis is None and dt == "float32":
                # float ops after the last DequantizeLinear: onnxruntime runs them on the CPU;
                # as a function of the code they are a table of float32 values
                table, per_channel = float_table(imp, chain, leaf.src)
                imp.g.outputs.append(HostOutput(leaf.src.tensor, vo.name, dt, "table",
                                                quant=leaf.src.q, table=table,
                                                axis=1 if per_channel else None))
                continue
        if isinstance(v, Codes):
            imp.g.outputs.append(HostOutput(v.tensor, vo.name, dt, "codes"))
        elif isinstance(v, Dequant) and isinstance(v.src, Codes):
            if dt != "float32":
                raise imp.error(f"output '{vo.name}' is declared {dt} but is dequantised")
            imp.g.outputs.append(HostOutput(v.src.tensor, vo.name, dt, "dequantize",
                                            quant=v.src.q))
        elif isinstance(v, FloatAcc):
            imp.g.outputs.append(HostOutput(
                v.tensor, vo.name, dt, "int_to_float", scale=v.scale if v.scale.size > 1
                else v.scale.reshape(()), bias=v.bias,
                axis=len(v.shape) - 1 if v.scale.size > 1 else None))
        elif v is None:
            raise imp.error(f"graph output '{vo.name}' is never computed")
        else:
            what = describe(v)
            if isinstance(v, FloatOp):
                what = f"the float result of {v.node.op_type} '{v.node.name}'"
            raise imp.error(f"graph output '{vo.name}' is {what}; intflow needs a "
                            "QuantizeLinear/DequantizeLinear (or integer) output")
