"""Audience tasks: run a member import, send a double opt-in confirmation."""

from __future__ import annotations

import logging
import random

from celery import Task, shared_task
from flask import current_app

from app import jobs
from app.extensions import db
from app.services import imports, optin
from app.services.transports import TransportError

log = logging.getLogger(__name__)


@shared_task(name=jobs.IMPORT_MEMBERS)
def import_members(import_id: int) -> None:
    """Run a queued member import; a second run of a finished import does nothing."""
    session = db.session
    if imports.start_import(session, import_id) is None:
        return
    session.commit()  # the page shows "running" at once

    def progress(update: imports.ImportProgress) -> None:
        imports.publish_progress(import_id, update)

    try:
        imports.run_import(session, import_id, progress=progress)
        session.commit()
    except imports.CsvRefused as exc:
        session.rollback()
        imports.finish_refused(session, import_id, exc.message)
        session.commit()
    except Exception:
        # Everything the import did is rolled back; the organizer sees a plain message and
        # can try again. Not retried: a failing file fails the same way twice.
        session.rollback()
        log.exception("import %s failed", import_id)
        imports.finish_failed(
            session,
            import_id,
            "Something went wrong while importing; nothing was changed. Try again, or contact "
            "your administrator if it happens again.",
        )
        session.commit()


@shared_task(name=jobs.SEND_OPTIN_CONFIRMATION, bind=True, max_retries=5)
def send_optin_confirmation(self: Task, member_id: int, list_id: int) -> None:
    """Send a pending subscription's confirmation email once (retries on passing errors)."""
    session = db.session
    try:
        optin.send_confirmation(session, member_id, list_id, current_app.config)
    except optin.ConfirmationNotSent as exc:
        session.rollback()
        log.error("opt-in confirmation for member %s list %s: %s", member_id, list_id, exc)
        return
    except TransportError as exc:
        session.rollback()
        if not exc.retryable:
            log.error(
                "opt-in confirmation for member %s list %s refused: %s", member_id, list_id, exc
            )
            return
        # Short, jittered backoff: no long countdowns on a Redis broker (DESIGN.md).
        delay = min(30.0, exc.retry_after or 2**self.request.retries) + random.random()
        raise self.retry(exc=exc, countdown=delay) from exc
    session.commit()
