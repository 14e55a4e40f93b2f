"""Audience tasks: run a member import (opt-in confirmations go through transactional.send)."""

from __future__ import annotations

import logging

from celery import shared_task

from app import jobs
from app.extensions import db
from app.services.audience import imports

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
