# Targets print their help from the ## comments: `make help`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help setup run test lint bench ci

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(BIN)/qhybrid: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

setup: $(BIN)/qhybrid ## create .venv and install qhybrid with its dev tools

run: setup ## run the reference cutting workload on the local default (exact mode, cpu)
	$(BIN)/qhybrid run cutting

lint: setup ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint ## lint, then the test suite (heavy cases: make test PYTEST_ARGS="-m slow")
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup ## benchmark against the plain qiskit-addon-cutting flow (prints ratios)
	$(BIN)/python benchmarks/bench_cutting.py

ci: test ## what .ci/run calls
