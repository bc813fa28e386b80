"""Add (ort, dyadic) and Mul engines against ``model.run_engine``, and the fixed-point
derivation of the ort Add and of Mul against the float32 emulation.

The derivation tests sweep code pairs under random scales, power-of-two scale ratios (ties on
every other output) and scale ratios up to 2^30 (results past 2^31, which x86 turns into the
lowest code). The RTL tests run two streams, or a stream and a constant operand, with random
stalls, three inferences back to back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intflow.compiler import compile_model
from intflow.compiler.dataflow.model import run_engine
from intflow.compiler.dataflow.plan import plan
from intflow.compiler.dataflow.spec import Engine, Stream
from intflow.compiler.dtypes import IntType
from intflow.compiler.onnx.qlinearadd import _fma32, _pair
from intflow.compiler.ops.add import add_ort
from intflow.hw.engines.binary import add_ort_fixed, mul_fixed
from intflow.sim.amaranth_bench import check_engine

I8, U8, I4 = IntType(True, 8), IntType(False, 8), IntType(True, 4)
MODELS = Path(__file__).resolve().parents[3] / "examples" / "models"


def ort_attrs(sa, sb, sc, za, zb, zc, swap: bool, out: IntType) -> dict:
    """``add_attrs``'s ort constants (compiler/onnx/qlinearadd.py) for these scales."""
    ra = np.float32(np.float32(sa) / np.float32(sc))
    rb = np.float32(np.float32(sb) / np.float32(sc))
    if swap:
        fix = np.float32(np.float32(zc) - _fma32(rb, np.float32(zb), np.float32(ra * za)))
    else:
        fix = np.float32(np.float32(zc) - _fma32(ra, np.float32(za), np.float32(rb * zb)))
    return {"mode": "ort", "lo": out.min, "hi": out.max, "ra": _pair(ra), "rb": _pair(rb),
            "fix": _pair(fix), "order": "a_inner" if swap else "b_inner"}


def random_scales(rng, kind: int):
    if kind == 0:  # powers of two: ties everywhere
        return [np.float32(2.0 ** -int(rng.integers(0, 10))) for _ in range(3)]
    if kind == 1:
        return [np.float32(rng.uniform(0.001, 0.1)) for _ in range(3)]
    # a huge input scale: results far past 2^31
    return [np.float32(2.0 ** int(rng.integers(10, 30)) * rng.uniform(0.5, 1)),
            np.float32(rng.uniform(0.001, 0.1)), np.float32(rng.uniform(0.5, 1))]


def code_grid(da: IntType, db: IntType, step: int = 1):
    a, b = np.meshgrid(np.arange(da.min, da.max + 1), np.arange(db.min, db.max + 1),
                       indexing="ij")
    return a.ravel()[::step], b.ravel()[::step]


def random_add_case(rng):
    dts = [I8 if rng.random() < 0.5 else U8 for _ in range(2)]
    out = I8 if rng.random() < 0.5 else U8
    sa, sb, sc = random_scales(rng, int(rng.integers(3)))
    if rng.random() < 0.5:
        sa, sb = sb, sa
    za, zb = (int(rng.integers(d.min, d.max + 1)) for d in dts)
    zc = int(rng.integers(out.min, out.max + 1))
    return ort_attrs(sa, sb, sc, za, zb, zc, bool(rng.random() < 0.5), out), dts, out


def test_add_ort_fixed_point_equals_float32_emulation():
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(40):
        attrs, dts, _ = random_add_case(rng)
        a, b = code_grid(*dts, step=13)
        np.testing.assert_array_equal(add_ort_fixed(a, b, attrs, dts), add_ort(a, b, attrs))
        n += a.size
    assert n > 150_000


def tiny_inner_attrs(rng) -> dict:
    """a * 1/2 + inner[b] with inner values near 2^-26 and bits down to 2^-80: the inner
    table takes the floor + sticky path, and a = +-1 puts v next to the 1/2 tie, where a
    grid coarser than 2^-25 gives wrong codes (checked: 2^-24 does)."""
    return {"mode": "ort", "lo": -128, "hi": 127, "ra": [1 << 23, -24 + int(rng.integers(-1, 2))],
            "rb": [int(rng.integers(1 << 23, 1 << 24)), int(rng.integers(-56, -50))],
            "fix": [int(rng.integers(-(1 << 24) + 1, 1 << 24)), int(rng.integers(-56, -48))],
            "order": "b_inner"}


def test_add_ort_fixed_point_sticky_path():
    rng = np.random.default_rng(2)
    a, b = code_grid(I8, I8)
    for _ in range(8):
        attrs = tiny_inner_attrs(rng)
        np.testing.assert_array_equal(add_ort_fixed(a, b, attrs, [I8, I8]), add_ort(a, b, attrs))


def mul_attrs(rng, dts, out) -> dict:
    k = rng.integers(3)
    if k == 0:
        r = np.float32(2.0 ** -int(rng.integers(-4, 20)))
    elif k == 1:
        r = np.float32(rng.uniform(1e-5, 0.1))
    else:
        r = np.float32(2.0 ** int(rng.integers(-30, 30)) * rng.uniform(0.5, 1))
    za, zb = (int(rng.integers(d.min, d.max + 1)) for d in dts)
    return {"za": za, "zb": zb, "zc": int(rng.integers(out.min, out.max + 1)), "r": _pair(r),
            "lo": out.min, "hi": out.max}


