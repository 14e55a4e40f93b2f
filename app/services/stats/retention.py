"""Retention: old events lose the member's IP address and user agent; old raw webhook batches go.

An open or click event keeps the member's IP address and user agent in `detail` (``{"ip",
"ua", "reasons"}``) while they may still be looked at; SendGrid's raw Event Webhook batches
hold addresses, IPs and user agents. After TRACKING_DETAIL_DAYS an event loses "ip" and "ua"
and keeps everything else: `reasons`, `is_machine`, kind, time, link and delivery, which are
all that counters, rollups and their recomputation read, so no figure changes. After
WEBHOOK_BATCH_DAYS a processed batch is deleted (its events are rows of `events` by then);
batches never processed, or whose processing reported an error, are kept for a person to
look at, and counted in the log.

The events table grows by tens of millions of rows, so it is walked by primary key, at most
EVENT_BATCH ids a transaction, from a watermark in Redis: the first id that may still hold
an IP address. Ids follow insertion and a tracking event is inserted seconds after its
`occurred_at`, so the walk stops at the first range holding newer events and nothing old to
clean. No index on `occurred_at` is needed: each statement reads one primary-key range, and
an index would cost every insert of the tracking flusher for a query that runs once an hour.
A lost watermark (Redis emptied) costs one walk from the first event, in the same batches.
An event inserted long after it happened (hits replayed after an outage) is cleaned when the
events around it in id order are old enough: as late as its insertion was.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa
from redis.exceptions import LockError

from app.infra.sql import is_postgresql
from app.models import Event, WebhookBatch
from app.models.base import utcnow
from app.services import DbSession

log = logging.getLogger(__name__)

EVENT_BATCH = 10_000
# A raw batch can hold 768 KB of JSON: fewer rows a transaction keep each commit small.
WEBHOOK_BATCH = 500
# Renewed after every batch: a long first run keeps it, a crashed run frees it within minutes.
LOCK_KEY = "rp:retention:lock"
LOCK_SECONDS = 300
# What one beat run may take; the next run goes on from the watermark (the CLI has no limit).
RUN_SECONDS = 300.0
# Events stamped further ahead than this (a wrong clock, a bogus webhook timestamp) are not
# taken for "newer than the limit": they must not stop the walk or pin the watermark forever.
_CLOCK_SLACK = timedelta(days=1)
_WATERMARK_PREFIX = "rp:retention:events-from:"

# The keys that identify a person; "reasons" (why a hit is a machine's) stays.
PERSONAL_KEYS = ("ip", "ua")
_HAS_PERSONAL_PG = sa.text("detail ?| array['ip', 'ua']")
_WITHOUT_PERSONAL_PG: sa.ColumnClause[Any] = sa.literal_column("detail - 'ip' - 'ua'")
# SQLite (development): json_type is NULL only for a missing key (a JSON null gives 'null').
_HAS_PERSONAL_SQLITE = sa.text(
    "(json_type(detail, '$.ip') IS NOT NULL OR json_type(detail, '$.ua') IS NOT NULL)"
)
_WITHOUT_PERSONAL_SQLITE: sa.ColumnClause[Any] = sa.literal_column(
    "json_remove(detail, '$.ip', '$.ua')"
)


class RetentionError(ValueError):
    """A retention period that cannot be applied."""


@dataclass
class RetentionReport:
    """What one run removed, and the personal data it had to keep."""

    events_before: datetime  # events recorded before this lost their IP address and user agent
    batches_before: datetime  # processed webhook batches received before this were deleted
    events_cleaned: int = 0
    batches_deleted: int = 0
    kept_unprocessed: int = 0  # batches older than the limit never processed
    kept_failed: int = 0  # batches older than the limit whose processing reported an error
    finished: bool = True  # False: stopped at its time limit; the next run goes on


class _Run:
    """Commits a batch, keeps the lock and says whether there is time for another."""

    def __init__(self, commit: Callable[[], None], lock: Any, run_seconds: float | None) -> None:
        self.commit = commit
        self.lock = lock
        self.deadline = None if run_seconds is None else time.monotonic() + run_seconds

    def step(self) -> bool:
        self.commit()
        try:
            self.lock.reacquire()
        except LockError:
            # Another run may hold it now; stopping is safe (every batch is committed).
            log.warning("retention lock expired during the run; stopping here")
            return False
        return self.deadline is None or time.monotonic() < self.deadline


def purge(
    session: DbSession,
    client: redis.Redis,
    *,
    tracking_days: int,
    webhook_days: int,
    commit: Callable[[], None],
    now: datetime | None = None,
    run_seconds: float | None = None,
    event_batch: int = EVENT_BATCH,
    webhook_batch: int = WEBHOOK_BATCH,
) -> RetentionReport | None:
    """Remove IP addresses and user agents from old events and delete old processed batches.

    Holds a Redis lock for the run (renewed after each batch), so a second beat, a redelivered
    task or the CLI during a beat run does nothing. Every change is conditional on the data
    still being there, so a run after another (or one that lost its lock) changes nothing more.

    Unlike other services this one commits, through `commit` (the caller's session commit),
    after every batch: one transaction over millions of rows would hold their locks and its
    WAL for minutes on the busiest table.

    Args:
        tracking_days: events recorded longer ago than this lose "ip" and "ua" of `detail`.
        webhook_days: processed batches without error received longer ago are deleted.
        commit: called after each batch.
        now: the clock (tests move it).
        run_seconds: stop after about this long (the beat task); None runs to the end.

    Returns:
        What was removed, or None when another run holds the lock.

    Raises:
        RetentionError: a period below one day.
    """
    for name, days in (("tracking_days", tracking_days), ("webhook_days", webhook_days)):
        if days < 1:
            raise RetentionError(f"{name} must be at least 1, got {days}")
    now = now or utcnow()
    report = RetentionReport(
        events_before=now - timedelta(days=tracking_days),
        batches_before=now - timedelta(days=webhook_days),
    )
    lock = client.lock(LOCK_KEY, timeout=LOCK_SECONDS, blocking=False)
    if not lock.acquire():
        log.info("another retention run holds the lock; nothing done")
        return None
    try:
        run = _Run(commit, lock, run_seconds)
        report.batches_deleted, done = _delete_batches(
            session, report.batches_before, webhook_batch, run
        )
        if done:
            report.events_cleaned, done = _clean_events(
                session, client, report.events_before, now, event_batch, run
            )
        report.finished = done
        _count_kept(session, report)
        commit()
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("retention lock expired before the run ended")
    _log(report)
    return report


def _delete_batches(
    session: DbSession, before: datetime, limit: int, run: _Run
) -> tuple[int, bool]:
    """Delete processed, error-free batches received before `before`, `limit` at a time.

    The table holds weeks of batches, not millions, so the oldest ones are found in id order
    without an index; the kept (unprocessed or failed) ones are skipped every time.
    """
    settled = (
        WebhookBatch.processed_at.is_not(None),
        WebhookBatch.error.is_(None),
        WebhookBatch.received_at < before,
    )
    deleted = 0
    while True:
        ids = list(
            session.scalars(
                sa.select(WebhookBatch.id).where(*settled).order_by(WebhookBatch.id).limit(limit)
            )
        )
        if not ids:
            return deleted, True
        result = session.execute(
            sa.delete(WebhookBatch)
            .where(WebhookBatch.id.in_(ids), *settled)
            .execution_options(synchronize_session=False)
        )
        deleted += result.rowcount  # type: ignore[attr-defined]
        go_on = run.step()
        if len(ids) < limit:
            return deleted, True
        if not go_on:
            return deleted, False


def _clean_events(
    session: DbSession,
    client: redis.Redis,
    before: datetime,
    now: datetime,
    limit: int,
    run: _Run,
) -> tuple[int, bool]:
    """Walk events by id from the watermark, removing ip/ua from those recorded before `before`."""
    if is_postgresql(session):
        personal, without = _HAS_PERSONAL_PG, _WITHOUT_PERSONAL_PG
    else:
        personal, without = _HAS_PERSONAL_SQLITE, _WITHOUT_PERSONAL_SQLITE
    first, last = session.execute(sa.select(sa.func.min(Event.id), sa.func.max(Event.id))).one()
    if first is None:
        return 0, True
    key = _watermark_key(session)
    start = _read_watermark(client, key)
    if start is None or start > last + 1:  # none yet, lost, or a restored database's
        start = first
    lo = session.scalar(sa.select(sa.func.min(Event.id)).where(Event.id >= start))
    cleaned = 0
    advancing = True
    while lo is not None and lo <= last:
        span = (Event.id >= lo, Event.id < lo + limit)
        result = session.execute(
            sa.update(Event)
            .where(*span, Event.occurred_at < before, personal)
            .values(detail=without)
            .execution_options(synchronize_session=False)
        )
        count = result.rowcount  # type: ignore[attr-defined]
        remaining, newer = session.execute(
            sa.select(
                sa.exists().where(*span, personal),
                sa.exists().where(
                    *span, Event.occurred_at >= before, Event.occurred_at < now + _CLOCK_SLACK
                ),
            )
        ).one()
        following = session.scalar(sa.select(sa.func.min(Event.id)).where(Event.id >= lo + limit))
        go_on = run.step()
        cleaned += count
        # The watermark passes only ranges that are old and clean for good. It never passes
        # the last id seen at the start: ids of transactions still open may lie beyond it.
        if advancing and not remaining and not newer:
            mark = lo + limit if following is None else following
            _write_watermark(client, key, min(mark, last + 1))
        else:
            advancing = False
        if newer and count == 0:
            return cleaned, True  # the walk reached events younger than the limit
        if not go_on:
            return cleaned, False
        lo = following
    return cleaned, True


def _count_kept(session: DbSession, report: RetentionReport) -> None:
    old = WebhookBatch.received_at < report.batches_before
    unprocessed, failed = session.execute(
        sa.select(
            sa.func.count().filter(WebhookBatch.processed_at.is_(None)),
            sa.func.count().filter(
                WebhookBatch.processed_at.is_not(None), WebhookBatch.error.is_not(None)
            ),
        ).where(old)
    ).one()
    report.kept_unprocessed, report.kept_failed = int(unprocessed), int(failed)


def _watermark_key(session: DbSession) -> str:
    """One watermark per database (tests and development share a Redis between several)."""
    url = session.get_bind().engine.url.render_as_string(hide_password=True)
    return _WATERMARK_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:16]


def _read_watermark(client: redis.Redis, key: str) -> int | None:
    raw = client.get(key)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _write_watermark(client: redis.Redis, key: str, event_id: int) -> None:
    client.set(key, str(event_id))


def _log(report: RetentionReport) -> None:
    log.info(
        "removed the IP address and user agent from %d events recorded before %s; "
        "deleted %d processed webhook batches received before %s%s",
        report.events_cleaned,
        report.events_before.isoformat(timespec="seconds"),
        report.batches_deleted,
        report.batches_before.isoformat(timespec="seconds"),
        "" if report.finished else " (stopped at its time limit; the next run goes on)",
    )
    if report.kept_unprocessed or report.kept_failed:
        log.warning(
            "kept %d unprocessed and %d failed webhook batches received before %s; "
            "they hold addresses: see webhook_batches.error, then process or delete them",
            report.kept_unprocessed,
            report.kept_failed,
            report.batches_before.isoformat(timespec="seconds"),
        )
