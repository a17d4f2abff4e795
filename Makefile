# One-command set-up: every target creates .venv and installs gsgroup (CPU torch pinned) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo lint test test-all bench clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,sam,viewer]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gsgroup demo --out demo_out

# The viewer's browser test drives Debian's chromium (never a downloaded browser); without it the test skips.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: the browser test will be skipped"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: $(STAMP) chromium lint
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

bench: $(STAMP)
	$(BIN)/python benchmarks/rasterizer.py
	$(BIN)/python benchmarks/train.py

clean:
	rm -rf demo_out .pytest_cache
