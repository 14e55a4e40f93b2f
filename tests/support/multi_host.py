"""Throwaway Redis-with-Sentinel and PgBouncer for the multi-host configuration tests.

Both use the Debian binaries (redis-sentinel, pgbouncer; scripts/test.sh installs them when
it may); a test skips when they are missing rather than pretending.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.servers import free_port

MASTER_NAME = "rallypoint"


def _wait_for(check: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up")


class SentinelGroup:
    """A master, one replica and one Sentinel (quorum 1), all with passwords."""

    PASSWORD = "redis-pass-1"
    SENTINEL_PASSWORD = "sentinel-pass-2"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rallypoint-sentinel-"))
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def _redis(self, name: str, *extra: str) -> None:
        port = self.ports[name]
        command = [
            "redis-server",
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--dbfilename", f"{name}.rdb", "--save", "", "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
            "--requirepass", self.PASSWORD, "--masterauth", self.PASSWORD,
            "--repl-diskless-sync-delay", "0",
            *extra,
        ]  # fmt: skip
        self.processes[name] = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=port, password=self.PASSWORD, socket_connect_timeout=0.2)
        _wait_for(client.ping, f"redis {name}")

    def start(self) -> SentinelGroup:
        self._redis("master")
        self._redis("replica", "--replicaof", "127.0.0.1", str(self.ports["master"]))
        replica = redis.Redis(port=self.ports["replica"], password=self.PASSWORD)
        _wait_for(lambda: replica.info("replication")["master_link_status"] == "up", "replication")
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.ports['sentinel']}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"requirepass {self.SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.ports['master']} 1\n"
            f"sentinel auth-pass {MASTER_NAME} {self.PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
        )
        self.processes["sentinel"] = subprocess.Popen(
            ["redis-sentinel", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        sentinel = self.sentinel_client()
        _wait_for(lambda: sentinel.execute_command("SENTINEL", "REPLICAS", MASTER_NAME), "sentinel")
        return self

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(
            port=self.ports["sentinel"], password=self.SENTINEL_PASSWORD, socket_timeout=2
        )

    def master_port(self) -> int:
        _host, port = self.sentinel_client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME
        )
        return int(port)

    def environ(self) -> dict[str, str]:
        return {
            "REDIS_SENTINELS": f"127.0.0.1:{self.ports['sentinel']}",
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_PASSWORD": self.PASSWORD,
            "REDIS_SENTINEL_PASSWORD": self.SENTINEL_PASSWORD,
            # Nothing listens here: every client must go through the Sentinel.
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }

    def failover(self, timeout: float = 20.0) -> int:
        """Ask the Sentinel to promote the replica; returns the new master's port."""
        before = self.master_port()
        # The replica has everything written so far (the test chooses what it lacks).
        master = redis.Redis(port=before, password=self.PASSWORD, socket_timeout=5)
        master.execute_command("WAIT", 1, 3000)
        self.sentinel_client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        _wait_for(lambda: self.master_port() != before, "the failover", timeout)
        # Until the old master hears it is a replica now, it still takes writes (which the
        # resync then drops: Redis replication is asynchronous). Wait for that too.
        old = redis.Redis(port=before, password=self.PASSWORD, socket_timeout=1)
        _wait_for(lambda: old.role()[0] in (b"slave", "slave"), "the demotion", timeout)
        return self.master_port()

    def cleanup(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of the test PostgreSQL server.

    A pool of two server connections per database and user, so consecutive transactions of
    one client really do land on different server connections.
    """

    def __init__(self, host: str, port: int, user: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rallypoint-pgbouncer-"))
        self.port = free_port()
        self.user = user
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PgBouncer:
        command = ["pgbouncer", str(self.dir / "pgbouncer.ini")]
        if os.getuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.dir, "postgres")
            for path in self.dir.iterdir():
                shutil.chown(path, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log()}")
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True

        _wait_for(listening, "pgbouncer")
        return self

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def cleanup(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
