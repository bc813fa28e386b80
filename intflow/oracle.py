"""The u8×u8 oracle (DESIGN.md): onnxruntime's u8×s8 GEMM/conv kernel sums pairs of products
in saturating int16 on x86 CPUs with AVX2 but no VNNI, so its results can be wrong there. The
same model with every int8 weight moved to uint8 (w + 128, zero point + 128) has identical
arithmetic and runs on onnxruntime's exact u8×u8 kernel: its outputs are the exact truth on
every CPU."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

# op -> (index of the weight, index of its zero point, index of the activation zero point)
QOPERATOR = {"QLinearConv": (3, 5, 2), "QLinearMatMul": (3, 5, 2), "QGemm": (3, 5, 2),
             "ConvInteger": (1, 3, 2), "MatMulInteger": (1, 3, 2)}
QDQ_TARGETS = {"Conv": 1, "MatMul": 1, "Gemm": 1}


def _shift_weight(inits: dict[str, onnx.TensorProto], w: str, zp: str | None,
                  node: onnx.NodeProto, zp_index: int) -> str | None:
    """Replace int8 initializer ``w`` (and its zero point) by uint8 w+128; returns the new
    zero-point name to wire in (when the node had none)."""
    wt = inits[w]
    if wt.data_type != onnx.TensorProto.INT8:
        return None
    v = numpy_helper.to_array(wt).astype(np.int16) + 128
    wt.CopyFrom(numpy_helper.from_array(v.astype(np.uint8), w))
    if zp and zp in inits:
        z = numpy_helper.to_array(inits[zp]).astype(np.int16) + 128
        inits[zp].CopyFrom(numpy_helper.from_array(z.astype(np.uint8), zp))
        return None
    name = w + "_u8oracle_zp"
    inits[name] = numpy_helper.from_array(np.array(128, np.uint8), name)
    return name


def _is_uint8(inits: dict[str, onnx.TensorProto], zero_point: str) -> bool:
    """An activation is uint8 when its zero point is (no zero point: uint8 by default)."""
    if not zero_point:
        return True
    t = inits.get(zero_point)
    return t is not None and t.data_type == onnx.TensorProto.UINT8


def u8u8_oracle(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose int8 constant weights under uint8 activations are uint8."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    done: set[str] = set()
    for n in g.node:
        if n.op_type in QOPERATOR:
            wi, zi, xzi = QOPERATOR[n.op_type]
            if len(n.input) <= wi or n.input[wi] not in inits or n.input[wi] in done:
                continue
            if not _is_uint8(inits, n.input[xzi] if len(n.input) > xzi else ""):
                continue
            zp = n.input[zi] if len(n.input) > zi and n.input[zi] else None
            new = _shift_weight(inits, n.input[wi], zp, n, zi)
            done.add(n.input[wi])
            if new:
                while len(n.input) <= zi:
                    n.input.append("")
                n.input[zi] = new
        elif n.op_type in QDQ_TARGETS:
            dq = producers.get(n.input[1])
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
                continue
            x_dq = producers.get(n.input[0])
            if x_dq is None or x_dq.op_type != "DequantizeLinear":
                continue
            if dq.input[0] in done or not _is_uint8(
                    inits, x_dq.input[2] if len(x_dq.input) > 2 else ""):
                continue
            zp = dq.input[2] if len(dq.input) > 2 and dq.input[2] else None
            new = _shift_weight(inits, dq.input[0], zp, dq, 2)
            done.add(dq.input[0])
            if new:
                while len(dq.input) < 3:
                    dq.input.append("")
                dq.input[2] = new
    del g.initializer[:]
    g.initializer.extend(inits.values())
    return m
