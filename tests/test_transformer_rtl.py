"""Integer transformer ops through the whole RTL: IntGraphs with MatMul -> Requant ->
Softmax -> Requant and -> LayerNorm -> Requant, a LayerNorm reading a 3-D host input (whose
channels-last stream the planner reorders into rows), and one attention head (Softmax of
Q Kt, then P V: products of two activations) are planned, generated
(``hw/network.py``) and simulated on Icarus with random stalls (``sim/network.py``), held to
the IntGraph reference on every output element for random codes and the edge vectors; the
II at full rate against ``fold.engine_cycles``.

The graphs are built by hand (the ONNX import of Softmax/LayerNorm is separate work): the op
constants follow the rules of ``compiler/ops/softmax.py`` and ``layernorm.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from intflow.compiler import reference
from intflow.compiler.dataflow.fold import apply_fold, engine_cycles, initiation_interval
from intflow.compiler.dataflow.plan import plan
from intflow.compiler.dtypes import IntType
from intflow.compiler.edge_vectors import KINDS, with_edge_vectors
from intflow.compiler.ir import HostInput, HostOutput, IntGraph, Node, Tensor
from intflow.compiler.ops.softmax import exp_table
from intflow.compiler.passes.prove_widths import ProveWidths
from intflow.compiler.requant import ort_multiplier
from intflow.sim.network import run_graph

I8, U8 = IntType(True, 8), IntType(False, 8)
needs_icarus = pytest.mark.simulator("icarus")


class Builder:
    """A small IntGraph by hand; ``finish`` proves every tensor's width."""

    def __init__(self, name: str, x_shape: tuple[int, ...]) -> None:
        self.g = IntGraph(name, {}, {}, [], [], [])
        self.g.tensors["x"] = Tensor("x", x_shape, I8)
        self.g.inputs.append(HostInput("x", "x", "int8", x_shape, None))
        self.rng = np.random.default_rng(len(name))

    def node(self, op: str, ins: list[str], shape, **attrs) -> str:
        out = self.g.add_tensor(f"{op.lower()}_out", shape, IntType(True, 32))
        self.g.nodes.append(Node(op, self.g.unique_node_name(op, [op.lower()]), ins, [out],
                                 attrs))
        return out

    def requant(self, x: str, scale: float, out: IntType, zero_point: int = 0) -> str:
        mant, exp = ort_multiplier(np.float32(scale))
        ins = [x, self.g.add_const("mant", mant), self.g.add_const("exp", exp)]
        return self.node("Requant", ins, self.g.tensors[x].shape, mode="ort", axis=None,
                         zero_point=zero_point, lo=out.min, hi=out.max)

    def matmul(self, x: str, n_out: int) -> str:
        shape = self.g.tensors[x].shape
        w = self.g.add_const("w", self.rng.integers(-127, 128, (shape[-1], n_out)))
        b = self.g.add_const("b", self.rng.integers(-2000, 2000, n_out))
        acc = self.node("MatMul", [x, w, b], (*shape[:-1], n_out))
        return self.requant(acc, 1.0 / (40 * math.sqrt(shape[-1])), I8)

    def softmax(self, x: str, scale: float, e_bits: int = 16, m_bits: int = 15) -> str:
        n = self.g.tensors[x].shape[-1]
        f_bits = e_bits + m_bits + math.ceil(math.log2(max(n, 2))) + 2
        table = self.g.add_const("exp", exp_table(scale, 8, e_bits))
        p = self.node("Softmax", [x, table], self.g.tensors[x].shape, E=e_bits, F=f_bits,
                      M=m_bits)
        return self.requant(p, 255.0 / (1 << m_bits), U8)  # QLinearSoftmax: scale 1/255

    def layernorm(self, x: str, sx: float = 0.05, eps: float = 1e-5) -> str:
        n = self.g.tensors[x].shape[-1]
        t_bits, p_bits = 8, 8
        k_bits = t_bits + math.ceil(math.log2(max(n, 2))) + 8 + p_bits + 8
        e2 = int(round(n * n * eps / sx ** 2 * 2 ** (2 * t_bits)))
        gamma = self.g.add_const("gamma", self.rng.integers(-127, 128, n))
        b = self.g.add_const("beta", self.rng.integers(-20000, 20000, n))
        acc = self.node("LayerNorm", [x, gamma, b], self.g.tensors[x].shape, T=t_bits,
                        P=p_bits, K=k_bits, E2=e2)
        return self.requant(acc, 1.0 / 600, I8)

    def finish(self, *outs: str) -> IntGraph:
        for o in outs:
            self.g.outputs.append(HostOutput(o, o, "int64", "codes"))
        self.g.check()
        changed = True
        while changed:
            self.g, changed = ProveWidths().apply(self.g)
        return self.g


def attention_tail() -> IntGraph:
    """x (1, 4, 8) -> MatMul -> Requant -> {Softmax -> Requant, LayerNorm -> Requant}."""
    b = Builder("attention_tail", (1, 4, 8))
    h = b.matmul("x", 8)
    return b.finish(b.softmax(h, 0.08), b.layernorm(h))


def input_layernorm() -> IntGraph:
    """LayerNorm straight on a 3-D host input (its stream is channels-last: a Reorder), then
    MatMul -> Requant -> Softmax -> Requant on 4-D scores."""
    b = Builder("input_layernorm", (1, 3, 6))
    y = b.layernorm("x")
    s = b.matmul(y, 6)
    return b.finish(b.softmax(s, 0.05))


def attention() -> IntGraph:
    """One attention head: Q, K, V projections, scores Q Kt (two activations: ActMatMul) ->
    Requant -> Softmax -> Requant (uint8, 1/255) -> P V -> Requant -> LayerNorm -> Requant."""
    b = Builder("attention", (1, 4, 6))
    q, k, v = b.matmul("x", 6), b.matmul("x", 6), b.matmul("x", 6)
    kt = b.node("Transpose", [k], (1, 6, 4), perm=[0, 2, 1])
    scores = b.node("MatMul", [q, kt], (1, 4, 4))
    p = b.softmax(b.requant(scores, 1.0 / 700, I8), 0.06)
    ctx = b.requant(b.node("MatMul", [p, v], (1, 4, 6)), 1.0 / 300, I8)
    return b.finish(b.layernorm(ctx))


def wide_rows() -> IntGraph:
    """Rows of 72 and 40 (more than the 64 words ECP5 keeps in LUT RAM): LayerNorm on the
    host input, MatMul, Softmax."""
    b = Builder("wide_rows", (1, 2, 72))
    s = b.matmul(b.layernorm("x", sx=0.02, eps=1e-6), 40)
    return b.finish(b.softmax(s, 0.03))


def serial_neighbours() -> IntGraph:
    """A long MatMul (its requant serial), then Softmax and LayerNorm each followed by a
    serial Requant: the row engines must load a row while they emit the one before, or their
    slow neighbours wait for each other in turn and the II exceeds the plan."""
    b = Builder("serial_neighbours", (1, 4, 64))
    s = b.matmul("x", 16)
    return b.finish(b.layernorm(b.softmax(s, 0.05)))


def transposed_input() -> IntGraph:
    """LayerNorm and Softmax along axis 1 of a 3-D host input (a Transpose first): the
    channels-last stream already holds those rows contiguously, so no Reorder."""
    b = Builder("transposed_input", (1, 4, 6))
    xt = b.node("Transpose", ["x"], (1, 6, 4), perm=[0, 2, 1])
    return b.finish(b.softmax(b.layernorm(xt), 0.1))


GRAPHS = {"attention_tail": attention_tail, "input_layernorm": input_layernorm,
          "attention": attention, "wide_rows": wide_rows, "transposed_input": transposed_input,
          "serial_neighbours": serial_neighbours}
FAST = ["attention_tail", "input_layernorm", "attention", "transposed_input"]


def feeds_of(g: IntGraph, samples: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (samples, *g.tensors["x"].shape))
    x[0, ..., :] = x[0, ..., :1]  # constant rows: V = 0 and a flat softmax
    return {"x": with_edge_vectors(x, I8)}


