#!/usr/bin/env bash
# A Rallypoint cluster on one Linux machine: each host is a network namespace on a bridge,
# with its processes in a cgroup of their own, so a host can be killed or cut off whole.
#
#   scripts/cluster.sh up | down | status         the whole cluster (root)
#   scripts/cluster.sh kill HOST                   SIGKILL every process of HOST at once
#   scripts/cluster.sh start HOST                  start HOST's processes again
#   scripts/cluster.sh cut HOST | restore HOST     take HOST off the network / put it back
#   scripts/cluster.sh env                         the environment the app hosts run with
#   scripts/cluster.sh cpu                         CPU seconds used by each host so far
#
# Hosts (10.77.0.0/24 on the bridge rp-br0, the machine itself is 10.77.0.1):
#   db       .10  PostgreSQL :5432, PgBouncer :6432 (transaction pooling), Sentinel :26379
#   redis1   .11  Redis :6379 (master at first), Sentinel :26379
#   redis2   .12  Redis :6379 (replica at first), Sentinel :26379
#   lb       .20  HAProxy :80, health checks on /healthz?scope=web
#   web1/2   .21/.22  gunicorn as the Procfile runs it (:8001, :8002)
#   worker1/2 .31/.32 celery worker (every queue) and celery beat
#   mail     .40  the SendGrid stand-in (tests/fakes/sendgrid.py) :8025, posting its events
#                 to the app's Event Webhook through the balancer
# Sizes: CLUSTER_WEB_CONCURRENCY (2) gunicorn workers a web host, CLUSTER_WORKER_CONCURRENCY
# (2) pool processes a worker host. Everything lives in var/cluster/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
STATE=${CLUSTER_STATE:-$ROOT/var/cluster}
VENV=$ROOT/.venv
BRIDGE=rp-br0
NET=10.77.0
HOSTS=(db redis1 redis2 mail lb web1 web2 worker1 worker2)
CG_PARENT=rallypoint-cluster
MASTER_NAME=rallypoint

declare -A IP=([db]=$NET.10 [redis1]=$NET.11 [redis2]=$NET.12 [lb]=$NET.20 [web1]=$NET.21
  [web2]=$NET.22 [worker1]=$NET.31 [worker2]=$NET.32 [mail]=$NET.40)
declare -A WEB_PORT=([web1]=8001 [web2]=8002)

die() { echo "cluster: $*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces, cgroups)"; }

ensure_packages() {
  local missing=()
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  command -v pgbouncer >/dev/null || missing+=(pgbouncer)
  command -v redis-server >/dev/null || missing+=(redis-server)
  pg_bindir >/dev/null || missing+=(postgresql)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  [ -x "$VENV/bin/gunicorn" ] || die "no $VENV: run make install first"
}

# -- network and cgroups ----------------------------------------------------------------------

net_up() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || {
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  }
  local host
  for host in "${HOSTS[@]}"; do
    ip netns list | grep -qw "rp-$host" && continue
    ip netns add "rp-$host"
    ip link add "rpv-$host" type veth peer name eth0 netns "rp-$host"
    ip link set "rpv-$host" master "$BRIDGE" up
    ip -n "rp-$host" addr add "${IP[$host]}/24" dev eth0
    ip -n "rp-$host" link set eth0 up
    ip -n "rp-$host" link set lo up
  done
}

