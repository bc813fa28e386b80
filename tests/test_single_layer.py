"""Random single-layer quantized models: intflow's reference == onnxruntime, bit for bit.

Every layer is built twice (``tests/qmodels.py``): as QDQ (DequantizeLinear -> float op ->
QuantizeLinear, as ``quantize_static`` writes it) and as the QOperator node where one exists.
The model's input is float32 quantized by a QuantizeLinear (host quantization), its output a
DequantizeLinear; the batch axis is dynamic ("N") or fixed 1. Inputs mix uniform values over
the quantization range, exact codes and exact QuantizeLinear rounding ties.

The truth is onnxruntime (ORT_ENABLE_ALL, ``session.qdqisint8allowed=1``, ``intflow.ort``). For
uint8 activations with int8 weights it runs ``intflow.oracle.u8u8_oracle(model)``: on x86 CPUs
with AVX2 but no VNNI onnxruntime's u8 x s8 kernels saturate, the u8 x u8 ones are exact
everywhere, so the test holds on any CPU.

Default: a few dozen examples per (layer, style), < 90 s in total on 2 cores; ``-m slow`` runs
the same properties with many more examples.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import qmodels as qm
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from qmodels import QAct, QConst, QParams

import intflow
import intflow.oracle
import intflow.ort

FAST = settings(max_examples=100, deadline=None, derandomize=True, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# where failing models are kept (the assertion message names the file)
FAILED_DIR = Path(tempfile.gettempdir()) / "intflow-single-layer-failures"

ACT_TYPES = (np.uint8, np.int8)


# ---- strategies -------------------------------------------------------------------------------
def log_uniform(lo_exp: float, hi_exp: float) -> st.SearchStrategy[float]:
    """A float32-representable value 10**e, e uniform in [lo_exp, hi_exp]."""
    return st.floats(lo_exp, hi_exp).map(lambda e: float(np.float32(10.0 ** e)))


def scales(lo_exp: float, hi_exp: float) -> st.SearchStrategy[float]:
    """Log-uniform over [10**lo_exp, 10**hi_exp], or a power of two in that range (powers of
    two make the rescaling ratios exact, so rounding ties occur often)."""
    lo2, hi2 = math.ceil(lo_exp * math.log2(10)), math.floor(hi_exp * math.log2(10))
    return st.one_of(log_uniform(lo_exp, hi_exp), log_uniform(lo_exp, hi_exp),
                     st.integers(lo2, hi2).map(lambda k: 2.0 ** k))


@st.composite
def zero_points(draw, dtype) -> int:
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max)
    special = [lo, hi, lo + 1, hi - 1, (lo + hi + 1) // 2, 0]
    return draw(st.one_of(st.sampled_from(special), st.integers(lo, hi)))


@st.composite
def qparams(draw, dtype, scale: st.SearchStrategy[float] | None = None) -> QParams:
    s = draw(scale if scale is not None else scales(-4, 1))
    return QParams(s, draw(zero_points(dtype)), dtype)


def scaled(base: float, lo_exp: float, hi_exp: float) -> st.SearchStrategy[float]:
    """base * 10**e, e uniform in [lo_exp, hi_exp], or base * 2**k (exact ratio), as float32."""
    lo2, hi2 = math.ceil(lo_exp * math.log2(10)), math.floor(hi_exp * math.log2(10))
    return st.one_of(
        st.floats(lo_exp, hi_exp).map(lambda e: float(np.float32(base * 10.0 ** e))),
        st.integers(lo2, hi2).map(lambda k: float(np.float32(base) * np.float32(2.0 ** k))))


@st.composite
def model_frame(draw):
    """Batch axis ("N" or 1), opset, activation type, number of samples, numpy seed."""
    return dict(batch=draw(st.sampled_from(["N", 1])), opset=draw(st.sampled_from([13, 17, 21])),
                dtype=draw(st.sampled_from(ACT_TYPES)), samples=draw(st.integers(1, 3)),
                seed=draw(st.integers(0, 2 ** 32 - 1)))


@st.composite
def weights(draw, rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Weight codes: full range, a narrow range, the extremes only (saturation stress), or
    sparse."""
    info = np.iinfo(dtype)
    kind = draw(st.sampled_from(["full", "narrow", "extremes", "sparse"]))
    if kind == "full":
        w = rng.integers(int(info.min), int(info.max) + 1, shape)
    elif kind == "narrow":
        mid = 0 if info.min < 0 else 128
        r = draw(st.integers(0, 20))
        w = rng.integers(mid - r, mid + r + 1, shape)
    elif kind == "extremes":
        w = rng.choice([int(info.min) + (info.min < 0), int(info.max)], shape)
    else:
        w = rng.integers(int(info.min), int(info.max) + 1, shape)
        w = np.where(rng.random(shape) < 0.7, 0 if info.min < 0 else 128, w)
    return w.astype(dtype)


