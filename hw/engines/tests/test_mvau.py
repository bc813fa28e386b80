"""MVAU engine against ``run_engine``: folds, requant modes, stalls, inferences back to back."""

from __future__ import annotations

import numpy as np
import pytest

from intflow.compiler import requant as rq
from intflow.compiler.dataflow.spec import Engine
from intflow.compiler.dtypes import IntType
from intflow.hw.engines.tests.harness import check, example_engines, random_codes, stream
from intflow.hw.requant import ORT_STAGES

I8, U8 = IntType(True, 8), IntType(False, 8)


def mvau_engine(rng, *, rows: int, k: int, n: int, pe: int, simd: int, x_dtype=I8,
                w_dtype=I8, requant: str | None = "ort", per_channel: bool = True
                ) -> tuple[Engine, dict]:
    w = random_codes(rng, w_dtype, (n, k))
    bias = rng.integers(-3000, 3000, n)
    # the exact range of the sums, as ProveWidths would bound it
    xs = np.array([x_dtype.min, x_dtype.max])
    lo = int((np.minimum(w * xs[0], w * xs[1]).sum(axis=1) + bias).min())
    hi = int((np.maximum(w * xs[0], w * xs[1]).sum(axis=1) + bias).max())
    acc = IntType.fit(lo, hi)
    params = {"rows": rows, "k": k, "n": n, "weights": w, "bias": bias, "in_dtype": x_dtype,
              "weight_dtype": w_dtype, "acc_dtype": acc, "pe": pe, "simd": simd,
              "requant": None}
    out = acc
    if requant is not None:
        reals = rng.uniform(0.5, 2.0, n if per_channel else 1) / max(hi, -lo) * 150
        if requant == "ort":
            mult, exp = rq.ort_multiplier(reals.astype(np.float32))
        else:
            pairs = [rq.dyadic_multiplier(float(r)) for r in reals]
            mult, exp = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
        mult = np.broadcast_to(mult, (n,)).copy()
        exp = np.broadcast_to(exp, (n,)).copy()
        out = I8
        params["requant"] = {"mode": requant, "mult": mult, "exp": exp, "zero_point": -3,
                             "lo": -128, "hi": 127, "out_dtype": out}
    streams = {"x": stream("x", x_dtype, rows * k), "y": stream("y", out, rows * n)}
    return Engine("MVAU", "t.MVAU", ["x"], ["y"], params), streams


@pytest.mark.parametrize("k, n, pe, simd, requant", [
    (5, 3, 1, 1, "ort"),
    (6, 4, 2, 3, "ort"),
    (8, 6, 6, 8, "dyadic"),  # fully parallel: one beat per row
    (12, 4, 4, 2, None),  # pe > sf: the output side sets the pace
    (4, 8, 1, 4, "ort"),  # n > k
    (9, 2, 2, 1, "dyadic"),
])
def test_mvau(k, n, pe, simd, requant):
    rng = np.random.default_rng(k * 100 + n * 10 + pe + simd)
    e, s = mvau_engine(rng, rows=3, k=k, n=n, pe=pe, simd=simd, requant=requant)
    x = random_codes(rng, I8, (2, 3 * k))
    check(e, s, x, valid_rate=0.6, ready_rate=0.5, seed=k)


