"""The web process as the Procfile starts it: its files stay inside the checkout."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def _wait_for_http(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, "gunicorn exited"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/login")
                conn.getresponse().read()
                return
            finally:
                conn.close()
        except OSError:
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.1)


def test_the_control_socket_is_in_var_one_per_port_not_in_the_home_folder(
    test_environ: dict[str, str], tmp_path: Path
) -> None:
    # Two checkouts (or a test server beside `make run`) each keep their own socket.
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env.update(test_environ, HOME=str(home), PORT=str(port), WEB_CONCURRENCY="1")
    env["PYTHONPATH"] = str(ROOT)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    socket_path = ROOT / "var" / f"gunicorn-{port}.ctl"
    proc = subprocess.Popen(
        [str(gunicorn), "-c", "config/gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_http(port, proc)
        deadline = time.monotonic() + 10
        while not socket_path.is_socket():
            assert time.monotonic() < deadline, f"no control socket at {socket_path}"
            time.sleep(0.1)
        assert not (home / ".gunicorn").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        socket_path.unlink(missing_ok=True)
