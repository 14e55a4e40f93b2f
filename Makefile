# Rallypoint: the two commands of the README.
#   make run   — set up and start web, worker and beat with demo data
#   make test  — set up, then ruff, mypy and the whole pytest suite on real PostgreSQL and Redis
#   make test-offline — a few tests where nothing answers on 5432/6379 (throwaway servers; CI)
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: run test test-offline docs-screenshots chaos install lint bench-import bench-send bench-tracking bench-report bench-webhooks bench-actions cluster-test clean

$(STAMP): pyproject.toml
	@bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	@bash scripts/run.sh

test: install
	@bash scripts/test.sh

# A network namespace with only loopback (needs root): test.sh must start its own PostgreSQL
# and Redis, as on a bare machine or in a container. .ci/run runs it after `make test`.
test-offline: install
	@bash scripts/test-offline.sh

# The README's screenshots (docs/images/), taken by the browser tests that visit those pages.
docs-screenshots: install
	@RALLYPOINT_DOCS_SCREENSHOTS=1 SKIP_LINT=1 bash scripts/test.sh -q -p no:randomly \
	  tests/e2e/test_campaign_authoring.py tests/e2e/test_sending_browser.py tests/e2e/test_stats_pages.py \
	  tests/e2e/test_petition_browser.py

# The exactly-once tests (SIGKILLed worker, Redis restart, SendGrid 429/500) five runs in a row:
# one pass proves little about races, five in a row is what issue 5 asks for.
CHAOS_RUNS ?= 5
chaos: install
	@for run in $$(seq 1 $(CHAOS_RUNS)); do \
	  echo "== chaos run $$run of $(CHAOS_RUNS)"; \
	  SKIP_LINT=1 bash scripts/test.sh -m chaos -q -p no:cacheprovider tests/workers || exit 1; \
	done; echo "== chaos: $(CHAOS_RUNS) of $(CHAOS_RUNS) runs passed"

# Issue 16's multi-host scenarios (root; not part of `make test`): scripts/cluster.sh brings up
# nine hosts in network namespaces, tests/cluster/driver.py kills, cuts and fails them over
# mid-send (CLUSTER_AUDIENCE members a campaign, 100,000 by default), the cluster goes down
# again, and the last line is the JSON of every scenario.
cluster-test: install
	@bash scripts/cluster.sh down >/dev/null 2>&1 || true
	@bash scripts/cluster.sh up
	@PYTHONPATH=. $(VENV)/bin/python -m tests.cluster.driver; rc=$$?; \
	  bash scripts/cluster.sh down; exit $$rc

bench-send: install
	PYTHONPATH=. $(VENV)/bin/python -m benchmarks.send

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench-report: install
	PYTHONPATH=. $(VENV)/bin/python -m benchmarks.report

bench-import: install
	PYTHONPATH=. $(VENV)/bin/python -m benchmarks.import

bench-webhooks: install
	PYTHONPATH=. $(VENV)/bin/python -m benchmarks.webhooks

bench-tracking: install
	PYTHONPATH=. $(VENV)/bin/python -m benchmarks.tracking

bench-actions: install
	PYTHONPATH=. $(VENV)/bin/python -m benchmarks.actions

clean:
	rm -rf $(VENV) var/rallypoint.db* var/outbox var/screenshots
