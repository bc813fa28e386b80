"""The integer Softmax and LayerNorm kernels (compiler/ops/softmax.py, layernorm.py): close to
the float functions they replace, and inside the bounds the width proof uses."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from intflow.compiler.ops.layernorm import LayerNorm, isqrt, z_bound
from intflow.compiler.ops.softmax import Softmax, exp_table


def _graph(shape, consts):
    tensors = {"x": SimpleNamespace(shape=shape)}
    return SimpleNamespace(tensors=tensors, const=lambda k: consts[k])


@pytest.mark.parametrize("scale", [0.02, 0.0625, 0.3])
def test_softmax_close_to_float_and_bounded(scale):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (200, 4, 16)).astype(np.int64)
    x[0, 0] = 127  # a flat row
    x[0, 1] = -128
    x[0, 1, 3] = 127  # one dominant element
    attrs = {"E": 16, "M": 15}
    attrs["F"] = attrs["E"] + attrs["M"] + math.ceil(math.log2(16)) + 2
    node = SimpleNamespace(attrs=attrs, inputs=["x", "t"])
    table = exp_table(scale, 8, attrs["E"])
    (p,) = Softmax.run(node, None, [x, table])
    lo, hi = Softmax.bounds(node, None, [(-128, 127)])[0]
    assert p.min() >= lo and p.max() <= hi
    f = np.exp(scale * (x - x.max(axis=-1, keepdims=True)))
    want = f / f.sum(axis=-1, keepdims=True) * 2 ** 15
    # truncation (1), R (1/4) and the table's rounding: n half-units of 2^-E in S
    tol = 1.25 + 16 * 2.0 ** (attrs["M"] - attrs["E"]) / 2
    assert np.abs(p - want).max() < tol  # 5.25 units of 2^-15: 1/25 of a 1/255 output step
    assert np.all(p.sum(axis=-1) <= 2 ** 15)


def test_isqrt_is_exact():
    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, (1 << 52) - 1, 1 << 52, (1 << 60) + 12345])
    r = isqrt(v)
    assert [int(a) for a in r] == [math.isqrt(int(a)) for a in v]


@pytest.mark.parametrize("n", [2, 8, 32, 64])
def test_layernorm_close_to_float_and_bounded(n):
    rng = np.random.default_rng(n)
    sx, zx, eps = 0.05, 3, 1e-5
    c = rng.integers(-128, 128, (300, 5, n)).astype(np.int64)
    c[0, 0] = 7  # a constant row: Z = 0
    c[0, 1] = 0
    c[0, 1, 0] = 1  # the smallest non-zero variance
    c[0, 2] = rng.choice([-128, 127], n)  # extremes
    gamma_q = rng.integers(-127, 128, n)
    s_gamma = 0.01
    beta = rng.normal(0, 0.5, n)
    attrs = {"T": 8, "P": 8}
    # R = 2^K / D keeps >= P + 8 bits for the largest D = 2^T * n * 2^8
    attrs["K"] = attrs["T"] + math.ceil(math.log2(n)) + 8 + attrs["P"] + 8
    attrs["E2"] = int(round(n * n * eps / sx ** 2 * 2 ** (2 * attrs["T"])))
    b = np.round(beta / (s_gamma * 2.0 ** -attrs["P"])).astype(np.int64)
    node = SimpleNamespace(attrs=attrs, inputs=["x", "g", "b"])
    g = _graph((1, 5, n), {"g": gamma_q, "b": b})
    (acc,) = LayerNorm.run(node, g, [c, gamma_q, b])
    lo, hi = LayerNorm.bounds(node, g, [(-128, 127), (0, 0), (0, 0)])[0]
    assert acc.min() >= lo and acc.max() <= hi
    x = sx * (c - zx)
    m = x.mean(axis=-1, keepdims=True)
    y = (x - m) / np.sqrt(x.var(axis=-1, keepdims=True) + eps) * (gamma_q * s_gamma) + beta
    got = acc * s_gamma * 2.0 ** -attrs["P"]
    # the normalised value has a resolution of 2^-P; gamma scales it
    tol = (np.abs(gamma_q) * s_gamma).max() * 2.0 ** -attrs["P"] * 3 + s_gamma * 2 ** -attrs["P"]
    assert np.abs(got - y).max() <= tol
    # the width proof's bound on Z holds with room for the rounding
    zb = z_bound(n, attrs["P"])
    assert zb >= 1.07 * math.sqrt(n - 1) * 2 ** attrs["P"]