@pytest.mark.parametrize("pe, simd", [(1, 1), (2, 4), (3, 2)])
def test_mvau_uint8_per_tensor_full_rate(pe, simd):
    """No stalls: cycles per row = max(k, nf * max(sf, pe))."""
    rng = np.random.default_rng(pe * 10 + simd)
    rows, k, n = 6, 8, 6
    e, s = mvau_engine(rng, rows=rows, k=k, n=n, pe=pe, simd=simd, x_dtype=U8,
                       per_channel=False)
    x = random_codes(rng, U8, (2, rows * k))
    r = check(e, s, x)
    per_row = max(k, (n // pe) * max(k // simd, pe))
    # + the first vector and the pipeline fill (MAC stages and the requant unit's depth)
    assert r.cycles <= 2 * rows * per_row + k + 8 + ORT_STAGES


@pytest.mark.parametrize("stem, index, pe, simd", [
    ("pulse_cnn1d_qdq", 0, 1, 1),  # k=5, n=8
    ("pulse_cnn1d_qdq", 3, 4, 16),  # fc1: k=192, n=32
    ("digits_cnn_qdq", 3, 10, 4),  # fc: k=16, n=10
    ("digits_mlp_qdq", 1, 5, 8),  # k=32, n=10
])
def test_mvau_of_example(stem, index, pe, simd):
    e, streams = example_engines(stem, "MVAU")[index]
    e.params = dict(e.params, pe=pe, simd=simd)
    x_stream = streams[e.inputs[0]]
    rng = np.random.default_rng(index)
    x = random_codes(rng, x_stream.dtype, (2, x_stream.length))
    check(e, streams, x, valid_rate=0.8, ready_rate=0.7)


def largest_divisor(n: int, cap: int) -> int:
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["digits_cnn_qdq", "digits_cnn_qop", "digits_mlp_qdq",
                                  "jet_mlp_qdq", "pulse_cnn1d_qdq"])
@pytest.mark.parametrize("fold", ["1x1", "folded"])
def test_every_mvau_of_examples(stem, fold):
    for e, streams in example_engines(stem, "MVAU"):
        p = e.params
        pe, simd = (1, 1) if fold == "1x1" else (largest_divisor(p["n"], 4),
                                                  largest_divisor(p["k"], 8))
        e.params = dict(p, pe=pe, simd=simd)
        x_stream = streams[e.inputs[0]]
        rng = np.random.default_rng(1)
        check(e, streams, random_codes(rng, x_stream.dtype, (2, x_stream.length)),
              valid_rate=0.8, ready_rate=0.7)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_mvau_random_folds(seed):
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(1, 13)), int(rng.integers(1, 9))
    pe = int(rng.choice([d for d in range(1, n + 1) if n % d == 0]))
    simd = int(rng.choice([d for d in range(1, k + 1) if k % d == 0]))
    requant = [None, "ort", "dyadic"][seed % 3]
    x_dtype = [I8, U8, IntType(True, 4)][seed % 3]
    e, s = mvau_engine(rng, rows=int(rng.integers(1, 5)), k=k, n=n, pe=pe, simd=simd,
                       x_dtype=x_dtype, requant=requant, per_channel=bool(seed % 2))
    x = random_codes(rng, x_dtype, (3, s["x"].length))
    check(e, s, x, valid_rate=float(rng.uniform(0.3, 1)), ready_rate=float(rng.uniform(0.3, 1)),
          seed=seed)


def test_rom_images_round_trip_and_bram_rule():
    """The raw ROM words unpack to the weights in read order; big ROMs are padded BRAM ones."""
    from intflow.hw.engines.mvau import BRAM_DEPTH_ALIGN, build, rom_in_bram
    rng = np.random.default_rng(5)
    e, s = mvau_engine(rng, rows=1, k=24, n=6, pe=2, simd=2)  # 36 words of 2x2 int8
    m = build(e, s)
    w, b = m.roms["weights"], m.roms["bias"]
    assert w.bram and w.width == 32 and w.depth == 64 and w.depth % BRAM_DEPTH_ALIGN == 0
    rows = np.array(w.elements()[:36])  # word fold * sf + s holds [p][lane]
    want = e.params["weights"].reshape(3, 2, 12, 2).transpose(0, 2, 1, 3).reshape(36, 4)
    assert np.array_equal(rows, want) and not any(w.words[36:])
    assert not b.bram and b.depth == 3  # 3 words: logic, the real biases
    assert np.array_equal(np.array(b.elements()).ravel(), e.params["bias"])
    assert not rom_in_bram(15, 1024) and not rom_in_bram(64, 8) and rom_in_bram(65, 8)


def test_mvau_bram_rom_padded_and_placeholder():
    """A padded BRAM weight ROM computes the reference; a placeholder replaces its contents
    (and only a BRAM ROM of the right depth takes one)."""
    from intflow.hw.engines.mvau import build
    rng = np.random.default_rng(7)
    e, s = mvau_engine(rng, rows=2, k=24, n=3, pe=1, simd=1, requant=None)  # 72 words: BRAM
    x = random_codes(rng, I8, (2, s["x"].length))
    check(e, s, x, valid_rate=0.8, ready_rate=0.7)
    m = build(e, s)
    assert m.roms["weights"].bram and m.roms["weights"].depth == 96
    zeros = [0] * 96
    e.params = dict(e.params, rom_placeholder={"weights": zeros})
    assert build(e, s).placeholder == {"weights": zeros}
    with pytest.raises(ValueError, match="placeholder for the bias ROM"):
        build(e.__class__(e.kind, e.name, e.inputs, e.outputs,
                          dict(e.params, rom_placeholder={"bias": [0]})), s)
