"""SlidingWindow engine against ``run_engine``: geometries, stalls, inferences back to back."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dataflow.spec import Engine
from intflow.compiler.dtypes import IntType
from intflow.hw.engines.sliding_window import window_geometry
from intflow.hw.engines.tests.harness import check, example_engines, random_codes, stream

I8 = IntType(True, 8)


def window_engine(c, h, w, kernel, stride=(1, 1), dilation=(1, 1), pads=(0, 0, 0, 0),
                  pad_value=-128, dtype=I8) -> tuple[Engine, dict]:
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    oh = (h + pads[0] + pads[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pads[1] + pads[3] - dw * (kw - 1) - 1) // sw + 1
    params = {"channels": c, "height": h, "width": w, "kernel": list(kernel),
              "stride": list(stride), "dilation": list(dilation), "pads": list(pads),
              "pad_value": pad_value, "out_height": oh, "out_width": ow, "dtype": dtype}
    streams = {"x": stream("x", dtype, c * h * w),
               "y": stream("y", dtype, oh * ow * kh * kw * c)}
    return Engine("SlidingWindow", "t.SlidingWindow", ["x"], ["y"], params), streams


GEOMETRIES = {
    "3x3_pad1": dict(c=2, h=5, w=4, kernel=(3, 3), pads=(1, 1, 1, 1)),
    "pool2x2_s2": dict(c=3, h=4, w=6, kernel=(2, 2), stride=(2, 2)),
    "dilated_asym_pads": dict(c=2, h=6, w=5, kernel=(3, 2), dilation=(2, 2), pads=(0, 1, 2, 0)),
    "1d_s2": dict(c=3, h=1, w=13, kernel=(1, 3), stride=(1, 2), pad_value=5),
    "1d_dilated_padded": dict(c=1, h=1, w=9, kernel=(1, 3), dilation=(1, 3), pads=(0, 2, 0, 1)),
    "1x1_s2_skips_pixels": dict(c=2, h=5, w=5, kernel=(1, 1), stride=(2, 2)),
    "all_pad_windows": dict(c=1, h=3, w=3, kernel=(2, 2), pads=(2, 2, 2, 2), pad_value=0),
    "stride_over_kernel": dict(c=1, h=7, w=7, kernel=(2, 2), stride=(3, 3), pads=(0, 0, 1, 1)),
    "tall_kernel": dict(c=2, h=4, w=3, kernel=(4, 1), stride=(1, 1), pads=(1, 0, 2, 0)),
}


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_sliding_window(name):
    e, s = window_engine(**GEOMETRIES[name])
    rng = np.random.default_rng(len(name))
    x = random_codes(rng, I8, (3, s["x"].length))
    check(e, s, x, valid_rate=0.6, ready_rate=0.5, seed=len(name))


@pytest.mark.parametrize("name", ["3x3_pad1", "pool2x2_s2", "1d_s2"])
def test_sliding_window_full_rate(name):
    """No stalls: the writer runs while windows are read, so an inference costs about
    max(input, output) cycles, not their sum."""
    e, s = window_engine(**GEOMETRIES[name])
    rng = np.random.default_rng(1)
    samples = 4
    r = check(e, s, random_codes(rng, I8, (samples, s["x"].length)))
    n_in, n_out = s["x"].length, s["y"].length
    assert r.cycles <= samples * max(n_in, n_out) + n_in + 8


def test_line_buffer_is_smaller_than_the_frame():
    e, _ = window_engine(c=4, h=32, w=32, kernel=(3, 3), pads=(1, 1, 1, 1))
    assert window_geometry(e.params)["pixels"] <= 4 * 32 + 3  # (kh - 1 + stride) rows + kw
    e, _ = window_engine(c=4, h=1, w=256, kernel=(1, 5), stride=(1, 2))
    # kw + stride, and one more: the last window waits for the unread last pixel
    assert window_geometry(e.params)["pixels"] <= 5 + 2 + 1


@pytest.mark.parametrize("stem, index", [
    ("digits_cnn_qdq", 0),  # 3x3 pad 1, one channel
    ("digits_cnn_qdq", 3),  # 3x3 pad 1 on 4x4x16
    ("digits_cnn_qop", 2),  # 2x2 stride 2 max pool
    ("pulse_cnn1d_qdq", 1),  # 1-D k3 s2
    ("pulse_cnn1d_qdq", 2),  # 1-D k3 dilation 2
    ("pulse_cnn1d_qdq", 3),  # 1-D avg pool k2 s2 (the last pixel is never read)
])
def test_sliding_window_of_example(stem, index):
    e, streams = example_engines(stem, "SlidingWindow")[index]
    x_stream = streams[e.inputs[0]]
    rng = np.random.default_rng(index)
    check(e, streams, random_codes(rng, x_stream.dtype, (2, x_stream.length)), valid_rate=0.8,
          ready_rate=0.7)


def random_geometry(rng) -> dict:
    """A random valid window geometry (small, so the simulator keeps up)."""
    while True:
        c, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 8)), int(rng.integers(1, 8))
        kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        if h == 1:  # 1-D: no vertical kernel, stride, padding
            kernel, stride, dilation, pads = (1, kernel[1]), (1, stride[1]), (1, dilation[1]), (
                0, pads[1], 0, pads[3])
        if (h + pads[0] + pads[2] >= dilation[0] * (kernel[0] - 1) + 1
                and w + pads[1] + pads[3] >= dilation[1] * (kernel[1] - 1) + 1):
            return dict(c=c, h=h, w=w, kernel=kernel, stride=stride, dilation=dilation,
                        pads=pads, pad_value=int(rng.integers(-128, 128)))


def fuzz(seed: int) -> None:
    rng = np.random.default_rng(seed)
    geometry = random_geometry(rng)
    e, s = window_engine(**geometry)
    x = random_codes(rng, I8, (3, s["x"].length))
    try:
        check(e, s, x, valid_rate=float(rng.uniform(0.3, 1)),
              ready_rate=float(rng.uniform(0.3, 1)), seed=seed)
    except AssertionError as err:
        raise AssertionError(f"{geometry}: {err}") from None


@pytest.mark.parametrize("seed", range(6))
def test_sliding_window_random_geometry(seed):
    fuzz(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6, 206))
def test_sliding_window_random_geometry_many(seed):
    fuzz(seed)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["digits_cnn_qdq", "digits_cnn_qop", "pulse_cnn1d_qdq"])
def test_every_sliding_window_of_examples(stem):
    for e, streams in example_engines(stem, "SlidingWindow"):
        x_stream = streams[e.inputs[0]]
        rng = np.random.default_rng(0)
        check(e, streams, random_codes(rng, x_stream.dtype, (2, x_stream.length)),
              valid_rate=0.7, ready_rate=0.6)
