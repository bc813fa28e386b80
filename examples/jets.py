"""Synthetic stand-in for the hls4ml jet-tagging data set (16 features, 5 classes).

The real data set (jet substructure features of g, q, W, Z, t jets) cannot be downloaded here, so
this generator makes data of the same shape, seeded and offline: each class is a mixture of
``N_COMPONENTS`` Gaussians in an ``LATENT_DIM``-dimensional latent space; the 16 features are a
fixed random nonlinear map of the latent point (linear + sine + squared terms) plus noise. The
classes overlap, so a good classifier reaches roughly the accuracy of the real benchmark
(~80% here, ~75% on the real data) and a linear one does noticeably worse.
"""

from __future__ import annotations

import numpy as np

N_FEATURES = 16
N_CLASSES = 5
CLASS_NAMES = ("g", "q", "W", "Z", "t")
LATENT_DIM = 6
N_COMPONENTS = 3
_STRUCTURE_SEED = 1234  # fixes the class means, covariances and the feature map


def _structure():
    rng = np.random.default_rng(_STRUCTURE_SEED)
    means = rng.normal(0.0, 1.0, size=(N_CLASSES, N_COMPONENTS, LATENT_DIM))
    chols = rng.normal(0.0, 0.35, size=(N_CLASSES, N_COMPONENTS, LATENT_DIM, LATENT_DIM))
    chols += 0.8 * np.eye(LATENT_DIM)
    lin = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), size=(LATENT_DIM, N_FEATURES))
    freq = rng.normal(0.0, 1.5, size=(LATENT_DIM, N_FEATURES))
    quad = rng.normal(0.0, 0.6 / np.sqrt(LATENT_DIM), size=(LATENT_DIM, N_FEATURES))
    return means, chols, lin, freq, quad


def make_jets(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x, y)``: raw features float32 ``(n, 16)`` and labels int64 ``(n,)``."""
    means, chols, lin, freq, quad = _structure()
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, size=n)
    comp = rng.integers(0, N_COMPONENTS, size=n)
    eps = rng.normal(size=(n, LATENT_DIM))
    z = means[y, comp] + np.einsum("nij,nj->ni", chols[y, comp], eps)
    x = z @ lin + 0.5 * np.sin(z @ freq) + (z @ quad) ** 2
    x += rng.normal(0.0, 0.5, size=x.shape)
    return x.astype(np.float32), y.astype(np.int64)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-feature z-score (the hls4ml benchmark feeds standardised features)."""
    return ((x - mean) / std).astype(np.float32)
