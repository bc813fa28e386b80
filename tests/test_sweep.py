"""``intflow sweep`` (issue 10): the grid, pruning by the estimate, failed points reported while
the others finish, reuse of finished points, RTL simulation as Dask tasks on a LocalCluster
with two workers, and (slow) one real place and route read back by ``intflow report``."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from intflow.boards import get_target
from intflow.boards.fit import wrapper_cost
from intflow.cli import main
from intflow.compiler.errors import ModelError
from intflow.design import compile as compile_design
from intflow.sweep import (
    Point,
    choose,
    expand,
    fold_options,
    point_key,
    run_sweep,
    source_hash,
    split_axis,
)

ROOT = Path(__file__).resolve().parents[1]
MLP = str(ROOT / "examples" / "models" / "digits_mlp_qdq.onnx")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", memory_limit=0) as c:
        yield c


def _connect(cluster):
    from distributed import Client
    return lambda: Client(cluster)


def test_grid_is_the_cartesian_product_and_random_picks_a_subset():
    pts = expand(["ecp5-85f", "ice40-up5k"], split_axis("min, auto:8,max,min", "fold"),
                 ["ort", "dyadic"])
    assert len(pts) == 2 * 3 * 2
    assert pts[0] == Point("ecp5-85f", "min", "ort")
    assert pts[3] == Point("ecp5-85f", "auto:8", "dyadic")
    assert Point("ecp5-85f", "auto:8", "dyadic").name == "ecp5-85f_auto8_dyadic"
    assert fold_options("auto:8") == ("auto", 8) and fold_options("max") == ("max", None)
    sub = choose(pts, 5, seed=3)
    assert len(sub) == 5 and sub == choose(pts, 5, seed=3) and set(sub) <= set(pts)
    assert sub == [p for p in pts if p in sub]  # grid order kept
    assert choose(pts, 99, seed=0) == pts
    for bad in (lambda: fold_options("auto:0"), lambda: fold_options("fast"),
                lambda: expand(["nope"], ["min"], ["ort"]),
                lambda: expand(["ecp5-85f"], ["min"], ["float"]),
                lambda: split_axis("min,,max", "fold")):
        with pytest.raises(ModelError):
            bad()


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert main(["sweep", str(tmp_path / "none.onnx"), "--board", "ecp5-85f", "-o", out]) == 2
    assert main(["sweep", MLP, "--board", "ecp5-85f", "--fold", "auto:x", "-o", out]) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    assert main(["sweep", MLP, "--board", "ecp5-85f", "-o", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(ln.startswith("intflow: error:") for ln in err)
    assert "none.onnx" in err[0] and "auto:x" in err[1] and "sweep.json" in err[2]


def test_keys_change_with_the_code_the_toolchain_and_the_fold_file(tmp_path):
    fold = tmp_path / "f.json"
    fold.write_text("{}")
    s = {"model": MLP, "board": "ecp5-85f", "fold": str(fold), "requant": "ort",
         "stop_after": "build", "samples": 2, "pnr_seed": 1, "clock": None}
    k = point_key(s, "code", {"yosys": "1"})
    assert k == point_key(dict(s), "code", {"yosys": "1"})
    assert k != point_key(s, "code2", {"yosys": "1"})
    assert k != point_key(s, "code", {"yosys": "2"})
    assert k != point_key({**s, "pnr_seed": 2}, "code", {"yosys": "1"})
    fold.write_text('{"x": 1}')
    assert k != point_key(s, "code", {"yosys": "1"})
    assert len(source_hash()) == 64


def test_cli_sweep_prunes_reports_failures_and_reuses_finished_points(tmp_path, capsys,
                                                                       monkeypatch):
    # other sources may change while the test runs; the key's code part is tested above
    monkeypatch.setattr("intflow.sweep.source_hash", lambda: "fixed")
    out = tmp_path / "sweep"
    missing = tmp_path / "no_such_fold.json"
    argv = ["sweep", MLP, "--board", "ice40-up5k,ecp5-85f", "--fold", f"min,max,{missing}",
            "--stop-after", "estimate", "--workers", "2", "-o", str(out)]
    assert main(argv) == 0
    first = json.loads((out / "sweep.json").read_text())
    by = {r["name"]: r for r in first["points"]}
    assert first["workers"] == 2 and len(by) == 6
    for board in ("ice40-up5k", "ecp5-85f"):
        target = get_target(board)
        for fold in ("min", "max"):
            r = by[f"{board}_{fold}_ort"]
            assert r["worker"].split(":")[-1] != str(os.getpid())  # ran on a worker
            # the task's estimate is that folding's, plus the UART wrapper; it is pruned
            # exactly when that exceeds the device
            est = compile_design(MLP, fold=fold).estimate(target.family)["total"]
            w = wrapper_cost(target.family)
            predicted = {k: est[k] + w[k] for k in w}
            assert r["estimate"]["multipliers"] == est["multipliers"]
            assert r["estimate"]["predicted"] == predicted
            over = [k for k in w if predicted[k] > target.available[k]]
            assert r["status"] == ("pruned" if over else "ok"), r
            if over:
                assert r["reason"].startswith(f"estimate does not fit {target.device}: "
                                              f"{over[0]} {predicted[over[0]]:,}/")
    # 37 multipliers cannot fit the 8 DSPs of the UP5K: at least this one is pruned
    assert by["ice40-up5k_max_ort"]["status"] == "pruned"
    assert by["ecp5-85f_min_ort"]["status"] == "ok"
    for b in ("ice40-up5k", "ecp5-85f"):  # the bad fold file fails alone, naming the file
        r = by[f"{b}_file-no_such_fold_ort"]
        assert r["status"] == "failed" and "no_such_fold.json" in r["reason"]
        assert Path(r["log"]).is_file()
    n_ok = sum(r["status"] == "ok" for r in by.values())
    assert f"{n_ok} ok, {4 - n_ok} pruned, 2 failed of 6" in capsys.readouterr().out

    assert main(argv) == 0  # again: finished points are reused, failed ones retried
    second = {r["name"]: r for r in json.loads((out / "sweep.json").read_text())["points"]}
    text = capsys.readouterr().out
    for name, r in by.items():
        if r["status"] == "failed":
            assert second[name]["status"] == "failed" and not second[name]["cached"]
        else:
            assert second[name]["cached"] and second[name]["worker"] == r["worker"]
            assert f"{name}: {r['status']}" in text and "(cached)" in text
    # nothing left to run (a pruned point, reused): no cluster; none finished -> exit 1
    assert main(["sweep", MLP, "--board", "ice40-up5k", "--fold", "max", "--stop-after",
                 "estimate", "--workers", "1", "-o", str(out)]) == 1
    assert "0 of 1 designs finished" in capsys.readouterr().out


def test_rtl_simulation_tasks_on_a_two_worker_cluster(cluster, tmp_path):
    lines: list[str] = []
    pts = expand(["ecp5-85f"], ["min", "auto:4"], ["ort", "dyadic"])
    res = run_sweep(MLP, pts, tmp_path, _connect(cluster), stop_after="sim", samples=2,
                    code="fixed", log=lines.append)
    assert [r["name"] for r in res] == [p.name for p in pts]
    for r in res:
        assert r["status"] == "ok", r
        assert r["sim"]["rtl_matches_reference"] is True  # every output element equal
        assert r["sim"]["latency"] > 0 and r["sim"]["source"].startswith("rtl-simulation")
    assert sum(ln.startswith("[") for ln in lines) == 4  # a progress line per task
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["workers"] == 2 and [r["name"] for r in doc["points"]] == [p.name for p in pts]
    again = run_sweep(MLP, pts, tmp_path, contextlib.nullcontext, stop_after="sim",
                      code="fixed")
    assert all(r["cached"] for r in again)  # nullcontext: connecting would fail the test


def test_ctrl_c_cancels_the_rest_and_a_rerun_resumes(cluster, tmp_path):
    pts = expand(["ecp5-85f"], ["min", "auto:4"], ["ort", "dyadic"])

    def interrupt(line: str) -> None:  # Ctrl-C arrives while the first result is printed
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(MLP, pts, tmp_path, _connect(cluster), stop_after="sim", code="fixed",
                  log=interrupt)
    doc = json.loads((tmp_path / "sweep.json").read_text())
    status = [r["status"] for r in doc["points"]]
    assert doc["interrupted"] is True and len(status) == 4
    # two workers: when the first result arrives, at least one design has not started
    assert status.count("ok") >= 1 and status.count("cancelled") >= 1
    assert set(status) == {"ok", "cancelled"}
    lines: list[str] = []
    again = run_sweep(MLP, pts, tmp_path, _connect(cluster), stop_after="sim", code="fixed",
                      log=lines.append)
    assert all(r["status"] == "ok" for r in again)  # the cancelled ones ran, the others reused
    assert sum(r["cached"] for r in again) == status.count("ok")


@pytest.mark.slow
def test_one_real_build_and_its_report(cluster, tmp_path, capsys):
    pts = expand(["ecp5-85f"], ["min"], ["dyadic"])
    html = tmp_path / "report.html"
    res = run_sweep(MLP, pts, tmp_path / "s", _connect(cluster), stop_after="build",
                    html=str(html))
    r = res[0]
    assert r["status"] == "ok", r
    assert r["build"]["rtl_matches_reference"] is True and html.is_file()
    report = tmp_path / "s" / r["name"] / "report.json"
    capsys.readouterr()
    assert main(["report", str(report)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("1 design ") and "digits_mlp_qdq" in text and "ecp5-85f" in text
