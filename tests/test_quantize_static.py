"""Small float networks quantized by onnxruntime's own ``quantize_static`` in every option
combination (QDQ/QOperator, uint8/int8 activations, per-channel, symmetric activations,
reduce_range): the intflow reference must equal onnxruntime on every element.

onnxruntime here means ORT_ENABLE_ALL + session.qdqisint8allowed=1, run on the u8×u8 oracle
of the model (``intflow.oracle``) so that the comparison is exact on every CPU.
"""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from ortcheck import assert_stream_model_equals_reference

import intflow
from intflow import ort
from intflow.oracle import u8u8_oracle


def _w(rng, name, *shape, s=0.3):
    return nh.from_array(rng.normal(0, s, shape).astype(np.float32), name)


def mobilenet_block(rng):
    """Conv s2 + ReLU6, depthwise conv + ReLU6, 1x1 conv, residual Add, GAP, Gemm."""
    inits = [_w(rng, "w1", 8, 3, 3, 3), _w(rng, "b1", 8), _w(rng, "w2", 8, 1, 3, 3),
             _w(rng, "b2", 8), _w(rng, "w3", 8, 8, 1, 1), _w(rng, "b3", 8),
             _w(rng, "wf", 10, 8), _w(rng, "bf", 10),
             nh.from_array(np.float32(0), "zero"), nh.from_array(np.float32(6), "six")]
    n = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
         h.make_node("Clip", ["c1", "zero", "six"], ["r1"]),
         h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], group=8, pads=[1, 1, 1, 1]),
         h.make_node("Clip", ["c2", "zero", "six"], ["r2"]),
         h.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
         h.make_node("Add", ["c3", "r1"], ["a"]),
         h.make_node("GlobalAveragePool", ["a"], ["g"]),
         h.make_node("Flatten", ["g"], ["f"]),
         h.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    return n, inits, [3, 12, 12], [10]


def resnet_block(rng):
    """Conv + ReLU, MaxPool, two convs with a skip, ReLU, windowed AveragePool, MatMul+Add."""
    inits = [_w(rng, "w1", 8, 2, 3, 3), _w(rng, "b1", 8), _w(rng, "w2", 8, 8, 3, 3),
             _w(rng, "b2", 8), _w(rng, "w3", 8, 8, 3, 3), _w(rng, "b3", 8),
             _w(rng, "wm", 32, 6), _w(rng, "bm", 6),
             nh.from_array(np.array([-1, 32], np.int64), "shp")]
    n = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c1"], ["r1"]),
         h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
         h.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
         h.make_node("Relu", ["c2"], ["r2"]),
         h.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
         h.make_node("Add", ["c3", "p1"], ["a"]),
         h.make_node("Relu", ["a"], ["ra"]),
         h.make_node("AveragePool", ["ra"], ["ap"], kernel_shape=[3, 3], strides=[2, 2],
                     pads=[1, 1, 1, 1]),
         h.make_node("Reshape", ["ap", "shp"], ["f"]),
         h.make_node("MatMul", ["f", "wm"], ["mm"]),
         h.make_node("Add", ["mm", "bm"], ["y"])]
    return n, inits, [2, 8, 8], [6]


def branchy_1d(rng):
    """Conv1d + LeakyRelu and dilated Conv1d + Sigmoid, Concat, strided Conv1d, GAP, Gemm."""
    inits = [_w(rng, "w1", 6, 1, 5), _w(rng, "b1", 6), _w(rng, "w2", 6, 1, 3), _w(rng, "b2", 6),
             _w(rng, "w3", 4, 12, 3), _w(rng, "b3", 4), _w(rng, "wf", 3, 4), _w(rng, "bf", 3)]
    n = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[2, 2]),
         h.make_node("LeakyRelu", ["c1"], ["l1"], alpha=0.1),
         h.make_node("Conv", ["x", "w2", "b2"], ["c2"], pads=[2, 2], dilations=[2]),
         h.make_node("Sigmoid", ["c2"], ["s2"]),
         h.make_node("Concat", ["l1", "s2"], ["cat"], axis=1),
         h.make_node("Conv", ["cat", "w3", "b3"], ["c3"], strides=[2]),
         h.make_node("Relu", ["c3"], ["r3"]),
         h.make_node("GlobalAveragePool", ["r3"], ["g"]),
         h.make_node("Flatten", ["g"], ["f"]),
         h.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    return n, inits, [1, 32], [3]


