# The few commands a newcomer needs. Each target creates the virtual environment .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint faces clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The real live pipeline on the bundled portrait, driven by the bundled clip, with the landmark backend (no weights
# needed): writes fomm-live-demo.mp4 and prints the latency summary.
demo: $(BIN)/.installed
	$(BIN)/fomm-live demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/python -m ruff check .

# The README's picture of the landmark backend's faces (the bundled photo: at rest, half closed, blink, mouth open, head turn).
faces: $(BIN)/.installed
	$(BIN)/python -m fomm_live.benchmarks.faces --quick --out faces-check --readme fomm_live/benchmarks/faces.png

clean:
	rm -rf $(VENV) .pytest_cache fomm-live-demo.mp4 faces-check
