"""The contract every IntGraph op implements.

``run`` is the numpy reference kernel: it receives activations with a leading *sample* axis
(shape ``(S, *tensor.shape)``) and constants without one, and returns int64 arrays with the
sample axis. ``bounds`` gives each output's exact integer range from the input ranges and the
actual constants; the width-proving pass sizes every register from it. ``macs`` counts
multiply-accumulates per inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..ir import IntGraph, Node

Bounds = tuple[int, int]


class Op:
    name = ""

    @staticmethod
    def run(node: Node, g: IntGraph, xs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError  # every registered op overrides this

    @staticmethod
    def bounds(node: Node, g: IntGraph, ins: list[Bounds]) -> list[Bounds]:
        raise NotImplementedError  # every registered op overrides this

    @staticmethod
    def macs(node: Node, g: IntGraph) -> int:
        return 0


def sample_axis_reshape(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape an activation with a leading sample axis to ``(S, *shape)``."""
    return x.reshape((x.shape[0], *shape))
