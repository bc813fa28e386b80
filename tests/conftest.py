"""Shared fixtures for the cross-module tests (tests/): example models and their truth."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path: make the
# helper modules beside the tests (ortcheck, qmodels, ...) importable by their plain names.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from ortcheck import (  # noqa: E402
    MODELS,
    exact_truth_model,
    load_example_inputs,
    needs_oracle,
    ort_outputs,
)


@dataclass
class Example:
    stem: str
    path: str
    inputs: dict[str, np.ndarray]
    truth: dict[str, np.ndarray]  # exact truth: onnxruntime, or the u8×u8 oracle model
    ort: dict[str, np.ndarray]  # onnxruntime on the model itself (CPU-dependent for u8×s8)
    oracle: bool  # whether the truth came from the u8×u8 oracle model


@pytest.fixture(scope="session")
def example():
    """``example(stem)`` -> Example, computed once per session."""
    cache: dict[str, Example] = {}

    def get(stem: str) -> Example:
        if stem not in cache:
            path = str(MODELS / f"{stem}.onnx")
            model = onnx.load(path)
            inputs = load_example_inputs(stem)
            raw = ort_outputs(path, inputs)
            oracle = needs_oracle(model)
            truth = ort_outputs(exact_truth_model(model), inputs) if oracle else raw
            cache[stem] = Example(stem, path, inputs, truth, raw, oracle)
        return cache[stem]

    return get
