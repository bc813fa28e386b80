"""The RTL check of ``intflow build`` and ``intflow sweep``: simulate the network on a few
random samples, hold every output element to the reference, and count its cycles."""

from __future__ import annotations

import time

import numpy as np

from .compiler.errors import ModelError


def rtl_cycles(d, df, est: dict, samples: int = 3) -> tuple[dict, bool | None]:
    """Latency and II from the network's RTL under cocotb, and whether its outputs equal the
    reference; the cost model's figures (and None) when the simulator is missing."""
    from .check import random_inputs
    from .compiler import reference
    try:
        from .sim.network import SimulationError, run_graph
    except ImportError as e:
        print(f"note: no RTL simulation ({e}); cycles are the cost model's")
        return {"latency": est["latency_estimate"],
                "initiation_interval": est["initiation_interval"], "source": "estimate"}, None
    feeds = reference.to_codes(d.graph, random_inputs(d.graph, samples, seed=0))
    t0 = time.perf_counter()
    try:
        outs, res = run_graph(df, d.graph, feeds, stall=0.0)
    except SimulationError as e:
        raise ModelError(f"the RTL simulation failed: {e}", file=d.model_path) from None
    want = reference.run_codes(d.graph, feeds)
    ok = all(np.array_equal(outs[k], want[k]) for k in outs)
    lat = [int(v) for v in res.latency if v >= 0]
    print(f"  RTL simulation ({res.engine}, {samples} samples): latency {min(lat):,} cycles, "
          f"II {res.initiation_interval:,}; outputs {'equal' if ok else 'DIFFER from'} the "
          f"reference ({time.perf_counter() - t0:.1f} s)")
    for k in outs:  # name the first differing element (sample first, then the IR index)
        bad = np.argwhere(outs[k] != want[k])
        if bad.size:
            i = tuple(bad[0].tolist())
            print(f"  {k}: {len(bad)} of {want[k].size} elements differ; first at {i}: RTL "
                  f"{outs[k][i]}, reference {want[k][i]}")
    return {"latency": min(lat), "initiation_interval": res.initiation_interval,
            "source": f"rtl-simulation ({res.engine})"}, ok
