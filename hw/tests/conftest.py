"""Fixtures for the hardware unit tests: an example model compiled in both requant modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from intflow.compiler import compile_model, reference

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def digits_cnn():
    """``(mode) -> (IntGraph, every tensor of the reference run on 8 samples)``."""
    cache = {}

    def get(mode: str):
        if mode not in cache:
            g = compile_model(str(EXAMPLES / "models" / "digits_cnn_qdq.onnx"), requant=mode)
            x = np.load(EXAMPLES / "data" / "digits_cnn_qdq.npz")["image"][:8]
            feeds = reference.to_codes(g, {"image": x})
            cache[mode] = (g, reference.run_codes(g, feeds))
        return cache[mode]

    return get
