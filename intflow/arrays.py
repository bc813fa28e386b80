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
from typing import IO

import numpy as np

from .compiler.errors import ModelError
from .compiler.ir import IntGraph
from .compiler.reference import sample_shape

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip


def _check_npy_header(f: IO[bytes], size: int, what: str, path: str) -> None:
    """Refuse, before numpy allocates anything, an array that needs pickle or declares more
    data than the ``size`` bytes the file (or zip member) holds."""
    start = f.tell()
    if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
        raise ModelError(f"{what} is not a .npy array", file=path)
    f.seek(start)
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        return  # a rarer header version: numpy checks it while loading
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise ModelError(f"{what} is an object array, which needs pickle; intflow does not "
                         "unpickle: save plain numeric arrays", file=path)
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    have = size - (f.tell() - start)
    if need > have:
        raise ModelError(f"{what} declares shape {list(shape)} {dtype} ({need} bytes) but "
                         f"holds {have} bytes", file=path)


def _read_arrays(p: Path, path: str) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays of an .npz (keyed by name) or a .npy (key ''), and whether it was a .npy;
    the format is told by the file's first bytes, not its suffix."""
    with open(p, "rb") as f:
        head = f.read(len(NPY_MAGIC))
        if head == NPY_MAGIC:
            f.seek(0)
            _check_npy_header(f, p.stat().st_size, "the array", path)
            f.seek(0)
            return {"": np.load(f, allow_pickle=False)}, True
    if head[:4] not in ZIP_MAGICS:
        raise ModelError("not an .npz or .npy file (it starts with neither a zip nor a .npy "
                         "header)", file=path)
    with zipfile.ZipFile(p) as zf:
        for info in zf.infolist():
            with zf.open(info) as m:
                _check_npy_header(m, info.file_size, f"member '{info.filename}'", path)
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}, False


def load_inputs(path: str, g: IntGraph) -> dict[str, np.ndarray]:
    p = Path(path)
    if p.is_dir():
        raise ModelError("is a directory, not an .npz/.npy file", file=path)
    if not p.is_file():
        raise ModelError("no such inputs file", file=path)
    names = sorted({h.onnx_name for h in g.inputs})
    try:
        data, is_npy = _read_arrays(p, path)
    except ModelError:
        raise
    except MemoryError:
        raise ModelError("the arrays do not fit in memory", file=path) from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, RuntimeError,
            NotImplementedError) as e:  # RuntimeError: encrypted zip; NotImplemented: method
        msg = " ".join(str(e).split())
        raise ModelError(f"not a readable .npz/.npy file ({type(e).__name__}: {msg})",
                         file=path) from None
    if is_npy:
        if len(names) != 1:
            raise ModelError(f"a .npy holds one array but the model has inputs {names}; "
                             "use an .npz keyed by input name", file=path)
        data = {names[0]: data[""]}
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
    if p.is_dir():
        raise ModelError("is a directory; the outputs need a file name (Y.npz)", file=path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
    except OSError as e:
        raise ModelError(f"cannot write the outputs here: {e.strerror or e}"
                         f"{_not_a_directory(p)}", file=path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, p)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise ModelError(f"cannot write the outputs: {e.strerror or e}",
                             file=path) from None
        raise


def _not_a_directory(p: Path) -> str:
    """'; X is not a directory' naming the first ancestor of ``p`` that is a file, or ''."""
    for parent in p.absolute().parents:
        if parent.exists():
            return "" if parent.is_dir() else f" ('{parent}' is not a directory)"
    return ""
