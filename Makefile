# The README's commands. Everything is installed from nothing into .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test unit integration lint bench clean browser chromium

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) chromium

## The browser tests drive Debian's Chromium (never a downloaded browser build). Installed through
## apt when missing and we may install packages (root, or passwordless sudo); otherwise one line
## names the package and the browser tests fail (tests/browser/conftest.py says the same).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		echo "installing chromium (sudo apt-get)"; \
		sudo -n apt-get update -qq && sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "browser tests need Chromium at $(CHROMIUM): install the Debian package 'chromium' (apt-get install chromium)"; \
	fi

## Start the service on the embedded PostgreSQL (or RIGHTSLEDGER_DATABASE_URL).
run: install
	$(BIN)/rightsledger serve

## Lint and type checks, then the whole suite: unit, integration (real PostgreSQL and
## the embedded Kafka broker) and end-to-end (HTTP).
test: install lint
	$(BIN)/python -m pytest

## The console in a real browser (Chromium from the system's packages).
browser: install
	$(BIN)/python -m pytest tests/browser -q

## The quick inner loop: no I/O.
unit: install
	$(BIN)/python -m pytest tests/unit -q

integration: install
	$(BIN)/python -m pytest tests/integration tests/e2e -q

## mypy strict (pyproject's [tool.mypy]) over the package, the tests and the benchmarks alike;
## tests and bench import `rightsledger` through the build/typecheck symlink (mypy_path).
lint: install
	$(BIN)/ruff check src tests bench
	@mkdir -p build/typecheck && ln -sfn ../../src build/typecheck/rightsledger
	$(BIN)/mypy -p rightsledger
	$(BIN)/mypy tests bench

bench: install
	$(BIN)/python bench/commands.py

clean:
	rm -rf $(VENV) .rightsledger
