"""What the benchmarks share: the throwaway database's server, waiting for a web process,
stopping processes, and where the CPU went.

CPU accounting (`CpuMeter`) reads /proc, so it works on Linux only and needs no extra
package. It counts, between `start()` and `stop()`:

- each named process tree (gunicorn's master and workers, a Celery worker and its pool,
  beat, the fake SendGrid, a private redis-server): the user + system time of every live
  process of the tree, plus what its reaped children used (cutime + cstime);
- `postgres`: the backends connected to the benchmark's own database, found in
  `pg_stat_activity` every `interval` seconds (a backend that comes and goes between two
  samples is missed; the benchmarks' processes keep pooled connections, so this is small);
- `postgres_shared`: the server's background processes (WAL writer, checkpointer,
  background writer, autovacuum). On a shared host other databases' work lands there too:
  an upper bound, stated apart;
- `load`: this process and the children it has reaped (the load generator, the parser
  thread of an import, the benchmark's own Flask test client).

`per_unit(units)` gives microseconds of CPU per unit (a recipient, a row, a request, an
event) for each group: divided by a core's microseconds a second, the capacity a group
needs for a rate.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.support.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]

_TICK = os.sysconf("SC_CLK_TCK")
# The server processes of PostgreSQL that no database owns (their `ps` titles).
_SHARED_TITLES = (
    "walwriter",
    "checkpointer",
    "background writer",
    "autovacuum",
    "logical replication",
    "wal writer",
)


def server_url() -> sa.URL:
    """The PostgreSQL server for throwaway databases (TEST_DATABASE_URL, DATABASE_URL)."""
    raw = (
        os.environ.get("TEST_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    return make_url(raw).set(drivername="postgresql")


def admin_url(url: sa.URL) -> str:
    """The `postgres` database of the same server, as a libpq URL."""
    return url.set(database="postgres").render_as_string(hide_password=False)


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    """Wait until something on loopback `port` answers `path` with a status below 500."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on port {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_average() -> list[float]:
    """The host's 1, 5 and 15 minute load averages: how busy the shared machine was."""
    return [round(x, 2) for x in os.getloadavg()]


def _stat(pid: int) -> tuple[str, int, float, float] | None:
    """(title, parent pid, own CPU seconds, reaped children's CPU seconds) of a process."""
    try:
        head, _, rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
    except OSError:
        return None
    fields = rest.split()
    own = (int(fields[11]) + int(fields[12])) / _TICK
    children = (int(fields[13]) + int(fields[14])) / _TICK
    return head.partition("(")[2], int(fields[1]), own, children


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _processes() -> dict[int, tuple[str, int, float, float]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def tree_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree (live processes + reaped ones)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    result = {}
    for label, root in roots.items():
        total, todo = 0.0, [root]
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][2] + table[pid][3]
            todo.extend(children.get(pid, ()))
        result[label] = total
    return result


