"""``intflow build`` end to end on a one-layer model: compile, network RTL inside the UART
wrapper, yosys + nextpnr for the bare iCE40 UP5K, icetime, the RTL simulation's cycles, the
onnxruntime CPU latency, and report.json with the keys users' scripts read.

One place-and-route serves two runs: the clock constraint is set out of reach (500 MHz), so
the first run exits 1 naming the shortfall; the second, with ``--allow-timing-fail``, is the
same design and options and comes from the build cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import qmodels as qm

from intflow.boards import TARGETS
from intflow.cli import main


@pytest.fixture(scope="module")
def one_layer(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    b = qm.GraphBuilder(batch="N")
    x = b.input((1, 8), qm.QParams(0.02, 128, np.uint8))
    w = rng.integers(-127, 128, (8, 4)).astype(np.int8)
    b.output(qm.matmul(b, x, w, 0.01, 0, qm.QParams(0.05, 120, np.uint8)))
    path = tmp_path_factory.mktemp("model") / "one_layer.onnx"
    onnx.save(b.model(), path)
    return path


def test_build_report_and_timing_exit(one_layer, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INTFLOW_BUILD_CACHE", str(tmp_path / "cache"))
    fast = dataclasses.replace(TARGETS["ice40-up5k"], name="up5k-500mhz", clock_mhz=500.0)
    monkeypatch.setitem(TARGETS, fast.name, fast)
    out = tmp_path / "out"
    args = ["build", str(one_layer), "--board", fast.name, "-o", str(out), "--fold", "min",
            "--seed", "7"]

    assert main(args) == 1
    err = capsys.readouterr().err
    assert "misses the 500 MHz clock constraint by" in err and "--allow-timing-fail" in err
    r = json.loads((out / "report.json").read_text())  # written all the same
    assert r["timing_met"] is False

    assert main(args + ["--allow-timing-fail", "--no-sim"]) == 0
    r2 = json.loads((out / "report.json").read_text())
    assert r2["build"]["cached"] is True
    assert r2["bitstream_sha256"] == r["bitstream_sha256"]

    assert r["model"] == str(one_layer) and r["board"] == fast.name
    assert r["device"] == "iCE40UP5K" and r["requant"] == "ort"
    for res in ("LUT", "FF", "DSP", "BRAM"):
        v = r["resources"][res]
        assert set(v) == {"used", "available", "estimate"}
        assert all(isinstance(v[k], int) for k in v)
        assert 0 <= v["used"] <= v["available"]
    assert r["resources"]["DSP"]["available"] == 8 and r["resources"]["DSP"]["used"] >= 1
    f = r["fmax_mhz"]
    assert isinstance(f["achieved"], float) and f["constraint"] == 500.0
    assert 10 < f["achieved"] < 500 and f["source"] == "icetime"
    c = r["cycles"]
    assert isinstance(c["latency"], int) and isinstance(c["initiation_interval"], int)
    assert c["source"].startswith("rtl-simulation") and r["rtl_matches_reference"] is True
    assert 8 <= c["initiation_interval"] <= c["latency"]
    assert r["latency_us"] == pytest.approx(c["latency"] / 500.0)
    assert r["throughput_inferences_per_s"] == pytest.approx(500e6 / c["initiation_interval"])
    assert 0 < r["mac_utilization"] <= 1
    cpu = r["onnxruntime_cpu_latency_us"]
    assert isinstance(cpu, float) and cpu > 0
    bit = Path(r["bitstream"])
    assert bit.is_file() and bit.parent == out
    assert hashlib.sha256(bit.read_bytes()).hexdigest() == r["bitstream_sha256"]
    assert r["toolchain"]["yosys"] and r["toolchain"]["nextpnr"]
    assert r["host"] == {"in_bits": 8, "in_signed": False, "in_length": 8, "out_bits": 8,
                         "out_signed": False, "out_length": 4, "baud": 115200,
                         "clock_hz": 500e6}
    assert (out / "graph.json").is_file()  # the compiled graph beside the bitstream


def test_gowin_network_build_with_a_block_ram_rom(tmp_path, monkeypatch):
    """A network whose weight ROM goes to block RAM, on Gowin (no open patch tool, so no
    placeholders): the build finishes and bram.json says the ROM is not patched. Was: a
    KeyError traceback after place and route."""
    monkeypatch.setenv("INTFLOW_BUILD_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    b = qm.GraphBuilder(batch="N")
    x = b.input((1, 64), qm.QParams(0.02, 128, np.uint8))
    w = rng.integers(-127, 128, (64, 16)).astype(np.int8)  # 1,024 words at fold min
    b.output(qm.matmul(b, x, w, 0.01, 0, qm.QParams(0.05, 120, np.uint8)))
    model = tmp_path / "layer.onnx"
    onnx.save(b.model(), model)
    out = tmp_path / "out"
    assert main(["build", str(model), "--board", "gw1n-9", "-o", str(out), "--fold", "min",
                 "--no-sim"]) == 0
    rec = json.loads((out / "build" / "bram.json").read_text())
    assert rec["patched"] is False
    assert any(r["bram"] for r in rec["roms"])
    assert all(r["placeholder"] is None for r in rec["roms"])