net_down() {
  local host
  for host in "${HOSTS[@]}"; do
    ip netns del "rp-$host" 2>/dev/null || true
    ip link del "rpv-$host" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

cg_dir() { echo "/sys/fs/cgroup/$1/$CG_PARENT/$2"; }  # controller host

cg_up() {
  local host ctl
  for host in "${HOSTS[@]}"; do
    for ctl in freezer cpuacct; do mkdir -p "$(cg_dir $ctl "$host")"; done
  done
}

host_pids() { cat "$(cg_dir freezer "$1")/cgroup.procs" 2>/dev/null || true; }

kill_host() {  # freeze, SIGKILL everything, thaw: no process of the host sees it coming
  local host=$1 freezer pids
  freezer=$(cg_dir freezer "$host")
  [ -d "$freezer" ] || return 0
  echo FROZEN >"$freezer/freezer.state"
  for _ in $(seq 50); do
    grep -q FROZEN "$freezer/freezer.state" && break
    sleep 0.02
  done
  pids=$(host_pids "$host")
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  echo THAWED >"$freezer/freezer.state"
  for _ in $(seq 100); do
    [ -z "$(host_pids "$host")" ] && return 0
    sleep 0.05
  done
  echo "cluster: processes of $host still there: $(host_pids "$host")" >&2
}

# run_on HOST NAME [--as USER] COMMAND...: start COMMAND in HOST's namespace and cgroups,
# with the cluster's environment, logging to var/cluster/HOST/NAME.log.
run_on() {
  local host=$1 name=$2 user=root
  shift 2
  if [ "$1" = --as ]; then user=$2; shift 2; fi
  mkdir -p "$STATE/$host"
  local log="$STATE/$host/$name.log"
  setsid bash -c '
    host=$1 user=$2 state=$3 freezer=$4 cpuacct=$5; shift 5
    echo $$ >"$freezer/cgroup.procs"; echo $$ >"$cpuacct/cgroup.procs"
    set -a; [ -f "$state/env" ] && . "$state/env"; [ -f "$state/$host/env" ] && . "$state/$host/env"; set +a
    if [ "$user" = root ]; then exec ip netns exec "rp-$host" "$@"; fi
    exec ip netns exec "rp-$host" runuser -u "$user" -- "$@"
  ' _ "$host" "$user" "$STATE" "$(cg_dir freezer "$host")" "$(cg_dir cpuacct "$host")" "$@" \
    >>"$log" 2>&1 </dev/null &
}

wait_port() {  # HOST PORT [SECONDS]
  local deadline=$((SECONDS + ${3:-30}))
  while [ $SECONDS -lt $deadline ]; do
    if (exec 3<>"/dev/tcp/${IP[$1]}/$2") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  die "$1 does not answer on port $2 (see $STATE/$1/*.log)"
}

# -- the hosts ----------------------------------------------------------------------------------

secrets_init() {
  [ -f "$STATE/secrets" ] && return 0
  mkdir -p "$STATE"
  {
    echo "SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
    echo "REDIS_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
    echo "REDIS_SENTINEL_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  } >"$STATE/secrets"
  chmod 600 "$STATE/secrets"
}

write_env() {  # the app hosts' environment (mail must be up: its webhook key goes in)
  # shellcheck disable=SC1091
  source "$STATE/secrets"
  local key
  key=$(sed -n 2p "$STATE/mail/stand-in.log" 2>/dev/null || true)
  cat >"$STATE/env" <<EOF
RALLYPOINT_ENV=production
SECRET_KEY=$SECRET_KEY
DATABASE_URL=postgresql://postgres@${IP[db]}:6432/rallypoint
DATABASE_DIRECT_URL=postgresql://postgres@${IP[db]}:5432/rallypoint
REDIS_SENTINELS=${IP[redis1]}:26379,${IP[redis2]}:26379,${IP[db]}:26379
REDIS_SENTINEL_MASTER=$MASTER_NAME
REDIS_PASSWORD=$REDIS_PASSWORD
REDIS_SENTINEL_PASSWORD=$REDIS_SENTINEL_PASSWORD
MAIL_TRANSPORT=sendgrid
SENDGRID_API_KEY=SG.cluster-stand-in
SENDGRID_API_HOST=http://${IP[mail]}:8025
SENDGRID_WEBHOOK_PUBLIC_KEY=$key
PUBLIC_BASE_URL=http://${IP[lb]}
TRUSTED_PROXY_COUNT=1
FORWARDED_ALLOW_IPS=${IP[lb]}
TRACKING_FLUSH_MS=0
SEND_UNKNOWN_WINDOW_SECONDS=${CLUSTER_UNKNOWN_WINDOW:-60}
WEB_CONCURRENCY=${CLUSTER_WEB_CONCURRENCY:-2}
WORKER_CONCURRENCY=${CLUSTER_WORKER_CONCURRENCY:-2}
IMPORT_DIR=$STATE/imports
LOG_LEVEL=INFO
PYTHONPATH=$ROOT
PYTHONUNBUFFERED=1
EOF
  chmod 600 "$STATE/env"
}

sentinel_conf() {  # HOST: a fresh Sentinel configuration (Sentinel rewrites it as it learns)
  # shellcheck disable=SC1091
  source "$STATE/secrets"
  cat >"$STATE/$1/sentinel.conf" <<EOF
bind ${IP[$1]}
port 26379
dir $STATE/$1
requirepass $REDIS_SENTINEL_PASSWORD
sentinel sentinel-pass $REDIS_SENTINEL_PASSWORD
sentinel monitor $MASTER_NAME ${IP[redis1]} 6379 2
sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD
sentinel down-after-milliseconds $MASTER_NAME 3000
sentinel failover-timeout $MASTER_NAME 20000
sentinel parallel-syncs $MASTER_NAME 1
EOF
}

start_sentinel() {
  [ -f "$STATE/$1/sentinel.conf" ] || sentinel_conf "$1"
  run_on "$1" sentinel redis-sentinel "$STATE/$1/sentinel.conf"
}

start_db() {
  local bindir data="$STATE/db/data"
  bindir=$(pg_bindir)
  mkdir -p "$STATE/db"
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data" && chown postgres "$STATE/db" "$data" && chmod o+x "$STATE" "$ROOT/var"
    (cd "$STATE/db" && runuser -u postgres -- "$bindir/initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null)
    echo "host all all $NET.0/24 trust" >>"$data/pg_hba.conf"
  fi
  # fsync off: this machine's disk is shared with other work; durability is not under test.
  run_on db postgres --as postgres "$bindir/postgres" -D "$data" -k "$STATE/db" \
    -c listen_addresses="${IP[db]}" -c port=5432 -c max_connections=200 -c fsync=off \
    -c full_page_writes=off -c synchronous_commit=off
  wait_port db 5432
  cat >"$STATE/db/pgbouncer.ini" <<EOF
[databases]
* = host=${IP[db]} port=5432
[pgbouncer]
listen_addr = ${IP[db]}
listen_port = 6432
unix_socket_dir =
auth_type = trust
auth_file = $STATE/db/pgbouncer-users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
logfile = $STATE/db/pgbouncer-own.log
EOF
  echo '"postgres" ""' >"$STATE/db/pgbouncer-users.txt"
  chown postgres "$STATE/db/pgbouncer.ini" "$STATE/db/pgbouncer-users.txt"
  touch "$STATE/db/pgbouncer-own.log" && chown postgres "$STATE/db/pgbouncer-own.log"
  run_on db pgbouncer --as postgres pgbouncer "$STATE/db/pgbouncer.ini"
  wait_port db 6432
  start_sentinel db
}

start_redis() {  # HOST [replicaof-host]
  local host=$1 extra=()
  # shellcheck disable=SC1091
  source "$STATE/secrets"
  [ -n "${2:-}" ] && extra=(--replicaof "${IP[$2]}" 6379)
  run_on "$host" redis redis-server --bind "${IP[$host]}" --port 6379 --dir "$STATE/$host" \
    --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
    --repl-diskless-sync-delay 0 "${extra[@]}"
  wait_port "$host" 6379
  start_sentinel "$host"
}

start_mail() {
  : >"$STATE/mail/stand-in.log"
  run_on mail stand-in "$VENV/bin/python" -m tests.fakes.sendgrid --host "${IP[mail]}" \
    --port 8025 --no-bodies --validate-sample 0.01 \
    --webhook-url "http://${IP[lb]}/webhooks/sendgrid"
  wait_port mail 8025
  for _ in $(seq 50); do
    [ "$(wc -l <"$STATE/mail/stand-in.log")" -ge 2 ] && return 0
    sleep 0.1
  done
  die "the stand-in printed no webhook key"
}

start_web() {
  local host=$1
  mkdir -p "$STATE/$host/spill"
  printf 'HOST=%s\nPORT=%s\nTRACKING_SPILL_DIR=%s\n' "${IP[$host]}" "${WEB_PORT[$host]}" \
    "$STATE/$host/spill" >"$STATE/$host/env"
  run_on "$host" gunicorn "$VENV/bin/gunicorn" -c "$ROOT/config/gunicorn.conf.py" 'app:create_app()'
  wait_port "$host" "${WEB_PORT[$host]}" 60
}

start_lb() {
  cat >"$STATE/lb/haproxy.cfg" <<EOF
global
  maxconn 4000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch
  option forwardfor
frontend www
  bind ${IP[lb]}:80
  default_backend web
backend web
  balance roundrobin
  option httpchk GET /healthz?scope=web
  http-check expect status 200
  # A check waits behind the requests a busy web host is serving: while Redis fails over,
  # every tracking hit goes to PostgreSQL and takes longer. 5 s, three in a row: a slow host
  # stays in, a dead one (refused connections) is out within about 3 s.
  timeout check 5s
  default-server inter 1s fall 3 rise 2
  server web1 ${IP[web1]}:${WEB_PORT[web1]} check
  server web2 ${IP[web2]}:${WEB_PORT[web2]} check
EOF
  run_on lb haproxy haproxy -db -f "$STATE/lb/haproxy.cfg"
  wait_port lb 80
}

start_worker() {
  local host=$1
  printf 'TRACKING_SPILL_DIR=%s\n' "$STATE/$host/spill" >"$STATE/$host/env"
  # As the Procfile runs them: a worker on every queue, and a beat (one per worker host; the
  # tick's lock and conditional UPDATE make a second beat harmless).
  run_on "$host" worker "$VENV/bin/celery" -A workers.celery_app worker --loglevel INFO \
    --queues transactional,bulk,default,webhooks --concurrency "${CLUSTER_WORKER_CONCURRENCY:-2}" \
    --prefetch-multiplier 1 -n "worker@$host" --without-gossip --without-mingle
  run_on "$host" beat "$VENV/bin/celery" -A workers.celery_app beat --loglevel INFO \
    --schedule "$STATE/$host/celerybeat-schedule"
}

start_host() {
  mkdir -p "$STATE/$1"
  case $1 in
    db) start_db ;;
    redis1) start_redis redis1 ;;
    redis2) start_redis redis2 redis1 ;;
    mail) start_mail ;;
    lb) start_lb ;;
    web1 | web2) start_web "$1" ;;
    worker1 | worker2) start_worker "$1" ;;
    *) die "no host $1" ;;
  esac
}

