"""QONNX ``Trunc``: drop low bits of a quantised value (Brevitas' TruncAvgPool, FINN's average
pool = AveragePool -> Mul(k^2) -> Trunc(FLOOR)).

Two versions, chosen like qonnx does by the opset the model imports for the QONNX domain:

- v1 (opset 1, inputs x, scale, zeropt, in_bits, out_bits): y_int = mode(round(x/s + z) /
  2^(in_bits - out_bits)), y = (y_int - z) * s — keeps the input scale, no clamp;
- v2 (opset >= 2, inputs x, scale, zeropt, in_bits, out_scale, out_bits; signed, narrow):
  t = 2^round(log2(out_scale / s)), y_int = mode(clamp(round(x/s + z) / t)),
  y = (y_int - z/t) * out_scale.

The input is a function of one integer: a dequantised code, or the window sum S of the codes
under an AveragePool/GlobalAveragePool (optionally times a constant). The window sum is an
integer kernel (a depthwise all-ones Conv, or GlobalAvgPool), and Trunc becomes a table over
S built with qonnx's float32 steps. onnxruntime's float AveragePool then equals
f32(f32(S * s) / n) when the sum of the dequantised values is exact in float32 (power-of-two
scale, |S| < 2^24) — the same condition under which the rest of a QONNX model is exact.
"""

from __future__ import annotations

import numpy as np

from ..dtypes import IntType
from ..ir import QuantParams
from . import registry
from .float_island import codes_range
from .lowering import emit_conv_acc
from .qonnx_common import (
    QONNX_DOMAINS,
    bit_width,
    const_input,
    max_int,
    min_int,
    rounding,
    scale_param,
)
from .qonnx_quant import unsupported
from .registry import lowers
from .values import Codes, Const, Dequant, FloatOp, QConst

POOLS = ("AveragePool", "GlobalAveragePool")


def trunc_version(imp, node) -> int:
    for o in imp.loaded.model.opset_import:
        if o.domain == (node.domain or ""):
            return 1 if o.version < 2 else 2
    return 1  # qonnx's default for a node whose domain has no opset import is v1


def per_tensor_param(imp, node, v, what: str) -> np.float32:
    p = const_input(imp, node, v, what).astype(np.float32)
    if p.size != 1:
        raise unsupported(imp, node, f"Trunc {what} must be per tensor, got shape "
                          f"{list(p.shape)}")
    return p.reshape(())


def trunc_table(imp, node, ins, x: np.ndarray, version: int):
    """qonnx's trunc_v1/trunc_v2 on float32 ``x``: (codes, their QuantParams)."""
    scale = scale_param(imp, node, ins[1]).astype(np.float32)
    if scale.size != 1:
        raise unsupported(imp, node, "Trunc scale must be per tensor")
    scale = scale.reshape(())
    zeropt = per_tensor_param(imp, node, ins[2], "zero point")
    a = imp.attrs(node)
    round_fn = rounding(imp, node, a.get("rounding_mode", "FLOOR"))
    in_bits = bit_width(imp, node, ins[3], "input bit width")
    y = np.round(np.add(np.divide(x, scale, dtype=np.float32), zeropt, dtype=np.float32))
    if version == 1:
        out_bits = bit_width(imp, node, ins[4], "output bit width")
        t = np.float32(2.0 ** (in_bits - out_bits))
        codes = round_fn(np.divide(y, t, dtype=np.float32))
        zq, s_out = zeropt, scale
        dtype = None
    else:
        out_scale = scale_param(imp, node, ins[4], "output scale").astype(np.float32)
        if out_scale.size != 1:
            raise unsupported(imp, node, "Trunc output scale must be per tensor")
        s_out = out_scale.reshape(())
        out_bits = bit_width(imp, node, ins[5], "output bit width")
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        t = np.float32(2.0 ** np.round(np.log2(np.divide(s_out, scale, dtype=np.float32))))
        lo, hi = min_int(signed, narrow, out_bits), max_int(signed, narrow, out_bits)
        codes = round_fn(np.clip(np.divide(y, t, dtype=np.float32), np.float32(lo),
                                 np.float32(hi)))
        zq = np.divide(zeropt, t, dtype=np.float32)
        dtype = IntType(signed, max(out_bits, 2 if signed else 1))
    if float(zq) != round(float(zq)):
        raise unsupported(imp, node, f"Trunc output zero point {float(zq)} is not an integer")
    codes = codes.astype(np.int64)
    if dtype is None:
        dtype = IntType.fit(int(codes.min()), int(codes.max()))
    q = QuantParams(np.asarray(s_out, np.float32).reshape(()),
                    np.asarray(int(zq), np.int64).reshape(()), dtype)
    return codes, q


