"""Edge vectors for RTL tests: the inputs that reach the accumulator and saturation corners.

Random codes rarely put every element of a dot product at the same extreme, so a too-narrow
accumulator, a requant that overflows or a clamp that wraps can pass a random test. These
samples hit the corners on purpose (issue 8): every element at the type's minimum, every
element at its maximum, every element at the zero point (the real value 0: what padding and
folded zero points must cancel exactly), and extremes alternating in both phases (the largest
positive and negative partial sums a signed weight row can build).

One generator serves the engine harness (``hw/engines/tests/harness.py``) and the network
tests (``tests/``); it lives in the compiler because both may import it.
"""

from __future__ import annotations

import numpy as np

from .dtypes import IntType

KINDS = ("all-min", "all-max", "zero-point", "alternating min/max", "alternating max/min")


def edge_vectors(dtype: IntType, shape: tuple[int, ...] | int,
                 zero_point: int | np.ndarray = 0) -> np.ndarray:
    """Samples (len(KINDS), *shape) of int64 codes of ``dtype``, one per kind in ``KINDS``.

    ``zero_point`` may be a scalar or an array broadcastable to ``shape`` (per channel); it
    must lie in the type's range. Alternation runs over the flat (C-order) index."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    zp = np.broadcast_to(np.asarray(zero_point, np.int64), shape)
    if zp.size and (zp.min() < dtype.min or zp.max() > dtype.max):
        raise ValueError(f"zero point outside {dtype} [{dtype.min}, {dtype.max}]")
    size = int(np.prod(shape, dtype=np.int64))
    even = (np.arange(size) % 2 == 0).reshape(shape)
    lo, hi = dtype.min, dtype.max
    return np.stack([
        np.full(shape, lo, np.int64),
        np.full(shape, hi, np.int64),
        zp.astype(np.int64),
        np.where(even, lo, hi).astype(np.int64),
        np.where(even, hi, lo).astype(np.int64),
    ])


def with_edge_vectors(x: np.ndarray, dtype: IntType,
                      zero_point: int | np.ndarray = 0) -> np.ndarray:
    """``x`` (samples, *shape) codes followed by the edge vectors of its per-sample shape."""
    x = np.asarray(x, np.int64)
    return np.concatenate([x, edge_vectors(dtype, x.shape[1:], zero_point)])