def _own_cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class CpuMeter:
    """CPU seconds of each group of processes a benchmark starts, over a timed window.

    Args:
        database: libpq URL of the benchmark's database (its backends are counted), or None.
        groups: label -> root pid of a process tree (e.g. {"web": gunicorn.pid}).
        interval: seconds between samples of pg_stat_activity and the process trees.
    """

    def __init__(
        self, database: str | None, groups: dict[str, int], interval: float = 0.25
    ) -> None:
        self.database = database
        self.groups = dict(groups)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._backend_first: dict[int, float] = {}
        self._backend_last: dict[int, float] = {}
        self._lock = threading.Lock()
        self._before: dict[str, float] = {}
        self._result: dict[str, float] | None = None
        self._initial_backends: set[int] = set()

    # The backends of the benchmark's database, sampled in a thread.
    def _backends(self, conn: psycopg.Connection) -> None:
        pids = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]
        with self._lock:
            for pid in pids:
                stat = _stat(pid)
                if stat is None:
                    continue
                cpu = stat[2]
                # A backend born after start() counts whole; one alive before from then on.
                self._backend_first.setdefault(pid, cpu if self._started_with(pid) else 0.0)
                self._backend_last[pid] = cpu

    def _started_with(self, pid: int) -> bool:
        return pid in self._initial_backends

    def _run(self) -> None:
        assert self.database is not None
        with psycopg.connect(self.database, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                try:
                    self._backends(conn)
                except psycopg.Error:
                    continue
            self._backends(conn)

    def _shared_postgres(self) -> float:
        total = 0.0
        for pid, (title, _, own, _) in _processes().items():
            if title.startswith("postgres") and any(t in _cmdline(pid) for t in _SHARED_TITLES):
                total += own
        return total

    def start(self) -> CpuMeter:
        self._before = tree_cpu(self.groups)
        self._before["load"] = _own_cpu()
        self._before["postgres_shared"] = self._shared_postgres()
        if self.database is not None:
            with psycopg.connect(self.database, autocommit=True) as conn:
                self._initial_backends = {
                    int(row[0])
                    for row in conn.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    )
                }
                self._backends(conn)
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds per group since start(): the groups, postgres, postgres_shared, load.

        A second call returns the first call's figures.
        """
        if self._result is not None:
            return self._result
        after = tree_cpu(self.groups)
        after["load"] = _own_cpu()
        after["postgres_shared"] = self._shared_postgres()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        result = {k: max(0.0, after[k] - self._before.get(k, 0.0)) for k in after}
        if self.database is not None:
            with self._lock:
                result["postgres"] = sum(
                    self._backend_last[p] - self._backend_first[p] for p in self._backend_last
                )
        self._result = {k: round(v, 3) for k, v in result.items()}
        return self._result

    def per_unit(self, units: int) -> dict[str, float]:
        """Microseconds of CPU per unit for each group (call after stop())."""
        assert self._result is not None, "stop() first"
        per = {k: round(v / max(units, 1) * 1e6, 1) for k, v in self._result.items()}
        # postgres_shared is left out of the total: on a shared host it holds others' work.
        per["total"] = round(sum(v for k, v in per.items() if k != "postgres_shared"), 1)
        return per


def cpu_line(label: str, seconds: dict[str, float], per_unit: dict[str, float], unit: str) -> str:
    """A readable line: CPU seconds and µs per unit of each group, with the load average."""
    parts = ", ".join(f"{k} {seconds.get(k, 0):.2f} s ({per_unit[k]:.0f} µs)" for k in seconds)
    total = per_unit["total"]
    return f"{label}: CPU {parts}; {total:.0f} µs a {unit} in all; load {load_average()}"


def pid_of(server: object) -> int:
    """The pid of a tests.support server (its `process`), 0 if it is not running."""
    process = getattr(server, "process", None)
    return int(process.pid) if process is not None else 0


@dataclass
class BenchSite:
    """A throwaway database, a private redis-server, a work folder and a port for gunicorn,
    with the environment the Procfile's processes read (production settings, outbox mail).

    `BenchSite.open(**extra)` creates them; `close(procs)` stops the processes a benchmark
    started (newest first), then removes the Redis server, the database and the folder.
    """

    server: sa.URL
    name: str
    db_url: str
    redis_server: RedisServer
    workdir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, log_level: str = "WARNING", **extra: str) -> BenchSite:
        server = server_url()
        name = f"rallypoint_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url(server), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        db_url = server.set(database=name).render_as_string(hide_password=False)
        redis_server = RedisServer().start()
        workdir = Path(tempfile.mkdtemp(prefix="rallypoint-bench-"))
        port = free_port()
        env = {
            **os.environ,
            "RALLYPOINT_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_server.url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "MAIL_TRANSPORT": "outbox",
            "OUTBOX_DIR": str(workdir / "outbox"),
            "PORT": str(port),
            "WEB_CONCURRENCY": "2",
            "LOG_LEVEL": log_level,
            "PYTHONPATH": str(ROOT),
            **extra,
        }
        env.pop("ACCESS_LOG", None)
        return cls(server, name, db_url, redis_server, workdir, port, env)

    def close(self, procs: list[subprocess.Popen[bytes]]) -> None:
        for proc in reversed(procs):
            stop(proc)
        self.redis_server.cleanup()
        with psycopg.connect(admin_url(self.server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        shutil.rmtree(self.workdir, ignore_errors=True)
