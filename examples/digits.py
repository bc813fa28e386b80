"""scikit-learn's digits as every example script splits them (numpy + scikit-learn only)."""

from __future__ import annotations

import numpy as np

N_HELDOUT = 256


def digits_split(seed: int, n_heldout: int = N_HELDOUT):
    """Digits scaled to [0, 1] (pixel / 16): ((x_train, y_train), (x_test, y_test)), the
    first ``n_heldout`` of a seeded permutation held out, the rest for training."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(x))
    test, train = perm[:n_heldout], perm[n_heldout:]
    return (x[train], y[train]), (x[test], y[test])
