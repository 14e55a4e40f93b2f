"""Tracking flush: Redis stream -> PostgreSQL every second (beat), acknowledged after commit."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from celery import shared_task
from flask import current_app
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
    """Record buffered hits; returns how many were newly recorded. Safe to run twice.

    The work runs in a thread of its own at a lower CPU priority (TRACKING_FLUSH_NICE,
    added to the process's nice value; 0 runs it in the task's thread): on a host where
    the web processes share the cores with the worker, each second's bulk write then
    yields the core to a request instead of holding it for the write's length. A thread's
    niceness ends with the thread, so the pool process keeps its priority for its other
    tasks (sending), which an os.nice() of the process could not undo without privilege.
    """
    nice = int(current_app.config.get("TRACKING_FLUSH_NICE", 0))
    if nice <= 0 or not hasattr(os, "setpriority"):
        return _flush(run_seconds, claim_idle_ms)
    return _in_niced_thread(nice, lambda: _flush(run_seconds, claim_idle_ms))


def _in_niced_thread(nice: int, work: Callable[[], int]) -> int:
    """Run `work` in a new thread (with its own app context and session) at +`nice`."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
        except OSError:
            log.warning("tracking flush: could not lower its CPU priority", exc_info=True)
        try:
            with app.app_context():
                outcome["recorded"] = work()
        except BaseException as exc:  # raised again in the task's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="tracking-flush")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return int(outcome.get("recorded", 0))  # type: ignore[call-overload]


def _flush(run_seconds: float, claim_idle_ms: int) -> int:
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
