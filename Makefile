# seedtree: `make demo` and `make test` work on a fresh machine (they create .venv when missing).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint browser bench-decode clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[models,dev,server,ray]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/seedtree models prepare
	$(BIN)/seedtree demo

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

# The report test drives Debian's chromium (headless) through Playwright.
browser:
	@command -v chromium >/dev/null || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Everything, the real-model tests (marked real_model) included.
test: lint browser
	$(BIN)/python -m pytest

# Only the tiny-model tests (seconds).
test-fast: lint browser
	$(BIN)/python -m pytest -m "not real_model"

bench-decode: $(STAMP)
	$(BIN)/seedtree bench-decode --dtype bfloat16 --out bench/decode_bf16.json
	$(BIN)/seedtree bench-decode --dtype float32 --out bench/decode_fp32.json

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
