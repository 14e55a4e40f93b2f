#!/usr/bin/env bash
# Shared shell helpers for run.sh and test.sh: find or start Redis and PostgreSQL.

apt_install() {
  # Install Debian packages when we are root; otherwise say exactly what is missing.
  local packages=("$@")
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "Installing ${packages[*]} from Debian's packages…"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null 2>&1; then
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    fi
  else
    echo "Missing: ${packages[*]}. Install them first, e.g.: sudo apt-get install ${packages[*]}" >&2
    return 1
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

redis_reachable() {  # $1 = redis URL
  python3 - "$1" <<'PY'
import socket, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
try:
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=1) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

ensure_redis_binary() {
  command -v redis-server >/dev/null || apt_install redis-server
}

# start_redis PORT DIR: a redis-server that keeps nothing on disk, never evicts (Celery needs it).
start_redis() {
  local port=$1 dir=$2
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
    --maxmemory-policy noeviction --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log"
  for _ in $(seq 50); do
    redis_reachable "redis://127.0.0.1:$port/0" && return 0
    sleep 0.1
  done
  echo "redis-server did not start on port $port (see $dir/redis.log)" >&2
  return 1
}

pg_reachable() {  # $1 = libpq URL
  python3 - "$1" <<'PY'
import socket, sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1].replace("+psycopg", ""))
try:
    socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

# start_throwaway_postgres DIR PORT: initdb + pg_ctl in DIR, trust auth, user postgres.
start_throwaway_postgres() {
  local dir=$1 port=$2 bindir runas=()
  bindir=$(pg_bindir) || { apt_install postgresql && bindir=$(pg_bindir); } || return 1
  mkdir -p "$dir"
  if [ "$(id -u)" = "0" ]; then
    # initdb refuses to run as root: hand the directory to the postgres (or nobody) account.
    # DIR's parent is the caller's `mktemp -d` folder, 0700 and root's: the account needs
    # search permission on it to reach DIR (0711 lets it through without listing it).
    local account=postgres
    id postgres >/dev/null 2>&1 || account=nobody
    chown -R "$account" "$dir"
    chmod o+x "$(dirname "$dir")"
    runas=(runuser -u "$account" --)
    if ! "${runas[@]}" test -w "$dir"; then
      echo "The $account account cannot reach $dir: a folder above it is closed to others." >&2
      return 1
    fi
  fi
  # From inside DIR: the caller's working directory may be closed to the account.
  (
    set -e
    cd "$dir"
    "${runas[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
    "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off" start >/dev/null
  )
}

stop_throwaway_postgres() {
  local dir=$1 bindir runas=()
  bindir=$(pg_bindir) || return 0
  [ "$(id -u)" = "0" ] && runas=(runuser -u "$(stat -c %U "$dir/data")" --)
  (cd "$dir" && "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1) || true
}
