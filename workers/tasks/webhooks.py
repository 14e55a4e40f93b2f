"""Webhook batches: apply a stored SendGrid batch; a sweep re-queues batches whose job was lost."""

from __future__ import annotations

import logging
import time

from celery import shared_task

from app import jobs
from app.extensions import db
from app.services.tracking import webhook_events, webhooks

log = logging.getLogger(__name__)


@shared_task(name=jobs.PROCESS_WEBHOOK_BATCH)
def process_webhook_batch(batch_id: int) -> int:
    """Apply one batch; a second run finds it processed and changes nothing."""
    started = time.perf_counter()
    result = webhook_events.process_batch(db.session, batch_id)
    db.session.commit()
    if result is None:
        return 0
    log.info(
        "webhook batch %s: %s events recorded, %s duplicates in %.0f ms",
        batch_id,
        result.recorded,
        result.duplicates,
        (time.perf_counter() - started) * 1000,
    )
    return result.recorded


@shared_task(name=jobs.SWEEP_WEBHOOK_BATCHES)
def sweep_webhook_batches() -> int:
    """Queue batches still unprocessed a minute after they arrived."""
    ids = webhooks.unprocessed_batches(db.session)
    for batch_id in ids:
        jobs.enqueue(db.session, jobs.PROCESS_WEBHOOK_BATCH, batch_id)
    db.session.commit()
    return len(ids)
