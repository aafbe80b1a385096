# The few commands a newcomer needs. One virtual environment, .venv, made on first use: demo and faces install the
# program alone (pip install -e .); test and lint add the test extra to the same environment (Ray Serve, ONNX,
# Triton, pytest, ruff), so `make test` after `make demo` installs only what the tests need on top.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint faces clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed
	$(PIP) -e '.[test]'
	touch $@

# The real live pipeline on the bundled portrait, driven by the bundled clip, with the landmark backend (no weights
# needed): writes fomm-live-demo.mp4 and prints the latency summary.
demo: $(BIN)/.installed
	$(BIN)/fomm-live demo

test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed-test
	$(BIN)/python -m ruff check .

# The README's picture of the landmark backend's faces (the bundled photo: at rest, half closed, blink, mouth open, head turn).
faces: $(BIN)/.installed
	$(BIN)/python -m fomm_live.benchmarks.faces --quick --out faces-check --readme fomm_live/benchmarks/faces.png

clean:
	rm -rf $(VENV) .pytest_cache fomm-live-demo.mp4 faces-check
