"""Concat in amaranth's simulator against ``model.run_engine``: patterns of runs, repeated,
from two and three inputs of different widths, random stalls, inferences back to back; and
with constant inputs (a ROM in consumption order): a constant plane after an activation's
channels, a constant prefix (class token), a constant between two streams."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dataflow.spec import Engine, Stream
from intflow.compiler.dtypes import IntType
from intflow.sim.amaranth_bench import check_engine

CASES = [
    # pattern, repeat, input dtypes, output dtype
    ([[0, 3], [1, 5]], 4, [IntType(True, 8), IntType(True, 8)], IntType(True, 8)),
    ([[0, 1], [1, 1]], 7, [IntType(False, 8), IntType(False, 4)], IntType(False, 8)),
    ([[1, 2], [0, 1], [2, 3]], 2, [IntType(True, 4), IntType(True, 8), IntType(False, 6)],
     IntType(True, 8)),
    ([[0, 6], [1, 10]], 1, [IntType(True, 8), IntType(True, 8)], IntType(True, 8)),
]


@pytest.mark.parametrize("pattern, repeat, in_dtypes, out_dtype", CASES)
@pytest.mark.parametrize("rate", [1.0, 0.6])
def test_concat_equals_model(pattern, repeat, in_dtypes, out_dtype, rate):
    lengths = [repeat * sum(c for i, c in pattern if i == j) for j in range(len(in_dtypes))]
    total = sum(lengths)
    streams = {f"x{j}": Stream(f"x{j}", dt, (n,), np.arange(n))
               for j, (dt, n) in enumerate(zip(in_dtypes, lengths))}
    streams["y"] = Stream("y", out_dtype, (total,), np.arange(total))
    e = Engine("Concat", "c.Concat", [f"x{j}" for j in range(len(in_dtypes))], ["y"],
               {"pattern": pattern, "repeat": repeat, "dtype": out_dtype})
    rng = np.random.default_rng(total)
    xs = [rng.integers(dt.min, dt.max + 1, size=(3, n)) for dt, n in zip(in_dtypes, lengths)]
    run = check_engine(e, streams, xs, valid_rate=rate, ready_rate=rate, seed=total)
    if rate == 1.0:  # no stalls: one output beat a cycle
        c = run.beat_cycles["o0"]
        assert c[-1] - c[0] == len(c) - 1


CONST_CASES = {
    # pattern, repeat, constant inputs, streamed input dtypes (one per non-constant input)
    "plane": ([[0, 4], [1, 2]], 6, {1: 2}, [IntType(False, 7)]),
    "prefix": ([[0, 5], [1, 30]], 1, {0: 5}, [IntType(True, 8)]),
    "between": ([[0, 2], [1, 1], [2, 3]], 3, {1: 1}, [IntType(True, 8), IntType(True, 4)]),
    "two_constants": ([[0, 1], [1, 2], [2, 1]], 4, {0: 1, 2: 1}, [IntType(True, 8)]),
}


@pytest.mark.parametrize("case", list(CONST_CASES))
@pytest.mark.parametrize("rate", [1.0, 0.6])
def test_concat_with_constants_equals_model(case, rate):
    pattern, repeat, const_runs, in_dtypes = CONST_CASES[case]
    out_dtype = IntType(True, 8)
    n_all = len(in_dtypes) + len(const_runs)
    lengths = [repeat * sum(c for i, c in pattern if i == j) for j in range(n_all)]
    rng = np.random.default_rng(sum(lengths))
    consts = {i: rng.integers(out_dtype.min, out_dtype.max + 1, lengths[i]) for i in const_runs}
    streamed = [j for j in range(n_all) if j not in consts]
    streams = {f"x{j}": Stream(f"x{j}", dt, (lengths[j],), np.arange(lengths[j]))
               for j, dt in zip(streamed, in_dtypes)}
    total = sum(lengths)
    streams["y"] = Stream("y", out_dtype, (total,), np.arange(total))
    e = Engine("Concat", "c.Concat", [f"x{j}" for j in streamed], ["y"],
               {"pattern": pattern, "repeat": repeat, "dtype": out_dtype, "constants": consts})
    xs = [rng.integers(dt.min, dt.max + 1, size=(3, lengths[j]))
          for j, dt in zip(streamed, in_dtypes)]
    run = check_engine(e, streams, xs, valid_rate=rate, ready_rate=rate, seed=total)
    if rate == 1.0:  # constant words cost no stall
        c = run.beat_cycles["o0"]
        assert c[-1] - c[0] == len(c) - 1
