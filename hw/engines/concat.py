"""Concat: interleave input streams following ``pattern`` — runs of (input, count) — repeated
``repeat`` times per inference.

The run index and the count within the run select which input is read; since an inference is
the pattern ``repeat`` times over, cycling through the pattern forever also starts every
inference at run 0. The output is one register stage (``valid`` never waits on ``ready``), one
beat per cycle; an input other than the selected one is never ready.

Constant inputs (``constants[i]``: input i's words in the order Concat consumes them, e.g. a
positional plane or a class token concatenated to an activation) are no streams: their words,
merged in consumption order over the whole inference, sit in one ROM read combinationally at a
counter that advances on every constant beat and wraps once per inference. The component's
streams ``i0, i1, ...`` are the non-constant inputs in order.
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Const, Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ...compiler.dataflow.spec import Engine, Stream
from .common import payload_shape


class Concat(wiring.Component):
    def __init__(self, in_shapes, out_shape, pattern, constants: dict | None = None,
                 repeat: int = 1):
        self.pattern = [(int(i), int(c)) for i, c in pattern]
        self.constants = {int(k): [int(v) for v in np.ravel(c)]
                          for k, c in (constants or {}).items()}
        n_all = len(in_shapes) + len(self.constants)
        self.streamed = [i for i in range(n_all) if i not in self.constants]
        if (not self.pattern or not self.streamed
                or any(c < 1 or not 0 <= i < n_all for i, c in self.pattern)):
            raise ValueError(f"bad concat pattern {pattern} for {len(in_shapes)} inputs and "
                             f"{len(self.constants)} constants")
        # the constant words in the order the pattern consumes them over one inference
        self.rom: list[int] = []
        pos = dict.fromkeys(self.constants, 0)
        for _ in range(int(repeat)):
            for i, c in self.pattern:
                if i in self.constants:
                    self.rom += self.constants[i][pos[i]:pos[i] + c]
                    pos[i] += c
        if any(pos[i] != len(v) for i, v in self.constants.items()):
            raise ValueError(f"concat: constant lengths {[len(v) for v in self.constants.values()]}"
                             f" do not match the pattern {pattern} x {repeat}")
        sig = {f"i{j}": In(stream.Signature(s)) for j, s in enumerate(in_shapes)}
        sig["o0"] = Out(stream.Signature(out_shape))
        super().__init__(sig)
        self.out_shape = out_shape

    def elaborate(self, platform):
        m = Module()
        runs = len(self.pattern)
        run = Signal(range(runs))
        count = Signal(range(max(c for _, c in self.pattern)))
        sel = Array([i for i, _ in self.pattern])[run]
        last_in_run = count == Array([c - 1 for _, c in self.pattern])[run]
        ins = [getattr(self, f"i{j}") for j in range(len(self.streamed))]
        o = self.o0
        en = ~o.valid | o.ready
        n_all = len(self.streamed) + len(self.constants)
        valids, payloads = [], []
        const_word = None
        if self.rom:
            shape = Shape.cast(self.out_shape)
            rom = m.submodules.constants = memory.Memory(shape=shape, depth=len(self.rom),
                                                         init=self.rom)
            cpos = Signal(range(len(self.rom)))
            rp = rom.read_port(domain="comb")
            m.d.comb += rp.addr.eq(cpos)
            const_word = rp.data
        for i in range(n_all):
            if i in self.constants:
                valids.append(Const(1, 1))
                payloads.append(const_word)
            else:
                s = ins[self.streamed.index(i)]
                valids.append(s.valid)
                payloads.append(s.payload)
        valid = Array(valids)[sel]
        payload = Array(payloads)[sel]
        for j, s in enumerate(ins):
            m.d.comb += s.ready.eq(en & (sel == self.streamed[j]))
        with m.If(en):
            m.d.sync += o.valid.eq(valid)
            with m.If(valid):
                m.d.sync += o.payload.eq(payload)
                with m.If(last_in_run):
                    m.d.sync += [count.eq(0), run.eq(Mux(run == runs - 1, 0, run + 1))]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
                if self.rom:
                    is_const = Array([Const(int(i in self.constants), 1)
                                      for i, _ in self.pattern])[run]
                    with m.If(is_const):
                        m.d.sync += cpos.eq(Mux(cpos == len(self.rom) - 1, 0, cpos + 1))
        return m


def build(engine: Engine, streams: dict[str, Stream]) -> Concat:
    p = engine.params
    return Concat([payload_shape(streams[s].dtype) for s in engine.inputs],
                  payload_shape(streams[engine.outputs[0]].dtype), p["pattern"],
                  p.get("constants"), p.get("repeat", 1))
