# The few commands a newcomer needs. Each target creates the virtual environment .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
GOLDEN := ../shared/golden/fomm/tiny
DEMO_DIR := out/demo

.PHONY: demo test lint clean

$(BIN)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# Until the bundled no-weights demo exists, the demo animates the small random-weight model of the golden data
# (../shared/golden/fomm/tiny): it shows the pipeline working end to end, not a meaningful face.
demo: $(BIN)/.installed
	@test -d $(GOLDEN) || { echo "make demo needs $(GOLDEN) (the golden data beside this checkout)"; exit 1; }
	@echo "Demo: animating the tiny random-weight golden model (not a trained face model) -> $(DEMO_DIR).mp4"
	mkdir -p $(DEMO_DIR)-driving
	cp $(GOLDEN)/driving_*.png $(DEMO_DIR)-driving/
	$(BIN)/fomm-live animate --source $(GOLDEN)/source.png --driving $(DEMO_DIR)-driving \
		--checkpoint $(GOLDEN)/checkpoint.pth.tar --config $(GOLDEN)/config.yaml --out $(DEMO_DIR).mp4

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/python -m ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache
