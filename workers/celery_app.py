"""The `celery -A workers.celery_app` target: the only module that builds the app at import."""

from __future__ import annotations

from app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
app = celery_app  # `celery -A workers.celery_app` looks for `app` or `celery`

# Registers the @shared_task functions with this Celery app.
celery_app.autodiscover_tasks(["workers"], related_name="tasks", force=True)
import workers.tasks  # noqa: E402,F401
