"""``intflow check``: every difference from onnxruntime is classified, and a corrupted
reference shows up as a real mismatch (the comparison can fail)."""

from __future__ import annotations

import numpy as np

import intflow
from intflow.check import check, classify, random_inputs
from intflow.cli import main


def test_check_explains_every_difference():
    path = "examples/models/digits_cnn_qop.onnx"  # u8 x s8: saturates on AVX2 without VNNI
    g = intflow.compile(path).graph
    rows, ok = check(path, g, random_inputs(g, 16))
    assert ok
    for r in rows:
        explained = r["equal"] + r["u8s8 saturation"] + r["float path"] + r["rounding tie"]
        assert explained + r["real mismatch"] == r["elements"]
    integer = rows[0]
    assert (integer["session"], integer["qdqisint8allowed"]) == ("ORT_ENABLE_ALL", True)
    assert integer["real mismatch"] == integer["rounding tie"] == integer["float path"] == 0


def test_classify_reports_a_corrupted_element():
    ours = {"y": np.array([1.0, 2.0, 3.0, 4.0], np.float32)}
    theirs = {"y": np.array([1.0, 2.5, 3.0, 9.0], np.float32)}
    c = classify(ours, theirs, None, {"y": 0.5}, integer_session=True)
    assert c == {"equal": 2, "u8s8 saturation": 0, "float path": 0, "rounding tie": 1,
                 "real mismatch": 1}


def test_cli_check_exit_code(capsys):
    assert main(["check", "examples/models/digits_mlp_qdq.onnx", "--samples", "8"]) == 0
    out = capsys.readouterr().out
    assert "ORT_DISABLE_ALL" in out and "agrees" in out
