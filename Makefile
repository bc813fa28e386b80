# Two commands set everything up on a fresh Debian machine (Python 3.11, root):
#   make demo   compile -> reference -> RTL simulation -> bitstream -> HTML report
#   make test   the default test suite (CI runs this through .ci/run)
# Both create .venv and install what is missing (pip deps; iverilog via apt).

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
OUT     := out
INTFLOW := $(VENV)/bin/intflow
# the demo: compile -> reference vs onnxruntime -> RTL on Icarus -> bitstream -> report
# (the digits CNN on the iCEBreaker, one multiplier per layer: the folding that fits the UP5K;
# place and route takes 10-30 minutes at 97 % of the logic cells)
DEMO_MODEL := examples/models/digits_cnn_qdq.onnx
DEMO_DATA  := examples/data/digits_cnn_qdq.npz
DEMO_BOARD := icebreaker
DEMO_FOLD  := --fold min

.PHONY: demo test test-slow lint examples system-deps

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV) || { \
	  apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,qonnx]'
	@rm -f $(VENV)/.installed-*; touch $@

system-deps:
	@command -v iverilog >/dev/null 2>&1 || { \
	  echo "installing iverilog (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium for the HTML report's browser test (apt; playwright drives it)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@command -v icetime >/dev/null 2>&1 || { \
	  echo "installing fpga-icestorm for icetime, the DSP-aware iCE40 timing (apt)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fpga-icestorm; }

demo: $(STAMP) system-deps
	$(INTFLOW) compile $(DEMO_MODEL) -o $(OUT)/demo/ir
	$(INTFLOW) run $(DEMO_MODEL) --inputs $(DEMO_DATA) --outputs $(OUT)/demo/reference.npz \
	  --compare
	$(INTFLOW) run $(DEMO_MODEL) --inputs $(DEMO_DATA) --outputs $(OUT)/demo/rtl.npz \
	  --engine icarus --samples 4 --compare
	$(INTFLOW) build $(DEMO_MODEL) --board $(DEMO_BOARD) $(DEMO_FOLD) -o $(OUT)/demo/$(DEMO_BOARD)
	$(INTFLOW) report $(OUT)/demo/$(DEMO_BOARD) --html $(OUT)/demo/report.html
	@echo "demo report: $(OUT)/demo/report.html"

test: $(STAMP) system-deps
	$(PY) -m pytest -n 2 -q

test-slow: $(STAMP) system-deps
	$(PY) -m pip install -q -e '.[dev,qonnx,examples]'  # torch + brevitas for live exports
	$(PY) -m pytest -n 2 -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# regenerate the example models (needs torch==2.13.0, installed on demand)
examples: $(STAMP)
	$(PY) -m pip install -q -e '.[examples]'
	$(PY) examples/make_examples.py
	$(PY) examples/make_transformer_example.py
	$(PY) examples/make_qonnx_example.py

# the benchmark suite (issue 7): every example model x fold x device, built one at a time
# (hours; resumable), then benchmarks/results.json and benchmarks/RESULTS.md. Narrow it with
# BENCH_ARGS, e.g. make bench BENCH_ARGS="--models jet_mlp_qdq --devices ecp5-85f"
.PHONY: bench
bench: $(STAMP) system-deps
	$(PY) benchmarks/run.py $(BENCH_ARGS)
