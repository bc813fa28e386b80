"""Generate the bad-input corpus ``tests/bad_inputs/`` and its table ``expected.json``.

Every bad file starts from a small *valid* quantized model (float graphs built with
``onnx.helper``, quantized with ``onnxruntime.quantization.quantize_static``, seeded) or a
valid input array, and is then broken in exactly one way. ``expected.json`` maps each case to
the command line to run (``{corpus}`` = this folder, ``{tmp}`` = a fresh temporary folder),
the substring the one-line error message must contain, and the file name it must name.
``tests/test_bad_inputs.py`` runs every case.

Run from the repository root (about 2 s; the output is deterministic):

    .venv/bin/python tests/make_bad_inputs.py
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "bad_inputs"
OPSET = 17
SEED = 0

# --------------------------------------------------------------------------------------------
# valid float models, and their quantized versions


def _init(name: str, a, dtype=np.float32) -> TensorProto:
    return numpy_helper.from_array(np.asarray(a, dtype), name)


def _model(nodes, name, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8,
                          producer_name="intflow-tests")
    onnx.checker.check_model(m, full_check=True)
    return m


def float_mlp(rng) -> onnx.ModelProto:
    """x (N, 16) -> MatMul 16x8 + bias -> Relu -> MatMul 8x4 + bias -> y (N, 4)."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="fc1_bias"),
             helper.make_node("Relu", ["h1"], ["h"], name="relu1"),
             helper.make_node("MatMul", ["h", "w2"], ["y0"], name="fc2"),
             helper.make_node("Add", ["y0", "b2"], ["y"], name="fc2_bias")]
    return _model(nodes, "mlp",
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                  [_init("w1", rng.normal(0, .3, (16, 8))), _init("b1", rng.normal(0, .1, 8)),
                   _init("w2", rng.normal(0, .3, (8, 4))), _init("b2", rng.normal(0, .1, 4))])


