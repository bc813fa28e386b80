"""Clocks faster than the board's oscillator: the iCE40 PLL (SB_PLL40, simple feedback).

``ice40_pll(f_in, f_out)`` searches the dividers as icestorm's ``icepll`` does (Lattice
iCE40 sysCLOCK PLL guide, TN1251): ``f_pfd = f_in / (DIVR+1)`` in [10, 133] MHz,
``f_vco = f_pfd * (DIVF+1)`` in [533, 1066] MHz, ``f_out = f_vco / 2^DIVQ`` with DIVQ 1..6; the
loop filter range follows ``f_pfd``. ``PLLClock`` is the board top's clock domain: the PLL on
the oscillator's pin (SB_PLL40_PAD) or on the internal oscillator (SB_PLL40_CORE), its output
held in reset until the PLL locks.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib.cdc import ResetSynchronizer


@dataclass(frozen=True)
class ICE40PLL:
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_in: float  # MHz
    f_out: float  # MHz, what the dividers give


def ice40_pll(f_in: float, f_out: float) -> ICE40PLL:
    """The dividers closest to ``f_out`` MHz from ``f_in`` MHz (the first best, as icepll)."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                got = f_vco / 2 ** divq
                if best is None or abs(got - f_out) < abs(best[3] - f_out):
                    best = (divr, divf, divq, got, f_pfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting from {f_in:g} MHz")
    divr, divf, divq, got, f_pfd = best
    filter_range = next(i for i, hi in enumerate((17, 26, 44, 66, 101, 1e9), start=1)
                        if f_pfd < hi)
    if not 16 <= got <= 275:
        raise ValueError(f"{f_out:g} MHz is outside the iCE40 PLL's 16-275 MHz output")
    return ICE40PLL(divr, divf, divq, filter_range, f_in, got)


class PLLClock(Elaboratable):
    """Drives the ``sync`` domain (defined by the parent) at ``pll.f_out`` from the platform's
    default clock."""

    def __init__(self, pll: ICE40PLL) -> None:
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        p = self.pll
        lock = Signal()
        params = dict(p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf, p_DIVQ=p.divq,
                      p_FILTER_RANGE=p.filter_range, i_RESETB=1, i_BYPASS=0,
                      o_PLLOUTGLOBAL=ClockSignal("sync"), o_LOCK=lock)
        if platform.default_clk == "SB_HFOSC":
            osc = Signal()
            m.submodules.hfosc = Instance("SB_HFOSC", i_CLKHFEN=1, i_CLKHFPU=1,
                                          p_CLKHF_DIV=f"0b{platform.hfosc_div:02b}",
                                          o_CLKHF=osc)
            m.submodules.pll = Instance("SB_PLL40_CORE", i_REFERENCECLK=osc, **params)
        else:
            pin = platform.request(platform.default_clk, dir="-")
            m.submodules.pll = Instance("SB_PLL40_PAD", i_PACKAGEPIN=pin.io, **params)
        m.submodules.reset = ResetSynchronizer(~lock, domain="sync")
        return m
