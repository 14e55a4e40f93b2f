"""Background jobs by name, sent only after the database transaction commits.

`app/` never imports `workers/`: a service calls `enqueue(TASK_NAME, ids...)`, the message waits
on the SQLAlchemy session and leaves in an `after_commit` listener, so a worker never looks for
a row that is not there yet, and a rolled-back change sends nothing (docs/architecture.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.services import DbSession

log = logging.getLogger(__name__)

# Task names: the contract between app/ and workers/.
HEALTH_PING = "maintenance.ping"
SCHEDULING_TICK = "scheduling.tick"
SWEEP_SENDING = "scheduling.sweep"
DISPATCH_CAMPAIGN = "campaigns.dispatch"
SEND_BATCH = "campaigns.send_batch"
IMPORT_MEMBERS = "audience.import_members"
SEND_TRANSACTIONAL = "transactional.send"
FLUSH_TRACKING = "tracking.flush"
PROCESS_WEBHOOK_BATCH = "webhooks.process_batch"
SWEEP_WEBHOOK_BATCHES = "webhooks.sweep"
PURGE_PERSONAL_DATA = "retention.purge"

_PENDING_KEY = "rallypoint.pending_jobs"


@dataclass(frozen=True)
class Job:
    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None


def enqueue(
    session: DbSession, name: str, *args: Any, queue: str | None = None, **kwargs: Any
) -> Job:
    """Queue a task to be sent when `session` commits; dropped if it rolls back.

    Args:
        session: the session whose transaction the job belongs to (usually `db.session`).
        name: a task name constant from this module.
        *args: JSON-serialisable arguments: ids, never ORM objects.
        queue: overrides the queue the routes would pick.
        **kwargs: JSON-serialisable keyword arguments.
    """
    job = Job(name, tuple(args), dict(kwargs), queue)
    session.info.setdefault(_PENDING_KEY, []).append(job)
    return job


def pending_jobs(session: Session) -> list[Job]:
    """The jobs waiting for `session` to commit (tests read this)."""
    return list(session.info.get(_PENDING_KEY, []))


def celery_app() -> Celery:
    celery: Celery = current_app.extensions["celery"]
    return celery


def send_now(job: Job) -> None:
    """Publish a job immediately, outside any transaction (beat ticks, retries)."""
    options: dict[str, Any] = {}
    if job.queue:
        options["queue"] = job.queue
    celery_app().send_task(job.name, args=job.args, kwargs=job.kwargs, **options)


@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    jobs = session.info.pop(_PENDING_KEY, [])
    for job in jobs:
        try:
            send_now(job)
        except Exception:
            # The data is committed; the periodic sweeps (scheduling tick, stale-batch recovery)
            # find work whose message was lost and queue it again, so log rather than fail.
            log.exception("could not publish job %s%s after commit", job.name, job.args)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)
