# sayo — the two set-up commands are `make demo` and `make test` (see README).
# Both create .venv on first use. TORCH_SPEC picks the torch build: the CPU wheel by default;
# for CUDA, install the matching wheel, e.g. `make demo TORCH_SPEC="torch==2.13.0" PIP_INDEX_ARGS="--index-url <CUDA wheel index>"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_INDEX_ARGS ?=
EXTRAS ?= dev
BIN := $(VENV)/bin
STAMP := $(VENV)/.sayo-installed-$(EXTRAS)

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_INDEX_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sayo demo --out outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check sayo tests benchmarks
	$(BIN)/ruff format --check sayo tests benchmarks
	$(BIN)/mypy sayo

bench: $(STAMP)
	$(BIN)/python benchmarks/attention_capture.py

clean:
	rm -rf $(VENV) outputs .pytest_cache .ruff_cache .mypy_cache
