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

# asv suite (benchmarks/): results in results/asv, dashboard in results/html.
# asv-quick: every benchmark once in .venv, recorded under HEAD, then published.
ASV_FACTOR ?= 1.5
asv-quick: $(STAMP)
	$(BIN)/trackbench asv quick

asv-publish: $(STAMP)
	$(BIN)/trackbench asv publish

asv-preview: $(STAMP)
	$(BIN)/trackbench asv preview

dashboard-check: $(STAMP)
	$(BIN)/trackbench asv dashboard-check

# The nightly CI flow: full run on HEAD, publish, fail on a time/peakmem regression.
.PHONY: asv-nightly
asv-nightly: $(STAMP)
	$(BIN)/trackbench asv nightly --factor $(ASV_FACTOR)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
