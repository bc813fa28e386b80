"""ONNX import: one file per ONNX op (or per op family), each registering its lowering."""

from . import (  # noqa: F401  (imported for their registrations)
    averagepool,
    clamp,
    concat,
    conv,
    dequantizelinear,
    float_island,
    gelu,
    gemm,
    integer_ops,
    layernorm,
    layout,
    matmul,
    maxpool,
    qlinear_tables,
    qlinearadd,
    qlinearconv,
    qlinearmatmul,
    qlinearmul,
    qonnx_bipolar,
    qonnx_quant,
    qonnx_trunc,
    quantizelinear,
    reducemean,
    shape,
    softmax,
    split,
    unary,
)
from .importer import Importer
from .loader import LoadedModel, load

__all__ = ["Importer", "LoadedModel", "load"]
