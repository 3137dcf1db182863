# Two entry points for a fresh machine with Python 3.11+, pip and venv:
#   make run   install (once) and run the demo pipeline end to end
#   make test  install (once) and run the test suite (CI; the nightly tier apart)
#   make test-nightly  the whole demo with every family, checked against the README's numbers
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
CORES ?= all
export PATH := $(BIN):$(PATH)

.PHONY: install run test test-nightly bench repro pull clean

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

# After the run, dvc.lock records it (`dvc commit`), so `make repro` reruns only what later changes touch.
# `dvc commit` puts the outputs back from DVC's cache (links or copies), newer than the jobs that read
# them; `snakemake --touch` stamps the outputs in DAG order again, so Snakemake too sees the run as up
# to date.
run: install
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES)
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --report results/report.html
	$(BIN)/tbdencoder dvc-yaml
	$(BIN)/dvc commit --force --quiet
	$(BIN)/snakemake --touch --cores 1 --quiet

test: install
	$(BIN)/python -m pytest -q --durations=25

test-nightly: install
	$(BIN)/python -m pytest -q --durations=25 --nightly -m nightly

# Performance comparisons (printed ratios, not pass/fail); QUICK=1 for smaller runs.
bench: install
	$(BIN)/python benchmarks/run_all.py $(if $(QUICK),--quick)

# DVC: rewrite dvc.yaml from params.yaml (the halves it defines, real or simulated data), then rerun
# the stages a change touches; `make pull` fetches results from a remote.
repro: install
	$(BIN)/tbdencoder dvc-yaml
	$(BIN)/dvc repro

# `dvc pull` restores contents, not modification times; `snakemake --touch --forceall` then stamps
# every output in DAG order so Snakemake sees them as up to date (DVC has just checked they are), and
# records each job's params, which `make repro` needs to rerun only the jobs a later change touches.
pull: install
	$(BIN)/dvc pull
	$(BIN)/snakemake --touch --forceall --cores 1 --quiet

clean:
	rm -rf results logs data/simulated .snakemake
