#!/usr/bin/env bash
# `make test`: the same set-up as `make run`, then ruff, mypy and pytest against real
# PostgreSQL and Redis. Throwaway servers are started (and removed) when none is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

tmp=$(mktemp -d /tmp/rallypoint-test.XXXXXX)
started_pg=""
started_redis=""
cleanup() {
  [ -n "$started_pg" ] && stop_throwaway_postgres "$tmp/pg"
  [ -n "$started_redis" ] && redis-cli -p "$started_redis" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# The tests start their own private redis-server (they restart it in chaos tests) and the
# browser tests drive Debian's chromium: both must be installed.
ensure_redis_binary || exit 1
command -v chromium >/dev/null || apt_install chromium || exit 1
# The multi-host tests (tests/test_multi_host.py) run a real Sentinel and PgBouncer; without
# them (not root, no apt) those tests are skipped, the rest runs.
if ! command -v redis-sentinel >/dev/null || ! command -v pgbouncer >/dev/null; then
  apt_install redis-sentinel pgbouncer || echo "tests/test_multi_host.py: Sentinel/PgBouncer tests skipped" >&2
fi

if [ -z "${REDIS_URL:-}" ]; then
  if redis_reachable "redis://127.0.0.1:6379/0"; then
    export REDIS_URL=redis://127.0.0.1:6379/0
  else
    port=$(free_port)
    start_redis "$port" "$tmp/redis"
    started_redis=$port
    export REDIS_URL=redis://127.0.0.1:$port/0
  fi
fi

db_url=${TEST_DATABASE_URL:-${DATABASE_URL:-}}
if [ -z "$db_url" ] || [[ "$db_url" != postgres* ]]; then
  if pg_reachable "postgresql://postgres@127.0.0.1:5432/postgres" &&
     PGCONNECT_TIMEOUT=2 psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    db_url=postgresql://postgres@127.0.0.1:5432/postgres
  else
    port=$(free_port)
    echo "No PostgreSQL reachable: starting a throwaway server on port $port"
    start_throwaway_postgres "$tmp/pg" "$port"
    started_pg=yes
    db_url=postgresql://postgres@127.0.0.1:$port/postgres
  fi
fi
export TEST_DATABASE_URL=$db_url
unset DATABASE_URL

if [ -z "${SKIP_LINT:-}" ]; then
  echo "== ruff"
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  echo "== mypy"
  .venv/bin/mypy
fi
echo "== pytest (PostgreSQL: ${TEST_DATABASE_URL%%@*}@…, the suite creates and drops its own database)"
.venv/bin/python -m pytest "$@"
