"""``intflow update-weights``: new weights patched into a built bitstream (boards/bram.py,
boards/update_weights.py). A one-layer QDQ MatMul (64 -> 16, int8 weights) is small enough
for the iCE40 UP5K; permuting its weight rows keeps every proven width, so only the ROM
contents change."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def tiny_model(w: np.ndarray, *, sw: float = 0.004) -> onnx.ModelProto:
    """x (N, 64) float -> Q/DQ (uint8) -> MatMul with DQ(int8 ``w`` (64, 16)) -> Q/DQ."""
    k, n = w.shape
    inits = [numpy_helper.from_array(np.asarray(w, np.int8), "w"),
             numpy_helper.from_array(np.float32(sw), "sw"),
             numpy_helper.from_array(np.int8(0), "zw"),
             numpy_helper.from_array(np.float32(1 / 64), "sx"),
             numpy_helper.from_array(np.uint8(128), "zx"),
             numpy_helper.from_array(np.float32(0.05), "sy"),
             numpy_helper.from_array(np.uint8(128), "zy")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"]),
             helper.make_node("MatMul", ["xd", "wd"], ["yf"]),
             helper.make_node("QuantizeLinear", ["yf", "sy", "zy"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", k])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, ["N", n])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


W0 = np.random.default_rng(0).integers(-128, 128, (64, 16)).astype(np.int8)


def _save(tmp_path, name: str, model: onnx.ModelProto) -> str:
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def _dataflow(path: str, fold: str = "min"):
    import intflow
    return intflow.compile(path, fold=fold).dataflow()


# ---- fast: what may differ, placeholders, the patch files ------------------------------------

def test_compare_dataflows_names_what_differs(tmp_path):
    from intflow.boards.update_weights import compare_dataflows
    base = _dataflow(_save(tmp_path, "a.onnx", tiny_model(W0)))
    # the same weights, permuted along k: every proven width and requant parameter stays
    assert compare_dataflows(base, _dataflow(_save(tmp_path, "b.onnx",
                                                   tiny_model(W0[::-1])))) == []
    small = _dataflow(_save(tmp_path, "c.onnx", tiny_model(W0 // 4)))  # a narrower accumulator
    diffs = compare_dataflows(base, small)
    assert any("acc_dtype (a proven width) int21 -> int19" in d for d in diffs), diffs
    rescaled = _dataflow(_save(tmp_path, "d.onnx", tiny_model(W0, sw=0.003)))
    assert any("requant differs" in d for d in compare_dataflows(base, rescaled))
    other = _dataflow(_save(tmp_path, "e.onnx", tiny_model(W0[:, :8])))
    assert compare_dataflows(base, other)  # 8 outputs instead of 16


def test_logic_roms_cannot_be_patched(tmp_path):
    """A 4x4 layer's 16-byte ROM is logic: a change there is named, not patched."""
    from intflow.boards.update_weights import compare_dataflows
    w = W0[:4, :4]
    a = _dataflow(_save(tmp_path, "a.onnx", tiny_model(w)))
    b = _dataflow(_save(tmp_path, "b.onnx", tiny_model(w[::-1])))
    diffs = compare_dataflows(a, b)
    assert len(diffs) == 1 and "is logic, not block RAM" in diffs[0], diffs


def test_placeholders_unique_and_patch_jobs_apply(tmp_path):
    """Every placeholder slice (256 and 512 words) is non-zero and unique; applying the
    patch jobs in order, as icebram would, turns each placeholder slice into the real one."""
    from intflow.boards import bram
    df = _dataflow(_save(tmp_path, "a.onnx", tiny_model(W0)), fold="min")
    slots = bram.rom_images(df)
    ph = bram.placeholders(slots)
    assert [k[1] for k in ph] == ["weights"]  # the bias ROM (16 words x 21 bits) is logic
    assert bram.placeholders(slots) == ph  # deterministic: the same design every build
    pairs = bram.slot_pairs(slots, ph)
    assert len(pairs) == 8  # 8 weight bits
    for chunk in (256, 512):
        sl = [s for old, _ in pairs for s in bram._slices(old, chunk)]
        assert len(set(sl)) == len(sl) and all(any(s) for s in sl)
    # 10 columns: not a multiple of four, so the first job fills with identity slices
    pairs = pairs[:6] + [(old ^ 1, new) for old, new in pairs[:4]]
    memory = {old.tobytes(): old.tobytes() for old, _ in pairs}  # slot -> contents
    for lines_from, lines_to in bram.patch_jobs(pairs, 256):
        assert len(lines_from) == len(lines_to) and len(lines_from) % 256 == 0
        f = np.array([[int(x, 16) >> c & 1 for c in range(4)] for x in lines_from], np.uint8)
        t = np.array([[int(x, 16) >> c & 1 for c in range(4)] for x in lines_to], np.uint8)
        mapping = {}
        for c in range(4):
            for j in range(0, len(f), 256):
                key = f[j:j + 256, c].tobytes()
                assert key not in mapping  # icebram: "Conflicting from pattern"
                mapping[key] = t[j:j + 256, c].tobytes()
        hits = {k: 0 for k in mapping}
        for slot, now in list(memory.items()):
            new = now
            for j in range(0, len(now), 256):
                if now[j:j + 256] in mapping:
                    hits[now[j:j + 256]] += 1
                    new = new[:j] + mapping[now[j:j + 256]] + new[j + 256:]
            memory[slot] = new
        assert set(hits.values()) == {1}  # icebram: each slice found exactly once
    for old, new in pairs:
        assert memory[old.tobytes()] == new.tobytes()


