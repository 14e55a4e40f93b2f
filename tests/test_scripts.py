"""scripts/lib.sh: the throwaway PostgreSQL that `make test` starts when none is reachable."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lib(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = f'source scripts/lib.sh && {command} "$@"'
    return subprocess.run(
        ["bash", "-c", script, "lib.sh", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_folder() -> Iterator[Path]:
    """A folder made like test.sh makes its own: `mktemp -d`, mode 0700, owned by whoever runs."""
    folder = Path(tempfile.mkdtemp(prefix="rallypoint-lib-test."))
    assert folder.stat().st_mode & 0o777 == 0o700
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(
    _lib("pg_bindir").returncode != 0, reason="no PostgreSQL binaries (initdb) installed"
)
def test_throwaway_postgres_starts_inside_a_private_temporary_folder(private_folder: Path) -> None:
    # As root, initdb runs as the postgres account, which must get through the 0700 folder.
    port = _free_port()
    data = private_folder / "pg"
    started = _lib("start_throwaway_postgres", str(data), str(port))
    try:
        assert started.returncode == 0, started.stderr
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        _lib("stop_throwaway_postgres", str(data))
