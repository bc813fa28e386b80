"""Taps (``simulate(..., taps=True)``, ``compare_taps``, ``intflow run --taps``): every word
written on every edge of the network RTL, held to the reference's value of the IR tensor that
edge carries. A fault injected into one layer of the RTL only (a weight altered in the plan
after planning) must be named as the first differing layer with the right element; a clean run
reports no difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import intflow
from intflow import cli
from intflow.compiler import reference
from intflow.compiler.dataflow import model
from intflow.sim.network import compare_taps, format_taps, run_graph

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL = EXAMPLES / "models" / "digits_mlp_qdq.onnx"
needs_icarus = pytest.mark.simulator("icarus")


def digits(samples: int):
    d = intflow.compile(MODEL)
    data = np.load(EXAMPLES / "data" / "digits_mlp_qdq.npz")
    feeds = reference.to_codes(d.graph, {k: data[k][:samples] for k in data.files})
    return d, d.dataflow(), feeds


def stream_values(df, env, s: str) -> np.ndarray:
    """The reference's words of stream ``s``: (samples, stream length)."""
    v = env[df.tensors[s]]
    return v.reshape(len(v), -1)[:, df.streams[s].order]


def corrupt(df, layer: int, row: int, env) -> tuple[object, int]:
    """Alter weight (row, col) of the ``layer``-th MVAU (one row per inference), col the input
    element of sample 0 with the largest magnitude, to the end of the weight type that moves
    output ``row`` away from the end of the output range it is nearer (so the fault shows
    through the requant's clamp); returns (engine, col)."""
    e = [e for e in df.engines if e.kind == "MVAU"][layer]
    assert e.params["rows"] == 1
    x = stream_values(df, env, e.inputs[0])
    col = int(np.argmax(np.abs(x[0])))
    y = int(stream_values(df, env, e.outputs[0])[0, row])
    rq, wt = e.params["requant"], e.params["weight_dtype"]
    to_max = (y - rq["lo"] <= rq["hi"] - y) == (x[0, col] > 0)
    w = e.params["weights"].copy()
    w[row, col] = wt.max if to_max else wt.min  # stays in the weight type the RTL was sized for
    e.params["weights"] = w
    return e, col


def test_plan_names_the_tensor_of_every_stream():
    d, df, _ = digits(1)
    windows = {s for e in df.engines if e.kind == "SlidingWindow" for s in e.outputs}
    for s, st in df.streams.items():
        if s in windows:
            continue
        t = df.tensors[s]
        assert d.graph.tensors[t].shape == st.shape, (s, t)
    assert [df.tensors[s] for s in df.inputs] == [h.tensor for h in d.graph.inputs]


@needs_icarus
def test_clean_run_reports_no_difference():
    d, df, feeds = digits(2)
    got, res = run_graph(df, d.graph, feeds, engine="icarus", stall=0.3, taps=True)
    diffs, compared = compare_taps(df, d.graph, feeds, res)
    assert diffs == [] and compared == 3  # input, fc1 (+relu requant), fc2
    assert "every element equals the reference" in format_taps(diffs, compared)
    assert all(len(w) == 2 * df.streams[s].length for s, w in res.taps.items())


@needs_icarus
@pytest.mark.parametrize("layer", [0, 1])
def test_fault_in_one_layer_is_named_with_its_element(layer):
    d, df, feeds = digits(2)
    env = reference.run_codes(d.graph, feeds)
    e, col = corrupt(df, layer, row=3, env=env)
    got, res = run_graph(df, d.graph, feeds, engine="icarus", stall=0.3, seed=2, taps=True)
    diffs, compared = compare_taps(df, d.graph, feeds, res)
    assert diffs, "the altered weight made no difference on the taps"
    first = diffs[0]
    assert first.stream == e.outputs[0] and first.layer.startswith(e.name), first
    # what the faulty layer computes, by the dataflow model of the altered plan
    out = e.outputs[0]
    st = df.streams[out]
    (faulty,) = model.run_engine(e, [stream_values(df, env, e.inputs[0])])
    want = stream_values(df, env, out)
    bad = np.argwhere(faulty != want)
    s, pos = (int(v) for v in bad[0])
    assert first.sample == s
    assert first.index == tuple(int(v) for v in np.unravel_index(int(st.order[pos]), st.shape))
    assert first.index[-1] == 3  # output channel 3, the altered row
    assert (first.rtl, first.reference) == (faulty[s, pos], want[s, pos])
    assert first.differing == int((faulty != want).sum())
    text = format_taps(diffs, compared)
    assert text.startswith(f"taps: first differing layer: {e.name}"), text
    assert f"element {first.index} (rtl {first.rtl}, reference {first.reference})" in text


@needs_icarus
def test_cli_run_taps(tmp_path, capsys):
    x = np.load(EXAMPLES / "data" / "digits_mlp_qdq.npz")["pixels"][:2]
    np.save(tmp_path / "x.npy", x)
    base = ["run", str(MODEL), "--inputs", str(tmp_path / "x.npy"), "--outputs",
            str(tmp_path / "y.npz")]
    rc = cli.main([*base, "--engine", "icarus", "--taps"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "taps: 3 layer outputs recorded, every element equals the reference" in out, out
    assert cli.main([*base, "--taps"]) == 2
    assert "--taps records the RTL's streams" in capsys.readouterr().err
