"""Layer engines: one amaranth Component per ``compiler.dataflow`` engine kind.

Each module exports ``build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component``
returning a component with input streams ``i0, i1, ...`` and output streams ``o0, o1, ...``
(``amaranth.lib.stream``, one element per beat, payload shape ``payload_shape(dtype)`` of the
stream's ``IntType``), processing inference after inference with no reset in between. The
executable definition of every engine is ``compiler/dataflow/model.py``: the RTL must emit
exactly the words ``model.run_engine`` computes, under any valid/ready stalls.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from amaranth.lib import wiring

if TYPE_CHECKING:  # pytest (importlib mode) may import this file as ``hw.engines``, where
    # a relative import of ``compiler`` would climb above the top-level package
    from ...compiler.dataflow.spec import Engine, Stream

MODULES = {
    "MVAU": "mvau",
    "ActMatMul": "act_matmul",
    "SlidingWindow": "sliding_window",
    "WindowMax": "window_max",
    "WindowAvg": "window_avg",
    "GlobalSum": "global_sum",
    "Requant": "elementwise",
    "Lut": "elementwise",
    "Clamp": "elementwise",
    "Add": "binary",
    "Mul": "binary",
    "Concat": "concat",
    "Reorder": "reorder",
    "Fork": "fork",
    "Softmax": "softmax",
    "LayerNorm": "layernorm",
}


def build(engine: Engine, streams: dict[str, Stream]) -> wiring.Component:
    """The component implementing ``engine``."""
    name = MODULES.get(engine.kind)
    if name is None:
        raise ValueError(f"no hardware engine for {engine.kind} ({engine.name})")
    return importlib.import_module(f".{name}", __name__).build(engine, streams)
