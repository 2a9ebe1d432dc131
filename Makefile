# The two commands of the README: `make demo` and `make test`. Both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup services browser demo test check lint typecheck fmt bench clean

setup: $(VENV)/.installed services

$(VENV)/.installed: pyproject.toml constraints.txt
	@bash deploy/ensure-python.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	@touch $@

services:
	@bash deploy/ensure-services.sh

browser:
	@bash deploy/ensure-browser.sh

demo: setup
	$(BIN)/proxima up --duration $${DEMO_SECONDS:-120}

test: setup browser
	PROXIMA_REQUIRE_BROWSER=1 $(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

check: setup browser lint typecheck
	PROXIMA_REQUIRE_BROWSER=1 $(BIN)/pytest

fmt: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/proxima bench beacons

clean:
	rm -rf $(VENV) .proxima .mypy_cache .ruff_cache .pytest_cache
