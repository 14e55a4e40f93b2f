"""Sending tasks: the beat tick and sweep, dispatch, and one task per batch."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from flask import current_app

from app import jobs
from app.extensions import db
from app.infra import redis_client
from app.models.base import utcnow
from app.services import sending
from app.services.sending import coordination

log = logging.getLogger(__name__)


@shared_task(name=jobs.SCHEDULING_TICK)
def tick() -> int:
    """Start the scheduled campaigns that are due (beat, every few seconds)."""
    period = float(current_app.config["SCHEDULER_TICK_SECONDS"])
    with coordination.exclusive(redis_client.get_redis(), "tick", ttl=max(period, 5.0)) as mine:
        if not mine:
            return 0
        started = sending.tick(db.session, utcnow())
        db.session.commit()
        coordination.mark_tick(redis_client.get_redis())
    return len(started)


@shared_task(name=jobs.SWEEP_SENDING)
def sweep() -> int:
    """Settle abandoned batches, judge batches in doubt, finish and re-queue campaigns (beat)."""
    config = current_app.config
    client = redis_client.get_redis()
    period = float(config["SEND_SWEEP_SECONDS"])
    with coordination.exclusive(client, "sweep", ttl=max(period, 10.0)) as mine:
        if not mine:
            return 0
        report = sending.sweep(
            db.session,
            utcnow(),
            client=client,
            stuck_seconds=float(config["SEND_STUCK_SECONDS"]),
            stall_seconds=float(config["SEND_STALL_SECONDS"]),
            settlement=sending.Settlement.from_config(config),
        )
        db.session.commit()
    return report.unknown + len(report.resent) + sum(len(b) for b in report.requeued.values())


@shared_task(name=jobs.DISPATCH_CAMPAIGN)
def dispatch(campaign_id: int) -> int:
    """Freeze a sending campaign's audience in growing steps, queuing each step's batches.

    The first step's batches leave while the rest of the audience is frozen
    (sending.freeze_in_steps); the heartbeat is touched after each step.
    """
    config = current_app.config
    stall = float(config["SEND_STALL_SECONDS"])

    def heartbeat(_step: sending.FreezeResult) -> None:
        coordination.touch(redis_client.get_redis(), campaign_id, stall)

    result = sending.freeze_in_steps(
        db.session,
        campaign_id,
        batch_size=int(config["SEND_BATCH_SIZE"]),
        settlement=sending.Settlement.from_config(config),
        after_step=heartbeat,
    )
    return len(result.batches)


@shared_task(name=jobs.SEND_BATCH, bind=True)
def send_batch(self: Task, campaign_id: int, batch_no: int, attempt: int = 0) -> int:
    """Send one batch; the service says when to run it again (bounded, a few seconds)."""
    outcome = sending.send_batch(db.session, campaign_id, batch_no, attempt=attempt)
    if outcome.requeue_in is not None:
        self.apply_async(
            args=(campaign_id, batch_no, outcome.next_attempt),
            countdown=outcome.requeue_in or None,
        )
    return outcome.sent
