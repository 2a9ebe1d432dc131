# The two commands of the README: `make demo` and `make test`. Both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup setup-dev services browser demo test check lint typecheck imports docs fmt bench clean

setup: $(VENV)/.installed services
setup-dev: $(VENV)/.installed-dev services

# What `make demo` needs: the project and its runtime dependencies.
$(VENV)/.installed: pyproject.toml constraints.txt
	@bash deploy/ensure-python.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[services]'
	@touch $@

# What the tests need on top: dev tools, the bench extra and dbus-python, which is built
# from source against Debian's D-Bus headers (deploy/ensure-bluez-mock.sh installs them).
$(VENV)/.installed-dev: $(VENV)/.installed
	@bash deploy/ensure-bluez-mock.sh "$(BIN)/python"
	@bash deploy/ensure-test-tools.sh
	$(BIN)/pip install --quiet -c constraints.txt -e '.[services,dev,bench,plot]'
	@touch $@

services:
	@bash deploy/ensure-services.sh

browser:
	@bash deploy/ensure-browser.sh

demo: setup
	$(BIN)/proxima up --duration $${DEMO_SECONDS:-120}

# The suite runs in PROXIMA_TEST_WORKERS processes (pytest-xdist, 2 by default: most tests
# wait on sockets and child processes, so two share a 2-core machine well), a test file per
# process (--dist loadfile keeps a module's fixtures in one process). Every test has its
# own namespace, Redis prefix, ports and temporary files; PROXIMA_TEST_WORKERS=0 runs it
# in one process.
PYTEST := PROXIMA_REQUIRE_BROWSER=1 PROXIMA_REQUIRE_BLUEZ_MOCK=1 PROXIMA_REQUIRE_TEST_TOOLS=1 \
	$(BIN)/pytest -n $${PROXIMA_TEST_WORKERS:-2} --dist loadfile

test: setup-dev browser
	$(PYTEST)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# DESIGN.md's package boundaries and no import cycles (contracts in pyproject.toml).
imports: $(VENV)/.installed-dev
	$(BIN)/lint-imports --no-cache

# docs/ as a site in build/site; the settings page is regenerated from the code first, and
# --strict makes a broken link or a page missing from the nav an error.
docs: $(VENV)/.installed-dev
	$(BIN)/proxima docs settings --out docs/operators/settings.md
	$(BIN)/mkdocs build --strict

check: setup-dev browser lint typecheck imports
	$(PYTEST)

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup-dev
	for b in beacons edge ingest stream stream-scale notifier detection; do $(BIN)/proxima bench $$b || exit 1; done

clean:
	rm -rf $(VENV) .proxima .mypy_cache .ruff_cache .pytest_cache
