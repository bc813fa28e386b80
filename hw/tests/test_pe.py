"""ProcessingElement in amaranth's simulator against the compiler's MatMul/Conv and Requant
kernels, with random stalls: random layers (both multiplier kinds, both requant modes, SIMD
widths that do and do not divide K) and layers of an example model's IR."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth import Shape, signed, unsigned

from intflow.compiler import requant as rq
from intflow.compiler.ops.matmul import MatMul
from intflow.hw.pe import ProcessingElement, pe_from_ir
from intflow.hw.requant import RequantDyadic, RequantOrt
from intflow.hw.testbench import pack, run_stream, unpack


def pe_beats(pe: ProcessingElement, x: np.ndarray) -> np.ndarray:
    """Input beats for vectors ``x`` (V, K): each vector once per channel, SF beats each."""
    v = x.shape[0]
    xp = np.zeros((v, pe.fold * pe.simd), np.int64)
    xp[:, :pe.k] = x
    per_vector = xp.reshape(v, 1, pe.fold, pe.simd)
    beats = np.broadcast_to(per_vector, (v, pe.channels, pe.fold, pe.simd))
    return pack(pe.i.payload.shape(), {"x": beats.reshape(-1, pe.simd)})


def run_pe(pe: ProcessingElement, x: np.ndarray, **kw) -> np.ndarray:
    run = run_stream(pe, list(pe_beats(pe, x)), x.shape[0] * pe.channels, **kw)
    field = "y" if pe.requant is not None else "acc"
    return unpack(pe.o.payload.shape(), run.words)[field].reshape(x.shape[0], pe.channels)


def matmul_ref(x, w, bias):
    """The compiler's MatMul kernel: x (V, K) @ w.T (K, N) + bias."""
    node = SimpleNamespace(attrs={}, outputs=["acc"])
    g = SimpleNamespace(tensors={"acc": SimpleNamespace(shape=(w.shape[0],))})
    return MatMul.run(node, g, [x, w.T, bias])[0]


def shape_range(s: Shape):
    return (-(1 << (s.width - 1)), 1 << (s.width - 1)) if s.signed else (0, 1 << s.width)


@pytest.mark.parametrize("multiplier", ["dsp", "csd"])
@pytest.mark.parametrize("simd, k, n, x_shape, w_bits, mode", [
    (4, 10, 3, signed(8), 8, "ort"),
    (1, 5, 2, unsigned(8), 8, "dyadic"),
    (3, 9, 4, unsigned(4), 4, "ort"),
    (8, 16, 2, signed(2), 2, "dyadic"),
])
def test_random_layer(multiplier, simd, k, n, x_shape, w_bits, mode):
    rng = np.random.default_rng(simd * 1000 + k * 10 + n)
    w = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), (n, k))
    bias = rng.integers(-4 * k, 4 * k, n) << (w_bits + x_shape.width - 4)
    x = rng.integers(*shape_range(x_shape), (24, k))
    acc = matmul_ref(x, w, bias)
    acc_shape = signed(int(np.abs(acc).max()).bit_length() + 3)
    m = np.float32(rng.uniform(0.5, 2, n) * 200 / max(1, np.ptp(acc)))
    if mode == "ort":
        mant, exp = rq.ort_multiplier(m)
        unit = RequantOrt(acc_shape, mant, exp, -3, -128, 127)
        ref = rq.requant_ort(acc, mant, exp, -3, -128, 127)
    else:
        m0, sh = (np.array(v) for v in zip(*(rq.dyadic_multiplier(float(r)) for r in m),
                                           strict=True))
        unit = RequantDyadic(acc_shape, m0, sh, -3, -128, 127)
        ref = rq.requant_dyadic(acc, m0, sh, -3, -128, 127)
    pe = ProcessingElement(w, x_shape, simd=simd, acc_shape=acc_shape, bias=bias,
                           requant=unit, multiplier=multiplier)
    y = run_pe(pe, x, valid_rate=0.8, ready_rate=0.7, seed=simd)
    np.testing.assert_array_equal(y, ref)
    assert len(np.unique(ref)) > 5


@pytest.mark.parametrize("multiplier", ["dsp", "csd"])
def test_accumulator_output_and_latency(multiplier):
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (3, 7))
    x = rng.integers(0, 256, (6, 7))
    pe = ProcessingElement(w, unsigned(8), simd=2, acc_shape=signed(19),
                           multiplier=multiplier)
    run = run_stream(pe, list(pe_beats(pe, x)), 18)
    acc = unpack(pe.o.payload.shape(), run.words)["acc"].reshape(6, 3)
    np.testing.assert_array_equal(acc, matmul_ref(x, w, np.zeros(3, np.int64)))
    # at full rate: SF beats per output, the first after SF - 1 more beats plus the latency
    assert run.last_out - run.first_in == 18 * pe.fold - 1 + pe.latency


def test_constant_weights_csd_has_one_rom_row():
    w = np.array([[3, -7, 0, 100]])
    pe = ProcessingElement(w, signed(8), simd=4, acc_shape=signed(18), multiplier="csd")
    assert len(pe.codes) == 1  # elaborated as constants: shift-adds only
    x = np.array([[1, 2, 3, 4], [-128, 127, -1, 127], [0, 0, 0, 0]])
    np.testing.assert_array_equal(run_pe(pe, x).ravel(), (x @ w.T).ravel())


def im2col(x, kh, kw, pad, pad_value):
    """Windows (pixels, C*kh*kw) of one (C, H, W) image, stride 1, in weight order."""
    c, h, wd = x.shape
    xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad)], constant_values=pad_value)
    cols = [xp[:, i:i + kh, j:j + kw].reshape(-1) for i in range(h + 2 * pad - kh + 1)
            for j in range(wd + 2 * pad - kw + 1)]
    return np.array(cols)


@pytest.mark.parametrize("mode", ["ort", "dyadic"])
def test_example_model_layers(mode, digits_cnn):
    g, env = digits_cnn(mode)
    by_out = {n.inputs[0]: n for n in g.nodes if n.op == "Requant"}
    fc = next(n for n in g.nodes if n.op == "MatMul")
    pe = pe_from_ir(g, fc, by_out[fc.outputs[0]], simd=4)
    x = env[fc.inputs[0]].reshape(-1, pe.k)
    y = run_pe(pe, x[:4], valid_rate=0.9, ready_rate=0.8)
    np.testing.assert_array_equal(y, env[by_out[fc.outputs[0]].outputs[0]].reshape(-1, 10)[:4])

    conv = next(n for n in g.nodes if n.op == "Conv")
    a = conv.attrs
    assert a["strides"] == [1, 1] and a["group"] == 1 and a["dilations"] == [1, 1]
    rqn = by_out[conv.outputs[0]]
    pe = pe_from_ir(g, conv, rqn, simd=3, multiplier="csd", channels=slice(2, 6))
    cols = im2col(env[conv.inputs[0]][0, 0], 3, 3, a["pads"][0], a["pad_value"])[::5]
    y = run_pe(pe, cols)
    want = env[rqn.outputs[0]][0, 0, 2:6].reshape(4, -1).T[::5]
    np.testing.assert_array_equal(y, want)
