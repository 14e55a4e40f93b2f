"""Real Celery workers and beat as subprocesses, for end-to-end and chaos tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
QUEUES = "bulk,transactional,default,webhooks"


def worker_environ(base: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """The test environment for a subprocess, importing this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RALLYPOINT_", "PYTEST_"))}
    env.update(base)
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class CeleryProcess:
    """`celery worker` or `celery beat` in its own process group (so SIGKILL takes it all)."""

    def __init__(
        self,
        kind: str,
        env: Mapping[str, str],
        log_dir: Path,
        *args: str,
        concurrency: int = 2,
        queues: str = QUEUES,
    ) -> None:
        self.kind = kind
        self.name = f"{kind}-{uuid.uuid4().hex[:6]}"
        self.env = dict(env)
        self.log_path = log_dir / f"{self.name}.log"
        command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", kind]
        if kind == "worker":
            command += [
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "--prefetch-multiplier",
                "1",
                "-n",
                f"{self.name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                self.env.get("LOG_LEVEL", "WARNING"),
            ]
        else:
            command += [
                "-s",
                str(log_dir / f"{self.name}.schedule"),
                "--loglevel",
                self.env.get("LOG_LEVEL", "WARNING"),
            ]
        self.command = [*command, *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, redis_url: str, timeout: float = 30.0) -> CeleryProcess:
        """Wait until the worker answers a control ping (it consumes from then on)."""
        from celery import Celery

        probe = Celery(broker=redis_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log()}")
                try:
                    replies = probe.control.ping(timeout=0.5)
                except (OSError, redis.RedisError):
                    # A connection left over from before a Redis restart; the next is fresh.
                    probe.close()
                    probe = Celery(broker=redis_url)
                    continue
                if any(self.name in name for reply in replies for name in reply):
                    return self
            raise RuntimeError(f"{self.name} did not become ready:\n{self.log()}")
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acks, no cleanup."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""


def purge_queues(redis_url: str) -> None:
    """Empty the Celery queues of this session's private Redis (left-overs of other tests)."""
    client = redis.Redis.from_url(redis_url)
    keys = [
        "bulk",
        "transactional",
        "default",
        "webhooks",
        "unacked",
        "unacked_index",
        "unacked_mutex",
    ]
    client.delete(*keys)
