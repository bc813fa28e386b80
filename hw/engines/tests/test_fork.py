"""Fork in amaranth's simulator against ``model.run_engine``: random stalls on every stream,
several inferences back to back, one beat a cycle when nothing stalls."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dataflow.spec import Engine, Stream
from intflow.compiler.dtypes import IntType
from intflow.sim.amaranth_bench import check_engine


def fork(branches: int, length: int, dtype: IntType):
    order = np.arange(length)
    streams = {"x": Stream("x", dtype, (length,), order)}
    outs = [f"x_fork{j}" for j in range(branches)]
    streams.update({s: Stream(s, dtype, (length,), order) for s in outs})
    return Engine("Fork", "x.Fork", ["x"], outs, {"dtype": dtype}), streams


@pytest.mark.parametrize("branches, dtype", [(2, IntType(True, 8)), (3, IntType(False, 5)),
                                             (1, IntType(True, 16))])
@pytest.mark.parametrize("rate", [1.0, 0.6])
def test_fork_equals_model(branches, dtype, rate):
    e, streams = fork(branches, 17, dtype)
    rng = np.random.default_rng(branches)
    x = rng.integers(dtype.min, dtype.max + 1, size=(3, 17))
    run = check_engine(e, streams, [x], valid_rate=rate, ready_rate=rate, seed=branches)
    if rate == 1.0:  # no stalls: one beat a cycle, one cycle through the register
        for j in range(branches):
            assert run.beat_cycles[f"o{j}"] == [c + 1 for c in run.beat_cycles["i0"]]
