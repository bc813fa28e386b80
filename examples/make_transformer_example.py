"""Train, export and quantize the tiny transformer example, offline and deterministically.

Run from the repository root (needs the ``examples`` extra: torch, scikit-learn):

    .venv/bin/python examples/make_transformer_example.py

A one-block encoder on scikit-learn digits: the 8x8 image as 16 patches of 2x2 pixels
(``patches``; the host cuts them, input shape (N, 16, 4)), Linear embed to D=24 + a learned
position, pre-norm attention (one head) and a GELU MLP with residuals, a final LayerNorm,
flatten, Linear -> 10 logits. Exported at opset 17, ``quant_pre_process``-ed, quantized with
onnxruntime's ``quantize_static`` (uint8 activations, int8 weights, per tensor) in QDQ and in
QOperator format. Writes ``examples/models/tiny_transformer_{qdq,qop}.onnx``, the held-out
inputs ``examples/data/tiny_transformer_{qdq,qop}.npz`` and the measured accuracies
``examples/data/tiny_transformer_{qdq,qop}.json`` (float, onnxruntime quantized, intflow
integer-only, argmax agreement and mean |logit error| in output steps; see
docs/transformer.md). ``--measure`` measures the stored models again without training.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_examples as mx  # noqa: E402

D = 24  # embedding width
N_PATCH = 16  # 4 x 4 patches of 2 x 2 pixels
TRAIN = dict(epochs=80, lr=5e-3, batch=64, weight_decay=1e-4)
IN_NAME, OUT_NAME = "patches", "logits"


def to_patches(x: np.ndarray) -> np.ndarray:
    """(N, 64) pixels -> (N, 16, 4): patch (i, j) holds pixels [2i:2i+2, 2j:2j+2]."""
    img = x.reshape(-1, 4, 2, 4, 2)  # n, pi, r, pj, c
    return np.ascontiguousarray(img.transpose(0, 1, 3, 2, 4).reshape(-1, N_PATCH, 4))


def build_net():
    import torch
    import torch.nn as nn

    class TinyEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, D)
            self.pos = nn.Parameter(torch.randn(N_PATCH, D) * 0.1)
            self.ln1 = nn.LayerNorm(D)
            self.q = nn.Linear(D, D)
            self.k = nn.Linear(D, D)
            self.v = nn.Linear(D, D)
            self.proj = nn.Linear(D, D)
            self.ln2 = nn.LayerNorm(D)
            self.fc1 = nn.Linear(D, 2 * D)
            self.gelu = nn.GELU()  # exported as Div(sqrt 2) -> Erf -> Add(1) -> Mul -> Mul(0.5)
            self.fc2 = nn.Linear(2 * D, D)
            self.ln3 = nn.LayerNorm(D)
            self.head = nn.Linear(N_PATCH * D, 10)

        def forward(self, x):
            x = self.embed(x) + self.pos
            h = self.ln1(x)
            # one head; 1/sqrt(D) is learned into q's weights
            a = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2), dim=-1)
            x = x + self.proj(a @ self.v(h))
            x = x + self.fc2(self.gelu(self.fc1(self.ln2(x))))
            return self.head(self.ln3(x).flatten(1))

    return TinyEncoder()


def output_scale(path: Path) -> float:
    """The scale of the DequantizeLinear (or QOperator output) that makes the logits."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    out = m.graph.output[0].name
    for n in m.graph.node:
        if out in n.output and n.op_type == "DequantizeLinear":
            return float(inits[n.input[1]])
    raise RuntimeError(f"{path}: the output is not made by a DequantizeLinear")


def measure(path: Path, x: np.ndarray, y: np.ndarray, tmp: Path) -> dict:
    """onnxruntime quantized (as is, and its exact u8 x u8 oracle) vs intflow's reference."""
    import onnx

    import intflow
    from intflow.oracle import u8u8_oracle

    feed = {IN_NAME: x}
    ort_out = mx.ort_session(path, quantized=True).run(None, feed)[0]
    oracle = tmp / (path.stem + "_u8u8.onnx")
    onnx.save(u8u8_oracle(onnx.load(str(path))), str(oracle))
    exact_out = mx.ort_session(oracle, quantized=True).run(None, feed)[0]
    design = intflow.compile(str(path))
    int_out = design.run(feed)[OUT_NAME]
    s = output_scale(path)
    rec = {"notes": list(design.graph.notes)}
    for name, ref in (("ort", ort_out), ("ort_u8u8_oracle", exact_out)):
        rec[f"quantized_{name}"] = {
            "accuracy": float((ref.argmax(1) == y).mean()),
            "intflow_argmax_agreement": float((ref.argmax(1) == int_out.argmax(1)).mean()),
            "intflow_mean_abs_logit_error_steps": float(np.abs(int_out - ref).mean() / s),
            "intflow_max_abs_logit_error_steps": float(np.abs(int_out - ref).max() / s),
        }
    rec["intflow_integer"] = {"accuracy": float((int_out.argmax(1) == y).mean())}
    rec["output_scale"] = s
    return rec


