"""The ``intflow`` command line. Exit codes: 0 ok, 1 mismatch or failed build, 2 bad input."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .compiler import REQUANT_MODES
from .compiler.errors import ModelError

DESCRIPTION = """\
intflow compiles a quantized ONNX model (onnxruntime QDQ or QOperator, MatMulInteger /
ConvInteger) into an integer-only dataflow graph, runs a numpy integer reference that is
bit-exact to onnxruntime, and (with the hardware issues) generates RTL and bitstreams.

exit codes: 0 ok, 1 mismatch or failed build, 2 bad input (one line naming file, node, reason)
"""


def _shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    try:
        name, dims = text.split("=", 1)
        return name, tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--input-shape wants NAME=d0,d1,..., got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="quantized ONNX model (.onnx)")
    p.add_argument("--requant", choices=REQUANT_MODES, default="ort",
                   help="ort: bit-exact to onnxruntime's float32 requantisation, emulated in "
                        "integers (default); dyadic: gemmlowp/TFLite fixed-point multiplier "
                        "and shift, cheaper, bit-exact only to itself")
    p.add_argument("--input-shape", type=_shape_arg, action="append", default=[],
                   metavar="NAME=d0,d1,...",
                   help="static shape of an input with dynamic dimensions besides the batch "
                        "axis (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="intflow", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="ONNX -> IntGraph (OUT/graph.json + constants.npz) and "
                       "a per-layer table",
                       description="Compile MODEL to the integer IR in OUT/ (graph.json, "
                       "constants.npz, layers.txt) and print the per-layer table: op, shapes, "
                       "input/weight/accumulator bits (proven from the real weights), MACs, "
                       "requant mode.")
    _common(c)
    c.add_argument("-o", "--out", required=True, help="output directory (written atomically)")

    r = sub.add_parser("run", help="run the model on X.npz, write Y.npz",
                       description="Run MODEL on the arrays in --inputs (an .npz keyed by "
                       "input name, leading axis = sample; or an .npy for one input) and write "
                       "every output, in the dtype onnxruntime returns, to --outputs.")
    _common(r)
    r.add_argument("--inputs", required=True, help="X.npz (or .npy for a one-input model)")
    r.add_argument("--outputs", required=True, help="Y.npz to write")
    r.add_argument("--engine", choices=("reference",), default="reference",
                   help="reference: the numpy integer reference (the RTL engines come with "
                        "the hardware generator)")
    r.add_argument("--compare", action="store_true",
                   help="also run onnxruntime (ORT_ENABLE_ALL, session.qdqisint8allowed=1) "
                        "and report mismatching elements; exit 1 if any differ")
    return ap


def cmd_compile(a) -> int:
    from .design import compile as compile_design
    t0 = time.perf_counter()
    d = compile_design(a.model, requant=a.requant, input_shapes=dict(a.input_shape))
    d.save(a.out)
    print(d.table())
    for n in d.graph.notes:
        print(f"note: {n}")
    print(f"wrote {a.out}/graph.json, constants.npz, layers.txt "
          f"({time.perf_counter() - t0:.2f} s)")
    return 0


def cmd_run(a) -> int:
    from .arrays import load_inputs, save_outputs
    from .design import compile as compile_design
    d = compile_design(a.model, requant=a.requant, input_shapes=dict(a.input_shape))
    inputs = load_inputs(a.inputs, d.graph)
    n = next(iter(inputs.values())).shape[0]
    t0 = time.perf_counter()
    outs = d.run(inputs, engine=a.engine)
    dt = time.perf_counter() - t0
    save_outputs(a.outputs, outs)
    print(f"{a.engine}: {n} samples in {dt:.3f} s -> {a.outputs} "
          f"({', '.join(f'{k} {list(v.shape)} {v.dtype}' for k, v in outs.items())})")
    for note in d.graph.notes:
        print(f"note: {note}")
    if a.compare:
        return _compare(a.model, inputs, outs)
    return 0


def _compare(model: str, inputs, outs) -> int:
    from . import ort
    truth = ort.run(model, inputs)
    bad = 0
    for k, want in truth.items():
        got = outs[k]
        diff = np.flatnonzero(np.asarray(got) != np.asarray(want))
        bad += diff.size
        msg = f"onnxruntime: {k}: {want.size - diff.size}/{want.size} elements equal"
        if diff.size:
            i = int(diff[0])
            msg += (f"; first difference at flat index {i}: intflow {got.ravel()[i]!r}, "
                    f"onnxruntime {want.ravel()[i]!r}")
        print(msg)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    try:
        return {"compile": cmd_compile, "run": cmd_run}[a.command](a)
    except ModelError as e:
        print(f"intflow: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("intflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
