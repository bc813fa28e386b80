"""LayerNormalization over the last axis, as onnxruntime's quantize_static leaves it (opset 17):

    DQ(x) -> LayerNormalization(x, DQ(gamma int8 per tensor) | gamma float,
                                DQ(beta int32) | beta float | none) -> Q

becomes the integer LayerNorm IR op (compiler/ops/layernorm.py: xc = n c - sum c, exact isqrt,
one reciprocal per row, acc = Z gamma_q + B) and a Requant of acc (scale s_gamma 2^-P) to the
output codes. onnxruntime runs LayerNormalization in float, so the node goes on the float-path
list (its output elements are counted as "float path" by ``intflow check``).
"""

from __future__ import annotations

import numpy as np

from ..ops.layernorm import isqrt
from .lowering import emit_requant, per_tensor
from .registry import fuses, lowers
from .values import Codes, Const, Dequant, QConst

T_BITS = 8  # 2^T scales the variance before the square root (module docstring of the op)
P_BITS = 8  # Z = normalised x * 2^P
R_BITS = 8  # R = 2^K / D keeps P + 8 bits at the largest D


@lowers("LayerNormalization")
def lower(imp, node, ins):
    x = ins[0]
    if not isinstance(x, Dequant) or not isinstance(x.src, Codes):
        raise imp.error("LayerNormalization on a tensor that is not dequantised: only "
                        "DequantizeLinear -> LayerNormalization -> QuantizeLinear is supported")
    if len(node.output) > 1 and any(node.output[1:]):
        raise imp.error("LayerNormalization's Mean / InvStdDev outputs are not supported")
    ndim = len(x.shape)
    axis = int(imp.attrs(node).get("axis", -1))
    if not -ndim <= axis < ndim:
        raise imp.error(f"LayerNormalization axis {axis} is out of range for a {ndim}-D tensor")
    if axis % ndim != ndim - 1:
        raise imp.error(f"LayerNormalization over the axes from {axis} of a {ndim}-D tensor: "
                        "only the last axis is supported")
    return [imp.pending_float(node, ins, x.shape)]


def _gamma(imp, v, n: int) -> tuple[np.ndarray, np.float32]:
    """(gamma codes - zero point as int64 (n,), s_gamma): the int8 per-tensor codes as given,
    else the float gamma quantised per tensor to int8 here (symmetric, max |gamma| -> 127)."""
    if (isinstance(v, Dequant) and isinstance(v.src, QConst) and v.src.q.scale.size == 1
            and v.src.q.dtype.bits <= 8):
        s, z = per_tensor(imp, v.src.q, "LayerNormalization scale (gamma)")
        g = np.broadcast_to(v.src.value.astype(np.int64) - z, (n,)).copy()
        return g, np.float32(s)
    g = np.broadcast_to(np.asarray(imp.const(v, "LayerNormalization scale (gamma)"),
                                   np.float64).reshape(-1), (n,))
    top = float(np.abs(g).max())
    s = np.float32(top / 127.0 if top > 0 else 1.0)
    imp.note("LayerNormalization: a float (or per-channel) gamma is quantised to int8 per "
             "tensor by intflow (scale max|gamma| / 127)")
    return np.clip(np.round(g / np.float64(s)), -127, 127).astype(np.int64), s


def emit_layernorm(imp, x: Codes, gamma_v, beta_v, eps: float, out_q, base: str) -> Codes:
    if x.q is None or x.q.axis is not None or x.q.scale.size != 1:
        raise imp.error("LayerNormalization input must be quantised per tensor")
    sx, _ = per_tensor(imp, x.q, "the LayerNormalization input")
    n = x.shape[-1]
    if n < 2:
        raise imp.error("LayerNormalization over a single element is not supported")
    gamma_q, s_gamma = _gamma(imp, gamma_v, n)
    step = float(s_gamma) * 2.0 ** -P_BITS  # the scale of acc
    beta = np.zeros(n) if beta_v is None else np.broadcast_to(np.asarray(
        imp.const(beta_v, "LayerNormalization bias (beta)"), np.float64).reshape(-1), (n,))
    b = np.round(beta / step).astype(np.int64)  # B = round(beta / (s_gamma 2^-P))
    t2 = 2 * T_BITS
    e2 = int(round(n * n * float(eps) / float(sx) ** 2 * 2.0 ** t2))
    # the largest D: var(c) <= ((hi - lo) / 2)^2, V' = n^2 var 2^(2T) + E2
    span = x.q.dtype.max - x.q.dtype.min
    v_max = (n * n * span * span << t2) // 4 + e2
    d_max = int(isqrt(np.array([v_max], np.int64))[0])
    k = max(d_max.bit_length() + P_BITS + R_BITS, T_BITS + P_BITS + 1)
    attrs = {"T": T_BITS, "P": P_BITS, "K": k, "E2": e2}
    ins = [x.tensor, imp.add_const(base + "_gamma", gamma_q), imp.add_const(base + "_beta", b)]
    acc = imp.emit("LayerNorm", ins, x.shape, attrs=attrs, base=base)
    sy, _ = per_tensor(imp, out_q, "the LayerNormalization output")
    m32 = np.float32(np.float32(step) / np.float32(sy))
    real = step / float(sy)
    out = emit_requant(imp, acc, x.shape, np.array([m32]), np.array([real]), out_q, None, base)
    node = imp.node
    imp.float_path.append(node.name or node.op_type)
    imp.note("LayerNormalization: onnxruntime's float layer norm is replaced by the integer "
             "kernel (exact isqrt, one reciprocal per row, Z = normalised x * 2^8, "
             "acc = Z gamma_q + B, then requant); its outputs may differ from onnxruntime's by "
             "a code")
    return out


@fuses("LayerNormalization")
def fuse(imp, op, q, qnode):
    ins = op.inputs
    if len(ins) < 2 or ins[1] is None:
        raise imp.error("LayerNormalization needs a scale (gamma)", op.node)
    for v, what in ((ins[1], "scale (gamma)"), (ins[2] if len(ins) > 2 else None, "bias")):
        if v is not None and not (isinstance(v, Const) or (isinstance(v, Dequant)
                                                           and isinstance(v.src, QConst))):
            raise imp.error(f"LayerNormalization {what} must be a constant", op.node)
    eps = float(np.float32(op.attrs.get("epsilon", 1e-5)))
    return emit_layernorm(imp, ins[0].src, ins[1], ins[2] if len(ins) > 2 else None, eps, q,
                          qnode.output[0])
