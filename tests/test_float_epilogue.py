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


@pytest.mark.parametrize("tail", ["maxpool", "maxpool_gap_q"])
def test_clip_bound_beyond_every_code_then_float_pool(tmp_path, tail):
    """Clip(0, 6) of codes that reach only 0.22 is exact (the 6 clamps nothing), and the
    float MaxPool after it pools the codes (fuzz-268d2c295b4c: this was refused)."""
    inits = [nh.from_array(np.float32(0.00177), "s"), nh.from_array(np.uint8(128), "z"),
             nh.from_array(np.float32(0.0), "lo"), nh.from_array(np.float32(6.0), "hi"),
             nh.from_array(np.float32(0.00104), "s2"), nh.from_array(np.uint8(128), "z2")]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             h.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             h.make_node("Clip", ["d", "lo", "hi"], ["c"]),
             h.make_node("MaxPool", ["c"], ["y" if tail == "maxpool" else "p"],
                         kernel_shape=[2], strides=[1])]
    out_shape = ["N", C, 7]
    if tail != "maxpool":
        nodes += [h.make_node("GlobalAveragePool", ["p"], ["g"]),
                  h.make_node("QuantizeLinear", ["g", "s2", "z2"], ["gq"]),
                  h.make_node("DequantizeLinear", ["gq", "s2", "z2"], ["y"])]
        out_shape = ["N", C, 1]
    g = h.make_graph(nodes, "clip_pool", [h.make_tensor_value_info("x", T.FLOAT, ["N", C, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, out_shape)], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    x = np.random.default_rng(1).uniform(-0.3, 0.3, (200, C, 8)).astype(np.float32)
    design = intflow.compile(path)
    got = design.run({"x": x})["y"]
    want = ort.run(str(path), {"x": x})["y"]
    if tail == "maxpool":
        assert np.array_equal(got, want), np.flatnonzero(got != want)[:5]
    else:
        # onnxruntime sums in float here; intflow notes it and uses the integer pool
        assert any("GlobalAveragePool" in n for n in design.graph.notes)
        assert np.abs(got - want).max() <= 0.00104 * 1.0001
