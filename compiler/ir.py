"""IntGraph: the integer-only dataflow graph every later stage reads.

A topologically ordered list of nodes over named tensors. Every tensor has a static shape
(the shape of one inference, batch axis included as 1), a signedness and a bit width; every
constant is an integer numpy array. Quantisation parameters survive only at the host
boundary (``HostInput.quantize`` / ``HostOutput`` epilogues), which runs on the host and
emulates onnxruntime's QuantizeLinear / DequantizeLinear exactly.

Serialised as ``graph.json`` (structure, types, attributes, host parameters) plus
``constants.npz`` (integer arrays).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import IntType

FORMAT_VERSION = 1


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz numpy can load, byte-identical for identical arrays: entries in the given
    order with a fixed timestamp (np.savez stamps the current time)."""
    import zipfile
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(a), allow_pickle=False)


@dataclass
class Tensor:
    """An activation or constant: name, per-inference shape and integer type."""

    name: str
    shape: tuple[int, ...]
    dtype: IntType

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Node:
    """One IntGraph operation; ``op`` names an entry of ``intflow.compiler.ops.OPS``."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    # where the node came from, for messages and the layer table (ONNX node names)
    origin: list[str] = field(default_factory=list)


@dataclass
class QuantParams:
    """Float32 scale(s) and integer zero point(s) of a quantised tensor (host side only)."""

    scale: np.ndarray  # float32, shape () or (C,)
    zero_point: np.ndarray  # int64, same shape as scale
    dtype: IntType
    axis: int | None = None  # the per-channel axis, None when per tensor

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": [float(s) for s in np.atleast_1d(self.scale)],
            "scalar": self.scale.ndim == 0,
            "zero_point": [int(z) for z in np.atleast_1d(self.zero_point)],
            "dtype": self.dtype.name,
            "axis": self.axis,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> QuantParams:
        scale = np.array(d["scale"], dtype=np.float32)
        zp = np.array(d["zero_point"], dtype=np.int64)
        if d["scalar"]:
            scale, zp = scale.reshape(()), zp.reshape(())
        return QuantParams(scale, zp, IntType.parse(d["dtype"]), d["axis"])

    def same_as(self, other: QuantParams) -> bool:
        return (
            self.dtype == other.dtype and self.axis == other.axis
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )


@dataclass
class HostInput:
    """A graph input: the ONNX float (or integer) input and how the host turns it into codes."""

    tensor: str  # IR tensor fed by the host
    onnx_name: str
    onnx_dtype: str  # numpy dtype name of the ONNX input ("float32", "uint8", ...)
    onnx_shape: tuple[int, ...]
    quantize: QuantParams | None  # None: the input already holds integer codes


@dataclass
class HostOutput:
    """A graph output: the IR tensor and the host epilogue that gives onnxruntime's value.

    ``kind``: "codes" (returned as is), "dequantize" (DequantizeLinear: f32(f32(q - zp) * s)),
    "int_to_float" (MatMulIntegerToFloat / float-output QGemm: f32(f32(acc) * S[c]) [+ bias]),
    "table" (float ops onnxruntime runs on a dequantised output, e.g. a Clip after the last
    DequantizeLinear: a float32 value per code, ``table[c - quant.dtype.min]``, computed at
    compile time with onnxruntime's float32 arithmetic; one row per channel along ``axis``).
    """

    tensor: str
    onnx_name: str
    onnx_dtype: str
    kind: str
    quant: QuantParams | None = None
    scale: np.ndarray | None = None  # float32 (C,) or (), for int_to_float
    bias: np.ndarray | None = None  # float32, broadcastable, for int_to_float
    axis: int | None = None  # axis of the per-channel scale (int_to_float) or table rows
    table: np.ndarray | None = None  # float32 (codes,) or (C, codes), for "table"


@dataclass
class IntGraph:
    name: str
    tensors: dict[str, Tensor]
    constants: dict[str, np.ndarray]
    nodes: list[Node]
    inputs: list[HostInput]
    outputs: list[HostOutput]
    requant: str = "ort"
    source: str = ""
    notes: list[str] = field(default_factory=list)  # warnings found while compiling

    # ---- queries -------------------------------------------------------------------------
    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def is_const(self, name: str) -> bool:
        return name in self.constants

    def const(self, name: str) -> np.ndarray:
        return self.constants[name]

    def output_names(self) -> set[str]:
        return {o.tensor for o in self.outputs}

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.tensors or name in self.constants:
            name, i = f"{base}_{i}", i + 1
        return name

    def add_const(self, base: str, value: np.ndarray, dtype: IntType | None = None) -> str:
        value = np.asarray(value, dtype=np.int64)
        name = self.unique_name(base)
        if dtype is None:
            dtype = IntType.fit(int(value.min()), int(value.max())) if value.size else IntType(
                True, 2)
        self.constants[name] = value
        self.tensors[name] = Tensor(name, tuple(value.shape), dtype)
        return name

    def unique_node_name(self, op: str, origin: list[str]) -> str:
        base = (origin[0] if origin else op) or op
        taken = {n.name for n in self.nodes}
        name, i = f"{base}/{op}", 1
        while name in taken:
            name, i = f"{base}/{op}_{i}", i + 1
        return name

    def add_tensor(self, base: str, shape: tuple[int, ...], dtype: IntType) -> str:
        name = self.unique_name(base)
        self.tensors[name] = Tensor(name, tuple(int(d) for d in shape), dtype)
        return name

    def check(self) -> None:
        """Topological order, every input defined, every name typed."""
        defined = {h.tensor for h in self.inputs} | set(self.constants)
        for n in self.nodes:
            for i in n.inputs:
                if i and i not in defined:
                    raise ValueError(f"IntGraph node {n.name} ({n.op}) reads undefined {i!r}")
            for o in n.outputs:
                if o in defined:
                    raise ValueError(f"IntGraph tensor {o!r} defined twice")
                defined.add(o)
        for o in self.outputs:
            if o.tensor not in defined:
                raise ValueError(f"IntGraph output {o.tensor!r} is never computed")
        for name in defined:
            if name not in self.tensors:
                raise ValueError(f"IntGraph tensor {name!r} has no type")

    def prune(self) -> None:
        """Drop nodes and constants nothing needed reads (dead code after rewrites)."""
        live = {o.tensor for o in self.outputs}
        kept: list[Node] = []
        for n in reversed(self.nodes):
            if any(o in live for o in n.outputs):
                kept.append(n)
                live.update(i for i in n.inputs if i)
        self.nodes = kept[::-1]
        live.update(h.tensor for h in self.inputs)
        self.constants = {k: v for k, v in self.constants.items() if k in live}
        self.tensors = {k: v for k, v in self.tensors.items() if k in live}

    # ---- serialisation -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def host_out(o: HostOutput) -> dict[str, Any]:
            d: dict[str, Any] = {"tensor": o.tensor, "onnx_name": o.onnx_name,
                                 "onnx_dtype": o.onnx_dtype, "kind": o.kind, "axis": o.axis}
            if o.quant is not None:
                d["quant"] = o.quant.to_json()
            if o.scale is not None:
                d["scale"] = np.asarray(o.scale, np.float32).tolist()
                d["scale_shape"] = list(np.shape(o.scale))
            if o.bias is not None:
                d["bias"] = np.asarray(o.bias, np.float32).ravel().tolist()
                d["bias_shape"] = list(np.shape(o.bias))
            if o.table is not None:
                d["table"] = np.asarray(o.table, np.float32).ravel().tolist()
                d["table_shape"] = list(np.shape(o.table))
            return d

        return {
            "format": "intflow.IntGraph",
            "version": FORMAT_VERSION,
            "name": self.name,
            "source": self.source,
            "requant": self.requant,
            "notes": self.notes,
            "inputs": [
                {"tensor": h.tensor, "onnx_name": h.onnx_name, "onnx_dtype": h.onnx_dtype,
                 "onnx_shape": list(h.onnx_shape),
                 "quantize": h.quantize.to_json() if h.quantize else None}
                for h in self.inputs
            ],
            "outputs": [host_out(o) for o in self.outputs],
            "tensors": {
                t.name: {"shape": list(t.shape), "dtype": t.dtype.name,
                         "const": t.name in self.constants}
                for t in self.tensors.values()
            },
            "nodes": [
                {"op": n.op, "name": n.name, "inputs": n.inputs, "outputs": n.outputs,
                 "attrs": n.attrs, "origin": n.origin}
                for n in self.nodes
            ],
        }

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "graph.json").write_text(json.dumps(self.to_json(), indent=1) + "\n")
        save_npz(out / "constants.npz", {k: self.constants[k] for k in sorted(self.constants)})

    @staticmethod
    def load(out_dir: str | Path) -> IntGraph:
        out = Path(out_dir)
        d = json.loads((out / "graph.json").read_text())
        if d.get("format") != "intflow.IntGraph":
            raise ValueError(f"{out / 'graph.json'} is not an intflow IntGraph")
        with np.load(out / "constants.npz") as z:
            constants = {k: z[k].astype(np.int64) for k in z.files}
        tensors = {
            name: Tensor(name, tuple(t["shape"]), IntType.parse(t["dtype"]))
            for name, t in d["tensors"].items()
        }
        inputs = [
            HostInput(h["tensor"], h["onnx_name"], h["onnx_dtype"], tuple(h["onnx_shape"]),
                      QuantParams.from_json(h["quantize"]) if h["quantize"] else None)
            for h in d["inputs"]
        ]
        outputs = []
        for o in d["outputs"]:
            scale = bias = None
            if "scale" in o:
                scale = np.array(o["scale"], np.float32).reshape(o["scale_shape"])
            if "bias" in o:
                bias = np.array(o["bias"], np.float32).reshape(o["bias_shape"])
            table = None
            if "table" in o:
                table = np.array(o["table"], np.float32).reshape(o["table_shape"])
            outputs.append(HostOutput(
                o["tensor"], o["onnx_name"], o["onnx_dtype"], o["kind"],
                QuantParams.from_json(o["quant"]) if "quant" in o else None,
                scale, bias, o.get("axis"), table))
        nodes = [Node(n["op"], n["name"], n["inputs"], n["outputs"], n["attrs"], n["origin"])
                 for n in d["nodes"]]
        return IntGraph(d["name"], tensors, constants, nodes, inputs, outputs, d["requant"],
                        d.get("source", ""), d.get("notes", []))
