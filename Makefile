# The README's commands. Everything is installed from nothing into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test unit integration lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## Start the service on the embedded PostgreSQL (or RIGHTSLEDGER_DATABASE_URL).
run: install
	$(BIN)/rightsledger serve

## Lint and type checks, then the whole suite: unit, integration (real PostgreSQL and
## the embedded Kafka broker) and end-to-end (HTTP).
test: install lint
	$(BIN)/python -m pytest

## The quick inner loop: no I/O.
unit: install
	$(BIN)/python -m pytest tests/unit -q

integration: install
	$(BIN)/python -m pytest tests/integration tests/e2e -q

lint: install
	$(BIN)/ruff check src tests bench
	@mkdir -p build/typecheck && ln -sfn ../../src build/typecheck/rightsledger
	$(BIN)/mypy -p rightsledger

bench: install
	$(BIN)/python bench/commands.py

clean:
	rm -rf $(VENV) .rightsledger
