"""Same model and options -> byte-identical IR, estimate and Verilog."""

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
    def files(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    names = files(tmp_path / "a")
    assert names == files(tmp_path / "b")
    assert {"constants.npz", "graph.json", "rtl/intflow_network.v", "rtl/ports.json"} <= set(names)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
