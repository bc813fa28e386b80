"""The CLI contract for bad input (DESIGN.md): one line on stderr naming the file (and the node
and op where there is one) and the reason, exit code 2, no traceback, nothing half-written.

The corpus ``tests/bad_inputs/`` and its table ``expected.json`` come from
``tests/make_bad_inputs.py``: each case is a valid quantized model or input array broken in
one way, the command line to run, the message fragment and the file name the one line must
hold. Every case runs in-process (``intflow.cli.main``); a handful also run as a subprocess,
all of them with ``-m slow``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from amaranth.hdl import UnusedElaboratable

from intflow import cli

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
TABLE: dict[str, dict] = json.loads((CORPUS / "expected.json").read_text())
CORPUS_FILES = sorted(p.name for p in CORPUS.iterdir())

# one per family, run as a real process by default (interpreter start-up costs ~1 s each)
SUBPROCESS_CASES = ["truncated_half", "float_mlp", "unsupported_softmax", "scale_nan",
                    "dynamic_dims_no_flag", "external_data_parent_dir", "absurd_initializer",
                    "npz_pickle", "out_parent_is_a_file", "usage_missing_out"]


def _fmt(text: str, tmp: Path) -> str:
    return text.replace("{corpus}", str(CORPUS)).replace("{tmp}", str(tmp))


def _prepare(case: str, tmp: Path) -> list[str]:
    """The case's argv with its setup (folders and files it expects) made under ``tmp``."""
    for kind, path in TABLE[case].get("setup", []):
        p = Path(_fmt(path, tmp))
        assert p.is_relative_to(tmp), "a setup writes into the corpus"
        if kind == "dir":
            p.mkdir()
        else:
            p.write_text("a user's file\n")
    return [_fmt(a, tmp) for a in TABLE[case]["argv"]]


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a hash of its content (folders: 'dir')."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else
            hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))}


def _check(case: str, rc: int, out: str, err: str, tmp: Path, before: dict[str, str]) -> None:
    e = TABLE[case]
    assert "Traceback" not in out + err, err
    assert rc == 2, (rc, err)
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line on stderr: {err!r}"
    assert e["expected"] in err, err
    assert e["names"] in err, err
    assert out == "", f"stdout should be empty: {out!r}"
    assert _snapshot(tmp) == before, "the failed command created or changed files"
    assert sorted(p.name for p in CORPUS.iterdir()) == CORPUS_FILES, "the corpus changed"


def test_corpus_size():
    assert len(TABLE) >= 50
    models = {a for e in TABLE.values() for a in e["argv"] if a.startswith("{corpus}/")}
    missing = [m for m in models if not Path(_fmt(m, Path("/"))).exists()
               and "no_such" not in m]
    assert not missing, missing


@pytest.mark.parametrize("case", sorted(TABLE))
def test_bad_input_in_process(case, tmp_path, capsys):
    argv = _prepare(case, tmp_path)
    before = _snapshot(tmp_path)
    with warnings.catch_warnings():
        # a warning would be a second line on stderr; amaranth's "created but never used"
        # comes from other tests' objects that the garbage collector reaches during this one
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=UnusedElaboratable)
        rc = cli.main(argv)
    out, err = capsys.readouterr()
    _check(case, rc, out, err, tmp_path, before)


@pytest.mark.parametrize("case", sorted(c for c, e in TABLE.items() if "setup" not in e
                                        and e["argv"][0] in ("compile", "run")))
def test_existing_outputs_left_intact(case, tmp_path, capsys):
    """A previous OUT/ (an intflow output) and Y.npz survive a failed command unchanged."""
    argv = _prepare(case, tmp_path)
    (tmp_path / "OUT").mkdir()
    (tmp_path / "OUT" / "graph.json").write_text('{"previous": "run"}\n')
    (tmp_path / "Y.npz").write_bytes(b"previous outputs")
    before = _snapshot(tmp_path)
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    _check(case, rc, out, err, tmp_path, before)


def _subprocess(case: str, tmp: Path) -> None:
    argv = _prepare(case, tmp)
    before = _snapshot(tmp)
    r = subprocess.run([sys.executable, "-m", "intflow.cli", *argv], capture_output=True,
                       text=True, cwd=tmp, timeout=120)
    _check(case, r.returncode, r.stdout, r.stderr, tmp, before)


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_subprocess(case, tmp_path):
    _subprocess(case, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(set(TABLE) - set(SUBPROCESS_CASES)))
def test_bad_input_subprocess_all(case, tmp_path):
    _subprocess(case, tmp_path)


# ---- the valid starting points: the breakage, not the base model, is what fails ------------
@pytest.mark.parametrize("model,extra", [
    ("valid_mlp", []), ("valid_cnn", []), ("valid_qop_mlp", []), ("valid_two_inputs", []),
    ("valid_dynamic", ["--input-shape", "x=1,1,6,6"]),
    ("valid_cnn", ["--fold", "min", "--max-multipliers", "4"]),
])
def test_valid_models_compile(model, extra, tmp_path, capsys):
    out = tmp_path / "OUT"
    assert cli.main(["compile", str(CORPUS / f"{model}.onnx"), "-o", str(out), *extra]) == 0
    assert (out / "graph.json").is_file()
    assert capsys.readouterr().err == ""
    # a second compile replaces the previous intflow output
    assert cli.main(["compile", str(CORPUS / f"{model}.onnx"), "-o", str(out), *extra]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["OUT"]


def test_valid_run(tmp_path, capsys):
    y = tmp_path / "sub" / "Y.npz"
    assert cli.main(["run", str(CORPUS / "valid_mlp.onnx"), "--inputs",
                     str(CORPUS / "valid_mlp_inputs.npz"), "--outputs", str(y)]) == 0
    assert capsys.readouterr().err == ""
    import numpy as np
    with np.load(y) as z:
        assert z["y"].shape == (5, 4) and z["y"].dtype == np.float32
    assert sorted(p.name for p in y.parent.iterdir()) == ["Y.npz"]
