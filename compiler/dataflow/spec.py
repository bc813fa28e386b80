"""The streaming dataflow plan: engines joined by streams, one element per word.

This is the contract between the compiler and the hardware generator (``intflow.hw``): each
``Engine`` names its kind and carries every integer parameter the RTL needs (weights already
permuted into stream order, requant constants, window geometry), and each ``Stream`` says which
element of which tensor travels at each position (``order``), so layout ops (Reshape,
Flatten, Transpose) cost nothing: they relabel the stream.

Engine kinds and their stream semantics (per inference; ``model.py`` is the executable
definition and must equal the IntGraph reference):

- ``SlidingWindow``: input C×H×W in (h, w, c) order; for each output pixel in raster order
  emits kh·kw·C elements in (ky, kx, c) order, ``pad_value`` outside the image.
- ``MVAU``: input ``rows`` vectors of ``k`` elements; for each row emits ``n`` values
  ``acc[j] = bias[j] + sum_i x[i] * weights[j, i]``, then the optional requant.
- ``WindowMax``: input rows of ``window``×``channels`` elements ((ky, kx, c) order); emits per
  row the per-channel max (``channels`` elements).
- ``GlobalSum``: input ``pixels``×``channels`` ((h, w, c) order); emits per channel
  sum(x - zero_point) (``channels`` elements).
- ``Requant``, ``Lut``, ``Clamp``: elementwise; per-channel parameters pick the channel of
  stream position i as ``(i // channel_stride) % channels``.
- ``Add``, ``Mul``: elementwise on two streams of equal length and order (or one constant
  operand, stored in stream order).
- ``Concat``: interleaves its inputs following ``pattern``: a list of (input, count) runs,
  repeated ``repeat`` times; a constant input i is no stream but ``constants[i]`` (its words
  in consumption order).
- ``Reorder``: buffers a whole tensor and emits element ``read[i]`` (a permutation) at i; with
  ``in_length``, ``read`` is any index map (a broadcast of a smaller tensor).
- ``ActMatMul``: product of two activations, both row-major: A ``batch``×``rows``×``k`` and W
  ``batch``×``k``×``n`` (one k×n W for every batch with ``shared_w``); emits
  ``bias[j] + sum_i (a - x_zero_point)(w - w_zero_point)`` per (batch, row, j).
- ``AvgPool``: QLinearAveragePool's float32 sequence over SlidingWindow rows (``window`` taps,
  ``valid`` mask per tap) — the reference kernel's emulation.
- ``Softmax``, ``LayerNorm``: ``rows`` rows of ``n`` words along the tensor's last axis, each
  row contiguous in the stream (any order within it; LayerNorm's ``gamma``/``bias`` are in
  that order, the same in every row); emit per row the ops' integer results
  (``ops/softmax.py``, ``ops/layernorm.py``) word for word in the input's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..dtypes import IntType


@dataclass
class Stream:
    name: str
    dtype: IntType
    shape: tuple[int, ...]  # logical (IR) shape of the tensor it carries
    order: np.ndarray  # position -> flat index of the tensor (a permutation)
    depth: int = 2  # FIFO depth on this edge (elements)

    @property
    def length(self) -> int:
        return int(self.order.size)


@dataclass
class Engine:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    origin: list[str] = field(default_factory=list)  # IntGraph nodes it implements


@dataclass
class Dataflow:
    engines: list[Engine]
    streams: dict[str, Stream]
    inputs: list[str]  # host-fed streams, one per IR input tensor (same order as g.inputs)
    outputs: list[str]  # streams returned to the host (same order as g.outputs)
    # stream -> the IR tensor it carries (its ``order`` indexes that tensor); streams that
    # carry no IR tensor (SlidingWindow rows) are absent. Used by simulation taps.
    tensors: dict[str, str] = field(default_factory=dict)

    def producer(self, stream: str) -> Engine | None:
        for e in self.engines:
            if stream in e.outputs:
                return e
        return None

    def consumers(self, stream: str) -> list[Engine]:
        return [e for e in self.engines if stream in e.inputs]


def canonical_order(shape: tuple[int, ...]) -> np.ndarray:
    """The natural streaming order: channels innermost for (N, C, H, W) and (N, C, L)
    tensors (pixel by pixel, as a line buffer wants them), row-major otherwise."""
    idx = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    if len(shape) == 4:
        return idx.transpose(0, 2, 3, 1).ravel()
    if len(shape) == 3:
        return idx.transpose(0, 2, 1).ravel()
    return idx.ravel()


def spatial(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) of an (N=1, C, H, W) or (N=1, C, L) tensor, L as H=1."""
    if len(shape) == 4:
        return shape[1], shape[2], shape[3]
    if len(shape) == 3:
        return shape[1], 1, shape[2]
    raise ValueError(f"not an image tensor: {shape}")


def channel_pattern(order: np.ndarray, shape: tuple[int, ...], axis: int
                    ) -> tuple[int, int] | None:
    """(channels, stride) with channel(i) = (i // stride) % channels for this stream, or None
    when the channel sequence is not that regular."""
    ch = np.unravel_index(order, shape)[axis]
    c = shape[axis]
    for stride in sorted({1, *(int(np.prod(shape[axis + 1:])),), len(order) // max(c, 1)}):
        if stride <= 0:
            continue
        if np.array_equal(ch, (np.arange(len(order)) // stride) % c):
            return c, stride
    return None
