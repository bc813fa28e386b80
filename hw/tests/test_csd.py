"""Canonical signed digits and the shift-add multiplier array: exact products, no DSP."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.back import verilog

from intflow.hw.csd import CsdMultiplierArray, csd_adders, naf
from intflow.hw.testbench import run_lanes


def test_naf_is_the_minimal_nonadjacent_form():
    for w in range(-(1 << 12), 1 << 12):
        d = naf(w)
        assert sum(di << i for i, di in enumerate(d)) == w
        assert all(di in (-1, 0, 1) for di in d)
        assert all(not (d[i] and d[i + 1]) for i in range(len(d) - 1))
        assert not d or d[-1] != 0
        # never more nonzero digits than plain binary of |w|, and at most ceil((bits+1)/2)
        nz = sum(1 for di in d if di)
        assert nz <= bin(abs(w)).count("1")
        assert nz <= (abs(w).bit_length() + 2) // 2
    assert naf(7) == [-1, 0, 0, 1] and naf(-3) == [1, 0, -1] and naf(0) == []
    assert csd_adders([7, 3, 0, 1, 85]) == 1 + 1 + 0 + 0 + 3


@pytest.mark.parametrize("x_shape", [signed(8), unsigned(8)])
def test_every_8bit_weight_as_a_constant(x_shape):
    """256 lanes, each with one constant weight (-128..127): every product of every x."""
    weights = np.arange(-128, 128)[None, :]
    dut = CsdMultiplierArray(256, x_shape, weights)
    code = np.array(dut.encode(weights[0]))
    lo = -128 if x_shape.signed else 0
    x = np.repeat(np.arange(lo, lo + 256)[:, None], 256, axis=1)
    p = run_lanes(dut, x, np.broadcast_to(code, x.shape))
    np.testing.assert_array_equal(p, x * weights)


def test_weights_from_a_rom_row_per_beat():
    """16 lanes that each see 16 different weights (ROM rows): all 256 (x, w) int8 pairs in
    every lane position."""
    rng = np.random.default_rng(0)
    rows = rng.permutation(np.arange(-128, 128)).reshape(16, 16)
    dut = CsdMultiplierArray(16, signed(8), rows)
    codes = np.array([dut.encode(r) for r in rows])
    xs = np.arange(-128, 128)
    x = np.repeat(xs, 16)[:, None] + np.zeros((1, 16), np.int64)
    r = np.tile(np.arange(16), 256)
    p = run_lanes(dut, x, codes[r])
    np.testing.assert_array_equal(p, x * rows[r])


def test_constant_weights_spend_no_multiplier():
    dut = CsdMultiplierArray(4, signed(8), [[3, -7, 0, 100]])
    text = verilog.convert(dut, name="top")
    assert " * " not in text
    assert dut.positions == [[0, 2], [0, 3], [], [2, 5, 7]]
