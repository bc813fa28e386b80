"""The ``ort`` requant (``requant_ort`` with ``ort_multiplier``) held to onnxruntime, exactly, on
random (accumulator, multiplier) pairs.

The pairs come from one-node models run by onnxruntime (ORT_ENABLE_ALL +
``session.qdqisint8allowed=1``):

- QLinearConv, 1-D, one input channel, kernel 1, per-channel weight scales and an int32 bias:
  ``acc[c, l] = bias[c] + d[c] * (x[l] - zx)`` with ``d[c] = w[c] - zw = ±1`` and x running
  over all 256 codes, so each output channel sees 256 consecutive accumulators placed by its
  bias. Channels are placed at random outputs, next to rounding ties (``acc * M`` within a few
  float32 ulps of ``k + 0.5``: the best of many ``k``), next to the saturation boundaries, far
  past them, and at the ends of the int32 range. ``M[c] = f32(f32(sx * sw[c]) / sy)``
  (ORT_KERNELS.md §3) with scales log-uniform over many decades, or powers of two and short
  mantissas so that exact ties occur.
- QLinearMatMul with random codes and per-column b scales (ordinary accumulators).

Zero points: a quarter of them at the ends / middle of their range (0, 255, 128 / -128, 127,
0). Output types uint8 and int8 (QLinearConv/QLinearMatMul's output type is the activation's).
Where int8 weights meet uint8 activations the truth is the u8×u8 oracle model, which is exact on
every CPU (onnxruntime's u8×s8 kernel saturates on AVX2 CPUs without VNNI).

Each element is checked twice: ``requant_ort(acc, *ort_multiplier(M), zy, lo, hi)`` computed
here from the exact accumulator, and the whole model through ``compile_model`` +
``reference.run``; both must equal onnxruntime on every element.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from ortcheck import assert_exact, exact_truth, save_model

from intflow.compiler import compile_model, reference
from intflow.compiler.requant import ort_multiplier, requant_ort

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ONNX_T = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8}
# (activation and output type, weight type): the combinations onnxruntime implements
COMBOS = [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]
STYLES = ("loguniform", "dyadic")


def _range(dt) -> tuple[int, int]:
    i = np.iinfo(dt)
    return int(i.min), int(i.max)


def _zero_point(rng, dt) -> int:
    lo, hi = _range(dt)
    if rng.random() < 0.25:
        return int(rng.choice([lo, hi, (lo + hi + 1) // 2]))
    return int(rng.integers(lo, hi + 1))


def _loguniform(rng, lo_exp, hi_exp, size=None):
    return (10.0 ** np.asarray(rng.uniform(lo_exp, hi_exp, size))).astype(np.float32)


def _multiplier(sx, sw, sy) -> np.ndarray:
    """onnxruntime's per-channel requant multiplier, M = f32(f32(sx * sw) / sy)."""
    return ((np.float32(sx) * np.asarray(sw, np.float32)).astype(np.float32)
            / np.float32(sy)).astype(np.float32)


def _exact(m: np.float32) -> tuple[int, int]:
    """M = mant * 2**exp exactly (Python ints)."""
    mant, exp = ort_multiplier(np.asarray([m], np.float32))
    return int(mant[0]), int(exp[0])


def _tie_distance(acc: int, k: int, mant: int, exp: int) -> float:
    """|acc * M - (k + 0.5)| in units of the float32 ulp at k + 0.5 (a float, for ranking)."""
    # acc * mant * 2**exp - (2k + 1) / 2, scaled by 2**s to stay integral
    s = max(-exp, 1)
    num = abs(acc * mant * (1 << (s + exp)) - (2 * k + 1) * (1 << (s - 1)))
    half = abs(k + 0.5)
    ulp_exp = (int(np.floor(np.log2(half))) if half >= 2.0 ** -126 else -126) - 23
    return num / 2.0 ** (s + ulp_exp)


def _near_tie(rng, m: np.float32, ks: np.ndarray) -> int:
    """Of the accumulators nearest (k + 0.5) / M for k in ks, the one closest to its tie."""
    mant, exp = _exact(m)
    best, best_d = 0, np.inf
    for k in ks.tolist():
        c = round((k + 0.5) / float(m))
        for acc in (c - 1, c, c + 1):
            if not INT32_MIN + 512 <= acc <= INT32_MAX - 512:
                continue
            d = _tie_distance(acc, k, mant, exp)
            if d < best_d:
                best, best_d = acc, d
    return best


