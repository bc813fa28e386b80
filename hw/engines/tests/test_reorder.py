"""Reorder in amaranth's simulator against ``model.run_engine``: random permutations and a
transpose, random stalls, inferences back to back; double buffering gives II <= length + 2."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dataflow.spec import Engine, Stream
from intflow.compiler.dtypes import IntType
from intflow.sim.amaranth_bench import check_engine


def reorder(read: np.ndarray, dtype: IntType):
    n = read.size
    streams = {"x": Stream("x", dtype, (n,), np.arange(n)),
               "y": Stream("y", dtype, (n,), read)}
    return Engine("Reorder", "r.Reorder", ["x"], ["y"], {"read": read, "dtype": dtype}), streams


PERMS = {
    "transpose": np.arange(24).reshape(4, 6).T.ravel(),
    "random": np.random.default_rng(1).permutation(37),
    "reverse": np.arange(16)[::-1].copy(),
    "one": np.zeros(1, np.int64),
}


@pytest.mark.parametrize("perm", list(PERMS))
@pytest.mark.parametrize("rate", [1.0, 0.6])
def test_reorder_equals_model(perm, rate):
    read = PERMS[perm]
    dtype = IntType(True, 8)
    e, streams = reorder(read, dtype)
    rng = np.random.default_rng(read.size)
    x = rng.integers(dtype.min, dtype.max + 1, size=(4, read.size))
    run = check_engine(e, streams, [x], valid_rate=rate, ready_rate=rate, seed=read.size)
    if rate == 1.0 and read.size > 1:
        # no stalls: inference s+1 streams in while s streams out, so the output runs at one
        # beat a cycle but for a bank hand-over of at most two cycles between inferences
        c = np.array(run.beat_cycles["o0"]).reshape(4, read.size)
        assert np.all(np.diff(c, axis=1) == 1)
        assert np.all(c[1:, 0] - c[:-1, -1] <= 3), c[1:, 0] - c[:-1, -1]


def test_reorder_rejects_non_permutation():
    e, streams = reorder(np.array([0, 0, 1]), IntType(True, 8))
    with pytest.raises(ValueError, match="permutation"):
        from intflow.hw.engines import build
        build(e, streams)
