"""Graph passes in the qonnx style: ``apply(graph) -> (graph, changed)``, run to a fixed point."""

from __future__ import annotations

from ..ir import IntGraph


class Transformation:
    def apply(self, g: IntGraph) -> tuple[IntGraph, bool]:
        raise NotImplementedError  # every pass overrides this


def run_to_fixed_point(g: IntGraph, passes: list[Transformation], limit: int = 100) -> IntGraph:
    for _ in range(limit):
        changed = False
        for p in passes:
            g, c = p.apply(g)
            changed |= c
        if not changed:
            return g
    raise RuntimeError("graph passes did not reach a fixed point")
