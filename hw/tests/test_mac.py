"""MultiplierArray and Mac in amaranth's simulator: exact products and sums.

Every 8x8 product (signed x signed, unsigned x signed, unsigned x unsigned) goes through the
multiplier array; sums of random vectors over operand widths 2-16 through the MAC, with stalls.
The reference is the compiler's MatMul kernel (a dot product of codes).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth import Shape, signed, unsigned
from amaranth.back import verilog

from intflow.compiler.ops.matmul import MatMul
from intflow.hw.mac import Mac, MultiplierArray, product_shape
from intflow.hw.testbench import pack, run_lanes, run_stream, unpack


def shape_range(s: Shape) -> tuple[int, int]:
    return (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed else (0,
                                                                              (1 << s.width) - 1)


@pytest.mark.parametrize("a_shape, b_shape", [(signed(8), signed(8)), (unsigned(8), signed(8)),
                                              (unsigned(8), unsigned(8))])
def test_every_8x8_product(a_shape, b_shape):
    lanes = 256
    a_lo, a_hi = shape_range(a_shape)
    b_lo, b_hi = shape_range(b_shape)
    a, b = np.meshgrid(np.arange(a_lo, a_hi + 1), np.arange(b_lo, b_hi + 1))
    a, b = a.reshape(-1, lanes), b.reshape(-1, lanes)
    dut = MultiplierArray(lanes, a_shape, b_shape)
    p = run_lanes(dut, a, b)
    np.testing.assert_array_equal(p, a * b)
    assert p.size == 65536 and len(np.unique(p)) > 5000


@pytest.mark.parametrize("a_bits, b_bits", [(2, 2), (3, 16), (16, 16), (5, 9), (12, 7)])
def test_products_widths_2_to_16(a_bits, b_bits):
    rng = np.random.default_rng(a_bits * 100 + b_bits)
    for sa in (False, True):
        for sb in (False, True):
            a_shape, b_shape = Shape(a_bits, sa), Shape(b_bits, sb)
            lo_a, hi_a = shape_range(a_shape)
            lo_b, hi_b = shape_range(b_shape)
            # the extremes of both ranges, then random values
            a = np.r_[lo_a, hi_a, lo_a, hi_a, rng.integers(lo_a, hi_a + 1, 60)].reshape(-1, 8)
            b = np.r_[lo_b, lo_b, hi_b, hi_b, rng.integers(lo_b, hi_b + 1, 60)].reshape(-1, 8)
            dut = MultiplierArray(8, a_shape, b_shape)
            np.testing.assert_array_equal(run_lanes(dut, a, b), a * b)
            assert product_shape(a_shape, b_shape).signed == (sa or sb)


def mac_vectors(rng, a_shape, b_shape, n_vectors, max_len):
    lens = rng.integers(1, max_len + 1, n_vectors)
    n = int(lens.sum())
    a = rng.integers(*np.add(shape_range(a_shape), (0, 1)), n)
    b = rng.integers(*np.add(shape_range(b_shape), (0, 1)), n)
    ends = np.cumsum(lens)
    first = np.zeros(n, int)
    first[ends - lens] = 1
    last = np.zeros(n, int)
    last[ends - 1] = 1
    return a, b, first, last, lens


def mac_reference(a, b, lens):
    """Each vector's sum through the compiler's MatMul kernel (x @ w with one column)."""
    out, start = [], 0
    node = SimpleNamespace(attrs={}, outputs=["acc"])
    g = SimpleNamespace(tensors={"acc": SimpleNamespace(shape=(1,))})
    for n in lens:
        x, w = a[None, start:start + n], b[start:start + n, None]
        out.append(int(MatMul.run(node, g, [x, w])[0][0, 0]))
        start += n
    return np.array(out)


@pytest.mark.parametrize("a_shape, b_shape", [
    (unsigned(8), signed(8)), (signed(2), signed(2)), (signed(16), unsigned(16)),
    (unsigned(4), unsigned(3)), (signed(9), signed(13)),
])
def test_mac_sums_with_stalls(a_shape, b_shape):
    rng = np.random.default_rng(a_shape.width * 17 + b_shape.width)
    a, b, first, last, lens = mac_vectors(rng, a_shape, b_shape, 300, 12)
    acc_bits = product_shape(a_shape, b_shape).width + 4
    acc_shape = signed(acc_bits) if (a_shape.signed or b_shape.signed) else unsigned(acc_bits)
    dut = Mac(a_shape, b_shape, acc_shape)
    beats = pack(dut.i.payload.shape(), {"a": a, "b": b, "first": first, "last": last})
    run = run_stream(dut, list(beats), len(lens), valid_rate=0.8, ready_rate=0.6, seed=1)
    acc = unpack(dut.o.payload.shape(), run.words)["acc"]
    np.testing.assert_array_equal(acc, mac_reference(a, b, lens))


def test_mac_accumulator_wraps_to_the_exact_sum():
    # partial sums leave int12, the totals do not: exact modulo 2^12
    a = np.array([127, 127, 127, -127, -127, -127, -100])
    b = np.array([127, 127, 127, 127, 127, 127, 1])
    dut = Mac(signed(8), signed(8), signed(12))
    beats = pack(dut.i.payload.shape(), {"a": a, "b": b, "first": np.r_[1, [0] * 6],
                                         "last": np.r_[[0] * 6, 1]})
    run = run_stream(dut, list(beats), 1)
    assert unpack(dut.o.payload.shape(), run.words)["acc"][0] == -100


@pytest.mark.slow
def test_mac_every_int8_product():
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    a, b = a.ravel(), b.ravel()
    dut = Mac(signed(8), signed(8), signed(16))
    one = np.ones(len(a), int)
    beats = pack(dut.i.payload.shape(), {"a": a, "b": b, "first": one, "last": one})
    run = run_stream(dut, list(beats), len(a))
    np.testing.assert_array_equal(unpack(dut.o.payload.shape(), run.words)["acc"], a * b)
    assert run.last_out - run.first_in == len(a) - 1 + Mac.latency


@pytest.mark.parametrize("target", ["ice40", "ecp5"])
def test_dsp_targets_instantiate_their_primitives(target):
    prim = {"ice40": "SB_MAC16", "ecp5": "MULT18X18D"}[target]
    for a_shape, b_shape, count in [(unsigned(8), signed(8), {"ice40": 3, "ecp5": 5}),
                                    (signed(12), signed(4), {"ice40": 5, "ecp5": 5})]:
        dut = MultiplierArray(5, a_shape, b_shape, target)
        text = verilog.convert(dut, name="top")
        assert text.count(f"{prim} ") == count[target] == dut.dsp_count
