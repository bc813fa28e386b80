"""The one-call Python API: ``intflow.compile(path)`` returns a ``Design``.

>>> d = intflow.compile("examples/models/digits_mlp_qdq.onnx")
>>> y = d.run({"pixels": x})               # same arrays onnxruntime returns
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compiler import IntGraph, compile_model, reference
from .compiler.errors import ModelError
from .table import format_table

ENGINES = ("reference",)


@dataclass
class Design:
    model_path: str
    graph: IntGraph

    def run(self, inputs: Mapping[str, np.ndarray], engine: str = "reference"
            ) -> dict[str, np.ndarray]:
        """Outputs for ``inputs`` (leading axis = sample), keyed by ONNX output name."""
        if engine != "reference":
            raise ModelError(f"engine {engine!r} is not available (engines: "
                             f"{', '.join(ENGINES)})")
        return reference.run(self.graph, inputs)

    def table(self) -> str:
        return format_table(self.graph)

    def save(self, out_dir: str | os.PathLike) -> None:
        """Write OUT/graph.json, OUT/constants.npz and OUT/layers.txt, atomically: the
        directory appears complete or not at all."""
        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            self.graph.save(tmp)
            (tmp / "layers.txt").write_text(self.table() + "\n")
            if out.exists():
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
                os.replace(out, old / "x")
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def compile(path: str | os.PathLike, *, requant: str = "ort",  # noqa: A001 (the API's name)
            input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Design:
    """Compile a quantized ONNX model; raises ModelError on bad input."""
    g = compile_model(str(path), requant=requant, input_shapes=dict(input_shapes or {}))
    return Design(str(path), g)
