"""The hw units as Verilog under cocotb — Icarus and Verilator — with random valid gaps and
ready back-pressure; every output word equal to the compiler's numpy kernels.

The DSP forms of the multipliers (iCE40 ``SB_MAC16`` dual 8x8 and 16x16, ECP5 ``MULT18X18D``
with its registers) only exist as Verilog: they are checked here, against yosys' SB_MAC16 model
and ``sim/models/MULT18X18D.v``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from amaranth import signed, unsigned

from intflow.compiler import compile_model, reference
from intflow.compiler import requant as rq
from intflow.compiler.ops.add import add_dyadic, add_ort
from intflow.hw.compare import WindowMax
from intflow.hw.eltwise_add import eltwise_add_from_ir
from intflow.hw.mac import Mac
from intflow.hw.pe import ProcessingElement, pe_from_ir
from intflow.hw.requant import RequantDyadic, RequantOrt
from intflow.hw.testbench import pack
from intflow.sim.runner import primitive_models, run_stream_case

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# the simulators are part of the set-up (make installs both): a missing one fails, not skips
needs_icarus = pytest.mark.simulator("icarus")
needs_verilator = pytest.mark.simulator("verilator")


def requant_case(mode: str, n: int, seed: int):
    """A per-channel requant unit on a 26-bit accumulator, n accumulators (a third near output
    ties and clamp bounds, a third near 24-bit rounding ties of |acc|, a third uniform)."""
    rng = np.random.default_rng(seed)
    width, c = 26, 8
    reals = np.float32(10.0 ** rng.uniform(-8.5, -5, c))
    ch = rng.integers(0, c, n)
    y = rng.integers(-140, 140, n) + 0.5
    acc = np.floor(y / reals[ch].astype(np.float64)) + rng.integers(-2, 3, n)
    s = rng.integers(1, 2, n)
    tie = (((1 << 23) + rng.integers(0, 1 << 23, n)) << s) + (1 << (s - 1)) + rng.integers(
        -1, 2, n)
    kind = rng.integers(0, 3, n)
    acc = np.where(kind == 1, np.where(rng.random(n) < 0.5, -tie, tie), acc)
    acc = np.where(kind == 2, rng.integers(-(1 << (width - 1)), 1 << (width - 1), n), acc)
    acc = np.clip(acc, -(1 << (width - 1)), (1 << (width - 1)) - 1).astype(np.int64)
    if mode == "ort":
        mant, exp = rq.ort_multiplier(reals)
        dut = RequantOrt(signed(width), mant, exp, -9, -128, 127)
        ref = rq.requant_ort(acc, mant[ch], exp[ch], -9, -128, 127)
    else:
        m0, sh = (np.array(v) for v in zip(*(rq.dyadic_multiplier(float(r)) for r in reals),
                                           strict=True))
        dut = RequantDyadic(signed(width), m0, sh, -9, -128, 127)
        ref = rq.requant_dyadic(acc, m0[ch], sh[ch], -9, -128, 127)
    words_in = pack(dut.i.payload.shape(), {"acc": acc, "channel": ch})
    words_out = pack(dut.o.payload.shape(), {"y": ref})
    assert len(np.unique(ref)) > 100
    return dut, words_in, words_out


@needs_icarus
@pytest.mark.parametrize("mode", ["ort", "dyadic"])
def test_requant_icarus(mode, tmp_path):
    dut, words_in, words_out = requant_case(mode, 3000, seed=1)
    res = run_stream_case(dut, words_in, words_out, build_dir=tmp_path, valid_pause=0.3,
                          ready_pause=0.4, seed=2)
    assert res.words == 3000 and not res.stream_errors
    assert res.cycles > 3000  # the stalls were real


@needs_verilator
def test_requant_ort_verilator(tmp_path):
    dut, words_in, words_out = requant_case("ort", 20_000, seed=3)
    res = run_stream_case(dut, words_in, words_out, build_dir=tmp_path,
                          simulator="verilator", valid_pause=0.2, ready_pause=0.3, seed=4)
    assert res.words == 20_000


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("mode", ["ort", "dyadic"])
def test_requant_verilator_1e5(mode, tmp_path):
    dut, words_in, words_out = requant_case(mode, 100_000, seed=5)
    res = run_stream_case(dut, words_in, words_out, build_dir=tmp_path,
                          simulator="verilator", valid_pause=0.1, ready_pause=0.1, seed=6)
    assert res.words == 100_000


def pe_words(pe: ProcessingElement, x: np.ndarray, y: np.ndarray):
    v = x.shape[0]
    xp = np.zeros((v, pe.fold * pe.simd), np.int64)
    xp[:, :pe.k] = x
    beats = np.broadcast_to(xp.reshape(v, 1, pe.fold, pe.simd),
                            (v, pe.channels, pe.fold, pe.simd)).reshape(-1, pe.simd)
    field = "y" if pe.requant is not None else "acc"
    return (pack(pe.i.payload.shape(), {"x": beats}),
            pack(pe.o.payload.shape(), {field: y.reshape(-1)}))


@pytest.fixture(scope="module")
def digits_fc():
    g = compile_model(str(EXAMPLES / "models" / "digits_cnn_qdq.onnx"))
    x = np.load(EXAMPLES / "data" / "digits_cnn_qdq.npz")["image"][:64]
    env = reference.run_codes(g, reference.to_codes(g, {"image": x}))
    fc = next(n for n in g.nodes if n.op == "MatMul")
    rqn = next(n for n in g.nodes if n.op == "Requant" and n.inputs[0] == fc.outputs[0])
    return g, env, fc, rqn


@pytest.mark.parametrize("simulator, target", [
    pytest.param("icarus", "generic", marks=needs_icarus),
    pytest.param("icarus", "ice40", marks=needs_icarus),
    pytest.param("icarus", "ecp5", marks=needs_icarus),
    pytest.param("verilator", "generic", marks=needs_verilator),
])
def test_pe_example_layer(simulator, target, digits_fc, tmp_path):
    """The example CNN's classifier (MatMul 16 -> 10 + per-channel ort requant) on 64 images."""
    g, env, fc, rqn = digits_fc
    pe = pe_from_ir(g, fc, rqn, simd=4, target=target)
    x = env[fc.inputs[0]].reshape(-1, pe.k)
    y = env[rqn.outputs[0]].reshape(-1, pe.channels)
    words_in, words_out = pe_words(pe, x, y)
    res = run_stream_case(pe, words_in, words_out, build_dir=tmp_path, simulator=simulator,
                          valid_pause=0.2, ready_pause=0.3, seed=7,
                          extra_sources=primitive_models(target, tmp_path))
    assert res.words == y.size


