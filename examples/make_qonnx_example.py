"""Train a 4-bit Brevitas MLP on scikit-learn digits and export it as QONNX (issue 9).

Run from the repository root (needs the ``examples`` and ``qonnx`` extras: torch==2.13.0,
scikit-learn, brevitas, qonnx, onnxoptimizer):

    .venv/bin/python examples/make_qonnx_example.py

Writes ``examples/models/digits_mlp_w4_qonnx.onnx`` (Brevitas' ``export_qonnx``, graph input
renamed ``pixels``, output ``logits``), ``examples/data/digits_mlp_w4_qonnx.npz`` (256 held-out
float32 inputs, the same split as ``make_examples.py``), ``..._truth.npz`` (qonnx's executor
on them) and ``....json`` (float and integer accuracies). All quantisers use power-of-two
scales (Brevitas' fixed-point quantisers), where qonnx's float32 execution is exact and
intflow's integer reference must equal it element for element; the script checks that.

Network: 64 -> 32 -> 10, 4-bit weights (narrow, per tensor), 4-bit unsigned ReLU activations,
8-bit input and output quantisers, Int32 biases at scale s_in * s_w. Nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from digits import digits_split  # noqa: E402

ROOT = HERE.parent
STEM = "digits_mlp_w4_qonnx"
MODEL = HERE / "models" / f"{STEM}.onnx"
DATA = HERE / "data"
SEED = 0
N_HELDOUT = 256
EPOCHS = 200
MAX_MODEL_BYTES = 50_000


def float_mlp():
    import torch.nn as nn
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def quant_mlp():
    import brevitas.nn as qnn
    import torch.nn as nn
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )

    def linear(i, o, **kw):
        return qnn.QuantLinear(i, o, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                               weight_bit_width=4, bias_quant=Int32Bias, **kw)

    return nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, bit_width=8,
                          return_quant_tensor=True),
        linear(64, 32, return_quant_tensor=True),
        qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=4,
                      return_quant_tensor=True),
        linear(32, 10, output_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=False),
    )


def train(model, x, y, epochs: int):
    import torch
    torch.manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(_logits(model(xt)), yt)
        loss.backward()
        opt.step()
    model.eval()
    return model


def _logits(out):
    return out.value if hasattr(out, "value") else out


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits.reshape(len(y), -1), axis=1) == y))


def rename_io(path: Path) -> None:
    """Give the exported graph readable input/output names (pixels -> logits)."""
    import onnx
    m = onnx.load(str(path))
    ren = {m.graph.input[0].name: "pixels", m.graph.output[0].name: "logits"}
    for n in m.graph.node:
        n.input[:] = [ren.get(i, i) for i in n.input]
        n.output[:] = [ren.get(o, o) for o in n.output]
    m.graph.input[0].name = "pixels"
    m.graph.output[0].name = "logits"
    m.graph.name = STEM
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def qonnx_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """qonnx's own executor (after its cleanup transforms), one sample at a time."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.util.cleanup import cleanup_model

    mw = cleanup_model(ModelWrapper(str(path)))
    i, o = mw.graph.input[0].name, mw.graph.output[0].name
    return np.concatenate([execute_onnx(mw, {i: x[k:k + 1]})[o] for k in range(len(x))])


def main() -> int:
    import torch
    from brevitas.export import export_qonnx

    sys.path.insert(0, str(ROOT))
    t0 = time.time()

    def lap(what: str) -> None:
        print(f"{time.time() - t0:6.1f} s  {what}", file=sys.stderr)

    (xtr, ytr), (xte, yte) = digits_split(SEED)
    torch.manual_seed(SEED)
    fm = train(float_mlp(), xtr, ytr, EPOCHS)
    lap("float model trained")
    torch.manual_seed(SEED)
    qm = train(quant_mlp(), xtr, ytr, EPOCHS)
    lap("brevitas model trained")
    with torch.no_grad():
        acc_float = accuracy(fm(torch.from_numpy(xte)).numpy(), yte)
        acc_brevitas = accuracy(_logits(qm(torch.from_numpy(xte))).numpy(), yte)
    MODEL.parent.mkdir(exist_ok=True)
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "export.onnx"
        export_qonnx(qm, torch.from_numpy(xtr[:1]), export_path=str(tmp), dynamo=False)
        rename_io(tmp)
        MODEL.write_bytes(tmp.read_bytes())
    size = MODEL.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise SystemExit(f"{MODEL} is {size} bytes (limit {MAX_MODEL_BYTES})")

    lap("exported")
    truth = qonnx_outputs(MODEL, xte)
    lap("qonnx executor run")
    from intflow.compiler import compile_model, reference
    got = reference.run(compile_model(str(MODEL)), {"pixels": xte})["logits"]
    differ = int(np.sum(got.reshape(truth.shape) != truth))
    np.savez(DATA / f"{STEM}.npz", pixels=xte)
    np.savez(DATA / f"{STEM}_truth.npz", logits=truth.astype(np.float32))
    info = {
        "model": f"models/{STEM}.onnx",
        "inputs_file": f"data/{STEM}.npz",
        "truth_file": f"data/{STEM}_truth.npz",
        "truth": "qonnx.core.onnx_exec.execute_onnx after qonnx.util.cleanup.cleanup_model",
        "description": "scikit-learn digits; Brevitas MLP 64-32-10, 4-bit weights, 4-bit ReLU "
                       "activations, 8-bit input/output, power-of-two scales; QONNX export.",
        "n_heldout": N_HELDOUT,
        "epochs": EPOCHS,
        "float": {"accuracy": acc_float},
        "brevitas_fake_quant": {"accuracy": acc_brevitas},
        "qonnx_executor": {"accuracy": accuracy(truth, yte)},
        "intflow_integer": {"accuracy": accuracy(got, yte),
                            "output_elements_differing_from_qonnx": differ},
        "model_bytes": size,
    }
    (DATA / f"{STEM}.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    print(f"done in {time.time() - t0:.1f} s")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
