"""Same model and options -> byte-identical IR files (graph.json, constants.npz, estimate)."""

from __future__ import annotations

import time

import pytest

from intflow.cli import main


@pytest.mark.parametrize("model", ["digits_cnn_qdq", "pulse_cnn1d_qdq"])
def test_compile_is_byte_identical(tmp_path, model):
    path = f"examples/models/{model}.onnx"
    assert main(["compile", path, "-o", str(tmp_path / "a")]) == 0
    time.sleep(1.1)  # a timestamp in any output would now differ
    assert main(["compile", path, "-o", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert "constants.npz" in names and "graph.json" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
