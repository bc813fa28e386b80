"""intflow.compiler: quantized ONNX -> IntGraph -> numpy integer reference.

``compile_model(path)`` loads and validates the model, lowers every quantized pattern to the
integer kernel onnxruntime runs for it, and runs the lowering passes to a fixed point.
"""

from __future__ import annotations

from .errors import ModelError, UnsupportedOp
from .ir import IntGraph
from .onnx import Importer, load
from .passes import FoldZeroPoints, FuseClamp, ProveWidths, run_to_fixed_point

REQUANT_MODES = ("ort", "dyadic")


def compile_model(path: str, *, requant: str = "ort",
                  input_shapes: dict[str, tuple[int, ...]] | None = None) -> IntGraph:
    """Compile the quantized ONNX model at ``path`` into an IntGraph."""
    if requant not in REQUANT_MODES:
        raise ModelError(f"unknown requant mode {requant!r} (choose from "
                         f"{', '.join(REQUANT_MODES)})", file=path)
    loaded = load(path, input_shapes)
    g = Importer(loaded, requant).run()
    g.prune()
    try:
        g = run_to_fixed_point(g, [FoldZeroPoints(), FuseClamp(), ProveWidths()])
    except ModelError as e:
        raise e.located(path) from None
    g.check()
    return g


__all__ = ["IntGraph", "ModelError", "UnsupportedOp", "compile_model", "REQUANT_MODES"]
