# Rallypoint: the two commands of the README.
#   make run   — set up and start web, worker and beat with demo data
#   make test  — set up, then ruff, mypy and the whole pytest suite on real PostgreSQL and Redis
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: run test install lint bench-import bench-send bench-tracking bench-report clean

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	@bash scripts/run.sh

test: install
	@bash scripts/test.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench-report: install
	$(VENV)/bin/python -m benchmarks.report

clean:
	rm -rf $(VENV) var/rallypoint.db* var/outbox var/screenshots
