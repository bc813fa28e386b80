"""``hw/network.py``'s SkidBuffer (the plan's 2-word edges): every word comes out once, in
order, under random valid/ready; at most 2 words held (``w_rdy`` low when full); one word a
cycle when both sides are always ready."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from intflow.hw.network import SkidBuffer


def run(n: int, w_rate: float, r_rate: float, seed: int) -> tuple[list[int], list[int]]:
    dut = SkidBuffer(8)
    rng = np.random.default_rng(seed)
    words = [int(v) for v in rng.integers(0, 256, n)]
    got, cycles = [], []

    async def bench(ctx):
        k, cycle = 0, 0
        while len(got) < n and cycle < 20 * n + 20:
            ctx.set(dut.w_en, int(k < n and rng.random() < w_rate))
            ctx.set(dut.w_data, words[k] if k < n else 0)
            ctx.set(dut.r_en, int(rng.random() < r_rate))
            _, _, w_en, w_rdy, r_en, r_rdy, r_data, level = await ctx.tick().sample(
                dut.w_en, dut.w_rdy, dut.r_en, dut.r_rdy, dut.r_data, dut.level)
            assert level == int(r_rdy) + int(not w_rdy) and level <= 2
            if r_en and r_rdy:
                got.append(r_data)
                cycles.append(cycle)
            if w_en and w_rdy:
                k += 1
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == words
    return got, cycles


def test_skid_buffer_order_under_stalls():
    for seed, (wr, rr) in enumerate([(0.7, 0.7), (0.9, 0.3), (0.3, 0.9), (1.0, 0.5)]):
        run(300, wr, rr, seed)


def test_skid_buffer_full_rate():
    _, cycles = run(100, 1.0, 1.0, 9)
    assert cycles[-1] - cycles[0] == len(cycles) - 1
