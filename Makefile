# The two set-up commands are `make run` and `make test`; both install what they need from scratch.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: install run test lint format bench clean

install: $(PY_STAMP) $(NODE_STAMP) ## create .venv and install the Python and npm dependencies

# What running needs (make run): the app, the local engines, the local host.
$(RUN_STAMP): requirements.txt requirements-local.txt requirements-devhost.txt
	@echo "==> Python environment in $(VENV) ($(PYTHON))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-local.txt -r requirements-devhost.txt
	@touch $@

# ... and what testing, linting and benchmarks need besides (make test, make lint).
$(PY_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@echo "==> npm packages (test emulators) in node_modules"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Serve function_app.py on http://localhost:7071 with the local host: SQLite, local models, no cloud.
run: $(RUN_STAMP) ## start the service locally (python run_server.py; arguments in RUN_ARGS, e.g. --port 7072)
	$(BIN)/python run_server.py $(RUN_ARGS)

# The test session starts the Cosmos DB API server (tests/support/cosmos_emulator.py) on a free loopback port and
# stops it at the end, so nothing is left running.
test: install ## run the whole suite: unit, contract (SQLite and Cosmos DB API), integration
	@command -v chromium >/dev/null || echo "==> chromium is not installed: the memory inspector's browser test" \
		"(tests/e2e/test_inspector.py) is skipped. Install Debian's package: sudo apt-get install -y chromium"
	$(BIN)/pytest -v $(PYTEST_ARGS)

lint: install ## ruff (lint and format check) and mypy --strict on every package (pyproject.toml lists them) and memory_client
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict memory_client

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install ## measure the SQLite store (see bench/README.md)
	$(BIN)/python -m bench.store_bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis
