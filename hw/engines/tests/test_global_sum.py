"""GlobalSum engine against ``run_engine``: stalls, several inferences back to back."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dataflow.spec import Engine
from intflow.compiler.dtypes import IntType
from intflow.hw.engines.tests.harness import check, example_engines, random_codes, stream


def sum_type(dtype: IntType, pixels: int, zp: int) -> IntType:
    return IntType.fit(pixels * min(dtype.min - zp, 0), pixels * max(dtype.max - zp, 0))


@pytest.mark.parametrize("dtype, pixels, channels, zp", [
    (IntType(True, 8), 6, 3, -128),
    (IntType(True, 8), 5, 2, 7),  # signed sums
    (IntType(False, 8), 4, 1, 0),  # one channel: read-after-write every cycle
    (IntType(False, 4), 1, 4, 3),  # one pixel
])
def test_global_sum(dtype, pixels, channels, zp):
    rng = np.random.default_rng(pixels * 100 + channels)
    out = sum_type(dtype, pixels, zp)
    length = pixels * channels
    streams = {"x": stream("x", dtype, length), "y": stream("y", out, channels)}
    e = Engine("GlobalSum", "t.GlobalSum", ["x"], ["y"],
               {"channels": channels, "pixels": pixels, "zero_point": zp, "in_dtype": dtype,
                "out_dtype": out})
    x = random_codes(rng, dtype, (4, length))
    x[0] = dtype.max
    x[1] = dtype.min
    check(e, streams, x, valid_rate=0.6, ready_rate=0.5, seed=pixels)


@pytest.mark.parametrize("stem", ["digits_cnn_qdq", "digits_cnn_qop"])
def test_global_sum_of_example(stem):
    (e, streams), = example_engines(stem, "GlobalSum")
    x_stream = streams[e.inputs[0]]
    rng = np.random.default_rng(6)
    x = random_codes(rng, x_stream.dtype, (3, x_stream.length))
    x[0] = x_stream.dtype.max
    check(e, streams, x, valid_rate=0.7, ready_rate=0.6)
