"""QONNX ``Quant`` / ``IntQuant`` (Brevitas export): a fake-quantiser, quantise then dequantise.

Quant(x, scale, zeropt, bitwidth; signed, narrow, rounding_mode), see ``qonnx_common.py`` for
the formula. Lowered by what ``x`` is:

- a constant (float shadow weights, biases): folded at compile time into integer codes of
  ``bitwidth`` bits with qonnx's own arithmetic -> ``Dequant(QConst)``;
- dequantised codes: a table over every input code (any rounding mode, any zero point);
- a float graph input or a pending float op (Conv, Gemm, MatMul, Relu, ...): closed like a
  QuantizeLinear (host quantisation / the fused integer kernel's requant). That equals qonnx
  only for ROUND (half-even, as the requant rounds) and zero point 0 (QuantizeLinear adds the
  zero point after rounding, Quant before); other variants raise UnsupportedOp.
  ``narrow`` adds a Clamp, which FuseClamp folds into the requant.
The result is the dequantised value ``Dequant(codes)``: the next op sees a QDQ-style value.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import INT8, IntType
from ..errors import UnsupportedOp
from ..ir import QuantParams
from . import registry
from .clamp import fold_clamp
from .float_island import codes_range
from .lowering import emit_lut
from .qonnx_common import (
    QONNX_DOMAINS,
    bit_width,
    const_input,
    int_quant_codes,
    max_int,
    min_int,
    quant_params,
    rounding,
    scale_param,
)
from .registry import lowers
from .values import Codes, Const, Dequant, FloatInput, FloatOp, QConst

# kernels whose requant sees the exact integer accumulator: the sign of acc * M is the sign
# of acc, so a bipolar quantiser after them is exact
ACCUMULATING = {"Conv", "MatMul", "Gemm"}


def quant_attrs(imp, node) -> tuple[bool, bool, str]:
    a = imp.attrs(node)
    for name in ("signed", "narrow"):  # required by qonnx too (it raises when absent)
        if name not in a:
            raise imp.error(f"{node.op_type} has no '{name}' attribute (required)")
    return bool(a["signed"]), bool(a["narrow"]), str(a.get("rounding_mode", "ROUND"))


def code_type(signed: bool, narrow: bool, bits: int) -> IntType:
    """The IR type of the codes: bipolar (1-bit signed) codes are -1/+1, two bits."""
    if bits == 1 and signed:
        return IntType(True, 2)
    return IntType(signed, bits)


def unsupported(imp, node, reason: str) -> UnsupportedOp:
    return UnsupportedOp(reason, file=imp.path, node=imp.node_label(node), op=node.op_type)


@lowers("Quant", QONNX_DOMAINS[0])
@lowers("IntQuant", QONNX_DOMAINS[0])
def lower(imp, node, ins):
    if len(ins) != 4:
        raise imp.error(f"{node.op_type} has {len(ins)} inputs; it takes 4 (x, scale, "
                        "zeropt, bitwidth)")
    x = ins[0]
    scale = scale_param(imp, node, ins[1])
    zeropt = const_input(imp, node, ins[2], "zero point").astype(np.float32)
    bits = bit_width(imp, node, ins[3])
    signed, narrow, mode = quant_attrs(imp, node)
    round_fn = rounding(imp, node, mode)
    dtype = code_type(signed, narrow, bits)

    if isinstance(x, Const) or (isinstance(x, Dequant) and isinstance(x.src, QConst)):
        v = const_input(imp, node, x, "input")
        if not np.issubdtype(v.dtype, np.floating):
            raise imp.error(f"{node.op_type} of a non-float constant is not supported")
        y = int_quant_codes(v, scale, zeropt, bits, signed, narrow, round_fn)
        q = quant_params(imp, node, scale, zeropt, dtype, tuple(v.shape))
        return [Dequant(bias_on_accumulator_grid(imp, node, QConst(y.astype(np.int64), q)))]

    shape = tuple(x.shape) if hasattr(x, "shape") else None
    if shape is None:
        raise imp.error(f"{node.op_type} input is not a tensor intflow can quantise")
    q = quant_params(imp, node, scale, zeropt, dtype, shape)
    if q.axis is not None:
        raise unsupported(imp, node, "per-channel quantisation of an activation is not "
                          "supported (only of constants)")

    if isinstance(x, Dequant) and isinstance(x.src, Codes):
        src = x.src
        if src.q is None or src.q.axis is not None:
            raise unsupported(imp, node, "Quant of a per-channel or raw integer tensor is not "
                              "supported")
        from .. import host
        vals = host.dequantize(codes_range(src.q), src.q, sample_axis=False)
        table = int_quant_codes(vals, scale, zeropt, bits, signed, narrow, round_fn)
        return [Dequant(emit_lut(imp, src, table.astype(np.int64), q, node.output[0]))]

    if not isinstance(x, (FloatOp, FloatInput)):
        raise imp.error(f"{node.op_type} of an integer tensor is not supported (QONNX "
                        "quantises float values)")
    if float(zeropt.ravel()[0]) != 0:
        raise unsupported(imp, node, f"zero point {float(zeropt.ravel()[0])} on an activation "
                          "computed by the accelerator: only 0 is supported (Quant adds the "
                          "zero point before rounding, the requantiser after)")
    if bits == 1 and signed:
        return [Dequant(bipolar_of_float(imp, node, x, q))]
    if round_fn is not np.round:
        raise unsupported(imp, node, f"rounding_mode {mode} on an activation computed by the "
                          "accelerator: only ROUND (half-to-even, the requantiser's rounding) "
                          "is supported")
    out = registry.fuse_inner(imp, x, q, node)
    lo, hi = min_int(signed, narrow, bits), max_int(signed, narrow, bits)
    if (lo, hi) != (dtype.min, dtype.max):
        out = fold_clamp(imp, out, lo, hi)
    return [Dequant(Codes(out.tensor, out.shape, q))]


def bias_on_accumulator_grid(imp, node, c: QConst) -> QConst:
    """A quantised bias of a Gemm/Conv, re-expressed in the accumulator's unit sa*sb.

    qonnx adds the bias in float (y = A.B + C), while the integer kernels add the bias codes
    to the accumulator unscaled (onnxruntime's QGemm does so whatever the bias scale). So a
    bias whose scale sc is not sa*sb is rescaled here: exact when sc/(sa*sb) is an integer
    (per channel), otherwise refused."""
    users = [(n, list(n.input).index(node.output[0])) for n in imp.loaded.model.graph.node
             if node.output[0] in n.input]
    for user, k in users:
        if user.op_type not in ("Gemm", "Conv") or k != 2:
            continue
        a, b = (imp.env.get(i) for i in user.input[:2])
        if not (isinstance(a, Dequant) and isinstance(b, Dequant) and a.src.q is not None
                and b.src.q is not None and a.src.q.scale.size == 1):
            raise unsupported(imp, node, f"the bias of {user.op_type} '{user.name}' is "
                              "quantised before its input and weights are known")
        unit = (np.float32(a.src.q.scale.reshape(())) * np.atleast_1d(b.src.q.scale)
                ).astype(np.float32)
        sc = np.atleast_1d(c.q.scale).astype(np.float32)
        if np.array_equal(np.broadcast_to(sc, unit.shape), unit) or (
                unit.size == 1 and np.array_equal(sc, np.broadcast_to(unit, sc.shape))):
            continue
        ratio = sc.astype(np.float64) / unit.astype(np.float64)
        if np.any(c.q.zero_point != 0) or not np.all(ratio == np.round(ratio)):
            raise unsupported(imp, node, f"the bias scale of {user.op_type} '{user.name}' is "
                              "not an integer multiple of input scale x weight scale (with "
                              "zero point 0), so it cannot be added to the integer "
                              "accumulator exactly")
        n = c.value.size
        r = np.broadcast_to(np.round(ratio).astype(np.int64), (n,))
        unit_n = np.broadcast_to(unit, (n,)).astype(np.float32)
        values = c.value.reshape(-1) * r
        q = QuantParams(unit_n, np.zeros(n, np.int64), IntType.fit(int(values.min()),
                                                                    int(values.max())), 0)
        return QConst(values.reshape(c.value.shape), q)
    return c


def bipolar_of_float(imp, node, x, q: QuantParams) -> Codes:
    """+1 where the float value is >= 0, else -1, for the output of an accumulating kernel:
    requantise with M = 1 (per channel: M >= 1) so the int8 code has the accumulator's sign
    and 0 stays 0, then a table maps code >= 0 to +1."""
    if not (isinstance(x, FloatOp) and x.node.op_type in ACCUMULATING):
        raise unsupported(imp, node, "a bipolar quantiser on a computed activation is "
                          "supported after Conv, MatMul and Gemm only")
    ins = [i for i in x.inputs if i is not None]
    a, w = ins[0], ins[1]
    if not (isinstance(a, Dequant) and isinstance(a.src, Codes) and isinstance(w, Dequant)
            and a.src.q is not None):
        raise unsupported(imp, node, "a bipolar quantiser needs a quantised Conv/MatMul/Gemm "
                          "before it")
    s_acc = np.float32(np.float32(a.src.q.scale.reshape(-1)[0])
                       * np.float32(np.min(np.atleast_1d(w.src.q.scale))))
    sign_q = QuantParams(np.asarray(s_acc, np.float32).reshape(()),
                         np.zeros((), np.int64), INT8)
    signs = registry.fuse_inner(imp, x, sign_q, node)
    table = np.where(codes_range(sign_q) >= 0, 1, -1).astype(np.int64)
    return emit_lut(imp, signs, table, q, node.output[0] + "_sign")


for _dom in QONNX_DOMAINS[1:]:
    registry.LOWER[(_dom, "Quant")] = lower
    registry.LOWER[(_dom, "IntQuant")] = lower
