"""benchmarks/run.py without builds: the matrix, the resume logic, the goals and RESULTS.md
from a synthetic results.json (the planner and the builder are replaced by fakes)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path / "bench")
    return mod


def _report(achieved=80.0, constraint=100.0, latency=200, ii=64, dsp=84, lut=2000,
            macs=4512, mults=68) -> dict:
    res = {"LUT": {"used": lut, "available": 83640}, "FF": {"used": 5400, "available": 83640},
           "DSP": {"used": dsp, "available": 156}, "BRAM": {"used": 27, "available": 208}}
    return {"resources": res,
            "fmax_mhz": {"achieved": achieved, "constraint": constraint, "source": "nextpnr"},
            "timing_met": achieved >= constraint,
            "cycles": {"latency": latency, "initiation_interval": ii,
                       "source": "rtl-simulation (verilator)"},
            "macs": macs, "multipliers": mults, "mac_utilization": macs / (mults * ii),
            "fold": {}, "rtl_matches_reference": True, "toolchain": {}}


def _plan(digest="h1", fits=True, reason=None) -> dict:
    return {"fits": fits, "reason": reason, "fold_args": ["--fold", "min"],
            "design_hash": digest if fits else None, "multipliers": 68,
            "predicted": {"LUT": 2238, "FF": 5454, "DSP": 84, "BRAM": 27},
            "ii_bound": {"engine": "mvau0", "kind": "MVAU", "cycles": 64}}


def _results(bench, ort=None) -> dict:
    machine = {"cpu": "test cpu", "cores": 2, "flags": ["avx2"], "platform": "linux",
               "python": "3.11", "onnxruntime": "1.x"}
    return {"suite": "t", "command": "benchmarks/run.py --models jet_mlp_qdq",
            "date": "2026-01-01 00:00 UTC", "machine": machine, "requant": "ort", "seed": 1,
            "devices": dict(bench.DEVICES), "folds": dict(bench.FOLDS),
            "onnxruntime": {"threads": 1, "latency_us": ort or {}},
            "not_measured": list(bench.NOT_MEASURED), "points": []}


def test_matrix_expansion(bench):
    points = bench.expand()
    assert len(points) == len(bench.MODELS) * len(bench.DEVICES) * len(bench.FOLDS) == 24
    assert len({p.key for p in points}) == 24
    sub = bench.expand(["jet_mlp_qdq"], ["ecp5-85f"], ["min"])
    assert [p.key for p in sub] == ["jet_mlp_qdq/ecp5-85f/min"]
    assert [p.fold for p in bench.expand(["digits_cnn_qdq"], ["ice40-up5k"])] == ["min", "max"]
    with pytest.raises(ValueError, match="unknown model mnist1d"):
        bench.expand(["mnist1d"])
    with pytest.raises(ValueError, match="unknown device"):
        bench.expand(None, ["xc7a35t"])


def test_resume_skips_only_the_same_design(bench):
    points = bench.expand(["jet_mlp_qdq"], ["ecp5-85f"])
    hashes = {p.key: "h-" + p.fold for p in points}
    built, saves = [], []

    def planner(p, requant):
        return _plan(hashes[p.key])

    def builder(p, info, requant, timeout):
        built.append(p.key)
        p.out().mkdir(parents=True, exist_ok=True)
        (p.out() / "report.json").write_text(json.dumps(_report()))
        return "ok", None

    def run():
        built.clear()
        saves.clear()
        r = bench.run_suite(points, _results(bench, {"jet_mlp_qdq": 50.0}), planner=planner,
                            builder=builder, log=lambda s: None,
                            save=lambda r: saves.append(json.loads(json.dumps(r))))
        return r

    r = run()
    assert built == [p.key for p in points]
    assert [len(s["points"]) for s in saves] == [1, 2]  # results written after every point
    assert [pt["resumed"] for pt in r["points"]] == [False, False]

    r = run()  # nothing changed: nothing is rebuilt, the reports are read again
    assert built == []
    assert [pt["resumed"] for pt in r["points"]] == [True, True]
    assert r["points"][0]["figures"]["latency_cycles"] == 200

    hashes["jet_mlp_qdq/ecp5-85f/max"] = "changed"  # e.g. the hardware changed
    run()
    assert built == ["jet_mlp_qdq/ecp5-85f/max"]

    (points[0].out() / "report.json").unlink()  # an interrupted build: no report
    run()
    assert built == ["jet_mlp_qdq/ecp5-85f/min"]


def test_the_same_design_twice_is_built_once(bench):
    """UP5K 'max' is often 'min' (the DSPs run out): one build, the second point a copy."""
    points = bench.expand(["jet_mlp_qdq"], ["ice40-up5k"])
    built = []

    def builder(p, info, requant, timeout):
        built.append(p.key)
        p.out().mkdir(parents=True, exist_ok=True)
        (p.out() / "report.json").write_text(json.dumps(_report(latency=300)))
        return "ok", None

    r = bench.run_suite(points, _results(bench, {"jet_mlp_qdq": 50.0}),
                        planner=lambda p, rq: _plan("same"), builder=builder,
                        log=lambda s: None, save=lambda r: None)
    assert built == ["jet_mlp_qdq/ice40-up5k/min"]
    assert [pt["status"] for pt in r["points"]] == ["ok", "ok"]
    assert r["points"][1]["plan"]["same_design_as"] == "jet_mlp_qdq/ice40-up5k/min"
    assert r["points"][1]["figures"]["latency_cycles"] == 300
    assert bench.already_built(points[1].out(), "same")  # and a rerun resumes both


def test_a_failed_build_is_recorded_and_not_resumed(bench):
    p = bench.expand(["jet_mlp_qdq"], ["ecp5-85f"], ["min"])

    def builder(q, info, requant, timeout):
        return "failed", "place and route failed (exit 1)"

    r = bench.run_suite(p, _results(bench), planner=lambda q, rq: _plan(), builder=builder,
                        log=lambda s: None, save=lambda r: None)
    assert r["points"][0]["status"] == "failed"
    assert not bench.already_built(p[0].out(), "h1")


def test_does_not_fit_is_not_built(bench):
    points = bench.expand(["jet_mlp_qdq"], ["ice40-up5k"], ["min"])

    def builder(*a):
        raise AssertionError("a point that does not fit was built")

    r = bench.run_suite(points, _results(bench),
                        planner=lambda p, rq: _plan(fits=False,
                                                    reason="does not fit: DSP 20/8"),
                        builder=builder, log=lambda s: None, save=lambda r: None)
    assert r["points"][0]["status"] == "does not fit"
    assert r["points"][0]["reason"] == "does not fit: DSP 20/8"


def _point(bench, model, device, fold, report, ort_us, plan=None):
    pt = {"model": model, "device": device, "fold": fold, "status": "ok", "reason": None,
          "resumed": False, "out": "x", "design_hash": "h", "plan": plan or _plan(),
          "report": report}
    pt["figures"] = bench.figures(report, ort_us)
    return pt


def test_goals_measured_pass_miss_and_by_how_much(bench):
    # 80 MHz against the 100 MHz goal: latency counted at 80 MHz; 200 cycles = 2.5 us
    pt = _point(bench, "jet_mlp_qdq", "ecp5-85f", "max", _report(), 50.0)
    assert pt["figures"]["clock_mhz"] == 80.0
    assert pt["figures"]["latency_us"] == pytest.approx(2.5)
    assert pt["figures"]["speedup_vs_onnxruntime"] == pytest.approx(20.0)
    goals = {g["goal"].split(" (")[0]: g for g in bench.evaluate(pt)}
    assert goals["Fmax"]["pass"] is False
    assert goals["Fmax"]["detail"] == "missed by 20.0 MHz (20% below the goal)"
    assert goals["MAC utilisation"]["pass"] is True  # 4512 / (68 * 64) = 103.7 %
    # 5000 cycles at 80 MHz = 62.5 us against onnxruntime's 12.5 us: 0.2x
    slow = _point(bench, "jet_mlp_qdq", "ecp5-85f", "min",
                  _report(latency=5000, ii=2048, mults=4, macs=4512), 12.5)
    g = {x["goal"].split(" (")[0]: x for x in bench.evaluate(slow)}
    assert g["latency vs onnxruntime"]["detail"] == "missed by a factor of 50.0 (0.20x against 10x)"
    assert g["MAC utilisation"]["detail"] == "missed by 34.9 percentage points"  # 55.1 %
    assert goals["latency vs onnxruntime"]["pass"] is True
    assert goals["LUT estimate"]["pass"] is True  # 2238 vs 2000: +11.9 %, within 15 %
    assert goals["DSP estimate"]["pass"] is True
    assert "MACs per cycle per DSP" not in goals  # UP5K only

    fast = _point(bench, "jet_mlp_qdq", "ecp5-85f", "max", _report(achieved=150.0), 50.0)
    assert fast["figures"]["clock_mhz"] == 100.0  # never above the constraint it was built for

    up = _point(bench, "digits_mlp_qdq", "ice40-up5k", "min",
                _report(achieved=55.0, constraint=50.0, dsp=8, ii=2048, macs=2560, mults=2),
                30.0)
    g = {x["goal"].split(" (")[0]: x for x in bench.evaluate(up)}
    assert g["Fmax"]["pass"] is True
    assert g["MACs per cycle per DSP"]["measured"] == f"{2560 / 2048 / 8:.2f}"
    assert g["MACs per cycle per DSP"]["pass"] is False
    assert g["DSP estimate"]["pass"] is False  # predicted 84, used 8: exact is the goal
    assert "latency vs onnxruntime" not in g  # the speedup goals are for ECP5-85F


def test_estimate_tolerance_is_15_percent(bench):
    ok = _point(bench, "jet_mlp_qdq", "ecp5-85f", "min", _report(lut=2238 * 100 // 114), 1.0)
    bad = _point(bench, "jet_mlp_qdq", "ecp5-85f", "min", _report(lut=2238 * 100 // 116), 1.0)
    lut = [next(g for g in bench.evaluate(p) if g["goal"].startswith("LUT")) for p in (ok, bad)]
    assert [x["pass"] for x in lut] == [True, False]


def test_results_md_from_synthetic_results(bench):
    r = _results(bench, {"jet_mlp_qdq": 50.0, "digits_cnn_qdq": 400.0})
    r["points"] = [
        _point(bench, "jet_mlp_qdq", "ecp5-85f", "max", _report(), 50.0,
               plan=dict(_plan(), equals_unconstrained_max=True)),
        {"model": "jet_mlp_qdq", "device": "ice40-up5k", "fold": "min",
         "status": "does not fit", "reason": "does not fit: DSP 20/8", "resumed": False,
         "out": "x", "design_hash": None, "plan": {"multipliers": 4}},
    ]
    md = bench.render(r)
    assert "## ecp5-85f" in md and "## ice40-up5k" in md
    assert "Command: `benchmarks/run.py --models jet_mlp_qdq`" in md
    assert "test cpu, 2 cores, flags avx2" in md
    assert "jet_mlp_qdq 50.0 us" in md  # onnxruntime measured in the same run
    assert "| jet_mlp_qdq | min | does not fit: DSP 20/8 |" in md
    assert "- jet_mlp_qdq/ice40-up5k/min: does not fit: DSP 20/8" in md
    assert "| jet_mlp_qdq/ecp5-85f/max | Fmax (nextpnr) | >= 100.0 MHz | 80.0 MHz | **miss**: " \
           "missed by 20.0 MHz (20% below the goal) |" in md
    assert "20.0x" in md  # the speedup column
    assert "| jet_mlp_qdq | max (= --fold max) | ok |" in md
    assert "## Misses: by how much and why" in md
    assert "## Not measured" not in md  # every model of the issue is in the matrix
    assert "arXiv:1612.07119" in md  # context figures carry their source
    # the whole page is generated from results.json alone: a JSON round trip renders the same
    assert bench.render(json.loads(json.dumps(r))) == md
    r["not_measured"] = ["a model without an example"]  # what is not measured is said
    assert "## Not measured\n\n- a model without an example\n" in bench.render(r)
