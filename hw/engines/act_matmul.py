"""ActMatMul: the product of two activations (attention's Q·Kᵀ and P·V, a MatMulInteger or
QLinearMatMul whose right operand is computed at run time).

    acc[b, r, j] = bias[j] + sum_i (a[b, r, i] - x_zero_point) * (w[b, i, j] - w_zero_point)

Inputs, row-major per inference: ``i0`` = A, ``batch`` x ``rows`` x ``k`` words; ``i1`` = W,
``batch`` x ``k`` x ``n`` words, or with ``shared_w`` one k x n matrix for every batch (numpy
broadcasting of a 2-D right operand). Output: ``batch`` x ``rows`` x ``n`` accumulators in
``out_dtype`` (the requant, when the graph has one, is the Requant engine that follows).

A serial engine, one multiply-accumulate a cycle, in four states per batch:
    LOAD_W  W's k·n words into the W buffer
    LOAD_A  one row of A (k words) into the row buffer
    MAC     k cycles for output column j (acc = bias[j], then + one product a cycle)
    EMIT    the accumulator into the output register when it is free; next column, next row
            (LOAD_A), or next batch (LOAD_W; LOAD_A with ``shared_w`` but for the last batch)
Both buffers are read combinationally (small activations: LUT RAM). W arrives before any row
of A is taken, which is safe in a dataflow whose forks buffer whole tensors: A's stream waits
in its FIFO. Cycles per batch: k·n + rows·(k + n·(k + 1)).
"""

from __future__ import annotations

import numpy as np
from amaranth import Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from .common import payload_shape


def _bounds(shape: Shape) -> tuple[int, int]:
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


class ActMatMul(wiring.Component):
    def __init__(self, a_shape, w_shape, out_shape, *, batch: int, rows: int, k: int, n: int,
                 x_zero_point: int = 0, w_zero_point: int = 0, bias=None,
                 shared_w: bool = False):
        self.batch, self.rows, self.k, self.n = int(batch), int(rows), int(k), int(n)
        self.shared_w = bool(shared_w)
        if min(self.batch, self.rows, self.k, self.n) < 1:
            raise ValueError(f"ActMatMul: empty product {batch}x{rows}x{k}x{n}")
        self.za, self.zw = int(x_zero_point), int(w_zero_point)
        self.bias = [0] * self.n if bias is None else [int(v) for v in np.ravel(bias)]
        if len(self.bias) != self.n:
            raise ValueError(f"ActMatMul: {len(self.bias)} biases for {self.n} columns")
        self.a_shape, self.w_shape = Shape.cast(a_shape), Shape.cast(w_shape)
        self.out_shape = Shape.cast(out_shape)
        # every partial sum fits: k products at the corners of the operand ranges, plus bias
        alo, ahi = _bounds(self.a_shape)
        wlo, whi = _bounds(self.w_shape)
        corners = [p * q for p in (alo - self.za, ahi - self.za)
                   for q in (wlo - self.zw, whi - self.zw)]
        lo = self.k * min(min(corners), 0) + min(min(self.bias), 0)
        hi = self.k * max(max(corners), 0) + max(max(self.bias), 0)
        self.acc_shape = Shape.cast(range(lo, hi + 1))
        super().__init__({"i0": In(stream.Signature(self.a_shape)),
                          "i1": In(stream.Signature(self.w_shape)),
                          "o0": Out(stream.Signature(self.out_shape))})

    def elaborate(self, platform):
        m = Module()
        k, n = self.k, self.n
        wbuf = m.submodules.wbuf = memory.Memory(shape=self.w_shape, depth=k * n, init=[])
        abuf = m.submodules.abuf = memory.Memory(shape=self.a_shape, depth=k, init=[])
        bias = m.submodules.bias = memory.Memory(shape=Shape.cast(range(
            min(min(self.bias), 0) - 1, max(max(self.bias), 0) + 1)), depth=n, init=self.bias)
        ww, aw = wbuf.write_port(), abuf.write_port()
        wr = wbuf.read_port(domain="comb")
        ar = abuf.read_port(domain="comb")
        br = bias.read_port(domain="comb")

        wpos = Signal(range(k * n))  # LOAD_W write address
        apos = Signal(range(k))  # LOAD_A write address
        i = Signal(range(k))  # MAC: product index
        j = Signal(range(n))  # output column
        row = Signal(range(self.rows))
        b = Signal(range(self.batch))
        acc = Signal(self.acc_shape)
        o = self.o0
        m.d.comb += [ww.addr.eq(wpos), ww.data.eq(self.i1.payload),
                     aw.addr.eq(apos), aw.data.eq(self.i0.payload),
                     ar.addr.eq(i), wr.addr.eq(i * n + j), br.addr.eq(j)]
        with m.If(o.ready):  # the output register empties when taken (EMIT may refill it)
            m.d.sync += o.valid.eq(0)
        prod = (ar.data - self.za) * (wr.data - self.zw)

        with m.FSM():
            with m.State("LOAD_W"):
                m.d.comb += [self.i1.ready.eq(1), ww.en.eq(self.i1.valid)]
                with m.If(self.i1.valid):
                    m.d.sync += wpos.eq(Mux(wpos == k * n - 1, 0, wpos + 1))
                    with m.If(wpos == k * n - 1):
                        m.next = "LOAD_A"
            with m.State("LOAD_A"):
                m.d.comb += [self.i0.ready.eq(1), aw.en.eq(self.i0.valid)]
                with m.If(self.i0.valid):
                    m.d.sync += apos.eq(Mux(apos == k - 1, 0, apos + 1))
                    with m.If(apos == k - 1):
                        m.d.sync += [i.eq(0), j.eq(0)]
                        m.next = "MAC"
            with m.State("MAC"):
                m.d.sync += acc.eq(Mux(i == 0, br.data, acc) + prod)
                m.d.sync += i.eq(Mux(i == k - 1, 0, i + 1))
                with m.If(i == k - 1):
                    m.next = "EMIT"
            with m.State("EMIT"):
                with m.If(~o.valid | o.ready):
                    m.d.sync += [o.valid.eq(1), o.payload.eq(acc)]
                    m.d.sync += j.eq(Mux(j == n - 1, 0, j + 1))
                    with m.If(j != n - 1):
                        m.next = "MAC"
                    with m.Elif(row != self.rows - 1):
                        m.d.sync += row.eq(row + 1)
                        m.next = "LOAD_A"
                    with m.Else():
                        last_b = b == self.batch - 1
                        m.d.sync += [row.eq(0), b.eq(Mux(last_b, 0, b + 1))]
                        if self.shared_w:  # the same W for every batch of this inference
                            m.next = "LOAD_A"
                            with m.If(last_b):
                                m.next = "LOAD_W"
                        else:
                            m.next = "LOAD_W"
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> ActMatMul:
    p = engine.params
    return ActMatMul(payload_shape(streams[engine.inputs[0]].dtype),
                     payload_shape(streams[engine.inputs[1]].dtype),
                     payload_shape(streams[engine.outputs[0]].dtype), batch=p["batch"],
                     rows=p["rows"], k=p["k"], n=p["n"], x_zero_point=p["x_zero_point"],
                     w_zero_point=p["w_zero_point"], bias=p["bias"],
                     shared_w=p.get("shared_w", False))
