"""Requant / Lut / Clamp engines against ``run_engine``, with stalls, 2+ inferences."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler import requant as rq
from intflow.compiler.dataflow.spec import Engine
from intflow.compiler.dtypes import IntType
from intflow.hw.engines.tests.harness import (
    check,
    example_engines,
    random_codes,
    stream,
)
from intflow.hw.requant import ORT_STAGES

I8, U8 = IntType(True, 8), IntType(False, 8)


def requant_params(rng, mode: str, channels: int, zp: int, lo: int, hi: int) -> dict:
    reals = rng.uniform(0.002, 0.05, channels).astype(np.float32)
    if mode == "ort":
        mult, exp = rq.ort_multiplier(reals)
    else:
        pairs = [rq.dyadic_multiplier(float(r)) for r in reals]
        mult = np.array([a for a, _ in pairs])
        exp = np.array([b for _, b in pairs])
    return {"mode": mode, "mult": mult, "exp": exp, "zero_point": zp, "lo": lo, "hi": hi}


def elementwise(kind: str, x_dtype: IntType, y_dtype: IntType, length: int,
                **params) -> tuple[Engine, dict]:
    streams = {"x": stream("x", x_dtype, length), "y": stream("y", y_dtype, length)}
    return Engine(kind, f"t.{kind}", ["x"], ["y"], params), streams


@pytest.mark.parametrize("mode", ["ort", "dyadic"])
@pytest.mark.parametrize("channels, stride", [(1, 1), (4, 1), (3, 5), (6, 2)])
def test_requant(mode, channels, stride):
    rng = np.random.default_rng(channels * 10 + stride)
    acc = IntType(True, 14)
    p = requant_params(rng, mode, channels, -5, -128, 127)
    length = channels * stride * 3
    e, s = elementwise("Requant", acc, I8, length, channels=channels, channel_stride=stride,
                       in_dtype=acc, out_dtype=I8, **p)
    x = random_codes(rng, acc, (3, length))
    check(e, s, x, valid_rate=0.6, ready_rate=0.5, seed=1)


def test_requant_relu_narrower_output_range():
    rng = np.random.default_rng(7)
    acc = IntType(False, 12)
    p = requant_params(rng, "ort", 4, 3, 3, 100)  # code range [3, 100] in a uint8 stream
    e, s = elementwise("Requant", acc, U8, 32, channels=4, channel_stride=2, in_dtype=acc,
                       out_dtype=U8, **p)
    check(e, s, random_codes(rng, acc, (2, 32)), valid_rate=0.7, ready_rate=0.7)


@pytest.mark.parametrize("mode", ["ort", "dyadic"])
def test_requant_of_example_model(mode):
    from intflow.compiler import compile_model
    from intflow.compiler.dataflow.plan import plan
    from intflow.hw.engines.tests.harness import EXAMPLES
    df = plan(compile_model(str(EXAMPLES / "digits_cnn_qdq.onnx"), requant=mode))
    (e,) = [e for e in df.engines if e.kind == "Requant"]
    rng = np.random.default_rng(3)
    x = random_codes(rng, df.streams[e.inputs[0]].dtype, (3, df.streams[e.inputs[0]].length))
    check(e, df.streams, x, valid_rate=0.5, ready_rate=0.6)


@pytest.mark.parametrize("in_dtype, out_dtype, rows", [(I8, I8, 1), (U8, I8, 3),
                                                       (IntType(True, 4), U8, 1)])
def test_lut(in_dtype, out_dtype, rows):
    rng = np.random.default_rng(rows)
    entries = in_dtype.max - in_dtype.min + 1
    table = random_codes(rng, out_dtype, (rows, entries))
    channels, stride = (rows, 2) if rows > 1 else (1, 1)
    length = 24
    e, s = elementwise("Lut", in_dtype, out_dtype, length, table=table, x_min=in_dtype.min,
                       in_dtype=in_dtype, out_dtype=out_dtype, channels=channels,
                       channel_stride=stride)
    check(e, s, random_codes(rng, in_dtype, (3, length)), valid_rate=0.6, ready_rate=0.5)


@pytest.mark.parametrize("dtype, lo, hi", [(I8, -20, 37), (U8, 0, 6), (IntType(True, 16), -128,
                                                                          127)])
def test_clamp(dtype, lo, hi):
    rng = np.random.default_rng(lo + 1000)
    out = IntType.fit(lo, hi) if dtype.bits > 8 else dtype
    e, s = elementwise("Clamp", dtype, out, 40, lo=lo, hi=hi, dtype=out)
    x = random_codes(rng, dtype, (3, 40))
    x[:, :3] = [dtype.min, dtype.max, lo]
    check(e, s, x, valid_rate=0.5, ready_rate=0.5)


def test_requant_full_rate_latency():
    """With no stalls a word goes in and out every cycle."""
    rng = np.random.default_rng(0)
    acc = IntType(True, 20)
    p = requant_params(rng, "ort", 2, 0, -128, 127)
    e, s = elementwise("Requant", acc, I8, 100, channels=2, channel_stride=1, in_dtype=acc,
                       out_dtype=I8, **p)
    r = check(e, s, random_codes(rng, acc, (2, 100)))
    assert r.cycles <= 200 + ORT_STAGES + 2


def test_example_plan_has_requant():
    assert example_engines("digits_cnn_qdq", "Requant")
