"""Foldings that fit a device, chosen with the cost model (``compiler.dataflow.estimate``).

``device_budget`` picks the multiplier budget for ``--fold auto`` on a target: the fastest
balanced folding whose estimate (plus the UART wrapper) fits the device. ``suggest_fold`` answers
a build that did not fit: it corrects the estimate by what synthesis really used (the difference
carries over to other foldings) and walks down the budgets until every resource fits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..compiler.dataflow.estimate import estimate, logic_cells
from ..compiler.dataflow.fold import apply_fold
from ..compiler.dataflow.plan import plan
from ..compiler.dataflow.spec import Dataflow
from .target import Target

RESOURCES = ("LUT", "FF", "DSP", "BRAM")
# the UART host wrapper around the accelerator (measured on iCE40: the digits CNN's flat
# synthesis less the sum of its engines, 311 LUT / 213 FF / 1 block)
WRAPPER = {"LUT": 310, "FF": 215, "DSP": 0, "BRAM": 1}
# on ECP5 yosys keeps the wrapper's UART FIFOs (input-length deep, 8 bits) in LUT RAM:
# no block in any of the 12 ECP5 benchmark builds
WRAPPER_ECP5 = {**WRAPPER, "BRAM": 0}


def wrapper_cost(family: str) -> dict[str, int]:
    return WRAPPER_ECP5 if family == "ecp5" else WRAPPER


def predicted_use(est_total: dict, family: str) -> dict[str, int]:
    """What a build of a network with this estimate uses: the estimate plus the wrapper."""
    w = wrapper_cost(family)
    return {r: int(est_total[r]) + w[r] for r in RESOURCES}


def overflows(predicted: dict[str, int], available: dict[str, int]) -> list[str]:
    """``"LUT 6,100/5,280"`` for each resource that ``predicted`` exceeds."""
    return [f"{r} {predicted[r]:,}/{available[r]:,}" for r in RESOURCES
            if predicted[r] > available[r]]


@dataclass
class Fold:
    max_multipliers: int
    multipliers: int
    initiation_interval: int
    predicted: dict[str, int]  # estimate + correction, per resource
    cells: int = 0  # iCE40: logic cells (LUT + the flip-flops that need a cell of their own)

    def fits(self, available: dict[str, int]) -> bool:
        return (all(self.predicted[r] <= available[r] for r in RESOURCES)
                and self.cells <= available["LUT"])

    def describe(self, available: dict[str, int]) -> str:
        use = ", ".join(f"{r} {self.predicted[r]:,}/{available[r]:,}" for r in RESOURCES)
        if self.cells > self.predicted["LUT"]:
            use += f", logic cells {self.cells:,}/{available['LUT']:,}"
        return (f"--fold auto --max-multipliers {self.max_multipliers} (estimated {use}; "
                f"II {self.initiation_interval:,} cycles)")


def _foldings(df: Dataflow, family: str, offset: dict[str, int]):
    """Balanced foldings from the fastest down, one per distinct multiplier count."""
    budget = None
    while True:
        d = copy.deepcopy(df)
        apply_fold(d, "auto", max_multipliers=budget)
        est = estimate(d, family)
        t = est["total"]
        n = t["multipliers"]
        # a budget of n gives this same folding (every faster one needs more than n)
        pred = {r: max(0, int(t[r] + offset.get(r, 0))) for r in RESOURCES}
        yield Fold(n, n, est["initiation_interval"], pred, logic_cells(pred, family))
        if budget is not None and n > budget:
            return  # auto_fold fell back to the smallest folding: nothing smaller exists
        if n <= 1:
            return
        budget = n - 1


def device_budget(graph, target: Target) -> Fold | None:
    """The fastest balanced folding whose estimate, with the wrapper, fits ``target``; None
    when even the smallest does not (the build then reports what overflows)."""
    df = plan(graph)
    for f in _foldings(df, target.family, wrapper_cost(target.family)):
        if f.fits(target.available):
            return f
    return None


def suggest_fold(df: Dataflow, target: Target, used: dict[str, int]) -> str:
    """A folding to try after ``used`` (what synthesis of ``df`` needed) overflowed."""
    now = estimate(df, target.family)["total"]
    offset = {r: used[r] - now[r] for r in RESOURCES}
    smallest = None
    for f in _foldings(df, target.family, offset):
        if f.multipliers >= now["multipliers"]:
            continue  # the folding that was just built, or a larger one
        if f.fits(target.available):
            return f"try {f.describe(target.available)}"
        smallest = f
    if smallest is None:
        return ("this is already the smallest folding (one multiplier per layer); choose a "
                "larger device")
    over = overflows(smallest.predicted, target.available)
    return (f"no folding fits: even the smallest ({smallest.multipliers} multipliers) needs "
            f"an estimated {', '.join(over)}; choose a larger device")
