"""intflow report: table, JSON, Pareto front, errors, and the HTML page in a real browser."""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from intflow.cli import main
from intflow.report import derive, estimate_error, load, pareto_front, render_html

# ECP5-85F (ULX3S) and iCE40 UP5K (iCEBreaker) device sizes; the jet-tagging MLP
# 16-64-32-32-5 has 4,256 MACs.
ECP5_85F = {"LUT": 83640, "FF": 83640, "DSP": 156, "BRAM": 208}
UP5K = {"LUT": 5280, "FF": 5280, "DSP": 8, "BRAM": 30}
JET_LAYERS = ["fc1", "fc2", "fc3", "fc4"]


def _report(model, board, device, avail, used, est, fmax, clock, latency, ii, mults, macs,
            ort_us, requant="ort", **extra) -> dict:
    r = {
        "model": model, "board": board, "device": device, "requant": requant,
        "resources": {k: {"used": used[i], "available": avail[k],
                          **({} if est is None else {"estimate": est[i]})}
                      for i, k in enumerate(avail)},
        "fmax_mhz": {"achieved": fmax, "constraint": clock, "source": "nextpnr"},
        "cycles": {"latency": latency, "initiation_interval": ii, "source": "rtl-simulation"},
        "latency_us": latency / clock,
        "throughput_inferences_per_s": clock * 1e6 / ii,
        "mac_utilization": macs / (mults * ii),
        "onnxruntime_cpu_latency_us": ort_us,
        "bitstream": f"out/{board}/{board}.bit",
        "toolchain": {"yosys": "0.70 (yowasp)", "nextpnr": "0.9 (yowasp)"},
    }
    r.update(extra)
    return r


# #1 fastest jet MLP, #2 smallest jet MLP, #3 a jet MLP both bigger and slower than #1
# (dominated), #4 the digits CNN on the UP5K missing every optional key (no folding, no
# estimates, no layers, onnxruntime not measured) and its 48 MHz constraint
REPORTS = {
    "jet_max": _report(
        "examples/models/jet_mlp_qdq.onnx", "ulx3s-85f", "LFE5U-85F", ECP5_85F,
        used=(9870, 7420, 136, 12), est=(9210, 7900, 136, 12), fmax=118.3, clock=100.0,
        latency=142, ii=36, mults=128, macs=4256, ort_us=18.7,
        fold={"fc1": {"pe": 16, "simd": 4}, "fc2": {"pe": 8, "simd": 8},
              "fc3": {"pe": 8, "simd": 4}, "fc4": {"pe": 5, "simd": 1}},
        layers=[{"name": n, "cycles": c} for n, c in zip(JET_LAYERS, (16, 32, 32, 32))]),
    "jet_min": _report(
        "examples/models/jet_mlp_qdq.onnx", "ulx3s-85f", "LFE5U-85F", ECP5_85F,
        used=(2310, 1980, 12, 6), est=(2150, 2120, 12, 6), fmax=131.2, clock=100.0,
        latency=4300, ii=2048, mults=4, macs=4256, ort_us=18.7,
        folding={"fc1": {"pe": 1, "simd": 1}, "fc2": {"pe": 1, "simd": 1},
                 "fc3": {"pe": 1, "simd": 1}, "fc4": {"pe": 1, "simd": 1}},
        layers={"fc1": 1024, "fc2": 2048, "fc3": 1024, "fc4": 160}),
    "jet_dyadic": _report(
        "examples/models/jet_mlp_qdq.onnx", "ulx3s-85f", "LFE5U-85F", ECP5_85F,
        used=(10400, 8010, 140, 14), est=(8100, 8300, 144, 14), fmax=104.9, clock=100.0,
        latency=290, ii=128, mults=40, macs=4256, ort_us=18.7, requant="dyadic",
        folding="max-multipliers 40"),
    "digits_cnn": _report(
        "examples/models/digits_cnn_qdq.onnx", "icebreaker", "iCE40UP5K", UP5K,
        used=(3950, 2870, 8, 14), est=None, fmax=46.1, clock=48.0,
        latency=9120, ii=4608, mults=8, macs=33600, ort_us=None),
}


def _write_outs(root: Path) -> list[str]:
    dirs = []
    for name, rep in REPORTS.items():
        d = root / name
        d.mkdir()
        (d / "report.json").write_text(json.dumps(rep, indent=1))
        dirs.append(str(d))
    return dirs


@pytest.fixture
def outs(tmp_path) -> list[str]:
    return _write_outs(tmp_path)


