"""Reading the user's input arrays and writing output arrays (the npz contract of DESIGN.md).

X.npz holds one array per graph input keyed by input name, leading axis = sample; a .npy is
accepted for a one-input graph. The per-sample shape is the model input's shape with its
batch axis removed (or the whole shape when the model has no batch axis).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .compiler.errors import ModelError
from .compiler.ir import IntGraph
from .compiler.reference import sample_shape


def load_inputs(path: str, g: IntGraph) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise ModelError("no such inputs file", file=path)
    names = sorted({h.onnx_name for h in g.inputs})
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
            if len(names) != 1:
                raise ModelError(f"a .npy holds one array but the model has inputs {names}; "
                                 "use an .npz keyed by input name", file=path)
            data = {names[0]: arr}
        else:
            with np.load(p, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
    except ModelError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"not a readable .npz/.npy file ({type(e).__name__}: {e})",
                         file=path) from None
    missing = [n for n in names if n not in data]
    if missing:
        raise ModelError(f"missing input array(s) {missing}; the file has {sorted(data)}",
                         file=path)
    out = {}
    n_samples = None
    for h in g.inputs:
        if h.onnx_name in out:
            continue
        x = data[h.onnx_name]
        want_dtype = np.dtype(h.onnx_dtype)
        if x.dtype != want_dtype:
            if want_dtype == np.float32 and x.dtype in (np.float64, np.float16):
                x = x.astype(np.float32)
            else:
                raise ModelError(f"input '{h.onnx_name}' has dtype {x.dtype}, the model "
                                 f"expects {want_dtype}", file=path)
        full = g.tensors[h.tensor].shape
        per = sample_shape(full)
        if x.ndim == 0 or (tuple(x.shape[1:]) != tuple(per) and tuple(x.shape[1:]) != full):
            raise ModelError(f"input '{h.onnx_name}' has shape {list(x.shape)}; expected "
                             f"(samples, {', '.join(map(str, per))})", file=path)
        if x.shape[0] == 0:
            raise ModelError(f"input '{h.onnx_name}' holds no samples", file=path)
        if n_samples is not None and x.shape[0] != n_samples:
            raise ModelError("inputs hold different numbers of samples", file=path)
        n_samples = x.shape[0]
        out[h.onnx_name] = x
    return out


def save_outputs(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (a temporary file renamed into place)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