def _fake_build(tmp_path, model: str, board: str = "ice40-up5k"):
    """OUT/ as intflow build leaves it, minus place and route (the checks come first)."""
    import json

    from intflow.cli import main
    out = tmp_path / "out"
    assert main(["compile", model, "-o", str(out), "--fold", "min"]) == 0
    fold = {e.name: {"pe": 1, "simd": 1} for e in _dataflow(model).engines
            if e.kind == "MVAU"}
    (out / "report.json").write_text(json.dumps({
        "model": model, "board": board, "requant": "ort", "fold": fold,
        "bitstream": str(out / "x.bin")}))
    (out / "build").mkdir()
    (out / "build" / "bram.json").write_text(json.dumps({"patched": board != "tangnano9k",
                                                         "roms": []}))
    return out


def test_cli_mismatched_model_exits_2(tmp_path, capsys):
    from intflow.cli import main
    out = _fake_build(tmp_path, _save(tmp_path, "a.onnx", tiny_model(W0)))
    capsys.readouterr()
    assert main(["update-weights", str(out), _save(tmp_path, "c.onnx",
                                                   tiny_model(W0 // 4))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "c.onnx" in err and "does not match the build" in err
    assert "acc_dtype (a proven width) int21 -> int19" in err
    assert main(["update-weights", str(tmp_path / "nowhere"), str(tmp_path / "a.onnx")]) == 2
    assert "no report.json" in capsys.readouterr().err


def test_cli_gowin_is_not_supported(tmp_path, capsys):
    from intflow.cli import main
    model = _save(tmp_path, "a.onnx", tiny_model(W0))
    out = _fake_build(tmp_path, model, board="tangnano9k")
    capsys.readouterr()
    assert main(["update-weights", str(out), model]) == 2
    err = capsys.readouterr().err
    assert "cannot rewrite block RAM in a gowin bitstream" in err and err.count("\n") == 1


# ---- a real build and update (one place and route), and a fresh build to compare (slow) --------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """iCE40 UP5K: build A, then update-weights to B (A's weights permuted) into B/."""
    from intflow.cli import main
    tmp = tmp_path_factory.mktemp("update")
    mp = pytest.MonkeyPatch()
    mp.setenv("INTFLOW_BUILD_CACHE", str(tmp / "cache"))
    a, b = _save(tmp, "a.onnx", tiny_model(W0)), _save(tmp, "b.onnx", tiny_model(W0[::-1]))
    common = ["--board", "ice40-up5k", "--fold", "min", "--seed", "2"]
    assert main(["build", a, "-o", str(tmp / "A"), *common]) == 0
    assert main(["update-weights", str(tmp / "A"), b, "-o", str(tmp / "B")]) == 0
    yield tmp, b, common
    mp.undo()


def _sha(p) -> str:
    import hashlib
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_update_weights_patches_the_placed_design(built):
    """The update simulates equal to B's reference; icebram run backwards on the patched
    design restores A's placed placeholder design byte for byte: the new weights sit exactly
    where the placeholders were, and nothing else changed."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    tmp, b, _ = built
    rep = json.loads((tmp / "B" / "report.json").read_text())
    assert rep["rtl_matches_reference"] is True and rep["model"] == b
    assert rep["weights_update"]["roms_patched"] == 1
    bit_a, bit_b = tmp / "A" / "ice40-up5k.bin", tmp / "B" / "ice40-up5k.bin"
    assert rep["bitstream_sha256"] == _sha(bit_b) != _sha(bit_a)
    work = tmp / "B" / "build"
    tool = str(Path(sys.executable).parent / "yowasp-icebram")
    with open(work / "top.patched.asc", "rb") as fi:
        back = subprocess.run([tool, "rom_to0.hex", "rom_from0.hex"], cwd=work, stdin=fi,
                              capture_output=True, check=True).stdout
    assert back == (tmp / "A" / "build" / "top.asc").read_bytes()


@pytest.mark.slow
def test_update_weights_equals_a_fresh_build(built, monkeypatch):
    """A fresh, uncached build of B with the same seed gives B's updated bitstream, bit for
    bit."""
    from intflow.cli import main
    tmp, b, common = built
    monkeypatch.setenv("INTFLOW_BUILD_CACHE", str(tmp / "cache"))
    assert main(["build", b, "-o", str(tmp / "F"), "--no-cache", *common]) == 0
    assert _sha(tmp / "B" / "ice40-up5k.bin") == _sha(tmp / "F" / "ice40-up5k.bin")
