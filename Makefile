# Two entry points for a fresh machine with Python 3.11+, pip and venv:
#   make run   install (once) and run the demo pipeline end to end
#   make test  install (once) and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
CORES ?= all
export PATH := $(BIN):$(PATH)

.PHONY: install run test report clean

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --cores $(CORES)
	$(BIN)/snakemake --workflow-profile workflow/profiles/default --report results/report.html

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf results logs data/simulated .snakemake
