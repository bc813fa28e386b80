"""intflow: quantized ONNX -> integer dataflow graph -> bit-exact RTL -> FPGA bitstreams."""

from .compiler.errors import ModelError
from .design import Design, compile

__all__ = ["Design", "ModelError", "compile"]
__version__ = "0.1.0"
