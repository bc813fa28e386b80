"""The sequential ort Add (``hw/eltwise_add_serial.py``) against ``model.run_engine``: the
digits CNN's residual Add and random scales (ties, the sticky path), two streams with random
stalls and the edge vectors (``check_engine``), radix 2 and 4; and the capability check
refusing Adds whose results reach 2^31 (x86's INT32_MIN path the serial unit does not model)."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dtypes import IntType
from intflow.hw.eltwise_add_serial import AddOrtSerial, serial_add_ok
from intflow.hw.engines.binary import add_ort_plan
from intflow.hw.engines.tests.test_binary import (
    binary_engine,
    example_add,
    ort_attrs,
    random_add_case,
    tiny_inner_attrs,
)
from intflow.sim.amaranth_bench import check_engine

I8, U8 = IntType(True, 8), IntType(False, 8)


def serial_build(radix: int):
    def build(engine, streams):
        p = engine.params
        return AddOrtSerial(p["attrs"], p["in_dtypes"], p["out_dtype"], radix)
    return build


def run(attrs, dts, out, radix, *, length=96, seed=0, rate=0.7, xs=None):
    e, streams = binary_engine("Add", attrs, dts, out, length)
    rng = np.random.default_rng(seed)
    if xs is None:
        xs = [rng.integers(d.min, d.max + 1, (2, length)) for d in dts]
    return check_engine(e, streams, xs, build=serial_build(radix), valid_rate=rate,
                        ready_rate=rate, seed=seed)


@pytest.mark.parametrize("radix", [2, 4])
def test_example_add_serial(radix):
    e, streams = example_add("digits_cnn_qdq", "ort")
    rng = np.random.default_rng(5)
    xs = [rng.integers(streams[s].dtype.min, streams[s].dtype.max + 1,
                       (2, streams[s].length)) for s in e.inputs]
    check_engine(e, streams, xs, build=serial_build(radix), valid_rate=0.7, ready_rate=0.6,
                 seed=5)


@pytest.mark.parametrize("seed", [10, 11, 14, 17, 20, 21])
def test_random_add_serial(seed):
    attrs, dts, out = random_add_case(np.random.default_rng(seed))
    plan = add_ort_plan(attrs, dts)
    if not serial_add_ok(plan, dts, attrs["lo"], attrs["hi"]):
        with pytest.raises(ValueError, match="serial unit cannot"):
            AddOrtSerial(attrs, dts, out)
        return
    run(attrs, dts, out, 2 + 2 * (seed % 2), seed=seed)


def test_ties_and_sticky_path_serial():
    # power-of-two scales: every other output a tie
    run(ort_attrs(0.25, 0.125, 0.5, 3, -2, 1, False, I8), [U8, I8], I8, 2, seed=1)
    rng = np.random.default_rng(6)
    attrs = tiny_inner_attrs(rng)
    a = rng.choice([-1, 1, 3, -128, 127], (2, 256))
    b = np.tile(np.arange(-128, 128), (2, 1))
    run(attrs, [I8, I8], I8, 4, length=256, seed=6, rate=0.8, xs=[a, b])


def test_refuses_int32_overflow():
    attrs = ort_attrs(2.0 ** 28, 0.01, 0.5, 0, 0, 0, False, I8)
    assert not serial_add_ok(add_ort_plan(attrs, [I8, I8]), [I8, I8], -128, 127)
    with pytest.raises(ValueError, match="serial unit cannot"):
        AddOrtSerial(attrs, [I8, I8], I8)


def test_plan_makes_the_digits_add_serial_within_the_ii():
    """fold min: the residual Add (256 words) goes serial without changing the II, the cycle
    model is an upper bound of the unit's worst case, and the estimate drops its DSP-free
    rounding datapath (fewer LUT/FF than the pipelined Add)."""
    import copy

    from intflow.compiler.dataflow.estimate import engine_cost
    from intflow.compiler.dataflow.fold import (
        apply_fold,
        engine_cycles,
        initiation_interval,
        serial_add_cycles,
    )
    from intflow.hw.engines.tests.harness import example_plan

    df = copy.deepcopy(example_plan("digits_cnn_qdq"))
    apply_fold(df, "min", serial_requant=False)
    ii = initiation_interval(df)
    (e,) = [e for e in df.engines if e.kind == "Add"]
    pipelined = engine_cost(e, df, "ice40")
    apply_fold(df, "min")
    assert e.params["style"] == "serial" and initiation_interval(df) == ii
    assert engine_cycles(e, df) == 256 * serial_add_cycles(e.params["radix"]) <= ii
    p = e.params
    unit = AddOrtSerial(p["attrs"], p["in_dtypes"], p["out_dtype"], p["radix"])
    unit._MustUse__silence = True
    assert unit.cycles_per_beat <= serial_add_cycles(p["radix"])
    serial = engine_cost(e, df, "ice40")
    assert serial["LUT"] < pipelined["LUT"] and serial["FF"] < pipelined["FF"]
    assert serial["BRAM"] == pipelined["BRAM"]
