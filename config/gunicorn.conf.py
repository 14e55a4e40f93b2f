"""gunicorn settings for the `web` process of the Procfile."""

import os
from pathlib import Path

port = os.environ.get("PORT", "5000")
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{port}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 10
accesslog = "-" if os.environ.get("ACCESS_LOG") else None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# gunicorn's control socket (for `gunicornc`) defaults to one path in the home directory, which
# a second checkout (or a test server beside `make run`) would take over. Keep it in this
# checkout's var/, one per port; a path too long for a Unix socket (~107 bytes) turns it off.
control_socket = str(Path(__file__).resolve().parent.parent / "var" / f"gunicorn-{port}.ctl")
control_socket_disable = len(control_socket.encode()) > 100
