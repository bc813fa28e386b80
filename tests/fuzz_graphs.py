"""Random float networks (chains and DAGs) for differential fuzzing, quantized by
onnxruntime's own ``quantize_static`` with random options.

``graphs()`` is a hypothesis strategy drawing a ``Net``: a list of layer choices on a random
input; ``build(net)`` turns it into a float ONNX model with random weights (seeded by the
draw), so hypothesis can shrink a failing network layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


@dataclass
class Net:
    kind: str  # "image", "signal" or "vector"
    shape: tuple[int, ...]  # input shape without the batch axis
    layers: list[tuple]  # (op, params...) in order
    seed: int


ACTS = ["Relu", "Clip6", "ClipPM1", "LeakyRelu", "Sigmoid", None]


@st.composite
def graphs(draw) -> Net:
    kind = draw(st.sampled_from(["image", "signal", "vector"]))
    if kind == "image":
        shape = (draw(st.integers(1, 3)), draw(st.integers(4, 9)), draw(st.integers(4, 9)))
    elif kind == "signal":
        shape = (draw(st.integers(1, 3)), draw(st.integers(8, 24)))
    else:
        shape = (draw(st.integers(4, 24)),)
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        if kind == "vector":
            op = draw(st.sampled_from(["dense", "dense", "residual_dense", "concat_dense"]))
            layers.append((op, draw(st.integers(2, 16)), draw(st.sampled_from(ACTS))))
            continue
        op = draw(st.sampled_from(["conv", "conv", "residual", "concat", "maxpool",
                                   "avgpool"]))
        if op in ("conv", "residual", "concat"):
            k = draw(st.integers(1, 3))
            layers.append((op, draw(st.integers(1, 6)), k, draw(st.integers(1, 2)),
                           draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1)),
                           draw(st.integers(1, 2)), draw(st.booleans()),
                           draw(st.sampled_from(ACTS))))
        else:
            k = draw(st.integers(2, 3))
            layers.append((op, k, draw(st.integers(1, 2)), draw(st.integers(0, 1)),
                           draw(st.booleans())))
    head = draw(st.sampled_from(["gap_gemm", "flatten_matmul", "none"])) \
        if kind != "vector" else "none"
    if head == "none" and all(layer[0] in ("maxpool", "avgpool") for layer in layers):
        head = "gap_gemm"  # at least one layer the quantizer quantizes
    layers.append(("head", head, draw(st.integers(2, 6))))
    return Net(kind, shape, layers, draw(st.integers(0, 2**31 - 1)))


class _B:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}{self.n}"

    def const(self, value: np.ndarray, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(nh.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, ins: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(h.make_node(op, ins, [out], **attrs))
        return out

    def act(self, x: str, act: str | None) -> str:
        if act is None:
            return x
        if act == "Clip6":
            return self.node("Clip", [x, self.const(np.float32(0)), self.const(np.float32(6))])
        if act == "ClipPM1":
            return self.node("Clip", [x, self.const(np.float32(-1)), self.const(np.float32(1))])
        if act == "LeakyRelu":
            return self.node("LeakyRelu", [x], alpha=0.1)
        return self.node(act, [x])

    def conv(self, x, shape, out_c, k, stride, pad0, pad1, dil, depthwise, act):
        c = shape[0]
        sp = shape[1:]
        nd = len(sp)
        # keep the window inside the padded input
        dil = dil if all(s + pad0 + pad1 >= dil * (k - 1) + 1 for s in sp) else 1
        if any(s + pad0 + pad1 < dil * (k - 1) + 1 for s in sp):
            k, pad0, pad1 = 1, 0, 0
        group = c if depthwise and c > 1 else 1
        if group > 1:
            out_c = c * max(1, out_c // c)
        w = self.rng.normal(0, 1 / np.sqrt(k**nd * c / group), (out_c, c // group, *[k] * nd))
        b = self.rng.normal(0, 0.2, out_c)
        y = self.node("Conv", [x, self.const(w.astype(np.float32), "w"),
                               self.const(b.astype(np.float32), "b")],
                      kernel_shape=[k] * nd, strides=[stride] * nd, pads=[pad0] * nd + [pad1] * nd,
                      dilations=[dil] * nd, group=group)
        osp = tuple((s + pad0 + pad1 - dil * (k - 1) - 1) // stride + 1 for s in sp)
        return self.act(y, act), (out_c, *osp)

    def same_conv(self, x, shape, out_c, act):
        """A shape-preserving conv (k=3 pad 1, or k=1) for residual branches."""
        k = 3 if all(s >= 3 for s in shape[1:]) else 1
        p = k // 2
        return self.conv(x, shape, out_c, k, 1, p, p, 1, False, act)

    def dense(self, x, n_in, n_out, act):
        w = self.rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out)).astype(np.float32)
        y = self.node("MatMul", [x, self.const(w, "w")])
        y = self.node("Add", [y, self.const(self.rng.normal(0, 0.2, n_out).astype(np.float32))])
        return self.act(y, act)


def build(net: Net) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """The float model of ``net`` (input "x", output "y", batch axis "N")."""
    b = _B(net.seed)
    x, shape = "x", net.shape
    for layer in net.layers:
        op = layer[0]
        if op == "conv":
            x, shape = b.conv(x, shape, *layer[1:])
        elif op == "residual":
            y, s2 = b.same_conv(x, shape, shape[0], layer[-1])
            y, s2 = b.same_conv(y, s2, shape[0], None)
            x = b.act(b.node("Add", [y, x]), "Relu")
        elif op == "concat":
            y1, s1 = b.same_conv(x, shape, layer[1], layer[-1])
            y2, s2 = b.same_conv(x, shape, max(1, layer[1] // 2 + 1), None)
            x = b.node("Concat", [y1, y2], axis=1)
            shape = (s1[0] + s2[0], *shape[1:])
        elif op in ("maxpool", "avgpool"):
            _, k, s, p, flag = layer
            sp = shape[1:]
            if any(d + 2 * p < k for d in sp):
                continue
            nd = len(sp)
            if op == "maxpool":
                x = b.node("MaxPool", [x], kernel_shape=[k] * nd, strides=[s] * nd,
                           pads=[p] * (2 * nd), ceil_mode=int(flag))
                osp = tuple(-(-(d + 2 * p - k) // s) + 1 if flag else (d + 2 * p - k) // s + 1
                            for d in sp)
                if flag:  # the last window must start inside the input or left padding
                    osp = tuple(o - 1 if (o - 1) * s >= d + p else o for o, d in zip(osp, sp))
            else:
                x = b.node("AveragePool", [x], kernel_shape=[k] * nd, strides=[s] * nd,
                           pads=[p] * (2 * nd), count_include_pad=int(flag))
                osp = tuple((d + 2 * p - k) // s + 1 for d in sp)
            shape = (shape[0], *osp)
        elif op in ("dense", "residual_dense", "concat_dense"):
            n = shape[0]
            if op == "dense":
                x, shape = b.dense(x, n, layer[1], layer[2]), (layer[1],)
            elif op == "residual_dense":
                y = b.dense(x, n, n, layer[2])
                x = b.node("Add", [b.dense(y, n, n, None), x])
            else:
                y1 = b.dense(x, n, layer[1], layer[2])
                y2 = b.dense(x, n, n, None)
                x, shape = b.node("Concat", [y1, y2], axis=1), (layer[1] + n,)
        elif op == "head":
            _, head, n_out = layer
            if head == "gap_gemm":
                x = b.node("Flatten", [b.node("GlobalAveragePool", [x])])
                c = shape[0]
                w = b.rng.normal(0, 1 / np.sqrt(c), (n_out, c)).astype(np.float32)
                x = b.node("Gemm", [x, b.const(w, "w"),
                                    b.const(b.rng.normal(0, .2, n_out).astype(np.float32))],
                           transB=1)
                shape = (n_out,)
            elif head == "flatten_matmul":
                x = b.node("Flatten", [x])
                n = int(np.prod(shape))
                x, shape = b.dense(x, n, n_out, None), (n_out,)
    b.nodes.append(h.make_node("Identity", [x], ["y"]))
    g = h.make_graph(b.nodes, "fuzz", [h.make_tensor_value_info("x", T.FLOAT, ["N", *net.shape])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", *shape])], b.inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m, net.shape


@st.composite
def quant_options(draw) -> dict:
    from onnxruntime.quantization import QuantFormat, QuantType
    return {
        "quant_format": draw(st.sampled_from([QuantFormat.QDQ, QuantFormat.QOperator])),
        "activation_type": draw(st.sampled_from([QuantType.QUInt8, QuantType.QInt8])),
        "weight_type": QuantType.QInt8,
        "per_channel": draw(st.booleans()),
        "reduce_range": draw(st.booleans()),
        "extra_options": {"ActivationSymmetric": draw(st.booleans())},
    }


def calibration(shape: tuple[int, ...], seed: int):
    """onnxruntime's calibration reader for ``quantize_static``: 3 batches of 8 normal
    samples (the same data ``test_fuzz.py`` calibrates with)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(seed)
            self.it = iter([{"x": rng.normal(0, 1, (8, *shape)).astype(np.float32)}
                            for _ in range(3)])

        def get_next(self):
            return next(self.it, None)

    return Reader()


def quantize(net: Net, opts: dict, path: str) -> tuple[int, ...] | None:
    """Build ``net``, quantize it with ``opts`` into ``path``; its input shape, or None when
    onnxruntime's quantizer rejects the model (not intflow's to test)."""
    from onnxruntime.quantization import quantize_static
    fmodel, shape = build(net)
    fpath = path + ".float.onnx"
    onnx.save(fmodel, fpath)
    try:
        quantize_static(fpath, path, calibration(shape, net.seed), **opts)
    except Exception:
        return None
    return shape
