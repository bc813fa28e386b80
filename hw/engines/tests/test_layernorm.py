"""LayerNorm engine (``hw/engines/layernorm.py``) in amaranth's simulator against
``model.run_engine`` (= ``compiler/ops/layernorm.py``): random rows, constant rows (V = 0),
the smallest non-zero variance, extremes, the edge vectors, signed and unsigned codes, E2 = 0
(D can be 1), random stalls, inferences back to back; the square root and the per-row
arithmetic against Python's exact integers; the cycle count of ``fold.engine_cycles``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from intflow.compiler.dataflow.fold import engine_cycles
from intflow.compiler.dataflow.plan import quotient_bits
from intflow.compiler.dataflow.spec import Dataflow, Engine
from intflow.compiler.dtypes import IntType
from intflow.compiler.ops.layernorm import z_bound
from intflow.hw.engines.layernorm import layernorm_bounds
from intflow.hw.engines.tests.harness import check, random_codes, stream

I8, U8 = IntType(True, 8), IntType(False, 8)


def layernorm_engine(dtype: IntType, rows: int, n: int, *, t_bits: int = 8, p_bits: int = 8,
                     eps_codes: float = 4e-3, seed: int = 0):
    """An engine as the planner makes it: K keeps P + 8 bits of R at the largest D, E2 from
    eps / sx^2 = ``eps_codes``, random int8 gamma and B."""
    rng = np.random.default_rng(seed)
    k_bits = t_bits + math.ceil(math.log2(max(n, 2))) + 8 + p_bits + 8
    e2 = int(round(n * n * eps_codes * 2 ** (2 * t_bits)))
    gamma = rng.integers(-127, 128, n)
    bias = rng.integers(-3000, 3000, n)
    zb = z_bound(n, p_bits)
    gm = int(np.abs(gamma).max())
    out = IntType.fit(int(bias.min()) - zb * gm, int(bias.max()) + zb * gm)
    b = layernorm_bounds(dtype.min, dtype.max, n, t_bits, e2)
    streams = {"x": stream("x", dtype, rows * n), "y": stream("y", out, rows * n)}
    e = Engine("LayerNorm", "t.LayerNorm", ["x"], ["y"],
               {"rows": rows, "n": n, "gamma": gamma, "bias": bias,
                "attrs": {"T": t_bits, "P": p_bits, "K": k_bits, "E2": e2},
                "sqrt_bits": (b["vp_max"].bit_length() + 1) // 2,
                "recip_bits": quotient_bits(k_bits, b["d_min"]), "in_dtype": dtype,
                "out_dtype": out})
    return e, streams


CASES = {
    # dtype, rows, n, E2 from eps / sx^2
    "i8": (I8, 3, 8, 4e-3),
    "u8": (U8, 2, 6, 4e-3),
    "i8_no_eps": (I8, 3, 5, 0.0),  # E2 = 0: a constant row has D = max(0, 1)
    "two": (I8, 4, 2, 1e-2),
    "i4_wide_row": (IntType(True, 4), 2, 24, 1e-3),
    "long_row": (U8, 2, 70, 1e-4),  # more than 64 words: no LUT RAM on ECP5
}


@pytest.mark.parametrize("case", list(CASES))
def test_layernorm_equals_model(case):
    dtype, rows, n, eps = CASES[case]
    e, streams = layernorm_engine(dtype, rows, n, eps_codes=eps, seed=n)
    rng = np.random.default_rng(rows * 10 + n)
    x = random_codes(rng, dtype, (5, rows * n))
    x[1, :n] = 7 if dtype.max >= 7 else 1  # a constant row: V = 0, Z = 0
    x[2, :n] = 0
    x[2, 0] = 1  # the smallest non-zero variance: the largest R
    x[3, :n] = rng.choice([dtype.min, dtype.max], n)  # extremes
    check(e, streams, x, valid_rate=0.6, ready_rate=0.5, seed=n)


def test_layernorm_cycles_match_fold():
    """No stalls: the engine takes ``engine_cycles`` per inference (the planned II)."""
    e, streams = layernorm_engine(I8, 3, 8)
    df = Dataflow([e], streams, ["x"], ["y"])
    rng = np.random.default_rng(0)
    one = check(e, streams, random_codes(rng, I8, (1, 24)), edges=False).cycles
    two = check(e, streams, random_codes(rng, I8, (2, 24)), edges=False).cycles
    assert two - one == engine_cycles(e, df)


def test_layernorm_bounds_hold_the_largest_variance():
    """The largest n sum c^2 - (sum c)^2 is reached (half the codes at each end) and no
    random row exceeds it."""
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 8, 9):
        q_max = layernorm_bounds(-128, 127, n, 8, 0)["q_max"]
        c = np.array([-128] * (n // 2) + [127] * (n - n // 2))
        assert n * int((c * c).sum()) - int(c.sum()) ** 2 == q_max
        r = rng.choice([-128, 127, 0, 5], (2000, n))
        assert (n * (r * r).sum(axis=1) - r.sum(axis=1) ** 2).max() <= q_max


def test_layernorm_output_pipeline_under_back_pressure():
    """Input at full rate, output rarely ready: the next row's divide must wait until the
    last row's words have left the pipeline (it rewrites R)."""
    e, streams = layernorm_engine(I8, 3, 6, t_bits=4, p_bits=4)  # rows longer than the pipeline
    rng = np.random.default_rng(9)
    check(e, streams, random_codes(rng, I8, (3, 18)), valid_rate=1.0, ready_rate=0.04, seed=2)


def test_layernorm_all_zero_beta_and_equal_gamma_convert_to_verilog():
    """beta = 0 and one gamma everywhere (a fresh nn.LayerNorm): the B ROM must keep 1 bit —
    a 0-bit ROM made yosys trap (divide by zero in mem_from_memory) on a real model."""
    from amaranth.back import verilog

    from intflow.hw.engines import build
    e, streams = layernorm_engine(U8, 2, 16, seed=3)
    e.params["bias"] = np.zeros(16, np.int64)
    e.params["gamma"] = np.full(16, 127, np.int64)
    assert "module" in verilog.convert(build(e, streams), name="ln")
    x = random_codes(np.random.default_rng(4), U8, (3, 2 * 16))
    check(e, streams, x, valid_rate=0.7, ready_rate=0.7, seed=1)