def gated_mlp(rng):
    """MLP with a sigmoid gate (Mul of two activations), Clip(-1, 1) and a Transpose."""
    inits = [_w(rng, "w1", 16, 24), _w(rng, "b1", 24), _w(rng, "w2", 16, 24), _w(rng, "b2", 24),
             _w(rng, "w3", 24, 5), _w(rng, "b3", 5),
             nh.from_array(np.float32(-1), "lo"), nh.from_array(np.float32(1), "hi")]
    n = [h.make_node("MatMul", ["x", "w1"], ["m1"]),
         h.make_node("Add", ["m1", "b1"], ["a1"]),
         h.make_node("Clip", ["a1", "lo", "hi"], ["t1"]),
         h.make_node("MatMul", ["x", "w2"], ["m2"]),
         h.make_node("Add", ["m2", "b2"], ["a2"]),
         h.make_node("Sigmoid", ["a2"], ["s2"]),
         h.make_node("Mul", ["t1", "s2"], ["g"]),
         h.make_node("MatMul", ["g", "w3"], ["m3"]),
         h.make_node("Add", ["m3", "b3"], ["y"])]
    return n, inits, [16], [5]


def conv_bn(rng):
    """Conv + BatchNormalization + ReLU without quant_pre_process: BatchNormalization stays a
    float op between DequantizeLinear and QuantizeLinear (a per-channel table in intflow)."""
    inits = [_w(rng, "w1", 6, 2, 3, 3), _w(rng, "b1", 6),
             nh.from_array(rng.uniform(0.5, 1.5, 6).astype(np.float32), "gamma"),
             nh.from_array(rng.normal(0, 0.3, 6).astype(np.float32), "beta"),
             nh.from_array(rng.normal(0, 0.3, 6).astype(np.float32), "mean"),
             nh.from_array(rng.uniform(0.2, 2, 6).astype(np.float32), "var"),
             _w(rng, "w2", 4, 6, 3, 3), _w(rng, "b2", 4)]
    n = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
         h.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn"]),
         h.make_node("Relu", ["bn"], ["r1"]),
         h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2]),
         h.make_node("Flatten", ["c2"], ["y"])]
    return n, inits, [2, 7, 7], [36]


ARCHS = [mobilenet_block, resnet_block, branchy_1d, gated_mlp, conv_bn]
OPTIONS = list(itertools.product(
    [QuantFormat.QDQ, QuantFormat.QOperator], [QuantType.QUInt8, QuantType.QInt8],
    [False, True], [False, True], [False, True]))


class _Reader(CalibrationDataReader):
    def __init__(self, rng, shape):
        self.it = iter([{"x": rng.normal(0, 1, (16, *shape)).astype(np.float32)}
                        for _ in range(4)])

    def get_next(self):
        return next(self.it, None)


@pytest.fixture(scope="module", params=ARCHS, ids=lambda f: f.__name__)
def float_model(request, tmp_path_factory):
    rng = np.random.default_rng(ARCHS.index(request.param) + 1)
    nodes, inits, in_shape, out_shape = request.param(rng)
    g = h.make_graph(nodes, request.param.__name__,
                     [h.make_tensor_value_info("x", T.FLOAT, ["N", *in_shape])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", *out_shape])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path = tmp_path_factory.mktemp(request.param.__name__) / "float.onnx"
    onnx.save(m, path)
    x = rng.normal(0, 1.2, (64, *in_shape)).astype(np.float32)
    return path, in_shape, x, rng


@pytest.mark.parametrize("fmt,act,per_channel,act_sym,reduce_range", OPTIONS,
                         ids=lambda v: getattr(v, "name", str(v)))
def test_quantize_static_matches_onnxruntime(float_model, tmp_path, fmt, act, per_channel,
                                             act_sym, reduce_range):
    path, in_shape, x, rng = float_model
    q = tmp_path / "q.onnx"
    quantize_static(str(path), str(q), _Reader(rng, in_shape), quant_format=fmt,
                    activation_type=act, weight_type=QuantType.QInt8, per_channel=per_channel,
                    reduce_range=reduce_range, extra_options={"ActivationSymmetric": act_sym})
    design = intflow.compile(q)
    got = design.run({"x": x})["y"]
    oracle = tmp_path / "oracle.onnx"
    onnx.save(u8u8_oracle(onnx.load(q)), oracle)
    want = ort.run(str(oracle), {"x": x})["y"]
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = np.flatnonzero(got != want)
    assert diff.size == 0, (f"{diff.size}/{want.size} elements differ; first at "
                            f"{np.unravel_index(diff[0], want.shape)}: intflow "
                            f"{got.ravel()[diff[0]]}, onnxruntime {want.ravel()[diff[0]]}")
    # the streaming plan the hardware is built from computes the same integers
    assert_stream_model_equals_reference(design.graph, {"x": x})