@st.composite
def weight_quant(draw, n: int, wdtype, per_channel: bool):
    """Weight scale(s) (log-uniform, independent per channel) and zero point(s) (equal across
    channels, as onnxruntime requires; 0 for int8 in most cases)."""
    if per_channel:
        spread = draw(st.floats(0, 3))
        base = draw(st.floats(-4, 0))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        s = np.float32(10.0 ** (base + spread * rng.random(n)))
    else:
        s = np.float32(draw(scales(-4, 0)))
    if np.dtype(wdtype) == np.int8:
        zp = draw(st.one_of(st.just(0), st.just(0), zero_points(np.int8)))
    else:
        zp = draw(zero_points(np.uint8))
    z = np.full(n, zp) if per_channel else zp
    return s, z


@st.composite
def bias_values(draw, rng: np.random.Generator, n: int):
    kind = draw(st.sampled_from(["none", "small", "medium", "large"]))
    if kind == "none":
        return None
    bound = {"small": 300, "medium": 1 << 16, "large": 1 << 26}[kind]
    return rng.integers(-bound, bound + 1, n).astype(np.int32)


def accumulator_size(w2d: np.ndarray, wz, qx: QParams, ws, bias) -> tuple[float, float]:
    """(f32(sx * sw[c]), 90th percentile of |acc[c]|) for the output channel c whose real
    values are largest, acc = sum_k (x_k - zx)(w[c, k] - zw) + bias[c] over random codes x.
    ``w2d``: (channels, K) weight codes."""
    rng = np.random.default_rng(0)
    w = w2d.astype(np.int64) - np.asarray(wz, np.int64).reshape(-1, 1)
    x = rng.integers(qx.qmin, qx.qmax + 1, (256, w.shape[1])) - qx.zero_point
    acc = x @ w.T
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    size = np.maximum(np.percentile(np.abs(acc), 90, axis=0), 1.0)
    acc_scale = np.broadcast_to(qx.f32_scale * np.asarray(ws, np.float32), size.shape)
    c = int(np.argmax(acc_scale * size))
    return float(acc_scale[c]), float(size[c])


def output_scale_for(draw, acc_scale: float, acc_spread: float) -> float:
    """An output scale putting the accumulator spread within 10**-0.7 .. 10**1 of half the code
    range (from much saturated to a few codes), as float32; or acc_scale * 2**k, which makes
    the requantisation multiplier a power of two (many exact rounding ties); or independent."""
    centre = math.log10(acc_scale * max(acc_spread, 1.0) / 64.0)
    kind = draw(st.integers(0, 7), "output scale kind")
    if kind == 0:  # independent of the accumulator: extreme multipliers, saturation
        return draw(scales(-6, 2), "output scale")
    if kind <= 2:
        kc = round(math.log2(max(acc_spread, 1.0) / 64.0))
        k = draw(st.integers(kc - 2, kc + 3), "output scale 2^k")
        s = np.float32(acc_scale) * np.float32(2.0 ** k)
        if np.isfinite(s) and s > 0:
            return float(s)
    return draw(st.floats(centre - 0.7, centre + 1.0).map(
        lambda e: float(np.float32(10.0 ** e))), "output scale")


