# AAMI: the commands a developer and CI use. `make help` lists them.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install demo run test test-fast lint bench bench-agent bench-server binaries bundle system-test clean catalog soak

help:
	@echo "make install   create $(VENV) and install aami with its dev tools"
	@echo "make demo      start the server on SQLite, a local agent and a signed demo script"
	@echo "make test      install, then run the whole test suite (SQLite + PostgreSQL)"
	@echo "make lint      ruff + mypy"
	@echo "make bench     all benchmarks (bench-server, bench-agent)"
	@echo "make soak      the fleet soak with faults [AGENTS=50 MINUTES=15]"
	@echo "make binaries  single-file binaries in dist/ (PyInstaller) and the static agent (staticx)"
	@echo "make bundle    binaries plus the signed offline bundle in dist/ (AAMI_RELEASE_KEY=release.key)"
	@echo "make system-test  the real-systemd tier alone (tests/system: nspawn containers, as root)"
	@echo "make catalog   sign the check catalog (checks/) into build/catalog/: PUBLISHER_KEY=ops.key"

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
	$(BIN)/python packaging/package_root.py >/dev/null
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: bench-server bench-agent

# The Agent API's floor: 5,000 agents for 5 minutes on two server processes.
# Other sizes: make bench-server BENCH_ARGS="--agents 20000 --duration 300s --ramp 120s ..."
SERVER_BENCH_ARGS ?= --agents 5000 --duration 300s --ramp 60s --server-processes 2

bench-server: $(STAMP)
	$(BIN)/python -m tests.bench.server_load $(or $(BENCH_ARGS),$(SERVER_BENCH_ARGS))

# The fleet soak: real agent daemons against a real server (2 processes, TLS, PostgreSQL)
# with faults; prints a table, writes soak-report.json, exits 1 when a target is missed.
AGENTS  ?= 50
MINUTES ?= 15
soak: $(STAMP)
	$(BIN)/python -m tests.soak --agents $(AGENTS) --minutes $(MINUTES)

bench-agent: $(STAMP)
	$(BIN)/python -m tests.bench.agent_footprint $(BENCH_ARGS)

# Binaries: each one is rebuilt only when a file it is built from changed.
BUILD_BIN  := bash packaging/build-binaries.sh
BUILD_VENV := build/venv/.installed
PYI_COMMON := packaging/build-binaries.sh packaging/pyinstaller/common.py $(BUILD_VENV)
PY_SHARED  := $(shell find trust units policyfile -name '*.py')
AGENT_SRC  := $(shell find agent -name '*.py') $(PY_SHARED)
SERVER_SRC := $(shell find server -type f ! -name '*.pyc') $(PY_SHARED) packaging/install-agent.sh
# The CLI binary carries what `aami bundle build` packs (packaging/pyinstaller/common.py).
CLI_SRC    := $(shell find cli bundle -name '*.py') $(PY_SHARED) packaging/install.sh \
              packaging/install-agent.sh docs/install.md $(wildcard systemd/*.service systemd/*.conf)

$(BUILD_VENV): pyproject.toml
	$(BUILD_BIN) venv

dist/aami-agent: $(AGENT_SRC) packaging/pyinstaller/aami-agent.spec packaging/pyinstaller/entry_agent.py $(PYI_COMMON)
	$(BUILD_BIN) aami-agent

dist/aami-server: $(SERVER_SRC) packaging/pyinstaller/aami-server.spec packaging/pyinstaller/entry_server.py $(PYI_COMMON)
	$(BUILD_BIN) aami-server

dist/aami: $(CLI_SRC) packaging/pyinstaller/aami.spec packaging/pyinstaller/entry_cli.py $(PYI_COMMON)
	$(BUILD_BIN) aami

dist/aami-agent-static: dist/aami-agent
	$(BUILD_BIN) aami-agent-static

binaries: dist/aami-agent dist/aami-server dist/aami dist/aami-agent-static
	@$(BUILD_BIN) summary

# The check catalog (checks/, docs/checks.md) signed into $(CATALOG_DIR)/*.signed.json,
# the folder `aami bundle build --scripts` takes. The site's publisher key signs it:
#   make catalog PUBLISHER_KEY=/secure/ops.key [RUNNER_USER=aami-runner]
# Without PUBLISHER_KEY a development key under build/ signs it, with a warning: nodes
# must not trust that key.
CATALOG_DIR       ?= build/catalog
RUNNER_USER       ?= aami-runner
DEV_PUBLISHER_KEY := build/dev-keys/dev-publisher.key

catalog: $(STAMP)
	@if [ -z "$(PUBLISHER_KEY)" ]; then \
	  echo "WARNING: no PUBLISHER_KEY given: signing the catalog with the DEVELOPMENT key" \
	       "$(DEV_PUBLISHER_KEY). Do not ship it; nodes must not trust this key." >&2; \
	  [ -f "$(DEV_PUBLISHER_KEY)" ] || $(BIN)/aami keys generate \
	       --out "$(dir $(DEV_PUBLISHER_KEY))" \
	       --name "$(basename $(notdir $(DEV_PUBLISHER_KEY)))" >/dev/null; \
	fi
	$(BIN)/python checks/build_catalog.py --key "$(or $(PUBLISHER_KEY),$(DEV_PUBLISHER_KEY))" \
	    --out "$(CATALOG_DIR)" --runner-user "$(RUNNER_USER)" --aami $(BIN)/aami

# The signed offline bundle, built by dist/aami (docs/install.md, "The release key"),
# carrying the signed check catalog and its example policies (docs/checks.md). Nodes
# trust AAMI_TRUSTED_KEYS, or else the key that signed the catalog (its .pub beside it).
CATALOG_TRUST := build/catalog-trusted-keys
bundle: binaries catalog
	@if [ -z "$$AAMI_TRUSTED_KEYS" ]; then \
	  rm -rf $(CATALOG_TRUST) && mkdir -p $(CATALOG_TRUST) && \
	  cp "$(basename $(or $(PUBLISHER_KEY),$(DEV_PUBLISHER_KEY))).pub" $(CATALOG_TRUST)/; \
	fi
	AAMI_TRUSTED_KEYS="$${AAMI_TRUSTED_KEYS:-$(CATALOG_TRUST)}" \
	AAMI_BUNDLE_SCRIPTS=$(CATALOG_DIR) AAMI_BUNDLE_POLICIES=examples/policies/gpu-nodes.yaml \
	    bash packaging/make-bundle.sh

# Boots systemd in nspawn containers (root; scripts/install-system-deps.sh); also in `make test`.
system-test: $(STAMP)
	$(BIN)/python -m pytest tests/system $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
