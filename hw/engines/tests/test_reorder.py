"""Reorder in amaranth's simulator against ``model.run_engine``: random permutations and a
transpose, random stalls, inferences back to back; double buffering gives II <= length + 2.
Broadcast reads (``in_length`` given): a (1, C, 1, 1) scale spread over a (1, C, H, W)
stream in (h, w, c) order, a row vector over a matrix, random index maps."""

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


def broadcast(read: np.ndarray, n_in: int, dtype: IntType):
    streams = {"x": Stream("x", dtype, (n_in,), np.arange(n_in)),
               "y": Stream("y", dtype, (read.size,), np.arange(read.size))}
    return Engine("Reorder", "b.Reorder", ["x"], ["y"],
                  {"read": read, "in_length": n_in, "dtype": dtype}), streams


def _spread(small: tuple, big: tuple, order: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.arange(int(np.prod(small))).reshape(small), big).ravel()[order]


BROADCASTS = {
    # squeeze-excite: (1, 5, 1, 1) over (1, 5, 3, 4) streamed channels innermost
    "se_scale": (5, _spread((1, 5, 1, 1), (1, 5, 3, 4),
                            np.arange(60).reshape(1, 5, 3, 4).transpose(0, 2, 3, 1).ravel())),
    "row_over_matrix": (7, _spread((1, 7), (6, 7), np.arange(42))),
    "column_over_matrix": (6, _spread((6, 1), (6, 7), np.arange(42))),
    "random_map": (9, np.random.default_rng(3).integers(0, 9, 31)),
    "scalar": (1, np.zeros(10, np.int64)),
    "shorter": (12, np.array([11, 0, 5])),  # fewer reads than writes
}


@pytest.mark.parametrize("case", list(BROADCASTS))
@pytest.mark.parametrize("rate", [1.0, 0.6])
def test_broadcast_equals_model(case, rate):
    n_in, read = BROADCASTS[case]
    dtype = IntType(False, 8)
    e, streams = broadcast(np.asarray(read), n_in, dtype)
    rng = np.random.default_rng(n_in)
    x = rng.integers(dtype.min, dtype.max + 1, size=(4, n_in))
    check_engine(e, streams, [x], valid_rate=rate, ready_rate=rate, seed=n_in + read.size)


def test_broadcast_rejects_out_of_range_read():
    e, streams = broadcast(np.array([0, 3, 1]), 3, IntType(True, 8))
    with pytest.raises(ValueError, match="index the 3 input positions"):
        from intflow.hw.engines import build
        build(e, streams)
