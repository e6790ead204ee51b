# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-heavy bench-deps bench-ci lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU torch wheel first, by exact version, so nothing can pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,tflite]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/xcompress run recipes/demo.yaml --out runs/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

test-heavy: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m heavy

# Only for benchmarks: RapidOCR's own pipeline as an independent evaluator. --no-deps because it
# requires opencv-python, which would clash with opencv-python-headless.
bench-deps: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m pip install -q --no-deps rapidocr-onnxruntime==1.4.4 six

# The CI benchmark (.github/workflows/bench.yml), the same locally: the PP-OCRv4 system through
# int8 PTQ, scored end to end, then the report gated by benchmarks/baseline.yaml (exit 1 on a
# regression, naming the metric).
bench-ci: $(STAMP)
	$(VENV)/bin/xcompress run recipes/ci-system.yaml --out runs/ci-system
	$(VENV)/bin/xcompress report runs/ci-system --baseline benchmarks/baseline.yaml --out runs/ci-report

lint: $(STAMP)
	$(VENV)/bin/ruff check xcompress tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