def mul_engine(attrs, dts, out, constants=None, length=1) -> tuple[Engine, dict]:
    names = [n for i, n in enumerate("ab") if i not in (constants or {})]
    streams = {n: Stream(n, dts["ab".index(n)], (length,), np.arange(length)) for n in names}
    streams["c"] = Stream("c", out, (length,), np.arange(length))
    return Engine("Mul", "m.Mul", names, ["c"], {"attrs": attrs, "constants": constants or {},
                                                   "in_dtypes": dts, "out_dtype": out}), streams


def test_mul_fixed_point_equals_float32_emulation():
    rng = np.random.default_rng(1)
    for _ in range(40):
        dts = [I8 if rng.random() < 0.5 else U8 for _ in range(2)]
        out = I8 if rng.random() < 0.5 else U8
        attrs = mul_attrs(rng, dts, out)
        a, b = code_grid(*dts, step=11)
        e, _ = mul_engine(attrs, dts, out)
        want = run_engine(e, [a[None], b[None]])[0][0]
        np.testing.assert_array_equal(mul_fixed(a, b, attrs), want)


# ---- RTL ------------------------------------------------------------------------------------
def binary_engine(kind, attrs, dts, out, length, constants=None):
    constants = constants or {}
    names = [n for i, n in enumerate("ab") if i not in constants]
    streams = {n: Stream(n, dts["ab".index(n)], (length,), np.arange(length)) for n in names}
    streams["c"] = Stream("c", out, (length,), np.arange(length))
    e = Engine(kind, f"x.{kind}", names, ["c"], {"attrs": attrs, "constants": constants,
                                                 "in_dtypes": dts, "out_dtype": out})
    return e, streams


def run_binary(kind, attrs, dts, out, *, length=200, const=None, rate=0.7, seed=0):
    rng = np.random.default_rng(seed)
    constants = {}
    if const is not None:
        d = dts[const]
        constants[const] = rng.integers(d.min, d.max + 1, length)
    e, streams = binary_engine(kind, attrs, dts, out, length, constants)
    xs = [rng.integers(dts[i].min, dts[i].max + 1, (3, length)) for i in range(2)
          if i not in constants]
    return check_engine(e, streams, xs, valid_rate=rate, ready_rate=rate, seed=seed)


def example_add(stem: str, mode: str) -> tuple[Engine, dict[str, Stream]]:
    df = plan(compile_model(str(MODELS / f"{stem}.onnx"), requant=mode))
    (e,) = [e for e in df.engines if e.kind == "Add"]
    return e, df.streams


@pytest.mark.parametrize("stem", ["digits_cnn_qdq", "digits_cnn_qop"])
@pytest.mark.parametrize("mode", ["ort", "dyadic"])
def test_example_add_rtl(stem, mode):
    e, streams = example_add(stem, mode)
    rng = np.random.default_rng(3)
    xs = [rng.integers(streams[s].dtype.min, streams[s].dtype.max + 1,
                       (2, streams[s].length)) for s in e.inputs]
    check_engine(e, streams, xs, valid_rate=0.7, ready_rate=0.6, seed=3)


ADD_CASES = [  # seed of random_add_case, constant operand
    (10, None), (11, None), (12, 0), (13, 1), (14, None), (15, 1), (16, 0), (17, None),
]


@pytest.mark.parametrize("seed, const", ADD_CASES)
def test_add_ort_rtl(seed, const):
    attrs, dts, out = random_add_case(np.random.default_rng(seed))
    run_binary("Add", attrs, dts, out, const=const, seed=seed)


def test_add_ort_rtl_full_rate_and_narrow_operand():
    attrs = ort_attrs(0.25, 0.125, 0.5, 3, -2, 1, False, I8)
    run = run_binary("Add", attrs, [I4, I8], I8, rate=1.0)
    c = run.beat_cycles["o0"]
    assert c[-1] - c[0] == len(c) - 1  # one beat a cycle


def test_add_ort_rtl_sticky_path():
    rng = np.random.default_rng(6)
    attrs = tiny_inner_attrs(rng)
    e, streams = binary_engine("Add", attrs, [I8, I8], I8, 256)
    a = rng.choice([-1, 1, 3, -128, 127], (3, 256))
    b = np.tile(np.arange(-128, 128), (3, 1))
    check_engine(e, streams, [a, b], valid_rate=0.7, ready_rate=0.7, seed=6)


def test_add_dyadic_rtl_constant():
    e, _ = example_add("digits_cnn_qdq", "dyadic")
    run_binary("Add", e.params["attrs"], [I8, I8], I8, const=0, seed=4)


@pytest.mark.parametrize("seed, const", [(20, None), (21, 1), (22, None), (23, 0)])
def test_mul_rtl(seed, const):
    rng = np.random.default_rng(seed)
    dts = [I8 if rng.random() < 0.5 else U8 for _ in range(2)]
    out = I8 if rng.random() < 0.5 else U8
    run_binary("Mul", mul_attrs(rng, dts, out), dts, out, const=const, seed=seed)


def test_mul_rtl_wide_product():
    # 16-bit operands: |p| reaches 2^32, so f32(p) rounds (the first round_keep)
    i16 = IntType(True, 16)
    attrs = {"za": 5, "zb": -3, "zc": 0, "r": _pair(np.float32(1.37e-8)), "lo": -128,
             "hi": 127}
    run_binary("Mul", attrs, [i16, i16], I8, seed=5)


def test_add_rejects_wide_inner_operand():
    attrs = ort_attrs(0.25, 0.125, 0.5, 0, 0, 0, False, I8)
    e, streams = binary_engine("Add", attrs, [I8, IntType(True, 16)], I8, 4)
    from intflow.hw.engines import build
    with pytest.raises(ValueError, match="too large"):
        build(e, streams)