@pytest.fixture(scope="module")
def page_path(tmp_path_factory) -> Path:
    """report.html of the four designs, rendered once (matplotlib takes seconds)."""
    root = tmp_path_factory.mktemp("report")
    path = root / "report.html"
    assert main(["report", *_write_outs(root), "--html", str(path)]) == 0
    return path


def _rows(text: str) -> dict[str, list[str]]:
    """Rows of the printed tables keyed by '#N', in table order (resources, performance)."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#") and line.split()[0][1:].isdigit():
            rows.setdefault(line.split()[0], []).append(line)
    return rows


# ---- Pareto front ---------------------------------------------------------------------------

def test_pareto_front_known_points():
    pts = [(10, 5.0), (20, 3.0), (15, 6.0), (30, 3.0), (5, 9.0), (5, 9.0), (40, 1.0)]
    # (15, 6) is beaten by (10, 5); (30, 3) ties (20, 3) on latency with more cost;
    # the two equal (5, 9) points dominate neither each other nor anything else
    assert pareto_front(pts) == [True, True, False, False, True, True, True]
    assert pareto_front([]) == []
    assert pareto_front([(1, 1)]) == [True]
    assert pareto_front([(1, 2), (1, 1)]) == [False, True]  # same cost, faster


def test_estimate_error():
    assert estimate_error(100, 115) == pytest.approx(0.15)
    assert estimate_error(200, 150) == pytest.approx(-0.25)
    assert estimate_error(0, 0) == 0.0
    assert estimate_error(0, 3) is None  # infinite relative error
    assert estimate_error(12, None) is None


def test_pareto_is_per_model_and_uses_latency_us(outs):
    designs = [load(p, i) for i, p in enumerate(outs, 1)]
    derive(designs)
    p = {d.id: d.derived["pareto"] for d in designs}
    assert p[1] == {"LUT": True, "DSP": True}
    assert p[2] == {"LUT": True, "DSP": True}
    assert p[3] == {"LUT": False, "DSP": False}  # more LUT/DSP than #1 and slower
    assert p[4] == {"LUT": True, "DSP": True}  # alone for its model


def test_pareto_is_per_board(outs, tmp_path):
    """A design on another board is compared only with that board's designs: the dominated
    jet MLP (#3) moved to the UP5K is alone there, so on its front."""
    rep = json.loads(Path(outs[2], "report.json").read_text())
    rep["board"] = "icebreaker"
    Path(outs[2], "report.json").write_text(json.dumps(rep))
    designs = [load(p, i) for i, p in enumerate(outs, 1)]
    derive(designs)
    assert designs[2].derived["pareto"] == {"LUT": True, "DSP": True}
    assert designs[0].derived["pareto"] == {"LUT": True, "DSP": True}


# ---- the command ----------------------------------------------------------------------------

def test_table(outs, capsys):
    assert main(["report", *outs]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert list(rows) == ["#1", "#2", "#3", "#4"]
    assert all(len(v) == 2 for v in rows.values())  # one row in each of the two tables
    res, perf = rows["#1"]
    assert "jet_mlp_qdq" in res and "ulx3s-85f" in res and "ort" in res
    assert "16x4 8x8 8x4 5x1" in res
    assert "9,870/83,640 12%" in res and "136/156 87%" in res and "12/208 6%" in res
    assert "118.3/100" in perf and "1.42 (142)" in perf and "2.78 M/s" in perf
    assert "92%" in perf  # 4256 / (128 x 36)
    assert "13.2x (18.7 us)" in perf  # 18.7 us / 1.42 us
    assert "LUT -6.7%" in perf  # worst estimate error: (9210 - 9870) / 9870
    assert perf.rstrip().endswith("LUT DSP")
    assert "1x1 1x1 1x1 1x1" in rows["#2"][0]
    assert "max-multipliers 40" in rows["#3"][0] and "dyadic" in rows["#3"][0]
    assert "LUT -22.1%" in rows["#3"][1] and rows["#3"][1].rstrip().endswith("-")
    res4, perf4 = rows["#4"]
    assert "digits_cnn_qdq" in res4 and "  -  " in res4  # no folding
    assert "46.1/48 MISSED" in perf4 and "190 (9,120)" in perf4
    # no onnxruntime figure and no estimates: dashes, not a crash or a made-up number
    assert perf4.split()[-4:] == ["-", "-", "LUT", "DSP"]


def test_json(outs, tmp_path, capsys):
    path = tmp_path / "all.json"
    assert main(["report", *outs, "--json", str(path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it
    j = json.loads(path.read_text())
    assert [d["id"] for d in j["designs"]] == [1, 2, 3, 4]
    d1, d2, d3, d4 = (d["derived"] for d in j["designs"])
    assert j["designs"][0]["report"] == REPORTS["jet_max"]  # the input, unchanged
    assert j["designs"][0]["source"] == str(Path(outs[0]) / "report.json")
    assert d1["speedup_vs_onnxruntime_cpu"] == pytest.approx(18.7 / 1.42)
    assert d1["utilization"]["DSP"] == pytest.approx(136 / 156)
    assert d1["estimate_error"]["LUT"] == pytest.approx((9210 - 9870) / 9870)
    assert d1["estimate_error"]["DSP"] == 0.0
    assert d1["estimate_error_worst"]["resource"] == "LUT"
    assert d1["estimate_within_goal"] is True
    assert d3["estimate_within_goal"] is False  # LUT -22%, DSP off by 4
    assert d1["timing_met"] is True and d4["timing_met"] is False
    assert d4["speedup_vs_onnxruntime_cpu"] is None and d4["estimate_error_worst"] is None
    assert d4["folding"] == "-" and d4["layers"] == []
    assert d2["layers"] == [{"name": "fc1", "cycles": 1024}, {"name": "fc2", "cycles": 2048},
                            {"name": "fc3", "cycles": 1024}, {"name": "fc4", "cycles": 160}]
    assert j["pareto_front"] == {"jet_mlp_qdq": {"ulx3s-85f": {"LUT": [1, 2], "DSP": [1, 2]}},
                                 "digits_cnn_qdq": {"icebreaker": {"LUT": [4], "DSP": [4]}}}


def test_accepts_report_json_path_and_estimate_json_layers(outs, tmp_path, capsys):
    # intflow build saves the cost model's per-engine rows in OUT/estimate.json
    est = {"layers": [{"engine": "conv1_swg", "kind": "SlidingWindow", "cycles": 700},
                      {"engine": "conv1_mvau", "kind": "MVAU", "cycles": 4608}]}
    (Path(outs[3]) / "estimate.json").write_text(json.dumps(est))
    d = load(str(Path(outs[3]) / "report.json"))
    assert d.layers == [{"name": "conv1_swg", "cycles": 700, "kind": "SlidingWindow"},
                        {"name": "conv1_mvau", "cycles": 4608, "kind": "MVAU"}]
    assert d.layers_source == "estimate.json (cost model)"


def test_build_report_shape_and_top_level_estimate(tmp_path):
    """The extra keys intflow build writes (iCE40 logic cells beside the four resources, the
    Fmax sources, ``fold``, ``cycles.estimate``) and the cost model's own estimate dict at the
    top level instead of an estimate beside each resource."""
    rep = copy.deepcopy(REPORTS["digits_cnn"])
    rep["resources"]["ICESTORM_LC"] = {"used": 4410, "available": 5280}
    rep["fmax_mhz"].update(source="icetime", nextpnr=61.3, icetime=46.1)
    rep["cycles"]["estimate"] = {"latency": 9500, "initiation_interval": 4608}
    rep["fold"] = {"conv1_mvau": {"pe": 4, "simd": 9}, "fc_mvau": {"pe": 1, "simd": 2}}
    rep["estimate"] = {"total": {"LUT": 3600, "FF": 2870, "DSP": 8, "BRAM": 16,
                                 "multipliers": 38},
                       "layers": [{"engine": "conv1_mvau", "kind": "MVAU", "cycles": 4608},
                                  {"engine": "fc_mvau", "kind": "MVAU", "cycles": 3100}]}
    (tmp_path / "report.json").write_text(json.dumps(rep))
    d = load(str(tmp_path))
    derive([d])
    x = d.derived
    assert x["estimate"] == {"LUT": 3600, "FF": 2870, "DSP": 8, "BRAM": 16}
    assert x["estimate_error"]["LUT"] == pytest.approx((3600 - 3950) / 3950)
    assert x["estimate_error_worst"] == {"resource": "BRAM", "error": pytest.approx(2 / 14)}
    assert x["estimate_within_goal"] is False  # BRAM is not exact
    assert x["cycles_estimate_error"] == {"latency": pytest.approx(380 / 9120),
                                          "initiation_interval": 0.0}
    assert x["folding"] == "4x9 1x2"
    assert [r["name"] for r in d.layers] == ["conv1_mvau", "fc_mvau"]
    assert d.layers_source == "report.json (cost model)"
    assert "ICESTORM_LC" not in x["utilization"]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("latency_us"), "missing required key 'latency_us'"),
    (lambda r: r["resources"]["DSP"].pop("available"),
     "missing required key 'resources.DSP.available'"),
    (lambda r: r["cycles"].update(initiation_interval="fast"),
     "'cycles.initiation_interval' should be a non-negative number, got \"fast\""),
    (lambda r: r.pop("onnxruntime_cpu_latency_us"),
     "missing required key 'onnxruntime_cpu_latency_us'"),
    (lambda r: r["resources"]["LUT"].update(estimate=None),
     "'resources.LUT.estimate' should be a non-negative number, got null"),
    (lambda r: r.update(layers=[{"name": "fc1"}]), "'layers[0]' should hold a number"),
])
def test_missing_or_bad_required_key(outs, capsys, mutate, message):
    bad = Path(outs[1]) / "report.json"
    rep = copy.deepcopy(REPORTS["jet_min"])
    mutate(rep)
    bad.write_text(json.dumps(rep))
    assert main(["report", *outs]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"intflow: error: {bad}: ") and message in err, err


def test_unreadable_inputs(tmp_path, outs, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "report.json").write_text('{"model": "m.onnx", ')
    empty = tmp_path / "empty"
    empty.mkdir()
    listy = tmp_path / "list.json"
    listy.write_text("[1, 2]")
    cases = [
        (broken, f"{broken / 'report.json'}: not valid JSON: "),
        (empty, f"{empty}: no report.json in it"),
        (tmp_path / "nowhere", f"{tmp_path / 'nowhere'}: no such file or directory"),
        (listy, f"{listy}: should hold a JSON object"),
    ]
    for path, message in cases:
        assert main(["report", outs[0], str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"intflow: error: {message}"), err
    assert main(["report"]) == 2  # no OUT/ at all: a usage error
    assert main(["report", outs[0], "--json", str(tmp_path / "no" / "dir" / "a.json")]) == 2
    assert "cannot write it" in capsys.readouterr().err


def test_html_is_self_contained(page_path):
    text = page_path.read_text()
    assert "http://" not in text and "https://" not in text and "src=\"/" not in text
    images = text.split('src="data:image/png;base64,')[1:]
    assert len(images) == 4  # latency vs LUT/DSP, estimate vs actual, layers, speed-up
    for img in images:
        png = base64.b64decode(img.split('"', 1)[0])
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_html_escapes_names(tmp_path):
    rep = copy.deepcopy(REPORTS["jet_min"])
    rep["model"] = "models/<img src=x onerror=alert(1)>.onnx"
    rep["board"] = "a&b"
    (tmp_path / "report.json").write_text(json.dumps(rep))
    d = load(str(tmp_path))
    derive([d])
    text = render_html([d], images=[])
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "a&amp;b" in text and "a&b" not in text


# ---- the page in a real browser ---------------------------------------------------------------

def _chromium():
    """Debian's chromium through playwright (TOOLCHAIN.md). Not being able to launch it is a
    failure, not a skip: the page has to be checked by a real browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.fail(f"playwright is not installed ({e}); `pip install -e '.[dev]'`")
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("no `chromium` on PATH: install Debian's chromium (`make system-deps` "
                    "does it with apt)")
    return sync_playwright, exe


def test_html_in_headless_chromium(page_path, tmp_path):
    sync_playwright, exe = _chromium()
    url = page_path.resolve().as_uri()
    errors, requests = [], []
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        except Exception as e:  # noqa: BLE001 - any launch failure is reported the same way
            pytest.fail(f"cannot launch headless chromium ({exe}) through playwright: "
                        f"{str(e).splitlines()[0]}")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("console", lambda m: m.type == "error" and errors.append(
                f"console: {m.text}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            assert errors == []
            # every design, one row each, in the given order
            ids = page.eval_on_selector_all("#designs tbody tr.design",
                                            "rs => rs.map(r => r.dataset.design)")
            assert ids == ["1", "2", "3", "4"]
            first_cells = page.eval_on_selector_all(
                "#designs tbody tr", "rs => rs.map(r => r.cells[1].innerText.trim())")
            assert first_cells == ["jet_mlp_qdq"] * 3 + ["digits_cnn_qdq"]
            # every plot decoded by the browser into a non-empty image
            sizes = page.eval_on_selector_all(
                "img.plot", "is => is.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            assert len(sizes) == 4
            assert all(ok and w > 300 and h > 150 for ok, w, h in sizes), sizes
            # the page's own script runs: sorting by latency puts the fastest design first
            page.click("#designs th:has-text('latency')")
            ids = page.eval_on_selector_all("#designs tbody tr.design",
                                            "rs => rs.map(r => r.dataset.design)")
            assert ids == ["1", "3", "2", "4"]  # 1.42, 2.9, 43 and 190 us
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    # self-contained: nothing fetched but the page itself and its data: images
    assert [u for u in requests if u != url and not u.startswith("data:")] == []
