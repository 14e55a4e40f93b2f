"""The `celery -A workers.celery_app` target: the only module that builds the app at import."""

from __future__ import annotations

import gc
import logging
from typing import Any

from celery.signals import worker_process_init

from app import create_app
from app.emails.render import warm_layouts
from app.extensions import db
from app.infra import redis_client
from workers import kombu_fixes

log = logging.getLogger(__name__)

kombu_fixes.install()
flask_app = create_app()
celery_app = flask_app.extensions["celery"]
app = celery_app  # `celery -A workers.celery_app` looks for `app` or `celery`

# Registers the @shared_task functions with this Celery app.
celery_app.autodiscover_tasks(["workers"], related_name="tasks", force=True)
import workers.tasks  # noqa: E402,F401

# Compiled here, in the parent: every pool process it forks starts with the email layouts
# compiled, instead of paying for it in its first batch (a campaign's first email).
with flask_app.app_context():
    warm_layouts()

# What the parent has built by now (the app, the tasks, the compiled layouts) lives as long
# as the process: frozen, the pool processes forked from it never walk it in a full
# collection (gc.freeze in the Python docs). create_app freezes only outside TESTING (the
# test suite builds many apps in one process); a worker process is never that process, and
# under the testing settings (the benchmarks' and tests' workers) each full collection of a
# pool process walked ~200,000 objects: about 1 s of a 100,000-recipient send per process.
gc.freeze()


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not reuse database connections the parent opened: two
    # processes on one socket corrupt each other's results. Redis' pool checks the pid.
    with flask_app.app_context():
        db.engine.dispose(close=False)
        _warm_up()


def _warm_up() -> None:
    """Open this pool process's database and Redis connections before its first task.

    A campaign's first batch otherwise pays for them (connecting, authenticating: 50-150 ms
    on a busy 2-core host) between "send now" and the first request. A failure here only
    logs: the task connects again as usual.
    """
    try:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        redis_client.get_redis().ping()
    except Exception:  # the broker or the database may still be starting; tasks retry
        log.warning("could not open connections ahead of the first task", exc_info=True)
