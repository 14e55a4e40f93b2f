"""Tracking flush: Redis stream -> PostgreSQL every second (beat), acknowledged after commit."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from redis import Redis
from redis.exceptions import LockError
from sqlalchemy.exc import DBAPIError, OperationalError

from app import jobs
from app.extensions import db
from app.infra.redis_client import get_redis
from app.services.tracking import hit_stream, machine_hits
from app.services.tracking import hits as tracking
from app.services.tracking.runtime import runtime

log = logging.getLogger(__name__)

# A run stops reading after this long so beat's next tick finds the lock free; the lock
# outlives a run by a wide margin, and a crashed run's lock expires on its own.
RUN_SECONDS = 5.0
LOCK_SECONDS = 60


@shared_task(name=jobs.FLUSH_TRACKING)
def flush_tracking(
    run_seconds: float = RUN_SECONDS, claim_idle_ms: int = hit_stream.CLAIM_IDLE_MS
) -> int:
    """Record buffered hits; returns how many were newly recorded. Safe to run twice."""
    client = get_redis()
    lock = client.lock(hit_stream.LOCK_KEY, timeout=LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        return 0  # another flusher is running
    recorded = 0
    deadline = time.monotonic() + run_seconds
    apple = runtime().apple.current()
    try:
        for batch in hit_stream.batches(client, claim_idle_ms=claim_idle_ms):
            try:
                recorded += tracking.record_hits(db.session, batch.hits, apple=apple)
                db.session.commit()
            except Exception as exc:
                db.session.rollback()
                if _database_away(exc):
                    raise  # leave the entries pending: the next run reads them again
                recorded += _record_entries_alone(client, batch, apple)
                continue
            hit_stream.acknowledge(client, batch.entry_ids)  # only after the commit
            # Stop once caught up: hits keep arriving, and chasing them in batches of a few
            # dozen costs several times more per hit than one bulk write a second.
            if batch.caught_up or time.monotonic() > deadline:
                break
        else:
            hit_stream.publish_watermark(client)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("tracking flush lock expired before the run ended")
    if recorded:  # beat runs this every second: an idle run says nothing
        log.info("tracking.flush recorded %d hits", recorded)
    return recorded


def _database_away(exc: Exception) -> bool:
    """An outage (retry later), as opposed to an entry the database will never accept."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _record_entries_alone(
    client: Redis, batch: hit_stream.StreamBatch, apple: machine_hits.NetworkSet
) -> int:
    """A batch the database refused: record entry by entry, parking the ones that fail."""
    recorded = 0
    for entry_id in batch.entry_ids:
        hits = batch.entries.get(entry_id, [])
        try:
            recorded += tracking.record_hits(db.session, hits, apple=apple)
            db.session.commit()
        except Exception as exc:
            db.session.rollback()
            if _database_away(exc):
                raise
            log.exception(
                "tracking entry %s cannot be recorded; parked in %s", entry_id, hit_stream.DEAD_KEY
            )
            hit_stream.dead_letter(client, entry_id, hits, str(exc))
            continue
        hit_stream.acknowledge(client, [entry_id])
    return recorded