# ---- running and comparing --------------------------------------------------------------------
def check(b: qm.GraphBuilder, frame: dict, acts: list[QAct]) -> None:
    """Build the model, feed random inputs for ``acts`` (the quantized graph inputs, in
    order), and compare intflow's reference with onnxruntime on every element."""
    model = b.model()
    rng = np.random.default_rng(frame["seed"] ^ 0x5EED)
    s = frame["samples"]
    inputs = {vi.name: qm.input_values(rng, (s, *a.shape[1:]), a.q)
              for vi, a in zip(b.inputs, acts)}
    work = Path(tempfile.mkdtemp(prefix="single-layer-"))
    keep = False
    try:
        path = work / "model.onnx"
        onnx.save(model, path)
        oracle_path = work / "oracle.onnx"
        onnx.save(intflow.oracle.u8u8_oracle(model), oracle_path)
        want = intflow.ort.run(str(oracle_path), inputs)
        got = intflow.compile(path).run(inputs)
        assert set(got) == set(want), f"outputs {sorted(got)} != onnxruntime's {sorted(want)}"
        for name, w in want.items():
            g = got[name]
            where = f"output '{name}'"
            if g.dtype != w.dtype or g.shape != w.shape:
                keep = True
            assert g.dtype == w.dtype, f"{where}: dtype {g.dtype} != onnxruntime's {w.dtype}"
            assert g.shape == w.shape, f"{where}: shape {g.shape} != onnxruntime's {w.shape}"
            differ = _differ(g, w)
            if differ.any():
                keep = True
                idx = tuple(int(i) for i in np.argwhere(differ)[0])
                saved = _save_failure(work, inputs)
                raise AssertionError(
                    f"{where}: {int(differ.sum())} of {w.size} elements differ; first at index "
                    f"{idx} (sample axis first): intflow {g[idx]!r}, onnxruntime {w[idx]!r}; "
                    f"model and inputs in {saved}")
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise 'not identical': floats compared bit for bit (so -0.0 != 0.0, NaN == NaN
    with the same payload)."""
    if a.dtype.kind == "f":
        return a.view(f"u{a.dtype.itemsize}") != b.view(f"u{b.dtype.itemsize}")
    return a != b


def _save_failure(work: Path, inputs: dict[str, np.ndarray]) -> Path:
    np.savez(work / "inputs.npz", **inputs)
    FAILED_DIR.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(dir=FAILED_DIR))
    for f in work.iterdir():
        shutil.copy(f, dest / f.name)
    return dest


def builder(frame: dict) -> qm.GraphBuilder:
    return qm.GraphBuilder(batch=frame["batch"], opset=frame["opset"])


# ---- Conv -------------------------------------------------------------------------------------
def conv_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    dt = frame["dtype"]
    rng = np.random.default_rng(frame["seed"])
    nd = data.draw(st.sampled_from([1, 2]), "spatial dims")
    if data.draw(st.booleans(), "depthwise"):
        group = data.draw(st.integers(1, 8), "channels (= groups)")
        cin_g, cout_g = 1, data.draw(st.integers(1, 2), "depth multiplier")
    else:
        group = data.draw(st.integers(1, 3), "groups")
        cin_g = data.draw(st.integers(1, 4), "in channels per group")
        cout_g = data.draw(st.integers(1, 4), "out channels per group")
    k = [data.draw(st.integers(1, 4), f"kernel[{i}]") for i in range(nd)]
    dil = [data.draw(st.integers(1, 3), f"dilation[{i}]") for i in range(nd)]
    stride = [data.draw(st.integers(1, 3), f"stride[{i}]") for i in range(nd)]
    eff = [dil[i] * (k[i] - 1) + 1 for i in range(nd)]
    pads = [data.draw(st.integers(0, eff[i % nd] - 1), f"pad[{i}]") for i in range(2 * nd)]
    spatial = [data.draw(st.integers(max(1, eff[i] - pads[i] - pads[nd + i]), eff[i] + 6),
                         f"size[{i}]") for i in range(nd)]
    cin, cout = group * cin_g, group * cout_g
    wdt = np.int8 if dt == np.int8 else data.draw(st.sampled_from([np.int8, np.int8, np.uint8]),
                                                   "weight type")
    w = data.draw(weights(rng, (cout, cin_g, *k), wdt), "weights")
    per_channel = data.draw(st.booleans(), "per-channel")
    ws, wz = data.draw(weight_quant(cout, wdt, per_channel), "weight quant")
    bias = data.draw(bias_values(rng, cout), "bias")
    qx = data.draw(qparams(dt), "x quant")
    acc_scale, spread = accumulator_size(w.reshape(cout, -1), wz, qx, ws, bias)
    qy = QParams(output_scale_for(data.draw, acc_scale, spread),
                 data.draw(zero_points(dt), "y zero point"), dt)
    relu = style == "qdq" and data.draw(st.integers(0, 4), "relu") == 0
    if relu:
        qy = QParams(qy.scale, qy.qmin, dt)  # quantize_static's Relu output: zp at qmin
    note(f"Conv{nd}d {style}: x {[1, cin, *spatial]} {qx}, w {w.shape} {np.dtype(wdt)} "
         f"scale {ws} zp {wz}, bias {'none' if bias is None else bias.tolist()}, "
         f"group {group} strides {stride} pads {pads} dilations {dil}, y {qy}, relu {relu}")
    b = builder(frame)
    x = b.input((1, cin, *spatial), qx)
    y = qm.conv(b, x, w, ws, wz, bias, qy, strides=stride, pads=pads, dilations=dil,
                group=group, style=style, activation="Relu" if relu else None)
    b.output(y)
    check(b, frame, [x])


# ---- MatMul and Gemm --------------------------------------------------------------------------
def dense_params(data, frame, k: int, n: int, with_bias: bool):
    dt = frame["dtype"]
    rng = np.random.default_rng(frame["seed"])
    bias = data.draw(bias_values(rng, n), "bias") if with_bias else None
    wdt = np.int8 if dt == np.int8 else data.draw(st.sampled_from([np.int8, np.int8, np.uint8]),
                                                   "weight type")
    w = data.draw(weights(rng, (k, n), wdt), "weights (K, N)")
    per_column = data.draw(st.booleans(), "per-column")
    ws, wz = data.draw(weight_quant(n, wdt, per_column), "weight quant")
    qx = data.draw(qparams(dt), "x quant")
    acc_scale, spread = accumulator_size(w.T, wz, qx, ws, bias)
    qy = QParams(output_scale_for(data.draw, acc_scale, spread),
                 data.draw(zero_points(dt), "y zero point"), dt)
    return w, ws, wz, qx, qy, bias


def matmul_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    k = data.draw(st.integers(1, 40), "K")
    n = data.draw(st.integers(1, 16), "N")
    rows = data.draw(st.sampled_from([None, None, 1, 3]), "rows (3-D input)")
    w, ws, wz, qx, qy, _ = dense_params(data, frame, k, n, with_bias=False)
    shape = (1, k) if rows is None else (1, rows, k)
    note(f"MatMul {style}: x {shape} {qx}, w {w.shape} {w.dtype} scale {ws} zp {wz}, y {qy}")
    b = builder(frame)
    x = b.input(shape, qx)
    b.output(qm.matmul(b, x, w, ws, wz, qy, style=style))
    check(b, frame, [x])


def gemm_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    k = data.draw(st.integers(1, 40), "K")
    n = data.draw(st.integers(1, 16), "N")
    w, ws, wz, qx, qy, bias = dense_params(data, frame, k, n, with_bias=True)
    trans_b = data.draw(st.booleans(), "transB")
    alpha = 1.0
    if style == "qop" or bias is None:
        # a QDQ Gemm with a bias and alpha != 1 is not fused (QGemm would scale the bias by
        # alpha): onnxruntime runs it in float, intflow notes it (test_gemm_alpha_bias_...)
        alpha = data.draw(st.one_of(st.just(1.0), st.sampled_from([0.5, 2.0, 0.125]),
                                    log_uniform(-2, 1)), "alpha")
    relu = style == "qdq" and data.draw(st.integers(0, 4), "relu") == 0
    if relu:
        qy = QParams(qy.scale, qy.qmin, qy.dtype)
    stored = np.ascontiguousarray(w.T) if trans_b else w
    note(f"Gemm {style}: x (1, {k}) {qx}, w {stored.shape} {w.dtype} transB {trans_b} "
         f"scale {ws} zp {wz}, alpha {alpha}, bias {None if bias is None else bias.tolist()}, "
         f"y {qy}, relu {relu}")
    b = builder(frame)
    x = b.input((1, k), qx)
    b.output(qm.gemm(b, x, stored, ws, wz, bias, qy, alpha=alpha, trans_b=trans_b, style=style,
                     activation="Relu" if relu else None))
    check(b, frame, [x])


# ---- Add --------------------------------------------------------------------------------------
@st.composite
def add_shapes(draw):
    """(output shape, A shape, B shape) with batch axis 1: equal, [1,C,1,1] against
    [1,C,H,W] in either order, a one-element operand, or random broadcast masks."""
    rank = draw(st.sampled_from([2, 3, 4, 4]))
    out = (1, *(draw(st.integers(1, 6)) for _ in range(rank - 1)))
    kind = draw(st.sampled_from(["same", "channel", "scalar", "masks"]))
    full = out
    if kind == "same":
        other = out
    elif kind == "channel":
        other = (1, out[1], *([1] * (rank - 2)))
    elif kind == "scalar":
        other = (1,) * rank
    else:
        mask = [draw(st.booleans()) for _ in range(rank - 1)]
        other = (1, *(1 if m else d for m, d in zip(mask, out[1:])))
        mask2 = [draw(st.booleans()) and not m for m in mask]
        full = (1, *(1 if m else d for m, d in zip(mask2, out[1:])))
    a, c = (full, other) if draw(st.booleans()) else (other, full)
    return tuple(np.broadcast_shapes(a, c)), a, c


@st.composite
def const_shapes(draw, out: tuple[int, ...]):
    """Shape of a constant operand (no batch axis unless it has the output's rank)."""
    rank = len(out)
    kind = draw(st.sampled_from(["scalar", "one", "channel", "full", "last", "batched"]))
    if kind == "scalar":
        return ()
    if kind == "one":
        return (1,)
    if kind == "channel":
        return (out[1], *([1] * (rank - 2)))
    if kind == "full":
        return tuple(out[1:])
    if kind == "last":
        return (out[-1],)
    return (1, out[1], *([1] * (rank - 2)))


def add_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    dt = frame["dtype"]
    rng = np.random.default_rng(frame["seed"])
    out, sa, sc = data.draw(add_shapes(), "shapes (out, A, B)")
    qa = data.draw(qparams(dt), "A quant")
    if data.draw(st.booleans(), "B scale near A's"):
        qb = data.draw(qparams(dt, scaled(qa.scale, -1, 1)), "B quant")
    else:
        qb = data.draw(qparams(dt), "B quant")
    if data.draw(st.integers(0, 3), "independent y scale") == 0:
        # down to 1e-8: ratios sa/sc past ~8e6 overflow int32 (the lowest code, in onnxruntime)
        qy = data.draw(qparams(dt, scales(-8, 1)), "y quant")
    else:
        qy = data.draw(qparams(dt, scaled(max(qa.scale, qb.scale), -1, 1.5)), "y quant")
    const = data.draw(st.sampled_from([None, None, "A", "B"]), "constant operand")
    b = builder(frame)
    acts: list[QAct] = []
    operands: list[QAct | QConst] = []
    for which, shape, q in (("A", sa, qa), ("B", sc, qb)):
        if which == const:
            cshape = data.draw(const_shapes(out), f"{which} constant shape")
            info = np.iinfo(dt)
            codes = rng.integers(int(info.min), int(info.max) + 1, cshape).astype(dt)
            operands.append(QConst(codes, q))
        else:
            x = b.input(shape, q)
            acts.append(x)
            operands.append(x)
    note(f"Add {style}: A {operands[0].shape} {qa}, B {operands[1].shape} {qb}, "
         f"constant {const}, y {qy}")
    b.output(qm.add(b, operands[0], operands[1], qy, style=style))
    check(b, frame, acts)


# ---- Concat -----------------------------------------------------------------------------------
def concat_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    dt = frame["dtype"]
    rank = data.draw(st.sampled_from([3, 4]), "rank")
    base = [1, *(data.draw(st.integers(1, 5)) for _ in range(rank - 1))]
    axis = data.draw(st.sampled_from([1, 1, 1, *range(2, rank), -1]), "axis")
    n = data.draw(st.integers(2, 3), "inputs")
    qy = data.draw(qparams(dt), "y quant")
    shapes, qs = [], []
    for i in range(n):
        s = list(base)
        s[axis] = data.draw(st.integers(1, 4), f"input {i} length on axis")
        shapes.append(tuple(s))
        if data.draw(st.integers(0, 3), f"input {i} uses y's params") == 0:
            qs.append(qy)
        else:
            qs.append(data.draw(qparams(dt, scaled(qy.scale, -1.5, 1.5)), f"input {i} quant"))
    note(f"Concat {style} axis {axis}: {list(zip(shapes, qs))} -> y {qy}")
    b = builder(frame)
    xs = [b.input(s, q) for s, q in zip(shapes, qs)]
    b.output(qm.concat(b, xs, qy, axis=axis, style=style))
    check(b, frame, xs)


# ---- pooling ----------------------------------------------------------------------------------
@st.composite
def pool_window(draw, nd: int, dilation: bool, ceil: bool):
    k = [draw(st.integers(1, 4)) for _ in range(nd)]
    d = [draw(st.integers(1, 2)) if dilation else 1 for _ in range(nd)]
    s = [draw(st.integers(1, 3)) for _ in range(nd)]
    p = [draw(st.integers(0, k[i % nd] - 1)) for i in range(2 * nd)]
    eff = [d[i] * (k[i] - 1) + 1 for i in range(nd)]
    size = [draw(st.integers(max(1, eff[i] - p[i] - p[nd + i]), eff[i] + 6)) for i in range(nd)]
    c = draw(st.integers(0, 1)) if ceil else 0
    return k, s, p, d, size, c


def maxpool_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    dt = frame["dtype"]
    nd = data.draw(st.sampled_from([1, 2]), "spatial dims")
    k, s, p, d, size, ceil = data.draw(pool_window(nd, True, True), "window")
    channels = data.draw(st.integers(1, 4), "channels")
    qx = data.draw(qparams(dt), "x quant")
    qy = None
    if style == "qdq" and data.draw(st.integers(0, 3), "y params differ") == 0:
        qy = data.draw(qparams(dt, scaled(qx.scale, -1, 1)), "y quant")
    note(f"MaxPool {style}: x {[1, channels, *size]} {qx}, kernel {k} strides {s} pads {p} "
         f"dilations {d} ceil {ceil}, y {qy}")
    b = builder(frame)
    x = b.input((1, channels, *size), qx)
    b.output(qm.maxpool(b, x, qy, kernel=k, strides=s, pads=p, dilations=d, ceil_mode=ceil,
                        style=style))
    check(b, frame, [x])


def avgpool_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    dt = frame["dtype"]
    nd = data.draw(st.sampled_from([1, 2]), "spatial dims")
    channels = data.draw(st.integers(1, 4), "channels")
    whole = data.draw(st.integers(0, 3), "whole-image kernel") == 0
    if whole:
        size = [data.draw(st.integers(1, 9)) for _ in range(nd)]
        k, s, p, cip = size, [data.draw(st.integers(1, 3)) for _ in range(nd)], [0] * 2 * nd, 0
        ceil = 0
    else:
        k, s, p, _, size, ceil = data.draw(pool_window(nd, False, True), "window")
        cip = data.draw(st.integers(0, 1), "count_include_pad")
    qx = data.draw(qparams(dt), "x quant")
    qy = data.draw(qparams(dt, scaled(qx.scale, -1.5, 1.5)), "y quant")
    if whole:  # onnxruntime's global kernel needs 2^-32 <= sx / (sy * n) < 256
        rescale = np.float32(np.float32(qx.scale) / np.float32(
            np.float32(qy.scale) * np.float32(math.prod(size))))
        assume(2.0 ** -32 <= rescale < 256)
    note(f"AveragePool {style}: x {[1, channels, *size]} {qx}, kernel {k} strides {s} "
         f"pads {p} count_include_pad {cip} ceil {ceil}, y {qy}")
    b = builder(frame)
    x = b.input((1, channels, *size), qx)
    b.output(qm.average_pool(b, x, qy, kernel=k, strides=s, pads=p, count_include_pad=cip,
                             ceil_mode=ceil, style=style))
    check(b, frame, [x])


def global_avgpool_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    dt = frame["dtype"]
    nd = data.draw(st.sampled_from([1, 2]), "spatial dims")
    size = [data.draw(st.integers(1, 16)) for _ in range(nd)]
    channels = data.draw(st.integers(1, 6), "channels")
    qx = data.draw(qparams(dt), "x quant")
    qy = data.draw(qparams(dt, scaled(qx.scale, -1.5, 1.5)), "y quant")
    rescale = np.float32(np.float32(qx.scale) / np.float32(
        np.float32(qy.scale) * np.float32(math.prod(size))))
    assume(2.0 ** -32 <= rescale < 256)
    note(f"GlobalAveragePool {style}: x {[1, channels, *size]} {qx}, y {qy}")
    b = builder(frame)
    x = b.input((1, channels, *size), qx)
    b.output(qm.global_average_pool(b, x, qy, style=style))
    check(b, frame, [x])


# ---- elementwise activations ------------------------------------------------------------------
def unary_case(data, style: str) -> None:
    frame = data.draw(model_frame(), "frame")
    dt = frame["dtype"]
    ops = ["Relu", "Clip", "Sigmoid", "LeakyRelu"] if style == "qdq" else list(qm.UNARY_QOP)
    op = data.draw(st.sampled_from(ops), "op")
    rank = data.draw(st.sampled_from([2, 3, 4]), "rank")
    shape = (1, *(data.draw(st.integers(1, 6)) for _ in range(rank - 1)))
    qx = data.draw(qparams(dt), "x quant")
    span = qx.scale * (qx.qmax - qx.qmin)
    kw: dict = {}
    if op == "Sigmoid":
        qy = data.draw(qparams(dt, scaled(1 / 256, -1, 1)), "y quant")
    elif op == "LeakyRelu":
        kw["alpha"] = data.draw(st.one_of(st.just(0.01), st.floats(0.0, 1.0, width=32),
                                          st.floats(-2.0, 4.0, width=32)), "alpha")
        qy = data.draw(qparams(dt, scaled(span / 256, -1, 1)), "y quant")
    else:
        qy = data.draw(qparams(dt, scaled(span / 256, -1, 1)), "y quant")
        if op == "Clip":
            lo_code = data.draw(st.one_of(st.none(), st.floats(-300, 300)), "clip min (codes)")
            hi_code = data.draw(st.one_of(st.none(), st.floats(-300, 300)), "clip max (codes)")
            if lo_code is not None and hi_code is not None and lo_code > hi_code:
                lo_code, hi_code = hi_code, lo_code
            kw["clip_min"] = None if lo_code is None else float(np.float32(
                (lo_code - qx.zero_point) * qx.scale))
            kw["clip_max"] = None if hi_code is None else float(np.float32(
                (hi_code - qx.zero_point) * qx.scale))
    note(f"{op} {style}: x {shape} {qx}, {kw}, y {qy}")
    b = builder(frame)
    x = b.input(shape, qx)
    b.output(qm.unary(b, x, op, qy, style=style, **kw))
    check(b, frame, [x])


# ---- the tests --------------------------------------------------------------------------------
CASES = {"conv": conv_case, "matmul": matmul_case, "gemm": gemm_case, "add": add_case,
         "concat": concat_case, "maxpool": maxpool_case, "avgpool": avgpool_case,
         "global_avgpool": global_avgpool_case, "unary": unary_case}
# examples per (layer, style) in the default run; the slow run multiplies by SLOW_FACTOR
EXAMPLES = {"conv": 100, "matmul": 60, "gemm": 70, "add": 100, "concat": 60, "maxpool": 60,
            "avgpool": 100, "global_avgpool": 50, "unary": 80}
SLOW_FACTOR = 20
PARAMS = [pytest.param(c, s, id=f"{c}-{s}") for c in CASES for s in qm.STYLES]


@pytest.mark.parametrize(("case", "style"), PARAMS)
def test_single_layer(case: str, style: str) -> None:
    run_property(case, style, EXAMPLES[case])


@pytest.mark.slow
@pytest.mark.parametrize(("case", "style"), PARAMS)
def test_single_layer_slow(case: str, style: str) -> None:
    run_property(case, style, EXAMPLES[case] * SLOW_FACTOR)


def run_property(case: str, style: str, examples: int) -> None:
    @settings(FAST, max_examples=examples)
    @given(data=st.data())
    def prop(data) -> None:
        CASES[case](data, style)

    prop()


# ---- regressions found by the properties above ------------------------------------------------
@pytest.mark.parametrize("dtype", ACT_TYPES)
@pytest.mark.parametrize(("style", "requant_y"), [("qdq", False), ("qdq", True), ("qop", False)])
def test_maxpool_window_entirely_in_padding(style: str, dtype, requant_y: bool) -> None:
    """kernel 2, dilation 2, pads 1 on a length-1 input: the only window touches positions -1
    and 1, both padding. onnxruntime gives the lowest code (integer MaxPool: the type's
    lowest; float MaxPool: -FLT_MAX, quantised to the output's lowest). Was: a crash
    ('left its proven type') or, with requantising Q, Q(DQ(lowest input code))."""
    q = QParams(1.0, 3, dtype)
    qy = QParams(0.5, 100, dtype) if requant_y else None
    for length in (1, 3):
        b = qm.GraphBuilder(batch="N")
        x = b.input((1, 2, length), q)
        b.output(qm.maxpool(b, x, qy, kernel=[2], pads=[1, 1], dilations=[2], style=style))
        check(b, dict(samples=3, seed=length), [x])


def test_gemm_alpha_with_bias_runs_in_float_and_is_noted() -> None:
    """A QDQ Gemm with a bias and alpha != 1 is not fused by onnxruntime (QGemm would scale
    the bias by alpha): it runs y = alpha*A*B + C in float. intflow must keep those semantics
    (bias not scaled by alpha) and note the float path. Was: bias scaled by alpha (40 vs 0)."""
    b = qm.GraphBuilder(batch="N")
    x = b.input((1, 1), QParams(1.0, -128, np.int8))
    y = qm.gemm(b, x, np.array([[89, 35, 2]], np.int8), 1.0, 0,
                np.array([-138, -115, -276], np.int32), QParams(10.0, -128, np.int8), alpha=0.5)
    b.output(y)
    work = Path(tempfile.mkdtemp(prefix="single-layer-"))
    try:
        path = work / "model.onnx"
        onnx.save(b.model(), path)
        design = intflow.compile(path)
        assert any("float" in n and "gemm" in n.lower() for n in design.graph.notes), \
            design.graph.notes
        inputs = {b.inputs[0].name: np.array([[175.5]], np.float32)}
        want = intflow.ort.run(str(path), inputs)[b.outputs[0].name]
        got = design.run(inputs)[b.outputs[0].name]
        np.testing.assert_array_equal(got, want)  # [2550, 2550, 0]: one value per output
    finally:
        shutil.rmtree(work, ignore_errors=True)
