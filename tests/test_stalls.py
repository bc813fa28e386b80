"""Stall faults on the network RTL (issue 8): random valid/ready stalls at 0 %, 30 % and 90 %,
and the output held not-ready for thousands of cycles, then released: every sample's every
output word arrives once, in order (the bench fails on an extra word, a missing one times
out, and the values are compared with the reference element by element). Reset in the middle
of a stream: tests/test_network_rtl.py::test_reset_mid_stream_then_next_samples_are_right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import intflow
from intflow.compiler import reference
from intflow.sim.network import SimulationError, simulate

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
needs_icarus = pytest.mark.simulator("icarus")


def digits(samples: int):
    d = intflow.compile(EXAMPLES / "models" / "digits_mlp_qdq.onnx")
    data = np.load(EXAMPLES / "data" / "digits_mlp_qdq.npz")
    feeds = reference.to_codes(d.graph, {k: data[k][:samples] for k in data.files})
    (h,), (o,) = d.graph.inputs, d.graph.outputs
    want = reference.run_codes(d.graph, feeds)[o.tensor]
    return d, d.dataflow(), feeds[h.tensor], want, d.graph.tensors[o.tensor].shape


@needs_icarus
@pytest.mark.parametrize("stall", [0.0, 0.3, 0.9])
def test_random_stalls_lose_nothing(stall):
    d, df, x, want, shape = digits(3)
    res = simulate(df, x, engine="icarus", stall=stall, seed=11, out_shape=shape)
    np.testing.assert_array_equal(res.outputs, want)
    assert not res.lost and np.all(res.last_out > res.first_in)
    assert np.all(np.diff(res.last_out) > 0)  # samples complete in order


@needs_icarus
def test_output_held_for_thousands_of_cycles_then_released():
    """Outputs not ready for 12000 cycles from cycle 100 (fc1 needs ~2048 cycles a sample):
    every FIFO backs up to the input, which must wait; after the release all six samples come
    out whole and in order."""
    d, df, x, want, shape = digits(6)
    free = simulate(df, x, engine="icarus", stall=0.0, out_shape=shape)
    res = simulate(df, x, engine="icarus", stall=0.0, out_shape=shape, out_hold=(100, 12000))
    np.testing.assert_array_equal(res.outputs, want)
    assert not res.lost
    # nothing came out during the hold, and the hold really held the pipeline back
    assert res.last_out[0] >= 12100 > free.last_out[0], (res.last_out, free.last_out)
    assert res.last_out[-1] > free.last_out[-1]
    # back-pressure reached the input: the last sample could not enter at its free-run time
    assert res.first_in[-1] > free.first_in[-1], (res.first_in, free.first_in)


@needs_icarus
def test_output_hold_with_random_stalls():
    d, df, x, want, shape = digits(3)
    res = simulate(df, x, engine="icarus", stall=0.3, seed=4, out_shape=shape,
                   out_hold=(2500, 3000))
    np.testing.assert_array_equal(res.outputs, want)
    assert not res.lost


def test_stall_arguments_are_checked():
    d, df, x, want, shape = digits(1)
    with pytest.raises(ValueError, match="out_hold"):
        simulate(df, x, out_hold=(-1, 10))
    with pytest.raises(ValueError, match="probability"):
        simulate(df, x, stall=1.0)
    with pytest.raises(ValueError, match="not with reset_at"):
        simulate(df, x, taps=True, reset_at=(0, 3))
    with pytest.raises(ValueError, match="2 input arrays for a network with 1"):
        simulate(df, [x, x])
    assert issubclass(SimulationError, RuntimeError)
