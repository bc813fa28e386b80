"""Load and validate an ONNX file; every problem becomes a ModelError naming the file.

Shapes are made static here: a symbolic *leading* dimension of a graph input is the batch
axis and becomes 1 (a sample is one inference); any other symbolic dimension needs
``--input-shape NAME=d0,d1,...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx.helper import get_all_tensor_dtypes

from ..dtypes import ONNX_INT_TYPES
from ..errors import ModelError

OPSET_MIN, OPSET_MAX = 10, 21
# a sanity limit, far above anything a small FPGA holds (UP5K: 128 KB SPRAM)
MAX_ELEMENTS = 1 << 26
MAX_DIM = 1 << 24


@dataclass
class LoadedModel:
    model: onnx.ModelProto
    path: str
    input_shapes: dict[str, tuple[int, ...]]  # per-inference shapes, batch axis = 1
    batch_inputs: set[str]  # inputs whose leading axis was a batch axis (symbolic or 1)
    opset: int


# ops that only a quantized model holds (onnxruntime QDQ / QOperator / integer ops, QONNX)
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QGemm",
                 "Quant", "IntQuant", "BipolarQuant", "Trunc", "QuantizeBFP"}
KNOWN_TYPES = set(get_all_tensor_dtypes()) - {TensorProto.UNDEFINED}
FLOAT_TYPE_NAMES = {TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64",
                    TensorProto.BFLOAT16: "bfloat16"}


def _fail(path: str, reason: str, node: str | None = None, op: str | None = None) -> ModelError:
    return ModelError(reason, file=path, node=node, op=op)


def _one_line(text: str, limit: int = 300) -> str:
    """A library's (possibly multi-line) message as one line of at most ``limit`` chars."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _all_tensors(model: onnx.ModelProto) -> list[TensorProto]:
    """Initializers and the tensors held in node attributes (Constant values)."""
    tensors = list(model.graph.initializer)
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                tensors.append(a.t)
            elif a.type == onnx.AttributeProto.TENSORS:
                tensors.extend(a.tensors)
    return tensors


def _check_sizes(model: onnx.ModelProto, path: str) -> None:
    """Refuse absurd declared sizes before anything allocates them (a 2^40-element tensor
    costs a few bytes to declare)."""
    def check(t: TensorProto, what: str, node: onnx.NodeProto | None = None) -> None:
        dims = tuple(t.dims)
        if any(d < 0 or d > MAX_DIM for d in dims) or _elem_count(dims) > MAX_ELEMENTS:
            raise _fail(path, f"{what} has absurd shape {list(dims)} (limit {MAX_ELEMENTS} "
                        f"elements, {MAX_DIM} per axis)", node=node and node.name,
                        op=node and node.op_type)

    for t in model.graph.initializer:
        check(t, f"initializer '{t.name}'")
    for n in model.graph.node:
        for a in n.attribute:
            for t in [a.t] if a.type == onnx.AttributeProto.TENSOR else a.tensors:
                check(t, f"attribute '{a.name}' (tensor '{t.name}')", n)


def _check_names(model: onnx.ModelProto, path: str) -> None:
    """Every node input is a graph input, an initializer or an earlier node's output, and
    every graph output is produced (onnx.checker says so too, without naming the node)."""
    defined = {vi.name for vi in model.graph.input} | {t.name for t in model.graph.initializer}
    for i, n in enumerate(model.graph.node):
        for name in n.input:
            if name and name not in defined:
                raise _fail(path, f"input '{name}' is not a graph input, an initializer or the "
                            "output of an earlier node (a dangling name, or nodes out of "
                            "topological order)", node=n.name or f"#{i}", op=n.op_type)
        defined.update(o for o in n.output if o)
    for vo in model.graph.output:
        if vo.name not in defined:
            raise _fail(path, f"graph output '{vo.name}' is not produced by any node")


def _is_quantized_op(n: onnx.NodeProto) -> bool:
    t = n.op_type
    return (t in QUANTIZED_OPS or t.startswith("QLinear") or t.endswith("Integer")
            or "IntegerToFloat" in t)


def _check_external_data(model: onnx.ModelProto, path: str) -> None:
    base = Path(path).resolve().parent
    for t in _all_tensors(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        target = (base / loc).resolve()
        if os.path.isabs(loc) or not target.is_relative_to(base):
            raise _fail(path, f"initializer '{t.name}': external data path '{loc}' leaves the "
                        "model's folder; refusing to read it")
        if not target.is_file():
            raise _fail(path, f"initializer '{t.name}': external data file '{loc}' not found")


def _elem_count(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.float64))