@needs_icarus
@pytest.mark.parametrize("target", ["ice40", "ecp5"])
def test_pe_wide_operands_on_dsp_primitives(target, tmp_path):
    """12-bit unsigned x 10-bit signed weights: SB_MAC16 in 16x16 mode, MULT18X18D; and
    2-bit x 2-bit through SB_MAC16's dual 8x8 mode with an odd lane count."""
    rng = np.random.default_rng(11)
    for x_shape, w_bits, simd in [(unsigned(12), 10, 3), (signed(2), 2, 5)]:
        k, n = 7, 3
        w = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), (n, k))
        lo = -(1 << (x_shape.width - 1)) if x_shape.signed else 0
        x = rng.integers(lo, lo + (1 << x_shape.width), (40, k))
        x[0] = lo + (1 << x_shape.width) - 1  # the extremes
        x[1] = lo
        bias = rng.integers(-100, 100, n)
        acc = x @ w.T + bias
        pe = ProcessingElement(w, x_shape, simd=simd, acc_shape=signed(26), bias=bias,
                               target=target)
        words_in, words_out = pe_words(pe, x, acc)
        build = tmp_path / f"{x_shape.width}"
        res = run_stream_case(pe, words_in, words_out, build_dir=build, valid_pause=0.2,
                              ready_pause=0.2, extra_sources=primitive_models(target, build))
        assert res.words == acc.size


# ---- every other unit -----------------------------------------------------------------------
def mac_case(rng):
    n = 2000
    a, b = rng.integers(0, 256, n), rng.integers(-128, 128, n)
    first = (rng.random(n) < 0.3).astype(int)
    first[0] = 1
    last = np.r_[first[1:], 1]
    starts = np.cumsum(first) - 1
    sums = np.bincount(starts, weights=a * b).astype(np.int64)
    dut = Mac(unsigned(8), signed(8), signed(24))
    return dut, pack(dut.i.payload.shape(), {"a": a, "b": b, "first": first, "last": last}), \
        pack(dut.o.payload.shape(), {"acc": sums})


def window_max_case(rng):
    n, lanes = 2000, 4
    x = rng.integers(-128, 128, (n, lanes))
    first = (rng.random(n) < 0.25).astype(int)
    first[0] = 1
    last = np.r_[first[1:], 1]
    starts = np.cumsum(first) - 1
    best = np.full((starts[-1] + 1, lanes), -129)
    np.maximum.at(best, starts, x)
    dut = WindowMax(signed(8), lanes)
    return dut, pack(dut.i.payload.shape(), {"x": x, "first": first, "last": last}), \
        pack(dut.o.payload.shape(), {"y": best})


def add_case(mode):
    def case(rng):
        g = compile_model(str(EXAMPLES / "models" / "digits_cnn_qdq.onnx"), requant=mode)
        node = next(n for n in g.nodes if n.op == "Add")
        dut = eltwise_add_from_ir(g, node)
        a, b = (v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))
        pick = rng.integers(0, a.size, 3000)
        a, b = a[pick], b[pick]
        y = (add_ort if mode == "ort" else add_dyadic)(a, b, node.attrs)
        return dut, pack(dut.i.payload.shape(), {"a": a, "b": b}), \
            pack(dut.o.payload.shape(), {"y": y})
    return case


def csd_pe_case(rng):
    w = rng.integers(-8, 8, (5, 11))
    x = rng.integers(0, 256, (60, 11))
    dut = ProcessingElement(w, unsigned(8), simd=4, acc_shape=signed(16), multiplier="csd")
    return (dut, *pe_words(dut, x, x @ w.T))


UNIT_CASES = {"mac": mac_case, "window_max": window_max_case, "add_ort": add_case("ort"),
              "add_dyadic": add_case("dyadic"), "pe_csd": csd_pe_case}


@needs_icarus
@pytest.mark.parametrize("unit", list(UNIT_CASES))
def test_unit_icarus(unit, tmp_path):
    dut, words_in, words_out = UNIT_CASES[unit](np.random.default_rng(len(unit)))
    res = run_stream_case(dut, words_in, words_out, build_dir=tmp_path, valid_pause=0.3,
                          ready_pause=0.3, seed=3)
    assert res.words == len(words_out)


@pytest.mark.slow
@needs_verilator
@pytest.mark.parametrize("unit", list(UNIT_CASES))
def test_unit_verilator(unit, tmp_path):
    dut, words_in, words_out = UNIT_CASES[unit](np.random.default_rng(len(unit) + 1))
    res = run_stream_case(dut, words_in, words_out, build_dir=tmp_path, simulator="verilator",
                          valid_pause=0.3, ready_pause=0.3, seed=4)
    assert res.words == len(words_out)
