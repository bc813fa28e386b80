"""Float ops after the last DequantizeLinear (onnxruntime runs them on the CPU) become a host
table of float32 values per code: equal to onnxruntime on every element."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import intflow
from intflow import ort

C = 4


def _model(op: str) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [nh.from_array(np.float32(0.037), "s"), nh.from_array(np.uint8(117), "z"),
             nh.from_array(np.float32(0.0), "lo"), nh.from_array(np.float32(6.0), "hi")]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             h.make_node("DequantizeLinear", ["q", "s", "z"], ["d"])]
    if op == "Clip":
        nodes.append(h.make_node("Clip", ["d", "lo", "hi"], ["y"]))
    elif op == "LeakyRelu":
        nodes.append(h.make_node("LeakyRelu", ["d"], ["y"], alpha=0.13))
    elif op == "BatchNormalization":
        for name in ("g", "b", "m"):
            inits.append(nh.from_array(rng.normal(0, 1, C).astype(np.float32), name))
        inits.append(nh.from_array(rng.uniform(0.1, 2, C).astype(np.float32), "v"))
        nodes.append(h.make_node("BatchNormalization", ["d", "g", "b", "m", "v"], ["y"]))
    else:
        nodes.append(h.make_node(op, ["d"], ["y"]))
    g = h.make_graph(nodes, "epilogue", [h.make_tensor_value_info("x", T.FLOAT, ["N", C, 3, 3])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", C, 3, 3])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("op", ["Clip", "Relu", "Sigmoid", "LeakyRelu", "BatchNormalization"])
def test_float_epilogue_equals_onnxruntime(tmp_path, op):
    path = tmp_path / f"{op}.onnx"
    onnx.save(_model(op), path)
    x = np.random.default_rng(0).uniform(-6, 6, (300, C, 3, 3)).astype(np.float32)
    design = intflow.compile(path)
    got = design.run({"x": x})["y"]
    want = ort.run(str(path), {"x": x})["y"]
    assert np.array_equal(got, want), np.flatnonzero(got != want)[:5]
    # the epilogue survives saving and loading the IR
    design.graph.save(tmp_path / "ir")
    from intflow.compiler import IntGraph, reference
    again = reference.run(IntGraph.load(tmp_path / "ir"), {"x": x})["y"]
    assert np.array_equal(again, want)
