"""Window geometry shared by the pooling kernels (ONNX MaxPool/AveragePool conventions)."""

from __future__ import annotations

import math


def pooled_size(size: int, k: int, stride: int, pad_begin: int, pad_end: int,
                dilation: int, ceil_mode: bool) -> int:
    """ONNX output length; with ceil_mode the last window must start inside the input or the
    begin padding (the rule onnxruntime and PyTorch apply)."""
    span = size + pad_begin + pad_end - dilation * (k - 1) - 1
    if ceil_mode:
        out = math.ceil(span / stride) + 1
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
        return out
    return span // stride + 1
