"""Models from onnxruntime's quantize_dynamic compute their activation scales at run time:
intflow rejects them with a message that names the fix (exit 2, one line)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import quantize_dynamic

from intflow.cli import main


def test_quantize_dynamic_model_is_rejected_clearly(tmp_path, capsys):
    w = nh.from_array(np.random.default_rng(0).normal(0, 1, (8, 4)).astype(np.float32), "w")
    g = h.make_graph([h.make_node("MatMul", ["x", "w"], ["y"])], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, ["N", 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])], [w])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "f.onnx")
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"))
    capsys.readouterr()  # the quantizer's own warnings
    assert main(["compile", str(tmp_path / "q.onnx"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quantize_static" in err[0] and "q.onnx" in err[0]
    assert not (tmp_path / "out").exists()