def _place(rng, m: np.float32, zy: int, lo: int, hi: int) -> int:
    """A centre accumulator for one channel (its window is the 256 values next to it)."""
    kind = rng.choice(["random", "tie", "tie", "boundary", "far", "int32_end"],
                      p=[0.25, 0.2, 0.15, 0.2, 0.1, 0.1])
    if kind == "random":
        v = rng.uniform(lo - zy - 20, hi - zy + 20)
        acc = int(round(v / float(m)))
    elif kind == "tie":  # acc * M next to k + 0.5 inside the output range
        ks = rng.integers(lo - zy - 1, hi - zy + 1, size=48)
        acc = _near_tie(rng, m, ks)
    elif kind == "boundary":  # ties at the saturation boundaries
        ks = np.array([hi - zy, lo - zy - 1, hi - zy - 1, lo - zy])
        acc = _near_tie(rng, m, ks)
    elif kind == "far":  # well past saturation, any magnitude
        v = float(rng.choice([-1, 1])) * 10.0 ** rng.uniform(2.5, 12)
        acc = int(np.clip(v / float(m), INT32_MIN, INT32_MAX))
    else:
        acc = int(rng.choice([INT32_MIN, INT32_MAX]))
    return int(np.clip(acc, INT32_MIN + 512, INT32_MAX - 512))


def _scales(rng, style: str, c: int):
    if style == "loguniform":  # M over ~15 decades
        sx = _loguniform(rng, -4, 1)
        sy = _loguniform(rng, -4, 1)
        sw = _loguniform(rng, -5, 0, c)
    else:  # powers of two and short mantissas: M = j / 2**p exactly, exact ties occur
        sx = np.float32(2.0 ** int(rng.integers(-12, 3)))
        sy = np.float32(2.0 ** int(rng.integers(-8, 6)))
        sw = (rng.integers(1, 64, c) * 2.0 ** rng.integers(-20, -2, c)).astype(np.float32)
    return np.float32(sx), sw.astype(np.float32), np.float32(sy)


