"""Train, export and quantize the example networks, offline and deterministically.

Run from the repository root:

    .venv/bin/python examples/make_examples.py

Writes ``examples/models/<stem>.onnx`` (quantized with onnxruntime's own ``quantize_static``),
``examples/data/<stem>.npz`` (256 held-out float32 inputs keyed by the model's input name,
leading axis = sample) and ``examples/data/<stem>.json`` (accuracy / RMSE of the float and the
quantized model on those inputs, quantization settings, weight counts, op types).

Data comes only from what packages ship or what numpy generates: scikit-learn's digits, the
mnist1d package's procedural generator (``mnist1d_data.py``), the synthetic pulses of
``pulses.py`` and the synthetic jet features of ``jets.py``. Needs torch
(``.venv/bin/pip install torch==2.13.0``), scikit-learn and mnist1d; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jets  # noqa: E402
import pulses  # noqa: E402
from digits import digits_split  # noqa: E402
from mnist1d_data import mnist1d_split  # noqa: E402

MODELS_DIR = HERE / "models"
DATA_DIR = HERE / "data"
SEED = 0
N_HELDOUT = 256
N_CALIB = 512  # training samples fed to the calibrator
CALIB_BATCH = 64
OPSET = 17
BATCH_DIM = "N"
MAX_MODEL_BYTES = 500_000


# --------------------------------------------------------------------------------------------
# data


def jets_split(seed: int):
    x_tr, y_tr = jets.make_jets(20_000, seed=seed + 1)
    x_te, y_te = jets.make_jets(N_HELDOUT, seed=seed + 2)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    prep = {"standardize_mean": mean.tolist(), "standardize_std": std.tolist()}
    train = (jets.standardize(x_tr, mean, std), y_tr)
    return train, (jets.standardize(x_te, mean, std), y_te), prep


def pulses_split(seed: int):
    return pulses.make_pulses(16_384, seed=seed + 3), pulses.make_pulses(N_HELDOUT, seed=seed + 4)


# --------------------------------------------------------------------------------------------
# networks (torch is imported lazily so that `import make_examples` stays cheap)


def build_net(kind: str):
    import torch.nn as nn

    class DigitsMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(64, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())

    class DigitsCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = self.bn1(self.conv1(x)).relu()
            x = self.pool(self.conv2(x).relu())
            x = x + self.conv3(x).relu()  # residual skip around conv3
            return self.fc(self.gap(x).flatten(1))

    class PulseCNN1d(nn.Module):
        def __init__(self, pool: str = "avg"):
            super().__init__()
            self.conv1 = nn.Conv1d(1, 8, 5)  # 64 -> 60
            self.conv2 = nn.Conv1d(8, 16, 3, stride=2)  # 60 -> 29
            self.conv3 = nn.Conv1d(16, 16, 3, dilation=2)  # 29 -> 25
            # 25 -> 12; max pooling for the iCE40 variant: onnxruntime's windowed AveragePool
            # runs a float32 sequence whose exact emulation costs 9 of the UP5K's 30 blocks
            self.pool = nn.AvgPool1d(2) if pool == "avg" else nn.MaxPool1d(2)
            self.fc1 = nn.Linear(16 * 12, 32)
            self.fc2 = nn.Linear(32, 2)

        def forward(self, x):
            x = self.conv1(x).relu()
            x = self.conv2(x).relu()
            x = self.conv3(x).relu()
            x = self.pool(x).flatten(1)
            return self.fc2(self.fc1(x).relu())

    class Mnist1dCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv1d(1, 8, 5)  # 40 -> 36
            self.conv2 = nn.Conv1d(8, 16, 3, stride=2)  # 36 -> 17
            self.conv3 = nn.Conv1d(16, 16, 3, stride=2)  # 17 -> 8
            self.fc = nn.Linear(16 * 8, 10)

        def forward(self, x):
            x = self.conv1(x).relu()
            x = self.conv2(x).relu()
            x = self.conv3(x).relu()
            return self.fc(x.flatten(1))

    class JetMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(16, 64)
            self.fc2 = nn.Linear(64, 32)
            self.fc3 = nn.Linear(32, 32)
            self.fc4 = nn.Linear(32, 5)

        def forward(self, x):
            x = self.fc1(x).relu()
            x = self.fc2(x).relu()
            x = self.fc3(x).relu()
            return self.fc4(x)

    nets = {"digits_mlp": DigitsMLP, "digits_cnn": DigitsCNN, "pulse_cnn1d": PulseCNN1d,
            "pulse_cnn1d_max": lambda: PulseCNN1d(pool="max"), "jet_mlp": JetMLP,
            "mnist1d_cnn": Mnist1dCNN, "digits_cnn_w4": DigitsCNN}
    return nets[kind]()


def count_weights(net) -> tuple[int, int]:
    """(weights of Conv/Linear layers, all trainable parameters incl. biases and BatchNorm)."""
    import torch.nn as nn

    n_w = sum(m.weight.numel() for m in net.modules()
              if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear))
    n_p = sum(p.numel() for p in net.parameters())
    return n_w, n_p


def train(net, x: np.ndarray, y: np.ndarray, *, task: str, epochs: int, lr: float,
          batch: int, weight_decay: float, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss() if task == "classification" else torch.nn.MSELoss()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    net.eval()


def fake_quant_weights(net, bits: int) -> None:
    """Put every Conv/Linear weight on a symmetric per-output-channel ``bits``-bit grid
    (``s = max|w| / (2^(bits-1) - 1)``, ``w = s * round(w / s)``) through a straight-through
    parametrization, so that training after this call is quantization-aware."""
    import torch
    import torch.nn as nn
    from torch.nn.utils import parametrize

    q = 2 ** (bits - 1) - 1

    class Grid(nn.Module):
        def forward(self, w):
            dims = tuple(range(1, w.dim()))
            s = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-8) / q
            return w + (torch.round(w / s) * s - w).detach()  # straight-through estimator

    for m in net.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            parametrize.register_parametrization(m, "weight", Grid())


def bake_fake_quant(net) -> None:
    """Replace the parametrized weights by their grid values (for the ONNX export)."""
    import torch.nn as nn
    from torch.nn.utils import parametrize

    for m in net.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear) and parametrize.is_parametrized(m):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


def export_onnx(net, x_example: np.ndarray, path: Path, in_name: str, out_name: str) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():  # "legacy TorchScript-based exporter": dynamo=False is meant
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(torch, net, x_example, path, in_name, out_name)


def _export(torch, net, x_example, path, in_name, out_name) -> None:
    torch.onnx.export(
        net, (torch.from_numpy(x_example[:2]),), str(path), dynamo=False, opset_version=OPSET,
        input_names=[in_name], output_names=[out_name],
        dynamic_axes={in_name: {0: BATCH_DIM}, out_name: {0: BATCH_DIM}},
    )


# --------------------------------------------------------------------------------------------
# quantization with onnxruntime's own tools


@dataclass
class QuantSettings:
    quant_format: str  # "QDQ" | "QOperator"
    per_channel: bool
    activation_type: str  # "QUInt8" | "QInt8"
    weight_type: str = "QInt8"
    reduce_range: bool = False
    calibrate_method: str = "MinMax"
    extra_options: dict = field(default_factory=dict)
    pre_process: bool = True
    # < 8: the weights were trained on a symmetric per-channel grid of this many bits; the
    # int8 codes quantize_static writes are rescaled onto it (``narrow_weight_codes``)
    weight_bits: int = 8


class ArrayReader:
    """CalibrationDataReader over an array of training samples, ``CALIB_BATCH`` at a time."""

    def __init__(self, name: str, x: np.ndarray):
        self.batches = [{name: x[i:i + CALIB_BATCH]} for i in range(0, len(x), CALIB_BATCH)]
        self.pos = 0

    def get_next(self):
        if self.pos >= len(self.batches):
            return None
        self.pos += 1
        return self.batches[self.pos - 1]

    def rewind(self):
        self.pos = 0


def quantize(float_path: Path, out_path: Path, in_name: str, x_calib: np.ndarray,
             qs: QuantSettings, tmp: Path) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(ArrayReader, CalibrationDataReader):
        pass

    src = float_path
    if qs.pre_process:
        src = tmp / (float_path.stem + "_pre.onnx")
        quant_pre_process(str(float_path), str(src))
    quantize_static(
        str(src), str(out_path), Reader(in_name, x_calib),
        quant_format=getattr(QuantFormat, qs.quant_format),
        per_channel=qs.per_channel,
        reduce_range=qs.reduce_range,
        activation_type=getattr(QuantType, qs.activation_type),
        weight_type=getattr(QuantType, qs.weight_type),
        calibrate_method=getattr(CalibrationMethod, qs.calibrate_method),
        extra_options=dict(qs.extra_options),
    )
    # quant_pre_process / quantize_static may leave opset imports that no node uses
    # (e.g. com.microsoft in a pure-QDQ graph); drop them so consumers see only what is used.
    model = onnx.load(str(out_path))
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    if len(keep) != len(model.opset_import):
        del model.opset_import[:]
        model.opset_import.extend(keep)
    if qs.weight_bits < 8:
        narrow_weight_codes(model, qs.weight_bits)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out_path))


def narrow_weight_codes(model, bits: int) -> None:
    """Rewrite the int8 Conv/Gemm/MatMul weight codes of a per-channel QDQ model whose float
    weights lie on a symmetric ``bits``-bit grid per output channel (``fake_quant_weights``).

    quantize_static maps each channel's ``max|w|`` to code 127, so the codes are
    ``round(k * 127 / q)`` for grid points ``k`` in ``[-q, q]``, ``q = 2^(bits-1) - 1``; they
    become ``k`` with the channel's scale times ``127 / q``, and the int32 bias codes are
    requantized to the new bias scale ``x_scale * w_scale`` (as quantize_static computes it).
    The model's arithmetic stays int8 x int8 -> int32 in onnxruntime; only the weight values
    are narrower. Raises if a channel is not on the grid."""
    from onnx import TensorProto, numpy_helper

    q = 2 ** (bits - 1) - 1
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        wdq = producer.get(node.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear" or wdq.input[0] not in inits:
            continue
        w_init, s_init = inits[wdq.input[0]], inits[wdq.input[1]]
        if w_init.data_type != TensorProto.INT8:
            continue
        w = numpy_helper.to_array(w_init).astype(np.int64)
        s = numpy_helper.to_array(s_init).astype(np.float32)
        axis = next((a.i for a in wdq.attribute if a.name == "axis"), 1) % w.ndim
        shape = [1] * w.ndim
        shape[axis] = -1
        others = tuple(d for d in range(w.ndim) if d != axis)
        m = np.abs(w).max(axis=others) if s.ndim else np.array(np.abs(w).max())
        m = np.maximum(m, 1)
        mb = m.reshape(shape) if s.ndim else m
        k = w * q / mb
        if np.abs(k - np.rint(k)).max() > 0.1:
            raise ValueError(f"{node.name}: weights are not on a {bits}-bit grid")
        s_new = (s * (m / q).astype(np.float32)).astype(np.float32)
        w_init.CopyFrom(numpy_helper.from_array(np.rint(k).astype(np.int8), w_init.name))
        s_init.CopyFrom(numpy_helper.from_array(s_new.reshape(s.shape), s_init.name))
        if len(node.input) > 2 and node.input[2]:
            bdq = producer[node.input[2]]
            xdq = producer[node.input[0]]
            b_init, bs_init = inits[bdq.input[0]], inits[bdq.input[1]]
            sx = numpy_helper.to_array(inits[xdq.input[1]]).astype(np.float32)
            b = numpy_helper.to_array(b_init).astype(np.float64)
            bs_old = numpy_helper.to_array(bs_init).astype(np.float64)
            bs_new = (sx * s_new).astype(np.float32)
            b_new = np.rint(b * bs_old / bs_new.astype(np.float64)).astype(np.int32)
            b_init.CopyFrom(numpy_helper.from_array(b_new, b_init.name))
            bs_init.CopyFrom(numpy_helper.from_array(bs_new.reshape(bs_old.shape),
                                                     bs_init.name))


# --------------------------------------------------------------------------------------------
# running and measuring


def ort_session(path: Path, *, quantized: bool, optimized_out: Path | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if quantized:
        so.add_session_config_entry("session.qdqisint8allowed", "1")
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
        so.log_severity_level = 3  # it warns that an ENABLE_ALL graph is hardware specific
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path))
    c = collections.Counter(f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in model.graph.node)
    return dict(sorted(c.items()))


def uint8_weight_oracle(path: Path, out_path: Path) -> None:
    """Write the model with its int8 weights moved to uint8 (``w + 128``, zero point ``+ 128``).

    The arithmetic is identical, but onnxruntime then runs its exact u8 x u8 kernels instead of
    the u8 x s8 ones, which on x86 CPUs with AVX2 but no VNNI sum pairs of products in
    saturating int16 (``vpmaddubsw``) and can be wrong. Only meaningful for uint8 activations.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    pairs = set()  # (weight, weight zero point)
    for n in model.graph.node:
        if (n.op_type == "DequantizeLinear" and n.input[0] in inits
                and inits[n.input[0]].data_type == onnx.TensorProto.INT8):
            pairs.add((n.input[0], n.input[2]))
        elif n.op_type in ("QLinearConv", "QLinearMatMul", "QGemm") and n.input[3] in inits:
            pairs.add((n.input[3], n.input[5]))
    for names in pairs:
        for name in names:
            a = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
            inits[name].CopyFrom(numpy_helper.from_array(a.astype(np.uint8), name))
    onnx.save(model, str(out_path))


