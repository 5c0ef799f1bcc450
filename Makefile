# trackbench: `make run` sets everything up and runs the default comparison;
# `make test` sets everything up and runs the tests. Both work on a fresh clone.
PYTHON ?= python3.11
VENV ?= .venv
# The torch requirement; override for a CUDA build elsewhere, e.g. make TORCH=torch
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint perf asv-quick asv-publish asv-preview dashboard-check reference report-reference clean gpu-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[impactx,xsuite,pyat,ocelot,rftrack,io,tuning,dev]"
	$(BIN)/python -m backends.xsuite
	touch $(STAMP)

setup: $(STAMP)

# The default comparison (about 4 min on 2 cores): every scenario that runs by default on
# every backend that does, at the smallest particle count of each (1e4 unless it names
# others), 3 timed tracks, one thread per case, on a local
# Dask cluster of WORKERS single-core workers (each pinned to its own core).
WORKERS ?= 2
run: $(STAMP)
	$(BIN)/trackbench validate --no-backends lattices/*.yaml
	$(BIN)/trackbench run --particles smallest --repeat 3 --threads 1 --workers $(WORKERS) \
		--out results/runs/$$(date -u +%Y%m%dT%H%M%SZ)

# The tests on pytest-xdist workers, one per available core (TEST_WORKERS=0: in this one
# process), then those marked serial (they measure the machine's load) alone. How the
# workers share the machine: tests/conftest.py.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy harness backends
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not serial"
	$(BIN)/python -m pytest -q -p no:xdist -m serial

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

# Speed of the four unaccelerated lattices at 1e4..1e6 particles, every backend side by side,
# float64 and float32, all threads and 1 thread (per-core comparison with ImpactX).
PERF_SCENARIOS ?= fodo_linear fodo_paraxial fodo_exact chicane
perf: $(STAMP)
	$(BIN)/trackbench run $(PERF_SCENARIOS) --particles 1e4,1e5,1e6 --dtype float64,float32 \
		--threads all,1 --out results/runs/perf-$$(date -u +%Y%m%dT%H%M%SZ)

# The committed reference runs of this machine kind and their report (about 50 min on
# 2 cores); report-reference only rewrites the report from the committed runs.
REFERENCE ?= results/reference/cpu-2core-epyc
REFERENCE_RUNS = $(REFERENCE)/comparison $(REFERENCE)/performance $(REFERENCE)/gradients \
	$(REFERENCE)/gradient-scaling $(REFERENCE)/space-charge-gradients
reference: $(STAMP)
	rm -rf $(REFERENCE_RUNS) $(REFERENCE)/report
	$(BIN)/trackbench run --no-report --out $(REFERENCE)/comparison
	$(BIN)/trackbench run $(PERF_SCENARIOS) --particles 1e4,1e5,1e6 --dtype float64,float32 \
		--threads all,1 --no-report --out $(REFERENCE)/performance
	$(BIN)/trackbench grad --out $(REFERENCE)/gradients
	$(BIN)/trackbench grad fodo_channel --scaling --out $(REFERENCE)/gradient-scaling
	$(BIN)/trackbench grad expanding_beam --backends inhouse --particles 1e4,1e5 \
		--kicks 5,20 --checkpoint none,kick --params beam.rms.sigma_x --objective sigma_x \
		--fd-steps 1e-4,1e-6 --repeat 1 --out $(REFERENCE)/space-charge-gradients
	$(MAKE) report-reference

report-reference: $(STAMP)
	$(BIN)/trackbench report $(REFERENCE_RUNS) --format md,tex --out $(REFERENCE)/report

# NAPAC2025 TUP101 at the paper's settings (1 thread, 1e3..1e6 particles, FP32 where the
# backend has it, the 256^3 space-charge case at 1e6; GPU figures when CUDA is present),
# its tables beside the published figures in DIR/reproduce.md.
.PHONY: reproduce
reproduce: $(STAMP)
	$(BIN)/trackbench reproduce napac25 --out results/runs/napac25-$$(date -u +%Y%m%dT%H%M%SZ)

# ImpactX's example run scripts (impactx/examples/*/run_*.py of the installed wheel) through
# trackbench: each stated as a scenario or listed with the reasons it cannot be, and
# the stated ones tracked from the example's own particles by the ImpactX and in-house
# backends within the example's own analysis tolerances; writes docs/impactx-examples.md
# and results/reference/impactx-examples.csv (about 20 min on 2 cores).
.PHONY: examples
examples: $(STAMP)
	$(BIN)/python -m benchmarks.impactx_examples

# The GPU path in one command: CUDA tests, a short CUDA matrix and one report (about 8 min;
# prints why and exits 0 without a usable CUDA device).
gpu-check: $(STAMP)
	BIN=$(BIN) benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