def float_cnn(rng) -> onnx.ModelProto:
    """x (N, 1, 6, 6) -> Conv 3x3 (4) -> Relu -> r; r + Conv 3x3 (4)(r) -> Reshape (N, 144)
    -> MatMul 144x3 + bias -> y (N, 3)."""
    nodes = [helper.make_node("Conv", ["x", "c1_w", "c1_b"], ["c1"], name="conv1",
                              pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r"], name="relu1"),
             helper.make_node("Conv", ["r", "c2_w", "c2_b"], ["c2"], name="conv2",
                              pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Add", ["r", "c2"], ["s"], name="residual"),
             helper.make_node("Reshape", ["s", "flat_shape"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc_w"], ["y0"], name="fc"),
             helper.make_node("Add", ["y0", "fc_b"], ["y"], name="fc_bias")]
    return _model(nodes, "cnn",
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                  [_init("c1_w", rng.normal(0, .4, (4, 1, 3, 3))),
                   _init("c1_b", rng.normal(0, .1, 4)),
                   _init("c2_w", rng.normal(0, .2, (4, 4, 3, 3))),
                   _init("c2_b", rng.normal(0, .1, 4)),
                   _init("flat_shape", [0, 144], np.int64),
                   _init("fc_w", rng.normal(0, .1, (144, 3))),
                   _init("fc_b", rng.normal(0, .1, 3))])


def float_dynamic(rng) -> onnx.ModelProto:
    """x (N, 1, H, W) -> Conv 3x3 (4) -> Relu -> GlobalAveragePool -> Flatten -> MatMul 4x3."""
    nodes = [helper.make_node("Conv", ["x", "c_w", "c_b"], ["c"], name="conv",
                              pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc_w"], ["y"], name="fc")]
    return _model(nodes, "dynamic",
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                  [_init("c_w", rng.normal(0, .4, (4, 1, 3, 3))),
                   _init("c_b", rng.normal(0, .1, 4)),
                   _init("fc_w", rng.normal(0, .3, (4, 3)))])


def float_two_inputs(rng) -> onnx.ModelProto:
    """a (N, 8), b (N, 8) -> Add -> MatMul 8x2 -> y (N, 2)."""
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("MatMul", ["s", "w"], ["y"], name="fc")]
    return _model(nodes, "two_inputs",
                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 8]),
                   helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                  [_init("w", rng.normal(0, .3, (8, 2)))])


def quantize(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], rng, tmp: Path,
             *, per_channel: bool = False, fmt: str = "QDQ") -> onnx.ModelProto:
    """onnxruntime's own static quantization (uint8 activations, int8 weights, MinMax)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process, once per model

    batches = [{k: rng.normal(size=(4, *s)).astype(np.float32) for k, s in shapes.items()}
               for _ in range(3)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    src, dst = tmp / f"{model.graph.name}_f.onnx", tmp / f"{model.graph.name}_q.onnx"
    onnx.save(model, str(src))
    quantize_static(str(src), str(dst), Reader(), quant_format=getattr(QuantFormat, fmt),
                    per_channel=per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    q = onnx.load(str(dst))
    used = {n.domain for n in q.graph.node} | {""}
    keep = [o for o in q.opset_import if o.domain in used]
    del q.opset_import[:]
    q.opset_import.extend(keep)
    q.producer_name, q.producer_version = "intflow-tests", ""
    onnx.checker.check_model(q, full_check=True)
    return q


# --------------------------------------------------------------------------------------------
# mutations: each returns a copy of a model broken in one way


def _copy(m: onnx.ModelProto) -> onnx.ModelProto:
    return copy.deepcopy(m)


def _inits(m: onnx.ModelProto) -> dict[str, TensorProto]:
    return {t.name: t for t in m.graph.initializer}


def set_init(m: onnx.ModelProto, name: str, value, dtype=None) -> onnx.ModelProto:
    m = _copy(m)
    t = _inits(m)[name]
    arr = np.asarray(value, dtype or numpy_helper.to_array(t).dtype)
    t.CopyFrom(numpy_helper.from_array(arr, name))
    return m


def node_named(m: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in m.graph.node if n.name == name)


def set_input_type(m: onnx.ModelProto, elem_type: int) -> onnx.ModelProto:
    m = _copy(m)
    m.graph.input[0].type.tensor_type.elem_type = elem_type
    return m


def add_node_output(m: onnx.ModelProto, node: str, name: str) -> onnx.ModelProto:
    m = _copy(m)
    node_named(m, node).output.append(name)
    return m


def set_output_type(m: onnx.ModelProto, elem_type: int) -> onnx.ModelProto:
    m = _copy(m)
    m.graph.output[0].type.tensor_type.elem_type = elem_type
    return m


def set_opset(m: onnx.ModelProto, version: int | None) -> onnx.ModelProto:
    m = _copy(m)
    del m.opset_import[:]
    if version is not None:
        m.opset_import.append(helper.make_opsetid("", version))
    else:
        m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


def external(m: onnx.ModelProto, name: str, location: str, length: int | None = None
             ) -> onnx.ModelProto:
    """Move initializer ``name`` to external data at ``location`` (no file written)."""
    m = _copy(m)
    t = _inits(m)[name]
    n = len(numpy_helper.to_array(t).tobytes())
    t.ClearField("raw_data")
    for f in ("int32_data", "float_data", "int64_data"):
        t.ClearField(f)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(length or n))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return m


def flip_bit(data: bytes, offset: int, bit: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


def _varint_after(data: bytes, tag: int) -> int:
    """Offset of the first length varint after the first byte ``tag`` (a field key)."""
    return data.index(bytes([tag])) + 1


def append_softmax(m: onnx.ModelProto) -> onnx.ModelProto:
    """y -> Softmax -> probs: a float Softmax at the output, closed by no QuantizeLinear."""
    m = _copy(m)
    out = m.graph.output[0]
    m.graph.node.append(helper.make_node("Softmax", [out.name], ["probs"], name="softmax",
                                         axis=-1))
    vi = copy.deepcopy(out)
    vi.name = "probs"
    m.graph.output[0].CopyFrom(vi)
    return m


def insert_custom_op(m: onnx.ModelProto) -> onnx.ModelProto:
    """A com.example.Frobnicate node on the dequantised input of the first MatMul."""
    m = _copy(m)
    fc1 = node_named(m, "fc1")
    src = fc1.input[0]
    fc1.input[0] = "frobnicated"
    nodes = list(m.graph.node)
    i = nodes.index(fc1)
    nodes.insert(i, helper.make_node("Frobnicate", [src], ["frobnicated"], name="frob",
                                     domain="com.example"))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


def conv3d(rng) -> onnx.ModelProto:
    """A valid QDQ 3-D Conv: x (1, 1, 4, 4, 4) uint8 -> Conv 3x3x3 -> Q."""
    f32 = TensorProto.FLOAT
    w = rng.integers(-5, 5, (2, 1, 3, 3, 3)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], name="dq_w"),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv3d", kernel_shape=[3, 3, 3]),
        helper.make_node("QuantizeLinear", ["c", "s", "zp"], ["cq"], name="q_out"),
        helper.make_node("DequantizeLinear", ["cq", "s", "zp"], ["y"], name="dq_out")]
    return _model(nodes, "conv3d",
                  [helper.make_tensor_value_info("x", f32, [1, 1, 4, 4, 4])],
                  [helper.make_tensor_value_info("y", f32, [1, 2, 2, 2, 2])],
                  [_init("s", 0.05), _init("zp", 128, np.uint8), _init("w", w, np.int8),
                   _init("ws", 0.01)])


def replace_conv_weights(m: onnx.ModelProto, node: str, shape: tuple[int, ...], rng,
                         channels: int | None = None) -> onnx.ModelProto:
    """Give the DequantizeLinear feeding ``node``'s weights new int8 codes of ``shape``
    (and ``channels`` per-channel scales, zero points and biases when given)."""
    m = _copy(m)
    n = node_named(m, node)
    inits = _inits(m)
    dq = next(x for x in m.graph.node if x.output[0] == n.input[1])
    w = inits[dq.input[0]]
    w.CopyFrom(numpy_helper.from_array(rng.integers(-20, 20, shape).astype(np.int8), w.name))
    if channels is not None:
        for name in dq.input[1:]:
            old = numpy_helper.to_array(inits[name])
            inits[name].CopyFrom(numpy_helper.from_array(
                np.resize(old, (channels,)).astype(old.dtype), name))
        bdq = next(x for x in m.graph.node if x.output[0] == n.input[2])
        for name in bdq.input:
            old = numpy_helper.to_array(inits[name])
            inits[name].CopyFrom(numpy_helper.from_array(
                np.resize(old, (channels,)).astype(old.dtype), name))
    return m


def absurd_constant_node(m: onnx.ModelProto) -> onnx.ModelProto:
    """A Constant node whose tensor declares 2^40 elements (and holds none)."""
    m = _copy(m)
    t = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20])
    m.graph.node.insert(0, helper.make_node("Constant", [], ["huge"], name="huge_const",
                                            value=t))
    return m


def absurd_initializer(m: onnx.ModelProto) -> onnx.ModelProto:
    """The first-layer weights declared as 2^20 x 2^20 int8 codes (2^40 elements)."""
    m = _copy(m)
    t = _inits(m)["w1_quantized"]
    t.ClearField("raw_data")
    t.ClearField("int32_data")
    del t.dims[:]
    t.dims.extend([1 << 20, 1 << 20])
    return m


def absurd_input(m: onnx.ModelProto) -> onnx.ModelProto:
    m = _copy(m)
    dim = m.graph.input[0].type.tensor_type.shape.dim[1]
    dim.dim_value = 1 << 40
    return m


def undefined_name(m: onnx.ModelProto) -> onnx.ModelProto:
    m = _copy(m)
    node_named(m, "fc2").input[0] = "h_typo"
    return m


def undefined_output(m: onnx.ModelProto) -> onnx.ModelProto:
    m = _copy(m)
    m.graph.output[0].name = "never_computed"
    return m


def truncate_weights(m: onnx.ModelProto) -> onnx.ModelProto:
    """w1's raw data cut to half of what its dims declare."""
    m = _copy(m)
    t = _inits(m)["w1_quantized"]
    t.raw_data = t.raw_data[: len(t.raw_data) // 2]
    return m


def qop_zero_point_int32(m: onnx.ModelProto) -> onnx.ModelProto:
    """The first QLinearMatMul reads its uint8 activation's zero point from an int32 300."""
    m = _copy(m)
    n = next(x for x in m.graph.node if x.op_type == "QLinearMatMul")
    m.graph.initializer.append(_init("a_zero_point_int32", 300, np.int32))
    n.input[2] = "a_zero_point_int32"
    return m


def _before_fc1(m: onnx.ModelProto, make) -> onnx.ModelProto:
    """Insert ``make(src, dst)`` (a layout node) on the dequantised input of fc1."""
    m = _copy(m)
    fc1 = node_named(m, "fc1")
    src, fc1.input[0] = fc1.input[0], "moved"
    nodes = list(m.graph.node)
    nodes.insert(nodes.index(fc1), make(src, "moved"))
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def insert_transpose(m: onnx.ModelProto, perm: list[int]) -> onnx.ModelProto:
    return _before_fc1(m, lambda s, d: helper.make_node("Transpose", [s], [d],
                                                        name="transpose", perm=perm))


def insert_squeeze(m: onnx.ModelProto, axes: list[int]) -> onnx.ModelProto:
    m = _copy(m)
    m.graph.initializer.append(_init("squeeze_axes", axes, np.int64))
    return _before_fc1(m, lambda s, d: helper.make_node("Squeeze", [s, "squeeze_axes"], [d],
                                                        name="squeeze"))


def set_attr(m: onnx.ModelProto, node: str, **attrs) -> onnx.ModelProto:
    m = _copy(m)
    n = node_named(m, node)
    keep = [a for a in n.attribute if a.name not in attrs]
    del n.attribute[:]
    n.attribute.extend(keep + [helper.make_attribute(k, v) for k, v in attrs.items()])
    return m


def reverse_nodes(m: onnx.ModelProto) -> onnx.ModelProto:
    m = _copy(m)
    nodes = list(m.graph.node)[::-1]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def without_nodes(m: onnx.ModelProto) -> onnx.ModelProto:
    m = _copy(m)
    del m.graph.node[:]
    return m


def patch_zip(data: bytes, offset_in_header: int, value: bytes) -> bytes:
    """Overwrite a field of every local and central zip header (flags at 6/8, method at
    8/10): zip entries readers must refuse."""
    b = bytearray(data)
    for sig, extra in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        i = b.find(sig)
        while i >= 0:
            b[i + offset_in_header + extra: i + offset_in_header + extra + len(value)] = value
            i = b.find(sig, i + 4)
    return bytes(b)


# --------------------------------------------------------------------------------------------
# the cases


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.table: dict[str, dict] = {}

    def write(self, name: str, data: bytes | onnx.ModelProto) -> str:
        if isinstance(data, onnx.ModelProto):
            data = data.SerializeToString(deterministic=True)
        (self.root / name).write_bytes(data)
        return name

    def case(self, case: str, argv: list[str], expected: str, names: str,
             setup: list[tuple[str, str]] | None = None) -> None:
        """One bad invocation: ``argv`` after ``intflow``; the message must contain
        ``expected`` and ``names`` (the offending file's name). ``setup``: ("dir" | "file",
        path) made before the run (a file holds one line of text)."""
        assert case not in self.table, case
        entry = {"argv": argv, "expected": expected, "names": names}
        if setup:
            entry["setup"] = [list(s) for s in setup]
        self.table[case] = entry

    def compile(self, case: str, model: str, expected: str, *extra: str,
                names: str | None = None) -> None:
        self.case(case, ["compile", "{corpus}/" + model, "-o", "{tmp}/OUT", *extra],
                  expected, names or model)

    def run(self, case: str, model: str, inputs: str, expected: str, *extra: str,
            names: str | None = None) -> None:
        self.case(case, ["run", "{corpus}/" + model, "--inputs", "{corpus}/" + inputs,
                         "--outputs", "{tmp}/Y.npz", *extra], expected, names or inputs)


def save_npz(path: Path, **arrays) -> None:
    """np.savez with a fixed timestamp, so the corpus is byte-identical run to run."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for k, v in arrays.items():
            info = zipfile.ZipInfo(k + ".npy", date_time=(2020, 1, 1, 0, 0, 0))
            with z.open(info, "w") as f:
                np.lib.format.write_array(f, np.asanyarray(v), allow_pickle=True)


def build(root: Path) -> dict[str, dict]:
    rng = np.random.default_rng(SEED)
    c = Corpus(root)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        f_mlp, f_cnn = float_mlp(rng), float_cnn(rng)
        f_dyn, f_two = float_dynamic(rng), float_two_inputs(rng)
        mlp = quantize(f_mlp, {"x": (16,)}, rng, tmp)
        cnn = quantize(f_cnn, {"x": (1, 6, 6)}, rng, tmp, per_channel=True)
        dyn = quantize(f_dyn, {"x": (1, 6, 6)}, rng, tmp)
        two = quantize(f_two, {"a": (8,), "b": (8,)}, rng, tmp)
        qop = quantize(f_mlp, {"x": (16,)}, rng, tmp, fmt="QOperator")

    # the valid starting points (test_bad_inputs checks they compile and run)
    for name, m in (("valid_mlp", mlp), ("valid_cnn", cnn), ("valid_dynamic", dyn),
                    ("valid_two_inputs", two), ("valid_qop_mlp", qop)):
        c.write(name + ".onnx", m)
    x = rng.normal(size=(5, 16)).astype(np.float32)
    save_npz(root / "valid_mlp_inputs.npz", x=x)
    mlp_bytes = mlp.SerializeToString(deterministic=True)

    # ---- not an ONNX file at all ----------------------------------------------------------
    c.compile("empty_file", c.write("empty.onnx", b""), "the file is empty")
    c.compile("text_file", c.write("notes.onnx", b"These are my notes, not a model.\n"
                                                 b"TODO: quantize the network\n"),
              "not an ONNX model: the protobuf does not parse")
    c.compile("truncated_half", c.write("truncated_half.onnx", mlp_bytes[: len(mlp_bytes) // 2]),
              "not an ONNX model: the protobuf does not parse")
    c.compile("truncated_head", c.write("truncated_head.onnx", mlp_bytes[:24]),
              "not an ONNX model: the protobuf does not parse")
    c.compile("truncated_tail", c.write("truncated_tail.onnx", mlp_bytes[:-3]),
              "not an ONNX model: the protobuf does not parse")
    # the first key (ir_version, varint) becomes wire type 4 (end group): no parse
    c.compile("bitflip_key", c.write("bitflip_key.onnx", flip_bit(mlp_bytes, 0, 2)),
              "not an ONNX model: the protobuf does not parse")
    # the graph's length varint (field 7, wire type 2 = 0x3a) gets its top bit: overruns
    g = _varint_after(mlp_bytes, 0x3A)
    c.compile("bitflip_graph_length",
              c.write("bitflip_graph_length.onnx", flip_bit(mlp_bytes, g, 6)),
              "not an ONNX model: the protobuf does not parse")
    # one bit of the first "MatMul" op type: "MatMtl", an op onnx does not know
    i = mlp_bytes.index(b"MatMul") + 4
    c.compile("bitflip_op_type", c.write("bitflip_op_type.onnx", flip_bit(mlp_bytes, i, 0)),
              "invalid ONNX model: No Op registered for MatMtl")
    c.compile("weights_shorter_than_dims", c.write("weights_short.onnx",
                                                  truncate_weights(mlp)),
              "raw_data size (64 bytes) is too small for the declared shape")
    c.compile("no_graph", c.write("no_graph.onnx", b"\x08\x08"),  # only ir_version = 8
              "not an ONNX model: no graph or no nodes")
    c.compile("no_nodes", c.write("no_nodes.onnx", without_nodes(mlp)),
              "not an ONNX model: no graph or no nodes")

    # ---- paths -----------------------------------------------------------------------------
    c.case("nonexistent_model", ["compile", "{corpus}/no_such_model.onnx", "-o", "{tmp}/OUT"],
           "no such file", "no_such_model.onnx")
    c.case("model_is_a_directory", ["compile", "{tmp}/a_directory.onnx", "-o", "{tmp}/OUT"],
           "is a directory", "a_directory.onnx", setup=[("dir", "{tmp}/a_directory.onnx")])
    c.case("out_parent_is_a_file", ["compile", "{corpus}/valid_mlp.onnx", "-o",
                                    "{tmp}/plain_file/OUT"],
           "is not a directory", "plain_file", setup=[("file", "{tmp}/plain_file")])
    c.case("out_is_a_file", ["compile", "{corpus}/valid_mlp.onnx", "-o", "{tmp}/OUT"],
           "exists and is not a directory", "OUT", setup=[("file", "{tmp}/OUT")])
    c.case("outputs_parent_is_a_file",
           ["run", "{corpus}/valid_mlp.onnx", "--inputs", "{corpus}/valid_mlp_inputs.npz",
            "--outputs", "{tmp}/plain_file/Y.npz"],
           "is not a directory", "plain_file", setup=[("file", "{tmp}/plain_file")])
    c.case("outputs_is_a_directory",
           ["run", "{corpus}/valid_mlp.onnx", "--inputs", "{corpus}/valid_mlp_inputs.npz",
            "--outputs", "{tmp}/Y.npz"],
           "is a directory", "Y.npz", setup=[("dir", "{tmp}/Y.npz")])
    c.case("out_is_a_foreign_directory",
           ["compile", "{corpus}/valid_mlp.onnx", "-o", "{tmp}/OUT"],
           "exists and is not an intflow output directory", "OUT",
           setup=[("dir", "{tmp}/OUT"), ("file", "{tmp}/OUT/thesis.tex")])
    c.case("inputs_is_a_directory", ["run", "{corpus}/valid_mlp.onnx", "--inputs",
                                     "{tmp}/X.npz", "--outputs", "{tmp}/Y.npz"],
           "is a directory", "X.npz", setup=[("dir", "{tmp}/X.npz")])
    c.case("inputs_missing", ["run", "{corpus}/valid_mlp.onnx", "--inputs",
                              "{corpus}/no_such_inputs.npz", "--outputs", "{tmp}/Y.npz"],
           "no such inputs file", "no_such_inputs.npz")

    # ---- command-line usage ----------------------------------------------------------------
    c.case("usage_missing_out", ["compile", "{corpus}/valid_mlp.onnx"],
           "the following arguments are required: -o/--out", "intflow compile")
    c.case("usage_bad_requant", ["compile", "{corpus}/valid_mlp.onnx", "-o", "{tmp}/OUT",
                                 "--requant", "float"],
           "argument --requant: invalid choice: 'float'", "intflow compile")
    c.case("usage_negative_budget", ["compile", "{corpus}/valid_cnn.onnx", "-o", "{tmp}/OUT",
                                     "--max-multipliers", "-5"],
           "argument --max-multipliers: wants a positive integer, got '-5'", "intflow compile")

    # ---- folding files (compile --fold FILE.json) -----------------------------------------
    def fold(case: str, name: str, text: str | None, expected: str) -> None:
        if text is not None:
            c.write(name, text.encode())
        c.compile(case, "valid_cnn.onnx", expected, "--fold", "{corpus}/" + name, names=name)

    fold("fold_missing", "no_such_fold.json", None, "cannot read the folding file")
    fold("fold_not_json", "fold_not_json.json", "conv1: pe=2\n", "cannot read the folding file")
    fold("fold_not_an_object", "fold_list.json", "[1, 2]\n", "the folding file must be")
    fold("fold_pe_zero", "fold_pe_zero.json", '{"conv1": {"pe": 0}}\n',
         "with integers P, S >= 1")
    fold("fold_unknown_layer", "fold_unknown_layer.json", '{"conv9": {"pe": 2}}\n',
         "no MVAU layer named 'conv9'")
    fold("fold_does_not_divide", "fold_does_not_divide.json", '{"conv1": {"pe": 3}}\n',
         "PE 3 must divide n=4")

    # ---- opsets ----------------------------------------------------------------------------
    c.compile("opset_too_old", c.write("opset_9.onnx", set_opset(mlp, 9)),
              "opset 9 is not supported")
    c.compile("opset_too_new", c.write("opset_99.onnx", set_opset(mlp, 99)),
              "opset 99 is not supported")
    c.compile("opset_newer_than_supported", c.write("opset_22.onnx", set_opset(mlp, 22)),
              "opset 22 is not supported")
    c.compile("opset_missing", c.write("opset_missing.onnx", set_opset(mlp, None)),
              "imports no default ONNX opset")

    # ---- float models ----------------------------------------------------------------------
    no_q = "no quantized ops: quantize it with onnxruntime.quantization first"
    c.compile("float_mlp", c.write("float_mlp.onnx", f_mlp), no_q)
    c.compile("float_cnn", c.write("float_cnn.onnx", f_cnn), no_q)
    c.case("float_mlp_run", ["run", "{corpus}/float_mlp.onnx", "--inputs",
                             "{corpus}/valid_mlp_inputs.npz", "--outputs", "{tmp}/Y.npz"],
           no_q, "float_mlp.onnx")

    # ---- unsupported ops -------------------------------------------------------------------
    c.compile("unsupported_softmax", c.write("unsupported_softmax.onnx", append_softmax(mlp)),
              "graph output 'probs' is the float result of Softmax 'softmax'; intflow "
              "needs a QuantizeLinear")
    c.compile("unsupported_custom_domain", c.write("unsupported_custom_domain.onnx",
                                                   insert_custom_op(mlp)),
              "unsupported op com.example.Frobnicate; intflow supports: ")
    c.compile("unsupported_conv3d", c.write("unsupported_conv3d.onnx", conv3d(_rng("conv3d"))),
              "only 1-D and 2-D convolutions are supported")

    # ---- shapes: dynamic, --input-shape ----------------------------------------------------
    c.compile("dynamic_dims_no_flag", "valid_dynamic.onnx",
              "has dynamic dimensions [1, 1, '?', '?']: give them with --input-shape x=1,1,1,1")
    c.case("dynamic_dims_no_flag_run",
           ["run", "{corpus}/valid_dynamic.onnx", "--inputs", "{corpus}/valid_mlp_inputs.npz",
            "--outputs", "{tmp}/Y.npz"], "give them with --input-shape", "valid_dynamic.onnx")
    c.compile("input_shape_wrong_channels", "valid_dynamic.onnx",
              "--input-shape for 'x' [1, 3, 6, 6] does not match the model's", "--input-shape",
              "x=1,3,6,6")
    c.compile("input_shape_wrong_rank", "valid_dynamic.onnx",
              "--input-shape for 'x' [1, 1, 6] does not match", "--input-shape", "x=1,1,6")
    c.compile("input_shape_unknown_name", "valid_dynamic.onnx",
              "--input-shape names unknown inputs: ['image']", "--input-shape", "image=1,1,6,6",
              "--input-shape", "x=1,1,6,6")
    c.compile("input_shape_malformed", "valid_dynamic.onnx",
              "--input-shape wants NAME=d0,d1,...", "--input-shape", "x=1,1,six,6")
    c.compile("input_shape_zero_dim", "valid_dynamic.onnx",
              "dimensions must be positive", "--input-shape", "x=1,1,0,6")
    c.compile("input_shape_absurd", "valid_dynamic.onnx", "has absurd shape",
              "--input-shape", "x=1,1,1048576,1048576")

    # ---- shapes that do not fit together ---------------------------------------------------
    c.compile("conv_channels_mismatch", c.write(
        "conv_channels_mismatch.onnx",
        replace_conv_weights(cnn, "conv1", (4, 2, 3, 3), _rng("conv_channels"))),
              "node 'conv1' (Conv): input has 1 channels, weights expect 2 x group 1")
    c.compile("conv_kernel_too_large", c.write("conv_kernel_too_large.onnx",
                                              replace_conv_weights(
                                                  _without_kernel_shape(cnn, "conv1"),
                                                  "conv1", (4, 1, 9, 9), _rng("conv_kernel"))),
              "kernel larger than the padded input")
    c.compile("conv_pads_wrong_length", c.write("conv_pads_wrong_length.onnx",
                                               set_attr(cnn, "conv1", pads=[1, 1])),
              "node 'conv1' (Conv): pads [1, 1] has 2 values; a 2-D window needs 4")
    c.compile("conv_stride_zero", c.write("conv_stride_zero.onnx",
                                         set_attr(cnn, "conv1", strides=[0, 0])),
              "node 'conv1' (Conv): strides [0, 0]: every value must be >= 1")
    c.compile("conv_group_zero", c.write("conv_group_zero.onnx",
                                        set_attr(cnn, "conv1", group=0)),
              "node 'conv1' (Conv): group 0 must be >= 1")
    c.compile("conv_pads_absurd", c.write("conv_pads_absurd.onnx",
                                         set_attr(cnn, "conv1", pads=[1 << 40] * 4)),
              "node 'conv1' (Conv): output shape [1, 4, 2199023255556, 2199023255556] is absurd")
    c.compile("conv_weights_rank", c.write("conv_weights_rank.onnx", replace_conv_weights(
        _without_kernel_shape(cnn, "conv1"), "conv1", (4, 1, 3), _rng("conv_rank"))),
        "node 'conv1' (Conv): weights [4, 1, 3] do not fit a 2-D convolution")
    c.compile("matmul_scalar_weights", c.write("matmul_scalar_weights.onnx",
                                              set_init(mlp, "w1_quantized", 7)),
              "node 'fc1' (MatMul): MatMul operands of shapes [1, 16] and []")
    c.compile("qop_weights_float", c.write(
        "qop_weights_float.onnx", set_init(qop, "w1_quantized", np.ones((16, 8)), np.float32)),
        "node 'fc1_quant' (QLinearMatMul): QLinearMatMul b must be an integer tensor, got "
        "float32")
    c.compile("qop_weights_int64", c.write(
        "qop_weights_int64.onnx", set_init(qop, "w1_quantized", np.ones((16, 8)), np.int64)),
        "QLinearMatMul b: quantised type int64 is not supported")
    c.compile("matmul_k_mismatch", c.write("matmul_k_mismatch.onnx",
                                          set_init(mlp, "w1_quantized",
                                                   _rng("matmul_k").integers(-9, 9, (12, 8)))),
              "MatMul shapes [1, 16] x [12, 8] do not match")
    c.compile("qop_matmul_k_mismatch", c.write(
        "qop_matmul_k_mismatch.onnx",
        set_init(qop, "w1_quantized", _rng("qop_matmul_k").integers(-9, 9, (12, 8)))),
              "MatMul shapes [1, 16] x [12, 8] do not match")
    c.compile("add_shapes_do_not_broadcast", c.write(
        "add_no_broadcast.onnx",
        replace_conv_weights(cnn, "conv2", (3, 4, 3, 3), _rng("add_broadcast"), 3)),
        "node 'residual' (Add): Add shapes [1, 4, 6, 6] and [1, 3, 6, 6] do not broadcast")
    c.compile("reshape_impossible", c.write("reshape_impossible.onnx",
                                           set_init(cnn, "flat_shape", [0, 143])),
              "node 'flatten' (Reshape): cannot reshape [1, 4, 6, 6] to [0, 143]")
    c.compile("reshape_shape_2d", c.write("reshape_shape_2d.onnx",
                                         set_init(cnn, "flat_shape", [[0, 144]])),
              "Reshape shape must be a 1-D integer tensor, got int64 of shape [1, 2]")
    c.compile("reshape_shape_float", c.write("reshape_shape_float.onnx",
                                            set_init(cnn, "flat_shape", [0, 144], np.float32)),
              "Reshape shape must be a 1-D integer tensor, got float32 of shape [2]")
    c.compile("transpose_bad_perm", c.write("transpose_bad_perm.onnx",
                                           insert_transpose(mlp, [0, 2])),
              "node 'transpose' (Transpose): Transpose perm [0, 2] is not a permutation of the 2 "
              "axes of [1, 16]")
    c.compile("squeeze_axis_out_of_range", c.write("squeeze_axis_out_of_range.onnx",
                                                  insert_squeeze(mlp, [3])),
              "node 'squeeze' (Squeeze): Squeeze axes [3] are out of range for the shape [1, 16]")
    c.compile("reshape_two_minus_ones", c.write("reshape_two_minus_ones.onnx",
                                               set_init(cnn, "flat_shape", [-1, -1])),
              "Reshape target [-1, -1] has more than one -1")

    # ---- scales ----------------------------------------------------------------------------
    c.compile("scale_zero", c.write("scale_zero.onnx", set_init(mlp, "w1_scale", 0.0)),
              "scale must be finite and > 0, got [0.0]")
    c.compile("scale_negative", c.write("scale_negative.onnx",
                                        set_init(mlp, "x_scale", -0.02)),
              "node 'x_QuantizeLinear' (QuantizeLinear): QuantizeLinear scale must be finite "
              "and > 0")
    c.compile("scale_nan", c.write("scale_nan.onnx", set_init(mlp, "h0_scale", np.nan)),
              "scale must be finite and > 0, got [nan]")
    c.compile("scale_inf", c.write("scale_inf.onnx", set_init(mlp, "y_scale", np.inf)),
              "scale must be finite and > 0, got [inf]")
    c.compile("scale_float64", c.write("scale_float64.onnx",
                                       set_init(mlp, "w2_scale", 0.01, np.float64)),
              "scale must be float32, got float64")
    w_scale = numpy_helper.to_array(_inits(cnn)["c1_w_scale"]).copy()
    w_scale[2] = 0
    c.compile("scale_per_channel_zero", c.write("scale_per_channel_zero.onnx",
                                                set_init(cnn, "c1_w_scale", w_scale)),
              "scale must be finite and > 0")
    c.compile("scale_per_channel_count", c.write(
        "scale_per_channel_count.onnx",
        set_init(set_init(cnn, "c1_w_scale", w_scale[:3] + 1), "c1_w_zero_point",
                 np.zeros(3))),
        "3 scales for axis 0 of length 4")
    c.compile("scale_2d", c.write("scale_2d.onnx", set_init(
        set_init(cnn, "c1_w_scale", np.full((2, 2), 0.01)), "c1_w_zero_point",
        np.zeros((2, 2)))), "scale must be a scalar or a non-empty 1-D tensor, got shape [2, 2]")
    c.compile("scale_empty", c.write("scale_empty.onnx", set_init(mlp, "w1_scale", np.zeros(0))),
              "scale must be a scalar or a non-empty 1-D tensor, got shape [0]")
    c.compile("qop_scale_count", c.write("qop_scale_count.onnx",
                                         set_init(qop, "w1_scale", [0.01, 0.02])),
              "node 'fc1_quant' (QLinearMatMul): b: 2 scales for axis 1 of length 8")
    # finite scales whose ratios overflow float32: Add's Ra = sa / sc, a bias rescaled
    c.compile("scale_ratio_overflows", c.write("scale_ratio_overflows.onnx",
                                               set_init(cnn, "s_scale", 1e-40)),
              "node 's_QuantizeLinear' (QuantizeLinear): float32 arithmetic on the "
              "quantisation parameters fails")
    c.compile("scale_add_constants_overflow", c.write(
        "scale_add_constants_overflow.onnx", set_init(mlp, "y_scale", 1e-40)),
        "node 'fc2_bias' (Add): Add rescale: the float32 constants")
    c.compile("scale_bias_absurd", c.write(
        "scale_bias_absurd.onnx", set_init(cnn, "c1_b_quantized_scale", np.full(4, 2.1e9))),
        "accumulator needs")

    # ---- zero points -----------------------------------------------------------------------
    c.compile("zero_point_int32_on_quantize", c.write(
        "zero_point_int32.onnx", set_init(mlp, "x_zero_point", 300, np.int32)),
        "QuantizeLinear zero point is int32")
    c.compile("zero_point_int16_opset17", c.write(
        "zero_point_int16.onnx", set_init(mlp, "h0_zero_point", 300, np.int16)),
        "QuantizeLinear zero point is int16")
    c.compile("zero_point_float", c.write("zero_point_float.onnx",
                                          set_init(mlp, "x_zero_point", 128.0, np.float32)),
              "zero point must be an integer tensor, got float32")
    c.compile("zero_point_weight_wider_type", c.write(
        "zero_point_weight_int32.onnx", set_init(mlp, "w1_zero_point", 300, np.int32)),
        "zero point type int32 differs from the input type int8")
    c.compile("zero_point_bias_nonzero", c.write(
        "zero_point_bias_nonzero.onnx", set_init(cnn, "c1_b_quantized_zero_point",
                                                 [7, 0, 0, 0])),
        "an int32 DequantizeLinear requires zero point 0")
    c.compile("zero_point_qop_int32", c.write("zero_point_qop_int32.onnx",
                                              qop_zero_point_int32(qop)),
              "zero point type int32 differs from the input type uint8")
    c.compile("quant_axis_out_of_range", c.write(
        "quant_axis_out_of_range.onnx", set_attr(cnn, "c1_w_DequantizeLinear", axis=7)),
        "node 'c1_w_DequantizeLinear' (DequantizeLinear): DequantizeLinear axis 7 is out of "
        "range for a 4-D tensor")
    c.compile("zero_point_scale_shapes", c.write(
        "zero_point_scale_shapes.onnx", set_init(cnn, "c1_w_zero_point", np.zeros(3))),
        "zero point shape (3,) != scale shape (4,)")

    # ---- external data ---------------------------------------------------------------------
    c.compile("external_data_parent_dir", c.write(
        "external_parent.onnx", external(mlp, "w1_quantized", "../secret.bin")),
        "external data path '../secret.bin' leaves the model's folder")
    c.compile("external_data_absolute", c.write(
        "external_absolute.onnx", external(mlp, "w1_quantized", "/etc/hostname")),
        "external data path '/etc/hostname' leaves the model's folder")
    c.compile("external_data_missing", c.write(
        "external_missing.onnx", external(mlp, "w1_quantized", "missing_weights.bin")),
        "external data file 'missing_weights.bin' not found")
    (root / "external_short.bin").write_bytes(bytes(10))
    c.compile("external_data_short", c.write(
        "external_short.onnx", external(mlp, "w1_quantized", "external_short.bin")),
        "External data length (128) exceeds available data (10 bytes")

    # ---- absurd sizes ----------------------------------------------------------------------
    c.compile("absurd_initializer", c.write("absurd_initializer.onnx",
                                            absurd_initializer(mlp)),
              "initializer 'w1_quantized' has absurd shape [1048576, 1048576]")
    c.compile("absurd_constant_node", c.write("absurd_constant_node.onnx",
                                              absurd_constant_node(mlp)),
              "has absurd shape [1048576, 1048576]")
    c.compile("absurd_input_dim", c.write("absurd_input_dim.onnx", absurd_input(mlp)),
              "graph input 'x' has absurd shape [1, 1099511627776]")

    # ---- graph structure -------------------------------------------------------------------
    c.compile("undefined_name", c.write("undefined_name.onnx", undefined_name(mlp)),
              "node 'fc2' (MatMul): input 'h_typo' is not a graph input")
    c.compile("nodes_out_of_order", c.write("nodes_out_of_order.onnx", reverse_nodes(mlp)),
              "node 'y_DequantizeLinear' (DequantizeLinear): input 'y_QuantizeLinear_Output' is "
              "not a graph input, an "
              "initializer or the output of an earlier node")
    c.compile("qop_extra_output", c.write("qop_extra_output.onnx",
                                         add_node_output(qop, "fc1_bias_quant", "surplus")),
              "node 'fc1_bias_quant' (QLinearAdd): the node has 2 outputs; QLinearAdd has 1")
    c.compile("output_unknown_type", c.write("output_unknown_type.onnx",
                                            set_output_type(mlp, 33)),
              "graph output 'y' has an unknown element type 33")
    c.compile("undefined_output", c.write("undefined_output.onnx", undefined_output(mlp)),
              "graph output 'never_computed' is not produced by any node")

    # ---- float inputs that are not float32 -------------------------------------------------
    c.compile("input_float16", c.write("input_float16.onnx",
                                       set_input_type(mlp, TensorProto.FLOAT16)),
              "graph input 'x' is float16; only float32 float inputs are supported")
    c.compile("input_float64", c.write("input_float64.onnx",
                                       set_input_type(mlp, TensorProto.DOUBLE)),
              "graph input 'x' is float64; only float32 float inputs are supported")
    c.compile("input_bfloat16", c.write("input_bfloat16.onnx",
                                        set_input_type(mlp, TensorProto.BFLOAT16)),
              "graph input 'x' is bfloat16; only float32 float inputs are supported")
    c.compile("input_string", c.write("input_string.onnx",
                                      set_input_type(mlp, TensorProto.STRING)),
              "graph input 'x' has type string")

    # ---- run: bad input arrays -------------------------------------------------------------
    def npz(name: str, **arrays) -> str:
        save_npz(root / name, **arrays)
        return name

    c.run("npz_missing_key", "valid_mlp.onnx", npz("npz_missing_key.npz", pixels=x),
          "missing input array(s) ['x']; the file has ['pixels']")
    c.run("npz_wrong_shape", "valid_mlp.onnx", npz("npz_wrong_shape.npz", x=x[:, :15]),
          "input 'x' has shape [5, 15]; expected (samples, 16)")
    c.run("npz_no_sample_axis", "valid_mlp.onnx", npz("npz_no_sample_axis.npz", x=x[0]),
          "input 'x' has shape [16]; expected (samples, 16)")
    c.run("npz_scalar", "valid_mlp.onnx", npz("npz_scalar.npz", x=np.float32(1)),
          "input 'x' has shape []; expected (samples, 16)")
    c.run("npz_wrong_dtype_int", "valid_mlp.onnx",
          npz("npz_wrong_dtype_int.npz", x=x.astype(np.int64)),
          "input 'x' has dtype int64, the model expects float32")
    c.run("npz_wrong_dtype_complex", "valid_mlp.onnx",
          npz("npz_wrong_dtype_complex.npz", x=x.astype(np.complex64)),
          "input 'x' has dtype complex64, the model expects float32")
    c.run("npz_zero_samples", "valid_mlp.onnx", npz("npz_zero_samples.npz", x=x[:0]),
          "input 'x' holds no samples")
    c.run("npz_not_a_zip", "valid_mlp.onnx",
          c.write("npz_not_a_zip.npz", b"x = [1, 2, 3]\n"), "not an .npz or .npy file")
    good = (root / "valid_mlp_inputs.npz").read_bytes()
    c.run("npz_truncated", "valid_mlp.onnx",
          c.write("npz_truncated.npz", good[: len(good) // 2]), "not a readable .npz/.npy file")
    c.run("npz_pickle", "valid_mlp.onnx",
          npz("npz_pickle.npz", x=np.array([{"evil": 1}] * 5, dtype=object)),
          "object array, which needs pickle")
    c.run("npy_two_input_model", "valid_two_inputs.onnx",
          _npy(root / "npy_two_inputs.npy", x[:, :8]),
          "a .npy holds one array but the model has inputs ['a', 'b']")
    c.run("npy_wrong_shape", "valid_mlp.onnx", _npy(root / "npy_wrong_shape.npy", x[:, :4]),
          "input 'x' has shape [5, 4]; expected (samples, 16)")
    c.run("npy_absurd_header", "valid_mlp.onnx", c.write("npy_absurd_header.npy",
                                                         _absurd_npy()),
          "the array declares shape [1048576, 1048576] float32 (4398046511104 bytes) but "
          "holds 16 bytes")
    c.run("npz_absurd_member", "valid_mlp.onnx", c.write(
        "npz_absurd_member.npz", _zip_of({"x.npy": _absurd_npy()})),
        "member 'x.npy' declares shape [1048576, 1048576] float32")
    c.run("npz_member_not_npy", "valid_mlp.onnx", c.write(
        "npz_member_not_npy.npz", _zip_of({"x": b"0.1 0.2 0.3\n"})),
        "member 'x' is not a .npy array")
    c.run("npz_encrypted", "valid_mlp.onnx", c.write(
        "npz_encrypted.npz", patch_zip(good, 6, b"\x01")), "is encrypted")
    c.run("npz_unknown_compression", "valid_mlp.onnx", c.write(
        "npz_unknown_compression.npz", patch_zip(good, 8, b"\x63\x00")),
        "compression method is not supported")
    c.case("check_float_model", ["check", "{corpus}/float_mlp.onnx"], no_q, "float_mlp.onnx")
    c.case("check_inputs_wrong_shape", ["check", "{corpus}/valid_mlp.onnx", "--inputs",
                                        "{corpus}/npz_wrong_shape.npz"],
           "input 'x' has shape [5, 15]; expected (samples, 16)", "npz_wrong_shape.npz")
    c.run("npz_sample_counts_differ", "valid_two_inputs.onnx",
          npz("npz_sample_counts_differ.npz", a=x[:, :8], b=x[:4, 8:]),
          "inputs hold different numbers of samples")
    return c.table


def _rng(name: str) -> np.random.Generator:
    """A generator per mutation, so adding a case does not change the others' files."""
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def _without_kernel_shape(m: onnx.ModelProto, node: str) -> onnx.ModelProto:
    m = _copy(m)
    n = node_named(m, node)
    keep = [a for a in n.attribute if a.name != "kernel_shape"]
    del n.attribute[:]
    n.attribute.extend(keep)
    return m


def _npy(path: Path, a: np.ndarray) -> str:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, allow_pickle=False)
    return path.name


def _zip_of(members: dict[str, bytes]) -> bytes:
    import io
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return f.getvalue()


def _absurd_npy() -> bytes:
    """A .npy whose header declares 2^40 float32 values and holds 16 bytes."""
    import io
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        f, {"descr": "<f4", "fortran_order": False, "shape": (1 << 20, 1 << 20)})
    return f.getvalue() + bytes(16)


def main(argv: list[str] | None = None) -> int:
    root = CORPUS
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    table = build(root)
    (root / "expected.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    files = sorted(p.name for p in root.iterdir())
    size = sum((root / f).stat().st_size for f in files)
    print(f"{len(table)} cases, {len(files)} files, {size} bytes in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
