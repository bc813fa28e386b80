"""Split and ReduceMean in models quantized by onnxruntime's ``quantize_static`` (QDQ and
QOperator; issue 9, multi-head attention encoders).

Split is a layout op: the intflow reference equals onnxruntime (the u8×u8 oracle) on every
element. onnxruntime computes ReduceMean in float between DequantizeLinear and
QuantizeLinear; intflow sums the codes exactly and requantises once, so its codes are within
one code of onnxruntime's.
"""

from __future__ import annotations

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
from intflow.compiler import compile_model, reference
from intflow.compiler.dataflow import model as dataflow_model
from intflow.compiler.dataflow.fold import apply_fold
from intflow.compiler.dataflow.plan import plan
from intflow.compiler.dtypes import IntType
from intflow.compiler.edge_vectors import with_edge_vectors
from intflow.compiler.errors import ModelError
from intflow.oracle import u8u8_oracle
from intflow.sim.network import run_graph

U8 = IntType(False, 8)

IN_SHAPE = (4, 6)


class _Reader(CalibrationDataReader):
    def __init__(self, rng):
        self.it = iter([{"x": rng.normal(0, 1, (16, *IN_SHAPE)).astype(np.float32)}
                        for _ in range(4)])

    def get_next(self):
        return next(self.it, None)


def _w(rng, name, *shape):
    return nh.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)


def _save(tmp_path, nodes, inits, outputs, opset=17, shapes=None):
    shapes = shapes or {}
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", *IN_SHAPE])],
                     [h.make_tensor_value_info(o, T.FLOAT, shapes.get(o)) for o in outputs],
                     inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    path = tmp_path / "float.onnx"
    onnx.save(m, path)
    return path


def _quantize(path, tmp_path, rng, fmt, act):
    q = tmp_path / f"q_{fmt.name}.onnx"
    quantize_static(str(path), str(q), _Reader(rng), quant_format=fmt, activation_type=act,
                    weight_type=QuantType.QInt8)
    return q


def _assert_stream_model_equal(design, x):
    """The streaming plan the hardware is built from computes the reference's integers."""
    assert_stream_model_equals_reference(design.graph, {"x": x})


def _oracle(q, tmp_path, x):
    oracle = tmp_path / "oracle.onnx"
    onnx.save(u8u8_oracle(onnx.load(q)), oracle)
    return ort.run(str(oracle), {"x": x})


# axis, sizes (None: equal parts), opset, number of outputs; the MatMul output is (N, 4, 12)
SPLITS = [(-1, None, 17, 3), (-1, [2, 4, 6], 17, 3), (1, None, 17, 2), (1, [1, 3], 17, 2),
          (2, None, 18, 3)]


@pytest.mark.parametrize("fmt", [QuantFormat.QDQ, QuantFormat.QOperator], ids=lambda f: f.name)
@pytest.mark.parametrize("axis,sizes,opset,parts", SPLITS,
                         ids=[f"axis{a}-{s or 'equal'}-op{o}" for a, s, o, _ in SPLITS])
def test_split_matches_onnxruntime(tmp_path, fmt, axis, sizes, opset, parts):
    rng = np.random.default_rng(parts + axis + 7)
    outs = [f"p{i}" for i in range(parts)]
    inits = [_w(rng, "w", 6, 12), _w(rng, "b", 12)]
    split_in = ["m"]
    attrs = {"axis": axis}
    if sizes is not None:
        inits.append(nh.from_array(np.array(sizes, np.int64), "sizes"))
        split_in.append("sizes")
    elif opset >= 18:
        attrs["num_outputs"] = parts
    # the first part also feeds a quantized MatMul (a Split consumed on the accelerator)
    k = (sizes[0] if sizes else 12 // parts) if axis in (-1, 2) else 12
    inits.append(_w(rng, "w2", k, 5))
    nodes = [h.make_node("MatMul", ["x", "w"], ["mm"]), h.make_node("Add", ["mm", "b"], ["m"]),
             h.make_node("Split", split_in, outs, **attrs),
             h.make_node("MatMul", ["p0", "w2"], ["y"])]
    path = _save(tmp_path, nodes, inits, [*outs, "y"], opset)
    q = _quantize(path, tmp_path, rng, fmt, QuantType.QUInt8)
    x = rng.normal(0, 1.2, (32, *IN_SHAPE)).astype(np.float32)
    design = intflow.compile(q)
    got = design.run({"x": x})
    want = _oracle(q, tmp_path, x)
    _assert_stream_model_equal(design, x)
    for name in [*outs, "y"]:
        assert got[name].shape == want[name].shape, name
        assert np.array_equal(got[name], want[name]), (
            f"{name}: {np.count_nonzero(got[name] != want[name])} elements differ")


def _with_code_output(q_path, reduce_out: str, shape):
    """Add the QuantizeLinear codes of the ReduceMean result as a graph output."""
    m = onnx.load(q_path)
    qn = next(n for n in m.graph.node if n.op_type == "QuantizeLinear"
              and n.input[0] == reduce_out)
    m.graph.output.append(h.make_tensor_value_info(qn.output[0], T.UINT8, shape))
    onnx.save(m, q_path)
    return qn.output[0]


@pytest.mark.parametrize("fmt", [QuantFormat.QDQ, QuantFormat.QOperator], ids=lambda f: f.name)
@pytest.mark.parametrize("axis,keepdims", [(1, 0), (1, 1), (-1, 0), (-1, 1)])
def test_reducemean_within_one_code(tmp_path, fmt, axis, keepdims):
    rng = np.random.default_rng(3 + axis + keepdims)
    # the mean feeds a quantized MatMul so both formats quantise it (DQ -> ReduceMean -> Q)
    m_shape = ["N", IN_SHAPE[0], 8]
    r_shape = [1 if i == axis % 3 else d for i, d in enumerate(m_shape)
               if keepdims or i != axis % 3]
    inits = [_w(rng, "w", 6, 8), _w(rng, "w2", r_shape[-1], 5)]
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"]),
             h.make_node("ReduceMean", ["m"], ["r"], axes=[axis], keepdims=keepdims),
             h.make_node("MatMul", ["r", "w2"], ["y"])]
    path = _save(tmp_path, nodes, inits, ["y"])
    q = _quantize(path, tmp_path, rng, fmt, QuantType.QUInt8)
    red = next(n for n in onnx.load(q).graph.node if n.op_type == "ReduceMean").output[0]
    codes = _with_code_output(q, red, r_shape)
    x = rng.normal(0, 1.2, (64, *IN_SHAPE)).astype(np.float32)
    design = intflow.compile(q)
    assert any("ReduceMean" in note for note in design.graph.notes), design.graph.notes
    got = design.run({"x": x})
    want = _oracle(q, tmp_path, x)
    _assert_stream_model_equal(design, x)
    assert got[codes].shape == want[codes].shape
    d = np.abs(got[codes].astype(np.int64) - want[codes].astype(np.int64))
    assert d.max() <= 1, f"{np.count_nonzero(d > 1)} codes differ by more than one"
    # the sum is exact: most codes agree exactly, rounding differences are rare
    assert np.count_nonzero(d) <= d.size // 10, f"{np.count_nonzero(d)}/{d.size} differ"


