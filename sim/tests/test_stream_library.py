"""The cocotb stream library catches what it is there to catch: a wrong word, and a DUT that
breaks the stream rules under back-pressure."""

from __future__ import annotations

import pytest
from amaranth import Module, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from intflow.sim.runner import CocotbFailure, run_stream_case

pytestmark = pytest.mark.simulator("icarus")  # required: a missing iverilog fails
LAYOUT = data.StructLayout({"v": 8})


class Incrementer(wiring.Component):
    """o = i + 1, one register; with ``break_rules`` the output payload keeps counting
    while it waits for ``ready`` (a stream-rule violation)."""

    def __init__(self, break_rules: bool = False):
        self.break_rules = break_rules
        super().__init__({"i": In(stream.Signature(LAYOUT)), "o": Out(stream.Signature(LAYOUT))})

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        with m.If(en):
            m.d.sync += [self.o.valid.eq(self.i.valid),
                         self.o.payload.v.eq(self.i.payload.v + 1)]
        if self.break_rules:
            with m.Elif(self.o.valid):
                m.d.sync += self.o.payload.v.eq(Mux(self.o.payload.v == 255, 0,
                                                    self.o.payload.v + 1))
        return m


def test_good_unit_passes(tmp_path):
    res = run_stream_case(Incrementer(), range(200), [(v + 1) % 256 for v in range(200)],
                          build_dir=tmp_path, valid_pause=0.3, ready_pause=0.5)
    assert res.words == 200 and res.cycles > 200


def test_wrong_word_fails(tmp_path):
    expected = [(v + 1) % 256 for v in range(50)]
    expected[17] += 1
    with pytest.raises(CocotbFailure):
        run_stream_case(Incrementer(), range(50), expected, build_dir=tmp_path)


def test_rule_breaking_unit_fails(tmp_path):
    with pytest.raises(CocotbFailure, match="payload changed"):
        run_stream_case(Incrementer(break_rules=True), [1] * 50, [2] * 50,
                        build_dir=tmp_path, ready_pause=0.5)
