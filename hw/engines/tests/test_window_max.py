"""WindowMax engine against ``run_engine``: stalls, several inferences back to back."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dataflow.spec import Engine
from intflow.compiler.dtypes import IntType
from intflow.hw.engines.tests.harness import check, example_engines, random_codes, stream


@pytest.mark.parametrize("dtype, rows, window, channels", [
    (IntType(True, 8), 5, 4, 3),
    (IntType(False, 8), 4, 3, 1),  # one channel: read-after-write every cycle
    (IntType(True, 5), 3, 1, 2),  # window of one tap
    (IntType(False, 3), 6, 2, 2),
])
def test_window_max(dtype, rows, window, channels):
    rng = np.random.default_rng(rows * 100 + window * 10 + channels)
    length = rows * window * channels
    streams = {"x": stream("x", dtype, length), "y": stream("y", dtype, rows * channels)}
    e = Engine("WindowMax", "t.WindowMax", ["x"], ["y"],
               {"rows": rows, "window": window, "channels": channels, "dtype": dtype})
    x = random_codes(rng, dtype, (3, length))
    x[0, :window * channels] = dtype.min  # a row at the bottom of the range
    check(e, streams, x, valid_rate=0.6, ready_rate=0.5, seed=rows)
    r = check(e, streams, x)
    assert r.cycles <= 3 * length + 4  # a word per cycle


@pytest.mark.parametrize("stem", ["digits_cnn_qdq", "digits_cnn_qop"])
def test_window_max_of_example(stem):
    (e, streams), = example_engines(stem, "WindowMax")
    x_stream = streams[e.inputs[0]]
    rng = np.random.default_rng(5)
    check(e, streams, random_codes(rng, x_stream.dtype, (2, x_stream.length)), valid_rate=0.7,
          ready_rate=0.6)