def load(path: str, input_shapes: dict[str, tuple[int, ...]] | None = None) -> LoadedModel:
    """Read, validate and make static the ONNX model at ``path``."""
    input_shapes = dict(input_shapes or {})
    p = Path(path)
    if p.is_dir():
        raise _fail(path, "is a directory, not an ONNX file")
    if not p.is_file():
        raise _fail(path, "no such file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise _fail(path, f"cannot read the file: {e.strerror or e}") from None
    if not data:
        raise _fail(path, "the file is empty, not an ONNX model")
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning-like errors, ...
        raise _fail(path, "not an ONNX model: the protobuf does not parse (truncated or "
                    f"corrupted file?): {type(e).__name__}") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise _fail(path, "not an ONNX model: no graph or no nodes (truncated or corrupted "
                    "file?)")
    _check_sizes(model, path)
    _check_external_data(model, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(p.resolve().parent))
    except Exception as e:
        raise _fail(path, f"cannot read external data: {_one_line(str(e))}") from None

    opset = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset is None:
        raise _fail(path, "the model imports no default ONNX opset")
    if not OPSET_MIN <= opset <= OPSET_MAX:
        raise _fail(path, f"opset {opset} is not supported (intflow reads opsets "
                    f"{OPSET_MIN}-{OPSET_MAX}; convert with onnx.version_converter)")
    _check_names(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        msg = _one_line(str(e)) or type(e).__name__
        raise _fail(path, f"invalid ONNX model: {msg}") from None
    for t in model.graph.initializer:
        try:
            numpy_helper.to_array(t)
        except Exception as e:
            raise _fail(path, f"initializer '{t.name}': its data does not match its type and "
                        f"shape {list(t.dims)} ({_one_line(str(e))})") from None
    if not any(_is_quantized_op(n) for n in model.graph.node):
        raise _fail(path, "no quantized ops: quantize it with onnxruntime.quantization first "
                    "(quantize_static, QDQ or QOperator format)")

    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        elem = vi.type.tensor_type.elem_type
        if elem in FLOAT_TYPE_NAMES:
            raise _fail(path, f"graph input '{vi.name}' is {FLOAT_TYPE_NAMES[elem]}; only "
                        "float32 float inputs are supported")
        if elem != TensorProto.FLOAT and elem not in ONNX_INT_TYPES:
            name = TensorProto.DataType.Name(elem).lower() if elem in \
                TensorProto.DataType.values() else str(elem)
            raise _fail(path, f"graph input '{vi.name}' has type {name}; intflow takes float32 "
                        "or integer inputs")
    for vo in model.graph.output:
        if vo.type.HasField("tensor_type") and vo.type.tensor_type.elem_type not in \
                KNOWN_TYPES:
            raise _fail(path, f"graph output '{vo.name}' has an unknown element type "
                        f"{vo.type.tensor_type.elem_type}")

    shapes: dict[str, tuple[int, ...]] = {}
    batch_inputs: set[str] = set()
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
            raise _fail(path, f"graph input '{vi.name}' has no tensor shape")
        dims: list[int | None] = []
        for d in tt.shape.dim:
            dims.append(d.dim_value if d.HasField("dim_value") else None)
        if vi.name in input_shapes:
            given = tuple(input_shapes.pop(vi.name))
            if len(given) != len(dims) or any(
                    d is not None and d != g for d, g in zip(dims, given)):
                raise _fail(path, f"--input-shape for '{vi.name}' {list(given)} does not match "
                            f"the model's {['?' if d is None else d for d in dims]}")
            shape = given
            if dims and dims[0] in (None, 1) and given[0] == 1:
                batch_inputs.add(vi.name)
        else:
            if dims and dims[0] in (None, 1):
                batch_inputs.add(vi.name)
                dims[0] = 1
            if any(d is None for d in dims):
                raise _fail(path, f"graph input '{vi.name}' has dynamic dimensions "
                            f"{['?' if d is None else d for d in dims]}: give them with "
                            f"--input-shape {vi.name}=" + ",".join(
                                "1" if d is None else str(d) for d in dims))
            shape = tuple(int(d) for d in dims)  # type: ignore[arg-type]
        if any(d <= 0 for d in shape):
            raise _fail(path, f"graph input '{vi.name}' has shape {list(shape)}: dimensions "
                        "must be positive")
        if any(d > MAX_DIM for d in shape) or _elem_count(shape) > MAX_ELEMENTS:
            raise _fail(path, f"graph input '{vi.name}' has absurd shape {list(shape)} (limit "
                        f"{MAX_ELEMENTS} elements, {MAX_DIM} per axis)")
        shapes[vi.name] = shape
    if input_shapes:
        raise _fail(path, f"--input-shape names unknown inputs: {sorted(input_shapes)}")
    return LoadedModel(model, path, shapes, batch_inputs, opset)


def initializer_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
