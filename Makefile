# trackbench: `make run` sets everything up and runs the default comparison;
# `make test` sets everything up and runs the tests. Both work on a fresh clone.
PYTHON ?= python3.11
VENV ?= .venv
# The torch requirement; override for a CUDA build elsewhere, e.g. make TORCH=torch
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint asv-quick asv-publish asv-preview dashboard-check report-reference clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[impactx,dev]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/trackbench validate lattices/*.yaml
	$(BIN)/trackbench run --out results/runs/$$(date -u +%Y%m%dT%H%M%SZ)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
