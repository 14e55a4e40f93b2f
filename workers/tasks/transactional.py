"""Transactional mail (test sends): its own queue, so a big campaign never delays it."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task, shared_task
from flask import current_app

from app import jobs
from app.extensions import db
from app.services.sending import transactional
from app.services.transports import TransportError, get_transport

log = logging.getLogger(__name__)

MAX_RETRIES = 4


@shared_task(name=jobs.SEND_TRANSACTIONAL, bind=True, max_retries=MAX_RETRIES)
def send_transactional(self: Task, kind: str, payload: dict[str, Any]) -> int:
    """Send one transactional message by kind (e.g. "campaign_test"); retried on 429/5xx."""
    transport = get_transport(current_app.config)
    try:
        sent = transactional.deliver(db.session, transport, kind, payload)
    except transactional.UnknownKind:
        log.error("transactional job of unknown kind %r dropped", kind)
        return 0
    except TransportError as error:
        db.session.rollback()
        if not error.retryable:
            log.error("transactional %s refused for good: %s", kind, error)
            return 0
        # A few seconds at most (no long countdowns on a Redis broker), with jitter.
        delay = min(error.retry_after or 2 ** (self.request.retries or 0), 30.0)
        raise self.retry(exc=error, countdown=delay + random.uniform(0, 1)) from error
    db.session.commit()
    return sent