migrate() {
  (
    set -a; source "$STATE/env"; set +a
    cd "$ROOT"
    PYTHONPATH=$ROOT "$VENV/bin/python" - <<'PY'
import os, psycopg
url = os.environ["DATABASE_DIRECT_URL"].replace("/rallypoint", "/postgres")
with psycopg.connect(url, autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'rallypoint'").fetchone():
        conn.execute("CREATE DATABASE rallypoint")
PY
    "$VENV/bin/flask" --app app db upgrade >"$STATE/db/migrate.log" 2>&1
  ) || die "migrations failed (see $STATE/db/migrate.log)"
}

up() {
  need_root
  ensure_packages
  if ip link show "$BRIDGE" >/dev/null 2>&1; then die "already up (scripts/cluster.sh down first)"; fi
  rm -rf "$STATE" && mkdir -p "$STATE/imports"
  secrets_init
  net_up
  cg_up
  start_host db
  start_host redis1
  start_host redis2
  mkdir -p "$STATE/mail" && write_env && start_host mail && write_env
  migrate
  start_host web1
  start_host web2
  start_host lb
  start_host worker1
  start_host worker2
  status
}

down() {
  need_root
  local host
  for host in "${HOSTS[@]}"; do kill_host "$host"; done
  for host in "${HOSTS[@]}"; do
    rmdir "$(cg_dir freezer "$host")" "$(cg_dir cpuacct "$host")" 2>/dev/null || true
  done
  rmdir "/sys/fs/cgroup/freezer/$CG_PARENT" "/sys/fs/cgroup/cpuacct/$CG_PARENT" 2>/dev/null || true
  net_down
}

status() {
  local host state n
  for host in "${HOSTS[@]}"; do
    n=$(host_pids "$host" | wc -l)
    state=up
    ip netns list | grep -qw "rp-$host" || state="no namespace"
    [ "$(cat "/sys/class/net/rpv-$host/operstate" 2>/dev/null)" = down ] && state="cut off"
    printf '%-8s %-15s %-13s %s processes\n' "$host" "${IP[$host]}" "$state" "$n"
  done
  if [ -f "$STATE/secrets" ]; then
    # shellcheck disable=SC1091
    source "$STATE/secrets"
    local master
    master=$(ip netns exec rp-db redis-cli -h "${IP[db]}" -p 26379 -a "$REDIS_SENTINEL_PASSWORD" \
      --no-auth-warning SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | head -1 || true)
    echo "redis master (Sentinel on db): ${master:-unknown}"
  fi
}

cpu() {  # host cpu-seconds, from each host's cpuacct cgroup
  local host
  for host in "${HOSTS[@]}"; do
    printf '%s %s\n' "$host" "$(cat "$(cg_dir cpuacct "$host")/cpuacct.usage" 2>/dev/null || echo 0)"
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  kill) need_root; kill_host "${2:?host}" ;;
  start) need_root; start_host "${2:?host}" ;;
  cut) need_root; ip link set "rpv-${2:?host}" down ;;
  restore) need_root; ip link set "rpv-${2:?host}" up ;;
  env) cat "$STATE/env" ;;
  cpu) cpu ;;
  *) die "usage: scripts/cluster.sh up|down|status|kill HOST|start HOST|cut HOST|restore HOST|env|cpu" ;;
esac
