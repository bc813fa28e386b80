"""The numpy integer reference: runs an IntGraph on arrays with a leading sample axis.

This is the single definition of what the hardware must compute; every kernel is in
``ops/``. ``run`` takes the user's arrays keyed by ONNX input name and returns onnxruntime's
outputs keyed by ONNX output name (host quantize/dequantize included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from . import host
from .ir import IntGraph
from .ops import OPS


def run_codes(g: IntGraph, feeds: Mapping[str, np.ndarray],
              tap: Callable[[str, np.ndarray], None] | None = None) -> dict[str, np.ndarray]:
    """Run the integer graph. ``feeds``: IR input tensor -> codes (S, *shape); returns every
    IR tensor computed, keyed by name. ``tap`` sees each node output as it is produced."""
    env: dict[str, np.ndarray] = {k: np.asarray(v, np.int64) for k, v in feeds.items()}
    env.update(g.constants)
    for node in g.nodes:
        xs = [env[i] for i in node.inputs]
        ys = OPS[node.op].run(node, g, xs)
        for name, y in zip(node.outputs, ys):
            t = g.tensors[name]
            y = np.asarray(y, np.int64)
            if y.shape[1:] != t.shape:
                raise AssertionError(
                    f"reference: {node.op} {node.name} produced {y.shape[1:]}, IR says {t.shape}")
            lo, hi = t.dtype.min, t.dtype.max
            if y.size and (y.min() < lo or y.max() > hi):
                raise AssertionError(
                    f"reference: {node.op} {node.name} output {name} left its proven type "
                    f"{t.dtype} ([{int(y.min())}, {int(y.max())}])")
            env[name] = y
            if tap is not None:
                tap(name, y)
    return env


def to_codes(g: IntGraph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Host side: the user's arrays -> input codes with shape (S, *IR shape)."""
    feeds = {}
    for h in g.inputs:
        x = np.asarray(inputs[h.onnx_name])
        x = x.reshape(x.shape[0], *g.tensors[h.tensor].shape)
        feeds[h.tensor] = host.quantize(x, h.quantize) if h.quantize else x.astype(np.int64)
    return feeds


def from_codes(g: IntGraph, env: Mapping[str, np.ndarray],
               out_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Host side: output codes -> onnxruntime's output arrays, shaped (S, *out_shapes[name])."""
    result = {}
    for o in g.outputs:
        y = host.epilogue(env[o.tensor], o)
        result[o.onnx_name] = y.reshape(y.shape[0], *out_shapes[o.onnx_name])
    return result


def run(g: IntGraph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The user's arrays (leading axis = sample, batch axis replaced) -> output arrays."""
    env = run_codes(g, to_codes(g, inputs))
    shapes = {o.onnx_name: sample_shape(g.tensors[o.tensor].shape) for o in g.outputs}
    return from_codes(g, env, shapes)


def sample_shape(ir_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample array shape users see: the IR shape without its batch axis of 1."""
    return ir_shape[1:] if ir_shape and ir_shape[0] == 1 else ir_shape
