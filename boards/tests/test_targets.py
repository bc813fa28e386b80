"""Targets as data: every board's platform, clock and UART; the registry's errors; the
netlist counts the fit check reads. No tool runs here."""

from __future__ import annotations

import re

import pytest

from intflow.boards import TARGETS, get_target
from intflow.boards.build import elaborate, used_from_stat
from intflow.boards.tests.standin import StandIn
from intflow.cli import main
from intflow.compiler.dataflow.estimate import FAMILIES
from intflow.compiler.errors import ModelError

BOARDS = ["icebreaker", "upduino-v3", "ulx3s-25f", "ulx3s-85f", "orangecrab-25f",
          "orangecrab-85f", "tangnano9k"]
PARTS = ["ice40-up5k", "ecp5-85f", "gw1n-9"]


def test_the_issue_targets_are_registered():
    assert set(BOARDS + PARTS) <= set(TARGETS)
    for name, t in TARGETS.items():
        assert t.name == name
        assert t.family in FAMILIES
        assert set(t.available) == {"LUT", "FF", "DSP", "BRAM"}
        assert all(v > 0 for v in t.available.values())
        assert t.board == (name in BOARDS)


@pytest.mark.parametrize("name", BOARDS)
def test_board_platform_has_clock_and_uart(name):
    t = TARGETS[name]
    p = t.make_platform()
    assert p.default_clk_frequency == pytest.approx(t.clock_hz)
    uart = p.lookup("uart", 0)
    assert {s.name for s in uart.ios} >= {"rx", "tx"}


@pytest.mark.parametrize("name", ["icebreaker", "ulx3s-85f", "tangnano9k", "orangecrab-85f",
                                  "ice40-up5k", "gw1n-9"])
def test_elaborate_puts_the_wrapper_on_the_pins(name):
    t = TARGETS[name]
    files, wrapper = elaborate(StandIn(), t)
    assert "top.il" in files and "module \\top" in files["top.il"]
    assert wrapper.divisor == round(t.clock_hz / 115200)
    constraint = {"ice40": "top.pcf", "ecp5": "top.lpf", "gowin": "top.cst"}[t.family]
    if t.board:
        text = files[constraint]
        pins = t.make_platform().lookup("uart", 0)
        for sub in pins.ios:
            if sub.name in ("rx", "tx"):
                port = f"uart_0__{sub.name}__io"
                line = next(ln for ln in text.splitlines() if port in ln and "LOC" in ln.upper()
                            or f"set_io {port}" in ln)
                pin = sub.ios[0].names[0]
                if ":" not in pin:  # a connector pin (io_0:0) is resolved by the platform
                    assert re.search(rf"\b{re.escape(pin)}\b", line), (port, line)
    else:
        assert (constraint in files) == bool(t.part_pins)


def test_aliases_and_case():
    assert get_target("ICEBREAKER").name == "icebreaker"
    assert get_target("tang_nano_9k").name == "tangnano9k"
    assert get_target("ulx3s").name == "ulx3s-85f"


def test_bad_board_names_the_targets():
    with pytest.raises(ModelError) as e:
        get_target("de0-nano")
    msg = str(e.value)
    assert "de0-nano" in msg
    for name in TARGETS:
        assert name in msg


def test_cli_bad_board_is_one_line_exit_2(tmp_path, capsys):
    rc = main(["build", "examples/models/digits_mlp_qdq.onnx", "--board", "nexys",
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "unknown board 'nexys'" in err and "icebreaker" in err
    assert not (tmp_path / "out").exists()


def test_netlist_counts_per_family():
    ice = {"SB_LUT4": 10, "SB_DFF": 3, "SB_DFFE": 4, "SB_MAC16": 2, "SB_RAM40_4K": 1,
           "SB_CARRY": 5}
    assert used_from_stat("ice40", ice) == {"LUT": 10, "FF": 7, "DSP": 2, "BRAM": 1}
    ecp = {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 9, "MULT18X18D": 4, "DP16KD": 2}
    assert used_from_stat("ecp5", ecp) == {"LUT": 16, "FF": 9, "DSP": 4, "BRAM": 2}
    gw = {"LUT2": 3, "LUT4": 5, "ALU": 2, "DFFR": 6, "DFF": 1, "MULT9X9": 3, "SDPB": 2,
          "MUX2_LUT5": 4}
    assert used_from_stat("gowin", gw) == {"LUT": 10, "FF": 7, "DSP": 2, "BRAM": 2}


def test_placement_overflow_names_the_resource():
    from intflow.boards.build import placement_overflow
    t = TARGETS["ice40-up5k"]
    used = {"LUT": 5100, "FF": 5000, "DSP": 2, "BRAM": 1}
    log = ("Info: Placed 4000 cells\nERROR: Unable to place cell 'acc_SB_LUT4_O', no BELs "
           "remaining to implement cell type 'ICESTORM_LC'\n")
    e = placement_overflow(log, t, used)
    assert e is not None and e.overflow == {"LUT": (5281, 5280)}
    assert "ran out of ICESTORM_LC" in str(e) and e.used["LUT"] == 5281
    assert placement_overflow("ERROR: routing failed\n", t, used) is None


@pytest.mark.parametrize("f_out,dividers", [(36, (0, 47, 4, 1)), (24, (0, 63, 5, 1)),
                                            (30, (0, 79, 5, 1))])
def test_ice40_pll_dividers_match_icepll(f_out, dividers):
    """Dividers as icestorm's icepll prints them for a 12 MHz reference."""
    from intflow.boards.pll import ice40_pll
    p = ice40_pll(12.0, f_out)
    assert (p.divr, p.divf, p.divq, p.filter_range) == dividers and p.f_out == f_out


def test_pll_on_every_board_family():
    from intflow.boards.build import BuildError
    files, wrapper = elaborate(StandIn(), TARGETS["icebreaker"], clock_mhz=36.0)
    assert "SB_PLL40_PAD" in files["top.il"] and wrapper.clk_hz == 36e6
    files, wrapper = elaborate(StandIn(), TARGETS["upduino-v3"], clock_mhz=24.0)
    assert "SB_PLL40_CORE" in files["top.il"] and "SB_HFOSC" in files["top.il"]
    files, wrapper = elaborate(StandIn(), TARGETS["ice40-up5k"], clock_mhz=50.0)
    assert "PLL" not in files["top.il"] and wrapper.clk_hz == 50e6  # a part: the constraint
    files, wrapper = elaborate(StandIn(), TARGETS["ulx3s-85f"], clock_mhz=50.0)
    assert "EHXPLLL" in files["top.il"] and wrapper.clk_hz == 50e6
    files, wrapper = elaborate(StandIn(), TARGETS["tangnano9k"], clock_mhz=54.0)
    assert "rPLL" in files["top.il"] and abs(wrapper.clk_hz - 54e6) < 1e6
    with pytest.raises(BuildError, match="outside"):
        elaborate(StandIn(), TARGETS["icebreaker"], clock_mhz=400.0)
