"""The one-call Python API: ``intflow.compile(path)`` returns a ``Design``.

>>> d = intflow.compile("examples/models/digits_mlp_qdq.onnx")
>>> y = d.run({"pixels": x})               # same arrays onnxruntime returns
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .compiler import IntGraph, compile_model, reference
from .compiler.errors import ModelError
from .table import format_table

ENGINES = ("reference", "icarus", "verilator")  # numpy reference; the RTL under cocotb


@dataclass
class Design:
    model_path: str
    graph: IntGraph
    fold: str | None = None  # None/"min", "max", "auto" or a JSON file (see fold.apply_fold)
    max_multipliers: int | None = None
    target_ii: int | None = None
    no_dsp: bool = False  # LUT multipliers and DSP-free requants (dataflow/multipliers.py)
    # cycles of the last RTL run (engine icarus/verilator): latency, II, stall, engine
    last_cycles: dict | None = field(default=None, repr=False, compare=False)
    # the last RTL run with taps: (differing edges, first in dataflow order; edges compared)
    last_taps: tuple[list, int] | None = field(default=None, repr=False, compare=False)

    def dataflow(self):
        """The folded streaming plan the hardware is generated from."""
        from .compiler.dataflow.fold import apply_fold
        from .compiler.dataflow.plan import PlanError, plan
        try:
            df = plan(self.graph)
            apply_fold(df, self.fold, max_multipliers=self.max_multipliers,
                       target_ii=self.target_ii)
            if self.no_dsp:
                from .compiler.dataflow.multipliers import apply_no_dsp
                apply_no_dsp(df)
        except (PlanError, ValueError) as e:
            raise ModelError(str(e), file=self.model_path) from None
        return df

    def estimate(self, family: str = "ice40") -> dict:
        from .compiler.dataflow.estimate import estimate
        return estimate(self.dataflow(), family)

    def run(self, inputs: Mapping[str, np.ndarray], engine: str = "reference",
            stall: float = 0.3, seed: int = 0, taps: bool = False) -> dict[str, np.ndarray]:
        """Outputs for ``inputs`` (leading axis = sample), keyed by ONNX output name.

        ``engine``: ``reference`` (numpy), or ``icarus``/``verilator``: the generated RTL
        under cocotb, input gaps and output back-pressure each cycle with probability
        ``stall``; its cycle counts are left in ``last_cycles``. ``taps`` (RTL engines):
        record every layer's output stream and hold it to the reference; the result is left
        in ``last_taps`` (``sim.network.format_taps(*d.last_taps)`` prints it)."""
        if engine not in ENGINES:
            raise ModelError(f"engine {engine!r} is not available (engines: "
                             f"{', '.join(ENGINES)})")
        if engine == "reference":
            if taps:
                raise ModelError("taps record the RTL's streams: use engine icarus or "
                                 "verilator")
            return reference.run(self.graph, inputs)
        return self._run_rtl(inputs, engine, stall, seed, taps)

    def _run_rtl(self, inputs, engine: str, stall: float, seed: int,
                 taps: bool = False) -> dict[str, np.ndarray]:
        from .sim.network import SimulationError, compare_taps, run_graph
        if not 0 <= stall < 1:
            raise ModelError(f"--stall {stall}: a probability in [0, 1) is needed")
        df = self.dataflow()
        feeds = reference.to_codes(self.graph, inputs)
        try:
            env, res = run_graph(df, self.graph, feeds, engine=engine, stall=stall, seed=seed,
                                 taps=taps)
        except SimulationError as e:
            raise ModelError(f"RTL simulation failed: {e}", file=self.model_path) from None
        except ValueError as e:  # a plan the network top cannot build
            raise ModelError(str(e), file=self.model_path) from None
        self.last_taps = compare_taps(df, self.graph, feeds, res) if taps else None
        lat = [int(v) for v in res.latency if v >= 0]
        self.last_cycles = {"engine": engine, "stall": stall, "samples": len(lat),
                            "latency": min(lat) if lat else None,
                            "initiation_interval": res.initiation_interval,
                            "cycles": res.cycles}
        shapes = {o.onnx_name: reference.sample_shape(self.graph.tensors[o.tensor].shape)
                  for o in self.graph.outputs}
        return reference.from_codes(self.graph, env, shapes)

    def table(self) -> str:
        return format_table(self.graph)

    def _save_hardware(self, out: Path) -> None:
        import json

        from .compiler.dataflow.estimate import format_estimate
        df = self.dataflow()
        from .compiler.dataflow.estimate import estimate
        est = estimate(df)
        (out / "estimate.json").write_text(json.dumps(est, indent=1, default=str) + "\n")
        (out / "estimate.txt").write_text(format_estimate(est) + "\n")
        from .hw.network import write_rtl
        try:
            write_rtl(df, out / "rtl", self.graph)
        except ValueError as e:  # e.g. a graph input that is also its output
            self.graph.notes.append(f"no RTL written: {e}")

    def save(self, out_dir: str | os.PathLike, hardware: bool = False) -> None:
        """Write OUT/graph.json, OUT/constants.npz and OUT/layers.txt (and with ``hardware``
        OUT/estimate.json), atomically: the directory appears complete or not at all."""
        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            self.graph.save(tmp)
            (tmp / "layers.txt").write_text(self.table() + "\n")
            if hardware:
                self._save_hardware(tmp)
            if out.exists():
                old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
                os.replace(out, old / "x")
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def compile(path: str | os.PathLike, *, requant: str = "ort",  # noqa: A001 (the API's name)
            input_shapes: Mapping[str, tuple[int, ...]] | None = None,
            fold: str | None = None, max_multipliers: int | None = None,
            target_ii: int | None = None, no_dsp: bool = False) -> Design:
    """Compile a quantized ONNX model; raises ModelError on bad input."""
    g = compile_model(str(path), requant=requant, input_shapes=dict(input_shapes or {}))
    return Design(str(path), g, fold, max_multipliers, target_ii, no_dsp)
