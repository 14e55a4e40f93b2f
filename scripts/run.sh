#!/usr/bin/env bash
# `make run`: Redis (REDIS_URL, a reachable local one, or one we start), migrate, demo data,
# then web, worker and beat under honcho.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
[ -f .env ] && { set -a; source .env; set +a; }

export RALLYPOINT_ENV=${RALLYPOINT_ENV:-development}
export FLASK_APP=app:create_app
export PATH="$PWD/.venv/bin:$PATH"  # the Procfile names gunicorn, celery and flask
export PORT=${PORT:-5000}
export PUBLIC_BASE_URL=${PUBLIC_BASE_URL:-http://localhost:$PORT}
mkdir -p var

if [ -z "${REDIS_URL:-}" ]; then
  if redis_reachable "redis://127.0.0.1:6379/0"; then
    export REDIS_URL=redis://127.0.0.1:6379/0
  else
    ensure_redis_binary || exit 1
    start_redis 6379 "$PWD/var/redis"
    export REDIS_URL=redis://127.0.0.1:6379/0
    echo "Started Redis on 127.0.0.1:6379 (data in var/redis; stop it with: redis-cli shutdown)"
  fi
fi
if [ -n "${DATABASE_URL:-}" ]; then
  echo "Database: $DATABASE_URL"
else
  echo "Database: SQLite at var/rallypoint.db (set DATABASE_URL for PostgreSQL)"
fi

.venv/bin/flask db upgrade
.venv/bin/flask demo load --email admin@example.org --password rallypoint-demo >/dev/null

cat <<MSG

  Rallypoint is starting at $PUBLIC_BASE_URL
  Log in as admin@example.org with the password rallypoint-demo
  (Ctrl-C stops web, worker and beat.)

MSG
exec .venv/bin/honcho start -f Procfile web worker beat
