"""Softmax engine (``hw/engines/softmax.py``) in amaranth's simulator against
``model.run_engine`` (= ``compiler/ops/softmax.py``): random rows, flat rows, one dominant
element, the edge vectors, signed and unsigned codes, random stalls, inferences back to back;
and the cycle count of ``fold.engine_cycles``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from intflow.compiler.dataflow.fold import engine_cycles
from intflow.compiler.dataflow.plan import quotient_bits
from intflow.compiler.dataflow.spec import Dataflow, Engine
from intflow.compiler.dtypes import IntType
from intflow.compiler.ops.softmax import exp_table
from intflow.hw.engines import build
from intflow.hw.engines.tests.harness import check, random_codes, stream

I8, U8 = IntType(True, 8), IntType(False, 8)


def softmax_engine(dtype: IntType, rows: int, n: int, scale: float, e_bits: int = 16,
                   m_bits: int = 15, f_bits: int | None = None):
    if f_bits is None:  # the op's rule: F >= E + M + log2(n) + 2
        f_bits = e_bits + m_bits + math.ceil(math.log2(max(n, 2))) + 2
    table = exp_table(scale, dtype.bits, e_bits)
    s_min = int(table[0]) + (n - 1) * int(table.min())
    out = IntType.fit(0, 1 << m_bits)
    streams = {"x": stream("x", dtype, rows * n), "p": stream("p", out, rows * n)}
    e = Engine("Softmax", "t.Softmax", ["x"], ["p"],
               {"rows": rows, "n": n, "table": table,
                "attrs": {"E": e_bits, "F": f_bits, "M": m_bits},
                "recip_bits": quotient_bits(f_bits, s_min), "in_dtype": dtype,
                "out_dtype": out})
    return e, streams


CASES = {
    # dtype, rows, n, scale, E, M
    "i8_rows": (I8, 3, 8, 0.0625, 16, 15),
    "u8_wide_scale": (U8, 2, 5, 0.3, 16, 15),
    "i8_small_scale": (I8, 2, 16, 0.02, 12, 8),
    "one_element": (I8, 4, 1, 0.1, 10, 8),
    "i4": (IntType(True, 4), 3, 6, 0.5, 8, 7),
    "long_row": (U8, 2, 70, 0.04, 16, 15),  # more than 64 words: no LUT RAM on ECP5
}


@pytest.mark.parametrize("case", list(CASES))
def test_softmax_equals_model(case):
    dtype, rows, n, scale, e_bits, m_bits = CASES[case]
    e, streams = softmax_engine(dtype, rows, n, scale, e_bits, m_bits)
    rng = np.random.default_rng(rows * 100 + n)
    x = random_codes(rng, dtype, (4, rows * n))
    x[1, :n] = dtype.max  # a flat row
    x[2, :] = dtype.min
    x[2, ::n] = dtype.max  # one dominant element per row
    check(e, streams, x, valid_rate=0.6, ready_rate=0.5, seed=n)


def test_softmax_cycles_match_fold():
    """No stalls: the engine takes ``engine_cycles`` per inference (the planned II)."""
    e, streams = softmax_engine(I8, 3, 8, 0.0625)
    df = Dataflow([e], streams, ["x"], ["p"])
    rng = np.random.default_rng(0)
    one = check(e, streams, random_codes(rng, I8, (1, 24)), edges=False).cycles
    two = check(e, streams, random_codes(rng, I8, (2, 24)), edges=False).cycles
    assert two - one == engine_cycles(e, df)


def test_softmax_rejects_short_table():
    e, streams = softmax_engine(I8, 1, 4, 0.1)
    e.params["table"] = e.params["table"][:100]
    with pytest.raises(ValueError, match="exp table of 100 entries"):
        build(e, streams)


def test_softmax_output_pipeline_under_back_pressure():
    """Input at full rate, output rarely ready: the next row's divide must wait until the
    last row's words have left the pipeline (it rewrites R)."""
    e, streams = softmax_engine(I8, 6, 3, 0.1, 10, 8)  # rows longer than the pipeline
    rng = np.random.default_rng(9)
    check(e, streams, random_codes(rng, I8, (3, 18)), valid_rate=1.0, ready_rate=0.04, seed=2)
