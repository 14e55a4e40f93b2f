"""The `celery -A workers.celery_app` target: the only module that builds the app at import."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from app import create_app
from app.extensions import db
from workers import kombu_fixes

kombu_fixes.install()
flask_app = create_app()
celery_app = flask_app.extensions["celery"]
app = celery_app  # `celery -A workers.celery_app` looks for `app` or `celery`

# Registers the @shared_task functions with this Celery app.
celery_app.autodiscover_tasks(["workers"], related_name="tasks", force=True)
import workers.tasks  # noqa: E402,F401


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked pool process must not reuse database connections the parent opened: two
    # processes on one socket corrupt each other's results. Redis' pool checks the pid.
    with flask_app.app_context():
        db.engine.dispose(close=False)
