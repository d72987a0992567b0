# The front door: `make run` starts the local stack, `make test` runs every test.
# Each target creates the virtualenv and installs what it needs on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
JS_DIR := client/javascript

.PHONY: run test lint pytest js-test bench clean

$(STAMP): pyproject.toml client/python/pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e client/python -e '.[dev]'
	touch $@

run: $(STAMP)
	$(BIN)/cloud-ws local

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy --strict client/python/cloud_ws_client

pytest: $(STAMP)
	$(BIN)/coverage erase
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

test: lint pytest

bench: $(STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache
