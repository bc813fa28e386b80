"""The executable definition of every engine at the stream level (numpy, integer-only).

``run`` pushes the host's input codes through the planned engines in stream order and
un-permutes the outputs; it must equal the IntGraph reference on every element (a test), and
the RTL must equal it on every stream word.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import requant as rq
from ..ir import IntGraph
from ..ops.add import add_dyadic, add_ort
from .spec import Dataflow, Engine


def requant_stream(acc: np.ndarray, p: dict, channel: np.ndarray) -> np.ndarray:
    mult, exp = p["mult"][channel], p["exp"][channel]
    if p["mode"] == "ort":
        return rq.requant_ort(acc, mult, exp, p["zero_point"], p["lo"], p["hi"])
    return rq.requant_dyadic(acc, mult, exp, p["zero_point"], p["lo"], p["hi"])


def channel_of(length: int, p: dict) -> np.ndarray:
    return (np.arange(length) // p["channel_stride"]) % p["channels"]


def sliding_window(x: np.ndarray, p: dict) -> np.ndarray:
    s = x.shape[0]
    c, h, w = p["channels"], p["height"], p["width"]
    (kh, kw), (sh, sw), (dh, dw) = p["kernel"], p["stride"], p["dilation"]
    pt, pl, pb, pr = p["pads"]
    img = x.reshape(s, h, w, c)
    img = np.pad(img, [(0, 0), (pt, pb), (pl, pr), (0, 0)], constant_values=p["pad_value"])
    oh, ow = p["out_height"], p["out_width"]
    rows = []
    for y in range(oh):
        for xx in range(ow):
            win = img[:, y * sh: y * sh + dh * (kh - 1) + 1: dh,
                      xx * sw: xx * sw + dw * (kw - 1) + 1: dw, :]
            rows.append(win.reshape(s, -1))
    return np.stack(rows, axis=1).reshape(s, -1)


def mvau(x: np.ndarray, p: dict) -> np.ndarray:
    s = x.shape[0]
    xr = x.reshape(s, p["rows"], p["k"])
    acc = np.matmul(xr, p["weights"].T.astype(np.int64)) + p["bias"].astype(np.int64)
    if p["requant"] is not None:
        acc = requant_stream(acc, p["requant"], np.arange(p["n"]))
    return acc.reshape(s, -1)


def run_engine(e: Engine, xs: list[np.ndarray]) -> list[np.ndarray]:
    p = e.params
    k = e.kind
    if k == "SlidingWindow":
        return [sliding_window(xs[0], p)]
    if k == "MVAU":
        return [mvau(xs[0], p)]
    if k == "ActMatMul":  # two activations: A (batch, rows, k) times W (batch, k, n)
        s = xs[0].shape[0]
        a = xs[0].reshape(s, p["batch"], p["rows"], p["k"]) - p["x_zero_point"]
        w_batches = 1 if p.get("shared_w") else p["batch"]  # shared: one W for every batch
        w = xs[1].reshape(s, w_batches, p["k"], p["n"]) - p["w_zero_point"]
        return [(np.matmul(a, w) + np.asarray(p["bias"], np.int64)).reshape(s, -1)]
    if k == "WindowMax":
        x = xs[0].reshape(xs[0].shape[0], p["rows"], p["window"], p["channels"])
        return [x.max(axis=2).reshape(x.shape[0], -1)]
    if k == "WindowAvg":
        from .avgpool import window_sum
        x = xs[0].reshape(xs[0].shape[0], p["rows"], p["window"], p["channels"])
        s = window_sum(p["fixed_table"][x - p["x_min"]].transpose(0, 1, 3, 2))  # (S,rows,C)
        thr = p["thresholds"][p["count_index"]]  # (rows, levels)
        y = p["lo"] + (s[..., None] >= thr[None, :, None, :]).sum(axis=-1)
        return [y.reshape(y.shape[0], -1)]
    if k == "GlobalSum":
        x = xs[0].reshape(xs[0].shape[0], p["pixels"], p["channels"])
        return [(x - p["zero_point"]).sum(axis=1)]
    if k == "Requant":
        return [requant_stream(xs[0], p, channel_of(xs[0].shape[1], p))]
    if k == "Lut":
        ch = channel_of(xs[0].shape[1], p) if p["table"].shape[0] > 1 else 0
        return [p["table"][ch, xs[0] - p["x_min"]]]
    if k == "Clamp":
        return [np.clip(xs[0], p["lo"], p["hi"])]
    if k in ("Add", "Mul"):
        it = iter(xs)
        ops = [p["constants"][i][None] if i in p["constants"] else next(it) for i in range(2)]
        a = p["attrs"]
        if k == "Add":
            fn = add_ort if a["mode"] == "ort" else add_dyadic
            return [np.broadcast_to(fn(ops[0], ops[1], a), (xs[0].shape[0], ops[0].shape[1]
                                                           if ops[0].shape[0] else 0))]
        from .. import f32
        prod = (ops[0] - a["za"]) * (ops[1] - a["zb"])
        r = f32.F32(np.int64(a["r"][0]), np.int64(a["r"][1]))
        v = f32.add(f32.mul(f32.from_int(prod), r), f32.from_int(np.int64(a["zc"])))
        return [np.clip(f32.cvt(v), a["lo"], a["hi"])]
    if k == "Concat":
        s = xs[0].shape[0]
        consts = p.get("constants", {})  # input i -> its words in consumption order
        it = iter(xs)
        srcs = [np.broadcast_to(consts[i], (s, len(consts[i]))) if i in consts else next(it)
                for i in range(len(xs) + len(consts))]
        pos = [0] * len(srcs)
        parts = []
        for _ in range(p["repeat"]):
            for i, count in p["pattern"]:
                parts.append(srcs[i][:, pos[i]: pos[i] + count])
                pos[i] += count
        return [np.concatenate(parts, axis=1) if parts else np.zeros((s, 0), np.int64)]
    if k in ("Softmax", "LayerNorm"):  # rows of n words along the tensor's last axis
        from types import SimpleNamespace

        from ..ops.layernorm import LayerNorm
        from ..ops.softmax import Softmax
        x = xs[0].reshape(xs[0].shape[0], p["rows"], p["n"])
        node = SimpleNamespace(attrs=p["attrs"])
        consts = [p["table"]] if k == "Softmax" else [p["gamma"], p["bias"]]  # stream order
        (y,) = (Softmax if k == "Softmax" else LayerNorm).run(node, None, [x, *consts])
        return [y.reshape(x.shape[0], -1)]
    if k == "Reorder":
        return [xs[0][:, p["read"]]]
    if k == "Fork":
        return [xs[0]] * len(e.outputs)
    raise ValueError(f"no stream model for engine kind {k}")


def run(df: Dataflow, g: IntGraph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``feeds``: IR input tensor -> codes (S, *shape). Returns IR output tensor -> codes."""
    env: dict[str, np.ndarray] = {}
    for h, sname in zip(g.inputs, df.inputs):
        x = np.asarray(feeds[h.tensor], np.int64)
        flat = x.reshape(x.shape[0], -1)
        env[sname] = flat[:, df.streams[sname].order]
    for e in df.engines:
        ys = run_engine(e, [env[i] for i in e.inputs])
        for name, y in zip(e.outputs, ys):
            st = df.streams[name]
            if y.shape[1] != st.length:
                raise AssertionError(f"{e.name}: produced {y.shape[1]} words, stream {name} "
                                     f"carries {st.length}")
            env[name] = np.asarray(y, np.int64)
    out = {}
    for o, sname, order in zip(g.outputs, df.outputs, df.output_orders):
        y = env[sname]
        flat = np.empty_like(y)
        flat[:, order] = y
        out[o.tensor] = flat.reshape(y.shape[0], *g.tensors[o.tensor].shape)
    return out
