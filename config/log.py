"""Logging set-up: one format for web, worker and beat, level from the settings."""

from __future__ import annotations

import logging
import logging.config
from typing import Final

# Beat's periodic work, by task name (config/ does not import app.jobs). Celery logs a
# "received" and a "succeeded" line for every task; for these, run every second or few, that
# is a screenful a minute of nothing. Their own code logs when they did something, and a
# failure or retry is logged at WARNING or above whatever the task.
PERIODIC_TASKS: Final = frozenset(
    {"scheduling.tick", "scheduling.sweep", "tracking.flush", "webhooks.sweep"}
)
# Where Celery writes those lines: beat ("Sending due task"), the worker's strategy
# ("received") and the tracer ("succeeded"). The worker's records carry the task in
# `record.data["name"]`, beat's in its second argument.
CELERY_TASK_LOGGERS: Final = ("celery.beat", "celery.worker.strategy", "celery.app.trace")
BEAT_SENDING: Final = "Scheduler: Sending due task %s (%s)"


class QuietPeriodicTasks(logging.Filter):
    """Drop Celery's per-task INFO lines for the periodic tasks; let everything else through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            return data.get("name") not in PERIODIC_TASKS
        if record.msg == BEAT_SENDING and isinstance(record.args, tuple) and len(record.args) == 2:
            return record.args[1] not in PERIODIC_TASKS
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send every logger to stderr with the process name, so honcho's prefixes stay readable."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            },
            "filters": {"quiet_periodic": {"()": QuietPeriodicTasks}},
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
            },
            "root": {"handlers": ["stderr"], "level": level},
            "loggers": {
                "werkzeug": {"level": "WARNING"},
                "sqlalchemy.engine": {"level": "WARNING"},
                "alembic.runtime.plugins": {"level": "WARNING"},
                **{name: {"filters": ["quiet_periodic"]} for name in CELERY_TASK_LOGGERS},
            },
        }
    )
