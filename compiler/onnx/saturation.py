"""The u8×s8 saturation warning (DESIGN.md): onnxruntime's u8×s8 GEMM/conv kernel on x86
CPUs with AVX2 but no VNNI sums pairs of products in saturating int16 (``vpmaddubsw``):
255*w1 + 255*w2 overflows int16 when two weights of one sign have |w1| + |w2| > 128. intflow
computes the exact sum; it says so when onnxruntime may not."""

from __future__ import annotations

import numpy as np

from ..dtypes import INT8, UINT8


def may_saturate(w_rows: np.ndarray) -> bool:
    """``w_rows``: (outputs, K) int8 weights. True when some output has two same-signed
    weights whose magnitudes add to more than 128 (which two are paired depends on MLAS's
    packing, so any two count)."""
    for sign in (1, -1):
        m = np.sort(np.maximum(sign * w_rows, 0), axis=1)
        if m.shape[1] >= 2 and np.any(m[:, -1] + m[:, -2] > 128):
            return True
    return False


def check(imp, x_dtype, w_dtype, w_rows: np.ndarray, name: str) -> None:
    if x_dtype == UINT8 and w_dtype == INT8 and may_saturate(w_rows):
        imp.saturating.append(name)


def note(layers: list[str]) -> str:
    return ("uint8 activations x int8 weights in " + ", ".join(layers) + " can saturate in "
            "onnxruntime's u8s8 kernel on x86 CPUs with AVX2 but no VNNI; intflow computes the "
            "exact sum (as onnxruntime does on VNNI and ARM CPUs). Quantize with "
            "reduce_range=True or uint8 weights to avoid the difference")