def conv_case(rng, xt, wt, style: str, channels: int):
    """A QLinearConv model whose accumulators are placed through the bias; returns the model,
    its input, the exact accumulators (C, 256) and the requant parameters."""
    xt, wt = np.dtype(xt), np.dtype(wt)
    xlo, xhi = _range(xt)
    wlo, whi = _range(wt)
    zx, zy = _zero_point(rng, xt), _zero_point(rng, xt)
    zw = _zero_point(rng, wt)
    d = rng.choice([-1, 1], channels)
    d = np.where(zw + d > whi, -1, np.where(zw + d < wlo, 1, d))
    sx, sw, sy = _scales(rng, style, channels)
    m = _multiplier(sx, sw, sy)
    bias = np.array([_place(rng, m[c], zy, xlo, xhi) for c in range(channels)], np.int64)
    x = np.arange(xlo, xhi + 1, dtype=np.int64)
    acc = bias[:, None] + d[:, None] * (x[None, :] - zx)
    assert acc.min() >= INT32_MIN and acc.max() <= INT32_MAX

    w = (zw + d).astype(wt).reshape(channels, 1, 1)
    inits = [
        numpy_helper.from_array(np.array(sx, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(zx, xt), "x_zero_point"),
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(sw, "w_scale"),
        numpy_helper.from_array(np.array(zw, wt), "w_zero_point"),
        numpy_helper.from_array(np.array(sy, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(zy, xt), "y_zero_point"),
        numpy_helper.from_array(bias.astype(np.int32), "bias"),
    ]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero_point", "w", "w_scale",
                                            "w_zero_point", "y_scale", "y_zero_point", "bias"],
                            ["y"], name="qconv", kernel_shape=[1])
    graph = helper.make_graph([node], "requant_conv",
                              [helper.make_tensor_value_info("x", ONNX_T[xt], [1, 1, x.size])],
                              [helper.make_tensor_value_info("y", ONNX_T[xt],
                                                             [1, channels, x.size])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, {"x": x.astype(xt).reshape(1, 1, -1)}, acc, m, zy, _range(xt)


def matmul_case(rng, at, bt, style: str, rows: int = 64, cols: int = 32):
    """A QLinearMatMul model with random codes and per-column b scales."""
    at, bt = np.dtype(at), np.dtype(bt)
    alo, ahi = _range(at)
    blo, bhi = _range(bt)
    k = int(rng.integers(1, 300))
    za, zy, zb = _zero_point(rng, at), _zero_point(rng, at), _zero_point(rng, bt)
    a = rng.integers(alo, ahi + 1, (rows, k))
    b = rng.integers(blo, bhi + 1, (k, cols))
    acc = (a - za) @ (b - zb)
    sa, sb, _ = _scales(rng, style, cols)
    spread = max(float(np.abs(acc).mean()), 1.0)
    # output scale so that acc * M spans a few to a few thousand codes (saturating some)
    sy = np.float32(float(sa) * float(np.median(sb)) * spread / 10.0 ** rng.uniform(0, 3.5))
    m = _multiplier(sa, sb, sy)
    inits = [
        numpy_helper.from_array(np.array(sa, np.float32), "a_scale"),
        numpy_helper.from_array(np.array(za, at), "a_zero_point"),
        numpy_helper.from_array(b.astype(bt), "b"),
        numpy_helper.from_array(sb, "b_scale"),
        numpy_helper.from_array(np.array(zb, bt), "b_zero_point"),
        numpy_helper.from_array(np.array(sy, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(zy, at), "y_zero_point"),
    ]
    node = helper.make_node("QLinearMatMul", ["a", "a_scale", "a_zero_point", "b", "b_scale",
                                              "b_zero_point", "y_scale", "y_zero_point"],
                            ["y"], name="qmatmul")
    graph = helper.make_graph([node], "requant_matmul",
                              [helper.make_tensor_value_info("a", ONNX_T[at], [rows, k])],
                              [helper.make_tensor_value_info("y", ONNX_T[at], [rows, cols])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    # acc is (rows, cols), M along the last axis: transpose to (cols, rows) like the conv case
    return model, {"a": a.astype(at)}, acc.T, m, zy, _range(at), True


def rivals(acc, m) -> dict[str, np.ndarray]:
    """Formulas that differ from onnxruntime's only near ties: if the inputs could not tell
    them apart, exact agreement of requant_ort would prove little."""
    m = m[:, None]
    p32 = (acc.astype(np.float32) * m).astype(np.float32)
    return {
        # real-number product (float64: 53 bits), round half even
        "real": np.rint(acc * m.astype(np.float64)),
        # onnxruntime's float32 product, rounded half away from zero (gemmlowp-style)
        "half_away": np.sign(p32) * np.floor(np.abs(p32.astype(np.float64)) + 0.5),
        # acc not rounded to float32 first: the product rounded to float32 once
        "acc_unrounded": np.rint((acc * m.astype(np.float64)).astype(np.float32)),
    }


def check(model, feeds, acc, m, zy, out_range, tmp_path, name, transposed=False,
          missed=None) -> int:
    """requant_ort and the compiled model against onnxruntime; returns elements compared.
    ``missed`` (a dict) accumulates how many elements each rival formula gets wrong."""
    lo, hi = out_range
    truth = exact_truth(model, feeds, batched=False)["y"]
    want = truth.T if transposed else truth.reshape(acc.shape)
    mant, exp = ort_multiplier(m)
    y = requant_ort(acc, mant[:, None], exp[:, None], zy, lo, hi)
    assert_exact(y.astype(want.dtype), want, f"{name}: requant_ort vs onnxruntime")
    if missed is not None:
        for k, v in rivals(acc, m).items():
            missed[k] = missed.get(k, 0) + int(np.sum(np.clip(v + zy, lo, hi) != want))

    path = save_model(model, tmp_path, name)
    g = compile_model(path)
    inp = {k: v if v.shape[0] == 1 else v[None] for k, v in feeds.items()}
    got = reference.run(g, inp)["y"]
    got = got.reshape(truth.shape)
    assert_exact(got, truth, f"{name}: compiled model vs onnxruntime")
    return int(want.size)


def run_sweep(seed: int, models_per_combo: int, channels: int, tmp_path,
              missed: dict[str, int]) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    counts = {"conv": 0, "matmul": 0}
    for i in range(models_per_combo):
        for xt, wt in COMBOS:
            for style in STYLES:
                name = f"conv_{np.dtype(xt)}_{np.dtype(wt)}_{style}_{seed}_{i}"
                model, feeds, acc, m, zy, rg = conv_case(rng, xt, wt, style, channels)
                counts["conv"] += check(model, feeds, acc, m, zy, rg, tmp_path, name,
                                        missed=missed)
            name = f"matmul_{np.dtype(xt)}_{np.dtype(wt)}_{seed}_{i}"
            model, feeds, acc, m, zy, rg, tr = matmul_case(rng, xt, wt, "loguniform")
            counts["matmul"] += check(model, feeds, acc, m, zy, rg, tmp_path, name, tr,
                                      missed=missed)
    return counts


def test_tie_placement_reaches_ties():
    """The generator really puts accumulators within a few ulps of k + 0.5."""
    rng = np.random.default_rng(1)
    close = 0
    for _ in range(200):
        m = _loguniform(rng, -10, -4)
        acc = _near_tie(rng, m, rng.integers(-200, 200, 48))
        mant, exp = _exact(m)
        k = int(np.floor(acc * float(m)))
        close += _tie_distance(acc, k, mant, exp) <= 4
    assert close >= 100, close


def test_requant_ort_matches_onnxruntime(tmp_path):
    missed: dict[str, int] = {}
    counts = run_sweep(seed=0, models_per_combo=1, channels=40, tmp_path=tmp_path,
                       missed=missed)
    total = sum(counts.values())
    print(f"requant ort vs onnxruntime: {total} elements equal ({counts}); rival formulas "
          f"miss {missed}")
    assert total >= 10**4
    # the cases separate onnxruntime's formula from its rivals (each misses some elements)
    assert all(v > 0 for v in missed.values()), missed


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 5))
def test_requant_ort_matches_onnxruntime_sweep(seed, tmp_path):
    missed: dict[str, int] = {}
    counts = run_sweep(seed=seed, models_per_combo=4, channels=64, tmp_path=tmp_path,
                       missed=missed)
    total = sum(counts.values())
    print(f"seed {seed}: {total} elements equal ({counts}); rival formulas miss {missed}")
    assert total >= 2.5 * 10**5  # four seeds: >= 10^6 in all
    assert all(v > 0 for v in missed.values()), missed
