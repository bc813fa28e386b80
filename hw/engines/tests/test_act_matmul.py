"""ActMatMul (the product of two activations) in amaranth's simulator against
``model.run_engine``: zero points on both operands, signed and unsigned codes, batches, a bias,
degenerate k = 1 and n = 1, random stalls on all three streams, inferences back to back; and
operand extremes (all-min / all-max codes: the accumulator's corners)."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler.dataflow.spec import Engine, Stream
from intflow.compiler.dtypes import IntType
from intflow.sim.amaranth_bench import check_engine

U8, I8 = IntType(False, 8), IntType(True, 8)

CASES = {
    # batch, rows, k, n, a dtype, w dtype, za, zw, bias[, shared_w]
    "qlinear_u8": (1, 2, 4, 3, U8, U8, 113, 114, None),
    "qlinear_i8_batched": (2, 2, 4, 3, I8, I8, -14, -13, None),
    "attention_like": (3, 4, 5, 4, I8, U8, 3, 128, None),
    "bias_k1": (1, 3, 1, 5, U8, I8, 0, 0, [7, -300, 0, 12, 99]),
    "n1": (2, 3, 6, 1, I8, I8, 0, 5, [-4]),
    "shared_w": (3, 2, 4, 3, U8, I8, 100, -2, None, True),
}


def act_matmul(batch, rows, k, n, da, dw, za, zw, bias, shared_w=False):
    acc = IntType(True, 32)
    nw = (1 if shared_w else batch) * k * n
    streams = {"a": Stream("a", da, (batch * rows * k,), np.arange(batch * rows * k)),
               "w": Stream("w", dw, (nw,), np.arange(nw)),
               "y": Stream("y", acc, (batch * rows * n,), np.arange(batch * rows * n))}
    params = {"batch": batch, "rows": rows, "k": k, "n": n, "x_zero_point": za,
              "w_zero_point": zw, "out_dtype": acc, "shared_w": shared_w,
              "bias": np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64)}
    return Engine("ActMatMul", "m.ActMatMul", ["a", "w"], ["y"], params), streams


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rate", [1.0, 0.6])
def test_act_matmul_equals_model(case, rate):
    batch, rows, k, n, da, dw, *_ = CASES[case]
    e, streams = act_matmul(*CASES[case])
    rng = np.random.default_rng(batch * rows * k * n)
    a = rng.integers(da.min, da.max + 1, (3, batch * rows * k))
    w = rng.integers(dw.min, dw.max + 1, (3, streams["w"].length))
    # extremes: every code at the minimum, at the maximum, and crossed
    a = np.concatenate([a, np.full((1, a.shape[1]), da.min), np.full((1, a.shape[1]), da.max),
                        np.full((1, a.shape[1]), da.min)])
    w = np.concatenate([w, np.full((1, w.shape[1]), dw.min), np.full((1, w.shape[1]), dw.max),
                        np.full((1, w.shape[1]), dw.max)])
    check_engine(e, streams, [a, w], valid_rate=rate, ready_rate=rate, seed=k * n)


def test_act_matmul_rejects_empty():
    e, streams = act_matmul(1, 0, 4, 3, U8, U8, 0, 0, None)
    from intflow.hw.engines import build
    with pytest.raises(ValueError, match="empty product"):
        build(e, streams)
