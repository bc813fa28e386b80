"""The exact AvgPool form of the dataflow plan: rounded sums and thresholds."""

from __future__ import annotations

import numpy as np

from intflow.compiler import f32
from intflow.compiler.dataflow import avgpool as ap


def test_round_sig24_matches_float32_rounding():
    rng = np.random.default_rng(0)
    s = np.concatenate([np.arange(-300, 300), rng.integers(-(1 << 40), 1 << 40, 100_000),
                        (1 << 24) + np.arange(-5, 6), -(1 << 30) + np.arange(-200, 200)])
    got = ap.round_sig24(s)
    want = f32.round_exact(s, np.zeros_like(s))
    back = f32.to_float32(want).astype(np.float64)
    assert np.array_equal(got.astype(np.float64), back)
    assert np.array_equal(ap.round_sig24(np.array([1, -1, 0, 3])), [1, -1, 0, 3])


def test_thresholds_reproduce_the_float_tail():
    e_min, sy, zy = -30, (16026486, -31), 132
    s = np.random.default_rng(1).integers(-(1 << 32), 1 << 32, 20_000)
    s = ap.round_sig24(s)
    for cnt in (1, 2, 4, 9):
        thr = ap.thresholds(e_min, cnt, sy, zy, 0, 255, int(s.min()), int(s.max()))
        y = (s[:, None] >= thr[None, :]).sum(axis=1)
        assert np.array_equal(y, ap.tail(s, e_min, cnt, sy, zy, 0, 255))