def window_sum(imp, node, pool: FloatOp) -> tuple[str, tuple[int, ...], int, Codes]:
    """sum over the pool window of (code - zx) as an integer tensor; returns (tensor, shape,
    window size n, the pooled codes)."""
    src = pool.inputs[0].src
    if src.q is None or src.q.axis is not None:
        raise unsupported(imp, node, "Trunc after a pool of a per-channel tensor")
    c = src.shape[1]
    spatial = list(src.shape[2:])
    if pool.node.op_type == "GlobalAveragePool":
        k, strides = spatial, [1] * len(spatial)
    else:
        a = pool.attrs
        k = list(a["kernel_shape"])
        strides = list(a.get("strides", [1] * len(k)))
        if any(a.get("pads", [])) or a.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") \
                or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [])):
            raise unsupported(imp, node, "Trunc after an AveragePool with padding, ceil_mode "
                              "or dilation is not supported")
    ones = QConst(np.ones((c, 1, *k), np.int64),
                  QuantParams(np.ones((), np.float32), np.zeros((), np.int64),
                              IntType(False, 1)))
    attrs = {"kernel_shape": k, "strides": strides, "pads": [0] * (2 * len(k)), "group": c}
    saved, imp.node = imp.node, pool.node
    try:
        acc, shape = emit_conv_acc(imp, src, ones, None, attrs, node.output[0] + "_sum")
    finally:
        imp.node = saved
    return acc, shape, int(np.prod(k)), src


@lowers("Trunc", QONNX_DOMAINS[0])
def lower(imp, node, ins):
    version = trunc_version(imp, node)
    want = 5 if version == 1 else 6
    if len(ins) != want:
        raise imp.error(f"Trunc v{version} (QONNX domain opset "
                        f"{'1' if version == 1 else '>= 2'}) takes {want} inputs, got "
                        f"{len(ins)}")
    x = ins[0]
    if isinstance(x, Dequant) and isinstance(x.src, Codes) and x.src.q is not None \
            and x.src.q.axis is None:
        from .. import host
        from .lowering import emit_lut
        vals = host.dequantize(codes_range(x.src.q), x.src.q, sample_axis=False)
        codes, q = trunc_table(imp, node, ins, vals, version)
        return [Dequant(emit_lut(imp, x.src, codes, q, node.output[0]))]
    mul = np.float32(1)
    op = x
    if isinstance(op, FloatOp) and op.node.op_type == "Mul":
        a, b = op.inputs
        pool, k = (a, b) if isinstance(b, Const) else (b, a)
        if not isinstance(k, Const) or np.asarray(k.value).size != 1:
            raise unsupported(imp, node, "Trunc after a Mul needs a scalar constant factor")
        mul, op = np.float32(np.asarray(k.value).reshape(())), pool
    if not (isinstance(op, FloatOp) and op.node.op_type in POOLS
            and isinstance(op.inputs[0], Dequant) and isinstance(op.inputs[0].src, Codes)):
        raise unsupported(imp, node, "Trunc is supported on dequantised codes and after "
                          "[Mul(const) o] AveragePool/GlobalAveragePool of dequantised codes")
    acc, shape, n, src = window_sum(imp, node, op)
    sx = np.float32(src.q.scale)
    lo = n * (src.q.dtype.min - int(src.q.zero_point))
    hi = n * (src.q.dtype.max - int(src.q.zero_point))
    sums = np.arange(lo, hi + 1, dtype=np.int64)
    # onnxruntime's float AveragePool: f32(sum of the dequantised values) / n, then the Mul
    avg = np.divide(np.multiply(sums.astype(np.float32), sx, dtype=np.float32), np.float32(n),
                    dtype=np.float32)
    val = np.multiply(avg, mul, dtype=np.float32)
    codes, q = trunc_table(imp, node, ins, val, version)
    out = imp.emit("Lut", [acc, imp.add_const(node.output[0] + "_table", codes, q.dtype)],
                   shape, q.dtype, {"x_min": lo, "axis": None}, base=node.output[0])
    return [Dequant(Codes(out, shape, q))]


for _dom in QONNX_DOMAINS[1:]:
    registry.LOWER[(_dom, "Trunc")] = lower
