# Targets print their help from the ## comments: `make help`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Image tags: the stack defaults in Pulumi.yaml (workerImage, gpuWorkerImage, gatewayImage).
DOCKER ?= docker
KIND ?= kind
KIND_CLUSTER ?= qhybrid
WORKER_IMAGE ?= qhybrid/worker:dev
GPU_WORKER_IMAGE ?= qhybrid/worker-gpu:dev
GATEWAY_IMAGE ?= qhybrid/gateway:dev

.PHONY: help setup run test lint bench bench-gateway load gateway gameday ci images kind-load

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/qhybrid: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

setup: $(BIN)/qhybrid ## create .venv and install qhybrid with its dev tools

run: setup ## run the reference cutting workload on the local default (exact mode, cpu)
	$(BIN)/qhybrid run cutting

lint: setup ## ruff (lint + format check), mypy, and actionlint, zizmor, hadolint on what we ship
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/zizmor --offline .github/workflows/
	$(BIN)/hadolint images/*.Dockerfile

test: lint ## lint, then the test suite (heavy cases: make test PYTEST_ARGS="-m slow")
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup ## qhybrid vs upstream's ExactSampler and SamplerV2 flows, like for like (prints ratios)
	$(BIN)/python benchmarks/bench_cutting.py

bench-gateway: setup ## benchmark the QPU gateway on loopback (jobs/s, p99, added latency)
	$(BIN)/python benchmarks/bench_gateway.py

load: setup ## locust against a loopback gateway, step shape, 20 s (summary + PNG in runs/load)
	$(BIN)/python tests/load/run_load.py --shape step --duration 20 --users 50 --out runs/load

gateway: setup ## serve the QPU gateway on 127.0.0.1:8080 (aer + emulated fake_manila)
	$(BIN)/qhybrid gateway serve --host 127.0.0.1 --port 8080 --state-dir runs/gateway

gameday: setup ## chaos game day: every local experiment (journals, summary, timeline in runs/gameday)
	rm -rf runs/gameday
	$(BIN)/qhybrid gameday --out runs/gameday

ci: test ## what .ci/run calls

images: ## build the worker, GPU worker and gateway images (tags: the stack defaults)
	$(DOCKER) build -f images/worker.Dockerfile -t $(WORKER_IMAGE) .
	$(DOCKER) build -f images/worker-gpu.Dockerfile -t $(GPU_WORKER_IMAGE) .
	$(DOCKER) build -f images/gateway.Dockerfile -t $(GATEWAY_IMAGE) .

kind-load: ## load the three images into the kind cluster (KIND_CLUSTER=qhybrid)
	$(KIND) load docker-image $(WORKER_IMAGE) $(GPU_WORKER_IMAGE) $(GATEWAY_IMAGE) --name $(KIND_CLUSTER)
