"""EltwiseAddDyadic against the compiler's Add kernel (``add_dyadic``), its attributes made
by the compiler's own ``add_attrs`` from random scales, and on an example model's Add node."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth import Shape

from intflow.compiler import f32
from intflow.compiler.dtypes import IntType
from intflow.compiler.ir import QuantParams
from intflow.compiler.onnx.qlinearadd import add_attrs
from intflow.compiler.ops.add import add_dyadic, add_ort
from intflow.hw.eltwise_add import EltwiseAddDyadic, EltwiseAddOrt, eltwise_add_from_ir
from intflow.hw.testbench import pack, run_stream, unpack


def compiler_attrs(mode, scales, zps, dtype):
    def err(msg):
        return ValueError(msg)
    imp = SimpleNamespace(requant=mode, error=err)
    qs = [QuantParams(np.float32(s), np.int64(z), dtype) for s, z in zip(scales, zps,
                                                                          strict=True)]
    return add_attrs(imp, *qs, (1, 8), (1, 8))


def stream_add(dut, a, b, **kw):
    words = pack(dut.i.payload.shape(), {"a": a, "b": b})
    run = run_stream(dut, list(words), len(a), **kw)
    return unpack(dut.o.payload.shape(), run.words)["y"]


@pytest.mark.parametrize("seed", range(4))
def test_random_scales(seed):
    rng = np.random.default_rng(seed)
    dtype = IntType(seed % 2 == 0, 8)
    scales = 10.0 ** rng.uniform(-3, 0, 3)
    scales[2] = (scales[0] + scales[1]) * rng.uniform(0.3, 1.5)  # outputs not all saturated
    zps = rng.integers(dtype.min, dtype.max + 1, 3)
    attrs = compiler_attrs("dyadic", scales, zps, dtype)
    shape = Shape(8, dtype.signed)
    dut = EltwiseAddDyadic(shape, shape, attrs)
    a = rng.integers(dtype.min, dtype.max + 1, 3000)
    b = rng.integers(dtype.min, dtype.max + 1, 3000)
    y = stream_add(dut, a, b, valid_rate=0.8, ready_rate=0.8, seed=seed)
    ref = add_dyadic(a, b, attrs)
    np.testing.assert_array_equal(y, ref)
    assert len(np.unique(ref)) > 20


@pytest.mark.slow
def test_every_code_pair():
    rng = np.random.default_rng(9)
    dtype = IntType(True, 8)
    attrs = compiler_attrs("dyadic", [0.05, 0.013, 0.04], rng.integers(-128, 128, 3), dtype)
    a, b = (v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))
    dut = EltwiseAddDyadic(Shape(8, True), Shape(8, True), attrs)
    np.testing.assert_array_equal(stream_add(dut, a, b), add_dyadic(a, b, attrs))


def test_example_model_add(digits_cnn):
    g, env = digits_cnn("dyadic")
    node = next(n for n in g.nodes if n.op == "Add")
    dut = eltwise_add_from_ir(g, node)
    a, b = env[node.inputs[0]].ravel(), env[node.inputs[1]].ravel()
    y = stream_add(dut, a[:1500], b[:1500])
    np.testing.assert_array_equal(y, env[node.outputs[0]].ravel()[:1500])


# ---- ort (QLinearAdd fma chain) -------------------------------------------------------------
def ort_attrs(rng, dtype, order):
    scales = 10.0 ** rng.uniform(-3, 0, 3)
    scales[2] = (scales[0] + scales[1]) * rng.uniform(0.3, 1.5)
    zps = rng.integers(dtype.min, dtype.max + 1, 3)
    # A broadcast along the innermost axis makes onnxruntime nest the fma the other way
    a_shape = (1, 8, 1) if order == "a_inner" else (1, 8, 4)
    def err(msg):
        return ValueError(msg)
    imp = SimpleNamespace(requant="ort", error=err)
    qs = [QuantParams(np.float32(s), np.int64(z), dtype) for s, z in zip(scales, zps,
                                                                          strict=True)]
    attrs = add_attrs(imp, *qs, a_shape, (1, 8, 4))
    assert attrs["order"] == order
    return attrs


def _pair(x) -> list[int]:
    v = f32.from_float32(np.asarray(x, np.float32))
    return [int(v.m), int(v.e)]


def rival_outputs(attrs, a, b):
    """Outputs of formulas the hardware must not fall back to: the other fma nesting, no fma
    (products and sums rounded separately), and the outer sum not rounded to float32 before
    ``rint``."""
    ra, rb, fix = (f32.F32(np.int64(attrs[k][0]), np.int64(attrs[k][1]))
                   for k in ("ra", "rb", "fix"))
    fa, fb = f32.from_int(a), f32.from_int(b)
    lo, hi = attrs["lo"], attrs["hi"]
    out = [np.clip(f32.cvt(v), lo, hi) for v in (
        f32.fma(fb, rb, f32.fma(fa, ra, fix)), f32.fma(fa, ra, f32.fma(fb, rb, fix)),
        f32.add(f32.mul(fa, ra), f32.add(f32.mul(fb, rb), fix)))]
    if attrs["order"] == "b_inner":
        inner, lin, r = f32.fma(fb, rb, fix), a, ra
    else:
        inner, lin, r = f32.fma(fa, ra, fix), b, rb
    exact = [_rint_exact(int(x) * int(r.m), int(r.e), int(m), int(e))
             for x, m, e in zip(lin, inner.m, inner.e, strict=True)]
    out.append(np.clip(np.array(exact), lo, hi))
    return out


def _rint_exact(m1: int, e1: int, m2: int, e2: int) -> int:
    """rint(m1 * 2^e1 + m2 * 2^e2), ties to even, in integers."""
    g = min(e1, e2)
    n = (m1 << (e1 - g)) + (m2 << (e2 - g))
    if g >= 0:
        return n << g
    q, r = divmod(n, 1 << -g)
    half = 1 << (-g - 1)
    return q + (r > half or (r == half and q & 1))


# float32 constants with bits just above 2^-23 relative: outer sums land on and next to .5
TIE_ATTRS = [(0.5 + 2.0**-23, 0.5, 0.0), (0.75 + 2.0**-22, 0.5 + 2.0**-23, -37.5)]


@pytest.mark.parametrize("order", ["b_inner", "a_inner"])
@pytest.mark.parametrize("ra, rb, fix", TIE_ATTRS)
def test_ort_add_ties_and_rivals(ra, rb, fix, order):
    attrs = {"mode": "ort", "ra": _pair(ra), "rb": _pair(rb), "fix": _pair(fix),
             "order": order, "lo": -128, "hi": 127}
    a, b = (v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))
    true = add_ort(a, b, attrs)
    keep = np.zeros(len(a), bool)
    told = []
    for rival in rival_outputs(attrs, a, b):
        idx = np.nonzero(rival != true)[0]
        told.append(len(idx))
        keep[idx[:400]] = True
    # the unrounded outer sum and at least one fma rival are told apart by these pairs
    assert told[-1] >= 20 and sum(t > 0 for t in told[:-1]) >= 1
    rng = np.random.default_rng(1)
    keep[rng.integers(0, len(a), 500)] = True
    dut = EltwiseAddOrt(Shape(8, True), Shape(8, True), attrs)
    y = stream_add(dut, a[keep], b[keep], valid_rate=0.8, ready_rate=0.8)
    np.testing.assert_array_equal(y, true[keep])


@pytest.mark.parametrize("order", ["b_inner", "a_inner"])
@pytest.mark.parametrize("signed_codes", [True, False])
def test_ort_add_random_scales(order, signed_codes):
    rng = np.random.default_rng(int(signed_codes) * 2 + (order == "a_inner"))
    dtype = IntType(signed_codes, 8)
    attrs = ort_attrs(rng, dtype, order)
    shape = Shape(8, signed_codes)
    dut = EltwiseAddOrt(shape, shape, attrs)
    a = rng.integers(dtype.min, dtype.max + 1, 2000)
    b = rng.integers(dtype.min, dtype.max + 1, 2000)
    ref = add_ort(a, b, attrs)
    np.testing.assert_array_equal(stream_add(dut, a, b), ref)
    assert len(np.unique(ref)) > 20


def test_ort_add_overflow_gives_the_lowest_code():
    # a scale ratio of 10^8: |v| >= 2^31 from |a| >= 22 on, where cvt gives INT32_MIN
    rng = np.random.default_rng(5)
    dtype = IntType(True, 8)
    def err(msg):
        return ValueError(msg)
    imp = SimpleNamespace(requant="ort", error=err)
    qs = [QuantParams(np.float32(s), np.int64(z), dtype)
          for s, z in ((1.0, 0), (0.5, 3), (1e-8, 0))]
    attrs = add_attrs(imp, *qs, (1, 8), (1, 8))
    dut = EltwiseAddOrt(Shape(8, True), Shape(8, True), attrs)
    a = rng.integers(-128, 128, 600)
    b = rng.integers(-128, 128, 600)
    ref = add_ort(a, b, attrs)
    assert np.sum((ref == -128) & (a > 30) & (b > 0)) > 50  # positive, yet the lowest code
    np.testing.assert_array_equal(stream_add(dut, a, b), ref)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["b_inner", "a_inner"])
def test_ort_add_every_code_pair(order):
    rng = np.random.default_rng(17)
    dtype = IntType(False, 8)
    attrs = ort_attrs(rng, dtype, order)
    a, b = (v.ravel() for v in np.meshgrid(np.arange(256), np.arange(256)))
    dut = EltwiseAddOrt(Shape(8, False), Shape(8, False), attrs)
    np.testing.assert_array_equal(stream_add(dut, a, b), add_ort(a, b, attrs))


def test_example_model_add_ort(digits_cnn):
    g, env = digits_cnn("ort")
    node = next(n for n in g.nodes if n.op == "Add")
    dut = eltwise_add_from_ir(g, node)
    assert isinstance(dut, EltwiseAddOrt)
    a, b = env[node.inputs[0]].ravel(), env[node.inputs[1]].ravel()
    y = stream_add(dut, a[:1500], b[:1500])
    np.testing.assert_array_equal(y, env[node.outputs[0]].ravel()[:1500])
