"""Clocks other than the board's oscillator: the iCE40 PLL (SB_PLL40, simple feedback), the
ECP5 EHXPLLL and the Gowin rPLL.

``ice40_pll(f_in, f_out)`` searches the dividers as icestorm's ``icepll`` does (Lattice
iCE40 sysCLOCK PLL guide, TN1251): ``f_pfd = f_in / (DIVR+1)`` in [10, 133] MHz,
``f_vco = f_pfd * (DIVF+1)`` in [533, 1066] MHz, ``f_out = f_vco / 2^DIVQ`` with DIVQ 1..6; the
loop filter range follows ``f_pfd``. ``PLLClock`` is the board top's clock domain: the PLL on
the oscillator's pin (SB_PLL40_PAD) or on the internal oscillator (SB_PLL40_CORE), its output
held in reset until the PLL locks.

``ecp5_pll(f_in, f_out)`` is Project Trellis' ``ecppll`` (calc_pll_params, in its float32
arithmetic, so the same dividers come out): ``f_pfd = f_in / CLKI_DIV`` in [3.125, 400] MHz,
``f_vco = f_pfd * CLKFB_DIV * CLKOP_DIV`` in [400, 800] MHz, ``f_out = f_vco / CLKOP_DIV``
(feedback from CLKOP), ties to the VCO nearest 600 MHz; CLKOP_CPHASE is its 180-degree shift.
``gowin_pll(f_in, f_out)`` is Apycula's ``gowin_pll`` for the GW1NR-9 C6/I5 (Tang Nano 9K):
``CLKOUT = f_in * (FBDIV_SEL+1) / (IDIV_SEL+1)`` in (3.125, 600) MHz, PFD in [3, 400] MHz,
``VCO = CLKOUT * ODIV_SEL`` in (400, 1200) MHz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class ECP5PLL:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int
    f_in: float  # MHz
    f_out: float  # MHz
    f_vco: float


def ecp5_pll(f_in: float, f_out: float) -> ECP5PLL:
    """EHXPLLL dividers closest to ``f_out`` MHz from ``f_in`` MHz, as ecppll chooses them."""
    f32 = np.float32
    want, best, error = f32(f_out), None, f32(3.402823466e38)
    for idiv in range(1, 129):
        fpfd = f32(f_in) / f32(idiv)
        if fpfd < 3.125 or fpfd > 400:
            continue
        for fb in range(1, 81):
            step = float(fpfd) * fb  # f_vco / CLKOP_DIV: only a few CLKOP_DIV land in range
            lo, hi = max(1, math.floor(400 / step) - 1), min(128, math.ceil(800 / step) + 1)
            for odiv in range(lo, hi + 1):
                fvco = fpfd * f32(fb) * f32(odiv)
                if fvco < 400 or fvco > 800:
                    continue
                fout = fvco / f32(odiv)
                e = abs(fout - want)
                if e < error or (e == error and abs(fvco - 600) < abs(best[4] - 600)):
                    error = e
                    # "shift the primary by 180 degrees" (float32, truncated, as ecppll)
                    ns_phase = f32(1 / (float(fout) * 1e6) * 0.5)
                    best = (idiv, fb, odiv, fout, fvco, int(float(ns_phase) * float(fvco) * 1e6))
    if best is None:
        raise ValueError(f"no ECP5 PLL setting from {f_in:g} MHz")
    idiv, fb, odiv, fout, fvco, cphase = best
    if not 10 <= fout <= 400:
        raise ValueError(f"{f_out:g} MHz is outside the ECP5 PLL's 10-400 MHz output")
    return ECP5PLL(idiv, fb, odiv, cphase, f_in, float(fout), float(fvco))


@dataclass(frozen=True)
class GowinPLL:
    idiv_sel: int
    fbdiv_sel: int
    odiv_sel: int
    f_in: float  # MHz
    f_out: float  # MHz


GOWIN_ODIV = (2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128)


def gowin_pll(f_in: float, f_out: float) -> GowinPLL:
    """rPLL settings closest to ``f_out`` MHz from ``f_in`` MHz (GW1NR-9 C6/I5 limits), the
    first best in Apycula's gowin_pll search order."""
    best, min_diff = None, f_in
    for idiv in range(64):
        for fb in range(64):
            for odiv in GOWIN_ODIV:
                pfd = f_in / (idiv + 1)
                if not 3 <= pfd <= 400:
                    continue
                clkout = f_in * (fb + 1) / (idiv + 1)
                if not 3.125 < clkout < 600:
                    continue
                vco = (f_in * (fb + 1) * odiv) / (idiv + 1)
                if not 400 < vco < 1200:
                    continue
                diff = abs(f_out - clkout)
                if diff < min_diff:
                    min_diff, best = diff, (idiv, fb, odiv, clkout)
    if best is None:
        raise ValueError(f"no Gowin rPLL setting from {f_in:g} MHz to {f_out:g} MHz (output "
                         f"3.125-600 MHz)")
    return GowinPLL(best[0], best[1], best[2], f_in, best[3])


def make_pll(family: str, f_in: float, f_out: float) -> ICE40PLL | ECP5PLL | GowinPLL:
    """The PLL settings of ``family`` (ValueError when none reaches ``f_out``)."""
    return {"ice40": ice40_pll, "ecp5": ecp5_pll, "gowin": gowin_pll}[family](f_in, f_out)


class PLLClock(Elaboratable):
    """Drives the ``sync`` domain (defined by the parent) at ``pll.f_out`` from the platform's
    default clock."""

    def __init__(self, pll: ICE40PLL | ECP5PLL | GowinPLL) -> None:
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        p = self.pll
        lock = Signal()
        if not isinstance(p, ICE40PLL):
            clk_in = platform.request(platform.default_clk, dir="i").i  # the oscillator
            if isinstance(p, ECP5PLL):
                m.submodules.pll = Instance(
                    "EHXPLLL", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                    p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                    p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                    p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                    p_CLKI_DIV=p.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
                    p_CLKOP_CPHASE=p.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                    p_CLKFB_DIV=p.clkfb_div, a_FREQUENCY_PIN_CLKI=f"{p.f_in:g}",
                    a_FREQUENCY_PIN_CLKOP=f"{p.f_out:g}", a_ICP_CURRENT="12",
                    a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                    i_RST=0, i_STDBY=0, i_CLKI=clk_in, o_CLKOP=ClockSignal("sync"),
                    i_CLKFB=ClockSignal("sync"), i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1,
                    i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                    o_LOCK=lock)
            else:
                m.submodules.pll = Instance(
                    "rPLL", p_FCLKIN=f"{p.f_in:g}", p_IDIV_SEL=p.idiv_sel,
                    p_FBDIV_SEL=p.fbdiv_sel, p_ODIV_SEL=p.odiv_sel, i_CLKIN=clk_in,
                    i_CLKFB=0, i_RESET=0, i_RESET_P=0, i_FBDSEL=0, i_IDSEL=0, i_ODSEL=0,
                    i_PSDA=0, i_DUTYDA=0, i_FDLY=0, o_CLKOUT=ClockSignal("sync"), o_LOCK=lock)
            m.submodules.reset = ResetSynchronizer(~lock, domain="sync")
            return m
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