def cpu_has_vnni() -> bool | None:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return "avx512_vnni" in flags or "avx_vnni" in flags


def metrics(task: str, out: np.ndarray, y: np.ndarray) -> dict:
    if task == "classification":
        return {"accuracy": float((out.argmax(axis=1) == y).mean())}
    p, t = pulses.targets_to_physical(out), pulses.targets_to_physical(y)
    err = p - t
    return {
        "rmse_amplitude": float(np.sqrt((err[:, 0] ** 2).mean())),
        "rmse_t0_samples": float(np.sqrt((err[:, 1] ** 2).mean())),
        "rel_rmse_amplitude": float(np.sqrt(((err[:, 0] / t[:, 0]) ** 2).mean())),
        "rmse_outputs": float(np.sqrt(((out - y) ** 2).mean())),
    }


def io_signature(path: Path) -> dict:
    import onnx

    g = onnx.load(str(path)).graph

    def sig(v):
        dims = [d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": dims,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name}

    return {"inputs": [sig(v) for v in g.input], "outputs": [sig(v) for v in g.output]}


# --------------------------------------------------------------------------------------------
# the examples


@dataclass
class Example:
    stem: str
    net: str
    data: str  # "digits_flat" | "digits_img" | "pulses" | "jets" | "mnist1d"
    task: str
    in_name: str
    out_name: str
    quant: QuantSettings
    description: str


# training settings per network kind (digits_cnn_qdq and digits_cnn_qop share one float CNN)
TRAIN = {
    "digits_mlp": dict(epochs=60, lr=1e-2, batch=64, weight_decay=1e-4),
    "digits_cnn": dict(epochs=60, lr=1e-2, batch=64, weight_decay=1e-4),
    "pulse_cnn1d": dict(epochs=25, lr=5e-3, batch=128, weight_decay=1e-4),
    "pulse_cnn1d_max": dict(epochs=25, lr=5e-3, batch=128, weight_decay=1e-4),
    "jet_mlp": dict(epochs=30, lr=5e-3, batch=256, weight_decay=1e-4),
    "mnist1d_cnn": dict(epochs=40, lr=5e-3, batch=128, weight_decay=1e-4),
    "digits_cnn_w4": dict(epochs=60, lr=1e-2, batch=64, weight_decay=1e-4),
}
# quantization-aware fine-tuning after the float training: net kind -> (weight bits, settings)
QAT = {"digits_cnn_w4": (4, dict(epochs=30, lr=2e-3, batch=64, weight_decay=0.0))}


EXAMPLES = [
    Example(
        "digits_mlp_qdq", "digits_mlp", "digits_flat", "classification", "pixels", "logits",
        QuantSettings("QDQ", per_channel=False, activation_type="QUInt8"),
        "scikit-learn digits (8x8 -> 64 inputs in [0,1]); MLP 64-32-10, ReLU.",
    ),
    Example(
        "digits_cnn_qdq", "digits_cnn", "digits_img", "classification", "image", "logits",
        QuantSettings("QDQ", per_channel=True, activation_type="QInt8",
                      extra_options={"ActivationSymmetric": False}),
        "digits as 1x8x8 images: Conv3x3(8)+BN+ReLU, Conv3x3(16)+ReLU, MaxPool2, "
        "x + ReLU(Conv3x3(16)(x)), GlobalAveragePool, Linear(16->10).",
    ),
    Example(
        "digits_cnn_qop", "digits_cnn", "digits_img", "classification", "image", "logits",
        QuantSettings("QOperator", per_channel=True, activation_type="QUInt8"),
        "the same trained float CNN as digits_cnn_qdq, quantized in QOperator format.",
    ),
    Example(
        "pulse_cnn1d_qdq", "pulse_cnn1d", "pulses", "regression", "waveform", "amp_t0",
        QuantSettings("QDQ", per_channel=True, activation_type="QInt8",
                      extra_options={"ActivationSymmetric": False}),
        "PulseDL-II style: 64-sample bi-exponential detector pulses -> [amplitude, t0/32]; "
        "Conv1d(1,8,k5)+ReLU, Conv1d(8,16,k3,s2)+ReLU, Conv1d(16,16,k3,d2)+ReLU, AvgPool1d(2), "
        "Linear(192->32)+ReLU, Linear(32->2).",
    ),
    Example(
        "pulse_cnn1d_max_qdq", "pulse_cnn1d_max", "pulses", "regression", "waveform", "amp_t0",
        QuantSettings("QDQ", per_channel=True, activation_type="QInt8",
                      extra_options={"ActivationSymmetric": False}),
        "the pulse CNN for the iCE40 UP5K: as pulse_cnn1d_qdq with MaxPool1d(2) in place of "
        "AvgPool1d(2) (onnxruntime's windowed AveragePool is a float32 sequence whose exact "
        "emulation takes 9 of the UP5K's 30 block RAMs).",
    ),
    Example(
        "jet_mlp_qdq", "jet_mlp", "jets", "classification", "features", "logits",
        QuantSettings("QDQ", per_channel=False, activation_type="QUInt8"),
        "hls4ml jet-tagging shape MLP 16-64-32-32-5, ReLU, on synthetic standardised "
        "16-feature 5-class data (jets.py).",
    ),
    Example(
        "mnist1d_cnn_qdq", "mnist1d_cnn", "mnist1d", "classification", "signal", "logits",
        QuantSettings("QDQ", per_channel=True, activation_type="QInt8",
                      extra_options={"ActivationSymmetric": False}),
        "mnist1d (40-sample 1-D digits, 10 classes, mnist1d_data.py): Conv1d(1,8,k5)+ReLU, "
        "Conv1d(8,16,k3,s2)+ReLU, Conv1d(16,16,k3,s2)+ReLU, Linear(128->10).",
    ),
    Example(
        "digits_cnn_w4_qdq", "digits_cnn_w4", "digits_img", "classification", "image", "logits",
        QuantSettings("QDQ", per_channel=True, activation_type="QInt8",
                      extra_options={"ActivationSymmetric": False}, weight_bits=4),
        "the digits CNN with 4-bit weights: trained as digits_cnn_qdq, then 30 epochs of "
        "quantization-aware fine-tuning on a symmetric per-channel 4-bit grid; quantize_static's "
        "int8 codes rescaled onto that grid (weights in [-7, 7], int8 x int8 kernels in "
        "onnxruntime), so intflow builds its products as LUT multipliers.",
    ),
]


def load_data(kind: str):
    """((x_train, y_train), (x_test, y_test), preprocessing record)."""
    if kind.startswith("digits"):
        (xtr, ytr), (xte, yte) = digits_split(SEED)
        if kind == "digits_img":
            xtr, xte = xtr.reshape(-1, 1, 8, 8), xte.reshape(-1, 1, 8, 8)
        prep = {"scale": "pixel / 16", "source": "sklearn.datasets.load_digits",
                "split": f"permutation(seed={SEED}); first {N_HELDOUT} held out"}
        return (xtr, ytr), (xte, yte), prep
    if kind == "pulses":
        tr, te = pulses_split(SEED)
        prep = {"generator": "examples/pulses.py", "n_samples": pulses.N_SAMPLES,
                "tau_rise": pulses.TAU_RISE, "tau_fall": pulses.TAU_FALL,
                "t0_range": pulses.T0_RANGE, "amp_range_log_uniform": pulses.AMP_RANGE,
                "noise_sigma": pulses.NOISE_SIGMA, "baseline_range": pulses.BASELINE_RANGE,
                "outputs": f"[amplitude, t0 / {pulses.T0_SCALE}] (amplitude = pulse height)",
                "n_train": len(tr[0])}
        return tr, te, prep
    if kind == "mnist1d":
        return mnist1d_split(N_HELDOUT)
    if kind == "jets":
        tr, te, prep = jets_split(SEED)
        prep = {"generator": "examples/jets.py", "classes": list(jets.CLASS_NAMES),
                "n_train": len(tr[0]), **prep}
        return tr, te, prep
    raise ValueError(kind)


def run_all(only: set[str] | None = None) -> list[dict]:
    import onnx
    import onnxruntime as ort
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    MODELS_DIR.mkdir(exist_ok=True)
    DATA_DIR.mkdir(exist_ok=True)
    trained: dict[str, tuple] = {}  # net kind -> (float onnx path, torch net, torch outputs)
    records = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for ex in EXAMPLES:
            if only and ex.stem not in only:
                continue
            t_start = time.perf_counter()
            (xtr, ytr), (xte, yte), prep = load_data(ex.data)
            if ex.net not in trained:
                torch.manual_seed(SEED)
                net = build_net(ex.net)
                t0 = time.perf_counter()
                train(net, xtr, ytr, task=ex.task, seed=SEED, **TRAIN[ex.net])
                if ex.net in QAT:
                    bits, settings = QAT[ex.net]
                    fake_quant_weights(net, bits)
                    train(net, xtr, ytr, task=ex.task, seed=SEED, **settings)
                    bake_fake_quant(net)
                t_train = time.perf_counter() - t0
                float_path = tmp / f"{ex.net}_float.onnx"
                export_onnx(net, xtr, float_path, ex.in_name, ex.out_name)
                with torch.no_grad():
                    torch_out = net(torch.from_numpy(xte)).numpy()
                trained[ex.net] = (float_path, net, torch_out)
            else:
                t_train = 0.0  # the float network is shared with an earlier example
            float_path, net, torch_out = trained[ex.net]

            out_path = MODELS_DIR / f"{ex.stem}.onnx"
            rng = np.random.default_rng(SEED)
            calib = xtr[rng.permutation(len(xtr))[:N_CALIB]]
            quantize(float_path, out_path, ex.in_name, calib, ex.quant, tmp)
            size = out_path.stat().st_size
            assert size < MAX_MODEL_BYTES, (out_path, size)
            onnx.checker.check_model(str(out_path), full_check=True)

            feed = {ex.in_name: xte}
            float_out = ort_session(float_path, quantized=False).run(None, feed)[0]
            assert np.allclose(float_out, torch_out, atol=1e-4), "float ONNX != torch"
            opt_path = tmp / f"{ex.stem}_ort_optimized.onnx"
            q_out = ort_session(out_path, quantized=True, optimized_out=opt_path).run(None, feed)[0]
            assert q_out.shape == (N_HELDOUT, *torch_out.shape[1:]), q_out.shape
            ort_ops = op_counts(opt_path)
            assert not any(k in ort_ops for k in ("ai.onnx:Conv", "ai.onnx:Gemm",
                                                   "ai.onnx:MatMul")), ort_ops

            # The exact integer result: s8 x s8 kernels are exact; for uint8 activations with
            # int8 weights run the u8 x u8 oracle (see uint8_weight_oracle).
            if ex.quant.activation_type == "QUInt8" and ex.quant.weight_type == "QInt8":
                oracle_path = tmp / f"{ex.stem}_u8u8.onnx"
                oracle_opt = tmp / f"{ex.stem}_u8u8_ort_optimized.onnx"
                uint8_weight_oracle(out_path, oracle_path)
                exact_out = ort_session(oracle_path, quantized=True,
                                        optimized_out=oracle_opt).run(None, feed)[0]
                assert op_counts(oracle_opt) == ort_ops, "u8u8 oracle left the integer kernels"
                exact_how = "same model with int8 weights moved to uint8 (w+128, zp+128), ORT u8xu8"
            else:
                exact_out, exact_how = q_out, "ORT s8xs8 integer kernels (exact)"
            diff = np.abs(q_out.astype(np.float64) - exact_out)
            scale = quant_output_scale(out_path)

            np.savez(DATA_DIR / f"{ex.stem}.npz", **feed)
            n_w, n_p = count_weights(net)
            rec = {
                "model": f"models/{ex.stem}.onnx",
                "inputs_file": f"data/{ex.stem}.npz",
                "description": ex.description,
                "task": ex.task,
                **io_signature(out_path),
                "n_heldout": N_HELDOUT,
                "float": metrics(ex.task, float_out, yte),
                "quantized_ort": metrics(ex.task, q_out, yte),
                "quantized_exact": metrics(ex.task, exact_out, yte),
                "ort_vs_exact": {
                    "how_exact_was_computed": exact_how,
                    "output_elements_differing": int((diff > 0).sum()),
                    "output_elements": int(diff.size),
                    "max_abs_diff_output_codes": int(np.rint(diff.max() / scale)),
                    "cpu_has_vnni": cpu_has_vnni(),
                    "note": "onnxruntime's u8xs8 kernels on x86 with AVX2 but no VNNI sum pairs "
                            "of products in saturating int16 (vpmaddubsw); with VNNI (or ARM) "
                            "quantized_ort equals quantized_exact",
                },
                "ort_session": {"graph_optimization_level": "ORT_ENABLE_ALL",
                                "session.qdqisint8allowed": "1",
                                "providers": ["CPUExecutionProvider"]},
                "quantization": {
                    "tool": "onnxruntime.quantization.quantize_static",
                    **vars(ex.quant),
                    "calibration_samples": N_CALIB,
                    "calibration_batch": CALIB_BATCH,
                    "calibration_data": "random training samples (not the held-out ones)",
                },
                "n_weights": n_w,
                "n_params": n_p,
                "model_bytes": size,
                "op_types": op_counts(out_path),
                "ort_optimized_op_types": ort_ops,
                "training": {"framework": f"torch {torch.__version__}", "seed": SEED,
                             "optimizer": "AdamW + OneCycleLR",
                             "loss": "cross-entropy" if ex.task == "classification" else "MSE",
                             **TRAIN[ex.net],
                             **({"qat": {"weight_bits": QAT[ex.net][0], **QAT[ex.net][1]}}
                                if ex.net in QAT else {})},
                "data": prep,
                "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                             "numpy": np.__version__},
                "opset": OPSET,
            }
            if ex.task == "classification":
                for key, out in (("quantized_ort", q_out), ("quantized_exact", exact_out)):
                    rec[key]["argmax_agreement_with_float"] = float(
                        (out.argmax(1) == float_out.argmax(1)).mean())
            with open(DATA_DIR / f"{ex.stem}.json", "w") as f:
                json.dump(rec, f, indent=2)
                f.write("\n")
            rec["_seconds"] = (t_train, time.perf_counter() - t_start)
            records.append(rec)
    return records


def quant_output_scale(path: Path) -> float:
    """Scale of the final DequantizeLinear (graph output), to express differences in codes."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    out = model.graph.output[0].name
    node = next(n for n in model.graph.node if out in n.output)
    assert node.op_type == "DequantizeLinear", node.op_type
    return float(numpy_helper.to_array(inits[node.input[1]]))


def _fmt(task: str, m: dict) -> str:
    if task == "classification":
        return f"acc {m['accuracy']:.4f}"
    return f"A {m['rmse_amplitude']:.4f} t0 {m['rmse_t0_samples']:.3f}"


def print_summary(records: list[dict]) -> None:
    print()
    hdr = (f"{'model':<16} {'input':<19} {'output':<13} {'weights':>7} {'bytes':>6}  "
           f"{'float':<17} {'quantized (ORT)':<17} {'quantized (exact)':<17}")
    print(hdr)
    print("-" * len(hdr))
    for r in records:
        i, o = r["inputs"][0], r["outputs"][0]
        ins = f"{i['name']}{tuple(i['shape'])}".replace("'", "")
        outs = f"{o['name']}{tuple(o['shape'])}".replace("'", "")
        stem = Path(r["model"]).stem
        print(f"{stem:<16} {ins:<19} {outs:<13} {r['n_weights']:>7} {r['model_bytes']:>6}  "
              f"{_fmt(r['task'], r['float']):<17} {_fmt(r['task'], r['quantized_ort']):<17} "
              f"{_fmt(r['task'], r['quantized_exact']):<17}")
    print(f"\nOn {N_HELDOUT} held-out samples. Regression: RMSE of the amplitude (full scale = 1) "
          "and of t0 (samples).\n'exact' = the integer result without onnxruntime's u8xs8 "
          "saturation on AVX2-without-VNNI CPUs.")
    for r in records:
        t_train, t_all = r["_seconds"]
        d = r["ort_vs_exact"]
        print(f"  {Path(r['model']).stem}: train {t_train:.1f} s, total {t_all:.1f} s; ORT vs "
              f"exact: {d['output_elements_differing']}/{d['output_elements']} output elements "
              f"differ (max {d['max_abs_diff_output_codes']} codes)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="model stems to (re)build (default: all)")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    records = run_all(set(args.only) if args.only else None)
    print_summary(records)
    print(f"done in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