FORMATS = (("QDQ", "tiny_transformer_qdq"), ("QOperator", "tiny_transformer_qop"))


def record(stem: str, fmt: str, x: np.ndarray, y: np.ndarray, float_acc: float, n_params: int,
           tmp: Path) -> dict:
    """The metadata json of one stored model, with its accuracies measured now."""
    out_path = mx.MODELS_DIR / f"{stem}.onnx"
    return {
        "model": f"models/{stem}.onnx",
        "inputs_file": f"data/{stem}.npz",
        "description": "digits as 16 patches of 2x2 pixels (host: to_patches); Linear embed "
                       f"{D} + position, pre-norm one-head attention, GELU MLP {D}-{2 * D}-{D}, "
                       "residuals, LayerNorm, flatten, Linear -> 10",
        "task": "classification",
        **mx.io_signature(out_path),
        "n_heldout": len(x),
        "n_parameters": n_params,
        "float": {"accuracy": float_acc},
        **measure(out_path, x, y, tmp),
        "quantization": {"tool": "onnxruntime.quantization.quantize_static",
                         "quant_pre_process": True, "format": fmt, "activation_type": "QUInt8",
                         "weight_type": "QInt8", "per_channel": False,
                         "calibrate_method": "MinMax", "n_calibration": mx.N_CALIB,
                         "opset": mx.OPSET},
        "ops": mx.op_counts(out_path),
        "train": TRAIN,
    }


def write(stem: str, rec: dict) -> None:
    (mx.DATA_DIR / f"{stem}.json").write_text(json.dumps(rec, indent=2) + "\n")
    print(stem, json.dumps({k: rec[k] for k in rec
                            if k.startswith(("float", "quantized", "intflow"))}))


def remeasure() -> None:
    """Measure the stored models again (no torch, no training): float accuracy and the
    parameter count are kept from the json a full run wrote."""
    (_, _), (_, yte) = mx.digits_split(mx.SEED)
    with tempfile.TemporaryDirectory() as tmpdir:
        for fmt, stem in FORMATS:
            old = json.loads((mx.DATA_DIR / f"{stem}.json").read_text())
            with np.load(mx.DATA_DIR / f"{stem}.npz") as z:
                x = z[IN_NAME]
            write(stem, record(stem, fmt, x, yte, old["float"]["accuracy"],
                               old["n_parameters"], Path(tmpdir)))


def main() -> None:
    import torch

    torch.manual_seed(mx.SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    (xtr, ytr), (xte, yte) = mx.digits_split(mx.SEED)
    xtr, xte = to_patches(xtr), to_patches(xte)
    net = build_net()
    mx.train(net, xtr, ytr, task="classification", seed=mx.SEED, **TRAIN)
    with torch.no_grad():
        torch_out = net(torch.from_numpy(xte)).numpy()
    n_params = sum(p.numel() for p in net.parameters())
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        float_path = tmp / "tiny_transformer_float.onnx"
        mx.export_onnx(net, xtr, float_path, IN_NAME, OUT_NAME)
        float_out = mx.ort_session(float_path, quantized=False).run(None, {IN_NAME: xte})[0]
        assert np.allclose(float_out, torch_out, atol=1e-4), "float ONNX != torch"
        float_acc = float((float_out.argmax(1) == yte).mean())
        calib = xtr[np.random.default_rng(mx.SEED).permutation(len(xtr))[:mx.N_CALIB]]
        for fmt, stem in FORMATS:
            qs = mx.QuantSettings(fmt, per_channel=False, activation_type="QUInt8")
            out_path = mx.MODELS_DIR / f"{stem}.onnx"
            mx.quantize(float_path, out_path, IN_NAME, calib, qs, tmp)
            assert out_path.stat().st_size < mx.MAX_MODEL_BYTES
            np.savez(mx.DATA_DIR / f"{stem}.npz", **{IN_NAME: xte})
            write(stem, record(stem, fmt, xte, yte, float_acc, n_params, tmp))


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        remeasure()
    elif sys.argv[1:]:
        sys.exit("usage: make_transformer_example.py [--measure]")
    else:
        main()