def assert_equal(g: IntGraph, got: dict, want: dict, samples: int) -> int:
    labels = [f"random sample {s}" for s in range(samples)] + [f"edge vector {k}"
                                                               for k in KINDS]
    n = 0
    for o in g.outputs:
        bad = np.argwhere(got[o.tensor] != want[o.tensor])
        assert not bad.size, (f"{o.tensor}: {len(bad)} of {want[o.tensor].size} differ; first "
                              f"at {tuple(bad[0])} ({labels[bad[0][0]]}): RTL "
                              f"{got[o.tensor][tuple(bad[0])]}, reference "
                              f"{want[o.tensor][tuple(bad[0])]}")
        n += want[o.tensor].size
    return n


def test_plan_maps_the_ops_and_model_equals_reference():
    """Both graphs plan to Softmax/LayerNorm engines (a Reorder into rows only for the 3-D
    host input) and the stream model equals the reference."""
    from intflow.compiler.dataflow.model import run
    for name, make in GRAPHS.items():
        g = make()
        df = plan(g)
        kinds = [e.kind for e in df.engines]
        assert "Softmax" in kinds and "LayerNorm" in kinds, kinds
        if name == "transposed_input":
            assert "Reorder" not in kinds, kinds
        # a Reorder into rows only where the tensor streams channels-last (the host input;
        # the MatMul of a 3-D host input reorders it for itself)
        row_reorders = [e for e in df.engines if e.kind == "Reorder" and any(
            c.kind in ("Softmax", "LayerNorm") for c in df.consumers(e.outputs[0]))]
        assert bool(row_reorders) == (name in ("input_layernorm", "wide_rows")), kinds
        assert ("ActMatMul" in kinds) == (name == "attention"), kinds
        feeds = feeds_of(g, 3, 1)
        want = reference.run_codes(g, feeds)
        got = run(df, g, feeds)
        for o in g.outputs:
            assert np.array_equal(got[o.tensor], want[o.tensor]), (name, o.tensor)


@needs_icarus
@pytest.mark.parametrize("name", [*FAST, pytest.param("wide_rows", marks=pytest.mark.slow)])
def test_transformer_rtl_equals_reference_with_stalls(name):
    g = GRAPHS[name]()
    df = plan(g)
    apply_fold(df, None)
    samples = 3
    feeds = feeds_of(g, samples, 7)
    want = reference.run_codes(g, feeds)
    got, res = run_graph(df, g, feeds, engine="icarus", stall=0.3, seed=5)
    n = assert_equal(g, got, want, samples)
    assert not res.lost
    print(f"{name}: {n} elements equal with stalls 0.3, latency {res.latency.tolist()}")


@needs_icarus
@pytest.mark.parametrize("name, fold", [("attention_tail", "max"),
                                        ("serial_neighbours", None)])
def test_transformer_ii_at_full_rate(name, fold):
    """No stalls: the measured II is the planned one within a few cycles of hand-over. In
    attention_tail (the MVAU folded to the row engines' II) the row engines are the slowest;
    in serial_neighbours they sit between serial requants and must not couple them."""
    g = GRAPHS[name]()
    df = plan(g)
    apply_fold(df, fold)
    rows = max(engine_cycles(e, df) for e in df.engines if e.kind in ("Softmax", "LayerNorm"))
    ii = initiation_interval(df)
    assert rows == ii if name == "attention_tail" else rows < ii
    x = g.tensors["x"].shape
    feeds = {"x": np.random.default_rng(2).integers(-128, 128, (4, *x))}
    want = reference.run_codes(g, feeds)
    got, res = run_graph(df, g, feeds, engine="icarus", stall=0.0)
    assert_equal(g, got, want, 4)
    assert ii <= res.initiation_interval <= ii * 1.02 + 8, (ii, res.initiation_interval)
    print(f"{name}: II planned {ii}, measured {res.initiation_interval}")


@needs_icarus
@pytest.mark.parametrize("stem", ["tiny_transformer_qdq",
                                  pytest.param("tiny_transformer_qop", marks=pytest.mark.slow)])
def test_tiny_transformer_example_rtl_equals_reference(stem):
    """The example encoder (examples/models/, docs/transformer.md): 2 held-out digits plus the
    edge vectors through the generated network on Icarus with stalls, equal on every logit."""
    from test_network_rtl import assert_rtl_equals_reference, example

    d, df, feeds, want = example(stem, 2, edges=True)
    got, res = run_graph(df, d.graph, feeds, engine="icarus", stall=0.3, seed=2)
    assert assert_rtl_equals_reference(d, got, want, stem) > 0 and not res.lost
