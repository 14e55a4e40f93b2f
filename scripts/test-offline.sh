#!/usr/bin/env bash
# `make test-offline`: a few tests inside a network namespace with only loopback (`unshare -n`),
# where nothing answers on 5432 or 6379, so test.sh starts its throwaway PostgreSQL and Redis
# and the tests use them (migrations, the broker, a real Celery worker). `.ci/run` runs it after
# `make test`, so the set-up a bare machine or container gets is exercised on every change.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

OFFLINE_TESTS=(
  tests/test_scripts.py
  tests/migrations/test_migrations.py
  tests/test_jobs.py
  tests/test_health.py
  tests/workers/test_transactional.py
)

if [ -z "${RALLYPOINT_IN_NETNS:-}" ]; then
  if ! unshare --net true 2>/dev/null; then
    echo "test-offline needs a network namespace (unshare --net): run it as root." >&2
    exit 1
  fi
  exec unshare --net env RALLYPOINT_IN_NETNS=1 bash "$0" "$@"
fi

ip link set lo up
unset DATABASE_URL TEST_DATABASE_URL REDIS_URL
if pg_reachable "postgresql://127.0.0.1:5432/postgres" || redis_reachable "redis://127.0.0.1:6379/0"; then
  echo "Something answers on 5432 or 6379 inside the namespace: this run would not test the" \
    "throwaway servers." >&2
  exit 1
fi
echo "== offline: a network namespace with only loopback; nothing answers on 5432 or 6379"
if [ $# -eq 0 ]; then
  set -- "${OFFLINE_TESTS[@]}"
fi
SKIP_LINT=1 exec bash scripts/test.sh -q -p no:randomly "$@"
