# The two commands of the README:
#   make run    install and run everything (web, worker, sweeper, dashboard) on the embedded default
#   make test   run the tests (embedded default always; MariaDB + Redis on 127.0.0.1 where they answer)
#   make test-fast   the quick loop: the same without the system, browser, chaos and fuzz tests
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install run test test-fast lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt

run: install
	$(BIN)/python -m scripts.run_embedded

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

FAST = not system and not browser and not chaos and not fuzz

test-fast: install
	$(BIN)/python -m pytest -m "$(FAST)" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff format --check . && $(BIN)/ruff check . && $(BIN)/lint-imports
