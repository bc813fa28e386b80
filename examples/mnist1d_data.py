"""The mnist1d data set (Greydanus, 2020) as the examples use it, generated offline.

``mnist1d.data.make_dataset`` builds the sequences procedurally from the ten digit templates the
package ships (no download; ``get_dataset`` would fetch a pickle, so it is not used): 40-sample
1-D signals, shifted, scaled, sheared and noised, standardised to mean 0 / std 1.
"""

from __future__ import annotations

import numpy as np

N_SAMPLES = 12_000  # the package default is 5,000; more training data for the same generator
SEQ_LEN = 40


def mnist1d_split(n_heldout: int, seed: int = 42):
    """((x_train, y_train), (x_test, y_test), record): x of shape (N, 1, 40) float32, y int64;
    the first ``n_heldout`` of the generator's test split held out."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = N_SAMPLES
    args.seed = seed
    d = make_dataset(args)
    xtr = d["x"].astype(np.float32).reshape(-1, 1, SEQ_LEN)
    xte = d["x_test"].astype(np.float32).reshape(-1, 1, SEQ_LEN)[:n_heldout]
    record = {"source": "mnist1d.data.make_dataset (procedural, package templates)",
              "num_samples": N_SAMPLES, "seed": seed, "train_split": args.train_split,
              "seq_len": SEQ_LEN, "n_train": len(xtr)}
    return ((xtr, d["y"].astype(np.int64)),
            (xte, d["y_test"].astype(np.int64)[:n_heldout]), record)
