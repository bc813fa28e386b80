"""WindowMax against the compiler's MaxPool kernel, windows streamed in its own order."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth import signed, unsigned

from intflow.compiler.ops.maxpool import MaxPool, window_positions
from intflow.hw.compare import WindowMax
from intflow.hw.testbench import pack, run_stream, unpack


@pytest.mark.parametrize("shape, attrs", [
    (signed(8), {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0],
                 "dilations": [1, 1], "ceil_mode": 0}),
    (unsigned(8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                   "dilations": [1, 1], "ceil_mode": 0}),
    (signed(4), {"kernel_shape": [3, 2], "strides": [1, 2], "pads": [0, 1, 2, 0],
                 "dilations": [2, 1], "ceil_mode": 1}),
])
def test_maxpool_windows(shape, attrs):
    rng = np.random.default_rng(shape.width)
    c, h, w = 4, 7, 6
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    x = rng.integers(lo, lo + (1 << shape.width), (3, 1, c, h, w))  # samples, batch 1
    x[0, 0, :, :3] = lo  # windows of equal values and of the lowest code
    node = SimpleNamespace(attrs=attrs, inputs=["x"], outputs=["y"])
    positions = list(window_positions((h, w), attrs))
    out_sp = positions[0][1].shape
    g = SimpleNamespace(tensors={"x": SimpleNamespace(shape=(1, c, h, w)),
                                 "y": SimpleNamespace(shape=(1, c, *out_sp))})
    ref = MaxPool.run(node, g, [x])[0]  # (samples, 1, c, oh, ow)
    # the stream: per sample and output pixel, the in-bounds window elements, lanes = channels
    beats, first, last = [], [], []
    for s in range(x.shape[0]):
        for oi in np.ndindex(*out_sp):
            window = [x[s, 0, :, idx[0][oi[0], 0], idx[1][0, oi[1]]]
                      for idx, valid in positions if valid[oi]]
            beats += window
            first += [1] + [0] * (len(window) - 1)
            last += [0] * (len(window) - 1) + [1]
    dut = WindowMax(shape, lanes=c)
    words = pack(dut.i.payload.shape(), {"x": np.array(beats), "first": np.array(first),
                                         "last": np.array(last)})
    n_out = x.shape[0] * int(np.prod(out_sp))
    run = run_stream(dut, list(words), n_out, valid_rate=0.7, ready_rate=0.6)
    y = unpack(dut.o.payload.shape(), run.words)["y"]  # (n_out, c)
    want = ref[:, 0].transpose(0, 2, 3, 1).reshape(-1, c)
    np.testing.assert_array_equal(y, want)
