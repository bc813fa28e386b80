"""Helpers for the tests held to onnxruntime: the truth (onnxruntime, or the u8×u8 oracle where
int8 weights sit under uint8 activations) and exact, element-by-element comparison.

The truth session is ``intflow.ort.session``: ORT_ENABLE_ALL + ``session.qdqisint8allowed=1``.
The comparison is exact equality on every element (dtype and shape included); nothing here
has a tolerance.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from intflow import ort
from intflow.oracle import u8u8_oracle

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "models"
DATA = ROOT / "examples" / "data"


def example_stems() -> list[str]:
    """Every model in examples/models/ (each has its inputs in examples/data/<stem>.npz),
    except QONNX ones (``*_qonnx``): onnxruntime cannot run their custom ops; they are held to
    qonnx's executor in compiler/tests/test_qonnx.py; nor the tiny transformers: their integer
    Softmax/LayerNorm approximate onnxruntime's float ops (tests/test_transformer_import.py)."""
    return sorted(p.stem for p in MODELS.glob("*.onnx")
                  if not p.stem.endswith("_qonnx") and not p.stem.startswith("tiny_transformer"))


def load_example_inputs(stem: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{stem}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def needs_oracle(model: onnx.ModelProto) -> bool:
    """True when the model has int8 constant weights under uint8 activations, i.e. when
    onnxruntime's u8×s8 kernel (saturating on AVX2 CPUs without VNNI) would run."""
    return u8u8_oracle(model).SerializeToString() != model.SerializeToString()


def save_model(model: onnx.ModelProto, directory: str | os.PathLike, name: str) -> str:
    path = os.path.join(directory, name + ".onnx")
    onnx.save(model, path)
    return path


def exact_truth_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model whose onnxruntime outputs are the exact truth on every CPU: the u8×u8
    oracle (identical arithmetic, exact kernel) when it applies, else the model itself."""
    return u8u8_oracle(model) if needs_oracle(model) else model


def ort_outputs(model: onnx.ModelProto | str | os.PathLike, inputs: Mapping[str, np.ndarray],
                *, batched: bool = True) -> dict[str, np.ndarray]:
    """onnxruntime's outputs for ``model`` (a ModelProto or a path).

    ``batched``: inputs carry a leading sample axis replacing the model's batch axis
    (``intflow.ort.run``); otherwise the arrays are fed as they are, in one call."""
    with tempfile.TemporaryDirectory() as d:
        if isinstance(model, onnx.ModelProto):
            path = save_model(model, d, "model")
        else:
            path = str(model)
        if batched:
            return ort.run(path, inputs)
        sess = ort.session(path)
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(names, dict(inputs))))


def exact_truth(model: onnx.ModelProto | str | os.PathLike, inputs: Mapping[str, np.ndarray],
                *, batched: bool = True) -> dict[str, np.ndarray]:
    """onnxruntime's outputs on the exact-truth model (see ``exact_truth_model``)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    return ort_outputs(exact_truth_model(model), inputs, batched=batched)


def mismatch_report(got: np.ndarray, want: np.ndarray, what: str = "") -> str:
    """'' when got equals want exactly (dtype, shape, every element), else a description."""
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype:
        return f"{what}: dtype {got.dtype}, expected {want.dtype}"
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, expected {want.shape}"
    bad = np.flatnonzero(~_equal(got, want))
    if not bad.size:
        return ""
    i = bad[:5]
    return (f"{what}: {bad.size}/{want.size} elements differ; first at flat "
            f"{i.tolist()}: got {got.ravel()[i].tolist()}, expected {want.ravel()[i].tolist()}")


def assert_exact(got: np.ndarray, want: np.ndarray, what: str = "") -> int:
    """Exact equality on every element; returns the number of elements compared."""
    msg = mismatch_report(got, want, what)
    assert not msg, msg
    return int(np.asarray(want).size)


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating):
        # bitwise: +0.0 vs -0.0 and NaN payloads count; onnxruntime returns the same bits
        return a.view(np.dtype(f"u{a.dtype.itemsize}")) == b.view(np.dtype(f"u{b.dtype.itemsize}"))
    return a == b


def assert_stream_model_equals_reference(g, inputs: Mapping[str, np.ndarray]) -> None:
    """The streaming plan the hardware is built from computes the reference's integers on
    ``inputs`` (user arrays), every output element."""
    from intflow.compiler import reference
    from intflow.compiler.dataflow import model as dataflow_model
    from intflow.compiler.dataflow.plan import plan
    feeds = reference.to_codes(g, inputs)
    env = reference.run_codes(g, feeds)
    streamed = dataflow_model.run(plan(g), g, feeds)
    for o in g.outputs:
        bad = np.flatnonzero(streamed[o.tensor] != env[o.tensor])
        assert bad.size == 0, f"{o.tensor}: the stream model differs from the reference at {bad[0]}"
