"""Fuzzed graphs through the RTL: random quantized networks (``fuzz_graphs.py``, QDQ and
QOperator) whose every node has a streaming engine, run on Icarus with stalls 0.3 and held to
the IntGraph reference on every output element, for random inputs and the edge vectors
(all-min, all-max, zero point, alternating extremes: ``compiler/edge_vectors.py``).

A graph without a streaming engine for some node (``PlanError``), one onnxruntime's quantizer
rejects, or one intflow rejects cleanly is not a test case: hypothesis draws another graph
(``assume``) — those graphs are ``test_fuzz.py``'s. 6 graphs by default (a few minutes on two
cores, Icarus builds cached by design), 30 more under ``-m slow``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from fuzz_graphs import graphs, quant_options, quantize
from hypothesis import HealthCheck, assume, given, settings

import intflow
from intflow import ModelError
from intflow.compiler import reference
from intflow.compiler.dataflow.plan import PlanError, plan
from intflow.compiler.edge_vectors import KINDS, with_edge_vectors
from intflow.sim.network import run_graph

SAMPLES = 3  # random samples per graph, then the edge vectors


def rtl_graph(net, opts, tmp: str):
    """(design, plan) of the quantized ``net``, or hypothesis draws another graph."""
    qpath = str(Path(tmp) / "q.onnx")
    shape = quantize(net, opts, qpath)
    assume(shape is not None)
    try:
        d = intflow.compile(qpath)
    except ModelError:
        assume(False)  # rejected cleanly (a float prefix): test_fuzz.py's business
    try:
        plan(d.graph)
    except PlanError:
        assume(False)  # some node has no streaming engine yet
    df = d.dataflow()  # planned and folded: must not fail now
    return d, df, shape


def assert_rtl_equal(got: np.ndarray, want: np.ndarray, labels: list[str], where: str) -> None:
    """Every element equal; else the count and the first differing index (sample first)."""
    bad = np.argwhere(got != want)
    if bad.size:
        i = tuple(bad[0].tolist())
        raise AssertionError(f"{len(bad)} of {want.size} elements differ; first at {i} "
                             f"({labels[i[0]]}): RTL {got[i]}, reference {want[i]}\n{where}")


def rtl_equals_reference(net, opts) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d, df, shape = rtl_graph(net, opts, tmp)
        g = d.graph
        (h,) = g.inputs
        x = np.random.default_rng(net.seed).normal(0, 1.3, (SAMPLES, *shape)).astype(np.float32)
        codes = reference.to_codes(g, {h.onnx_name: x})[h.tensor]
        zp = 0 if h.quantize is None else int(np.ravel(h.quantize.zero_point)[0])
        feeds = {h.tensor: with_edge_vectors(codes, g.tensors[h.tensor].dtype, zp)}
        want = reference.run_codes(g, feeds)
        got, res = run_graph(df, g, feeds, engine="icarus", stall=0.3, seed=net.seed % 1000)
        labels = [f"random sample {s}" for s in range(SAMPLES)] + [f"edge vector {k}"
                                                                   for k in KINDS]
        for o in g.outputs:
            assert_rtl_equal(got[o.tensor], want[o.tensor], labels, f"net {net}, options {opts}")
        assert not res.lost
        print(f"{net.kind} {net.shape} {[layer[0] for layer in net.layers]} "
              f"{opts['quant_format'].name}: {len(df.engines)} engines "
              f"({', '.join(sorted({e.kind for e in df.engines}))}), "
              f"{sum(want[o.tensor].size for o in g.outputs)} elements equal")


SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


@pytest.mark.simulator("icarus")
@settings(max_examples=6, **SETTINGS)
@given(net=graphs(), opts=quant_options())
def test_fuzz_rtl_equals_reference(net, opts):
    rtl_equals_reference(net, opts)


@pytest.mark.slow
@pytest.mark.simulator("icarus")
@settings(max_examples=30, **{**SETTINGS, "derandomize": False})
@given(net=graphs(), opts=quant_options())
def test_fuzz_rtl_slow(net, opts):
    rtl_equals_reference(net, opts)