def _qdq_graph(tmp_path, nodes, outputs, opset=18, extra_inits=()):
    """x -> Q -> DQ -> nodes, each of ``outputs`` (name: shape) -> Q -> DQ, by hand (per
    tensor uint8; the outputs' scale 0.03)."""
    inits = [nh.from_array(np.float32(0.05), "s"), nh.from_array(np.float32(0.03), "so"),
             nh.from_array(np.uint8(128), "z"), *extra_inits]
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]), *nodes]
    for o in outputs:
        nodes += [h.make_node("QuantizeLinear", [o, "so", "z"], [o + "q"]),
                  h.make_node("DequantizeLinear", [o + "q", "so", "z"], [o + "_out"])]
    return _save(tmp_path, nodes, inits, [o + "_out" for o in outputs], opset,
                 {o + "_out": ["N", *shape] for o, shape in outputs.items()})


def test_reducemean_noop_with_empty_axes_is_rejected(tmp_path):
    node = h.make_node("ReduceMean", ["xd"], ["r"], name="the_mean", noop_with_empty_axes=1)
    path = _qdq_graph(tmp_path, [node], {"r": IN_SHAPE})
    with pytest.raises(ModelError) as e:
        compile_model(str(path))
    assert e.value.node == "the_mean" and "noop_with_empty_axes" in e.value.reason


def test_split_bad_sizes_are_rejected(tmp_path):
    sizes = nh.from_array(np.array([2, 2], np.int64), "sizes")
    node = h.make_node("Split", ["xd", "sizes"], ["r", "unused"], name="the_split", axis=0)
    path = _qdq_graph(tmp_path, [node], {"r": IN_SHAPE}, extra_inits=[sizes])
    with pytest.raises(ModelError) as e:
        compile_model(str(path))
    assert e.value.node == "the_split" and "[2, 2]" in e.value.reason


def _split_mean_graph(tmp_path):
    """Split (axis -1, [2, 4]); the mean over the sequence of the first part, and over the
    features of the second (keepdims)."""
    sizes = nh.from_array(np.array([2, 4], np.int64), "sizes")
    axes1 = nh.from_array(np.array([1], np.int64), "axes1")
    axes2 = nh.from_array(np.array([-1], np.int64), "axes2")
    nodes = [h.make_node("Split", ["xd", "sizes"], ["a", "b"], axis=-1),
             h.make_node("ReduceMean", ["a", "axes1"], ["ma"], keepdims=0),
             h.make_node("ReduceMean", ["b", "axes2"], ["mb"], keepdims=1)]
    path = _qdq_graph(tmp_path, nodes, {"ma": [2], "mb": [4, 1], "b": [4, 4]},
                      extra_inits=[sizes, axes1, axes2])
    return compile_model(str(path))


def test_plan_maps_slice_and_reducesum_onto_reorder_and_globalsum(tmp_path):
    g = _split_mean_graph(tmp_path)
    df = plan(g)
    kinds = [e.kind for e in df.engines]
    assert kinds.count("GlobalSum") == 2 and "Reorder" in kinds, kinds
    rng = np.random.default_rng(4)
    feeds = {g.inputs[0].tensor: with_edge_vectors(rng.integers(0, 256, (5, 1, *IN_SHAPE)),
                                                   U8, 128)}
    want = reference.run_codes(g, feeds)
    got = dataflow_model.run(df, g, feeds)
    for o in g.outputs:
        assert np.array_equal(got[o.tensor], want[o.tensor]), o.tensor


@pytest.mark.simulator("icarus")
def test_split_reducemean_rtl_equals_reference_with_stalls(tmp_path):
    g = _split_mean_graph(tmp_path)
    df = plan(g)
    apply_fold(df, None)
    rng = np.random.default_rng(5)
    feeds = {g.inputs[0].tensor: with_edge_vectors(rng.integers(0, 256, (3, 1, *IN_SHAPE)),
                                                   U8, 128)}
    want = reference.run_codes(g, feeds)
    got, res = run_graph(df, g, feeds, engine="icarus", stall=0.3, seed=5)
    for o in g.outputs:
        bad = np.argwhere(got[o.tensor] != want[o.tensor])
        assert not bad.size, f"{o.tensor}: {len(bad)} of {want[o.tensor].size} differ"
    assert not res.lost
