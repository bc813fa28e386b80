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


def _fail(path: str, reason: str, node: str | None = None, op: str | None = None) -> ModelError:
    return ModelError(reason, file=path, node=node, op=op)


def _check_external_data(model: onnx.ModelProto, path: str) -> None:
    base = Path(path).resolve().parent
    tensors = list(model.graph.initializer)
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                tensors.append(a.t)
    for t in tensors:
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
    if not p.is_file():
        raise _fail(path, "no such file")
    data = p.read_bytes()
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
    _check_external_data(model, path)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(p.resolve().parent))
    except Exception as e:
        raise _fail(path, f"cannot read external data: {e}") from None

    opset = None
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset is None:
        raise _fail(path, "the model imports no default ONNX opset")
    if not OPSET_MIN <= opset <= OPSET_MAX:
        raise _fail(path, f"opset {opset} is not supported (intflow reads opsets "
                    f"{OPSET_MIN}-{OPSET_MAX}; convert with onnx.version_converter)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _fail(path, f"invalid ONNX model: {msg}") from None

    inits = {t.name for t in model.graph.initializer}
    for t in model.graph.initializer:
        dims = tuple(t.dims)
        if any(d < 0 or d > MAX_DIM for d in dims) or _elem_count(dims) > MAX_ELEMENTS:
            raise _fail(path, f"initializer '{t.name}' has absurd shape {list(dims)} (limit "
                        f"{MAX_ELEMENTS} elements, {MAX_DIM} per axis)")

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
        if any(d <= 0 or d > MAX_DIM for d in shape) or _elem_count(shape) > MAX_ELEMENTS:
            raise _fail(path, f"graph input '{vi.name}' has absurd shape {list(shape)} (limit "
                        f"{MAX_ELEMENTS} elements, {MAX_DIM} per axis)")
        shapes[vi.name] = shape
    if input_shapes:
        raise _fail(path, f"--input-shape names unknown inputs: {sorted(input_shapes)}")
    return LoadedModel(model, path, shapes, batch_inputs, opset)


def initializer_arrays(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
