# AAMI: the commands a developer and CI use. `make help` lists them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install demo run test test-fast lint bench bench-agent bench-server clean

help:
	@echo "make install   create $(VENV) and install aami with its dev tools"
	@echo "make demo      start the server on SQLite, a local agent and a signed demo script"
	@echo "make test      install, then run the whole test suite (SQLite + PostgreSQL)"
	@echo "make lint      ruff + mypy"
	@echo "make bench     all benchmarks (bench-server, bench-agent)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo run: $(STAMP)
	bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: bench-server bench-agent

bench-server: $(STAMP)
	$(BIN)/python -m tests.bench.server_load $(BENCH_ARGS)

bench-agent: $(STAMP)
	$(BIN)/python -m tests.bench.agent_footprint $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
