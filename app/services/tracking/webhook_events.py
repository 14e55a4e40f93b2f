"""SendGrid Event Webhook events: the custom_args contract with the sender, and processing.

The sender puts CUSTOM_ARG_DELIVERY and CUSTOM_ARG_CAMPAIGN (string values, no PII) in each
personalization's `custom_args`; SendGrid returns them as top-level keys of every event, which
joins the event back to our delivery ledger. Processing is idempotent on `sg_event_id`
(events.sg_event_id is UNIQUE; SendGrid delivers the same event several times).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa

from app.infra import sql
from app.models import (
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    SuppressionReason,
    UnsubscribeSource,
    WebhookBatch,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience import members, subscriptions
from app.services.sending import ledger
from app.services.stats import breakdown
from app.services.stats.counters import (
    OUTCOME_COUNTER,
    OUTCOME_OF_EVENT,
    OUTCOME_RANK,
    bump_campaign_stats,
)
from app.services.tracking.hits import campaign_list_ids, record_unsubscribe

log = logging.getLogger(__name__)

DELIVERIES = cast(sa.Table, Delivery.__table__)

# The contract with the sender: keys of custom_args, values are decimal strings.
CUSTOM_ARG_DELIVERY = "rp_delivery"
CUSTOM_ARG_CAMPAIGN = "rp_campaign"


def custom_args(campaign_id: int, delivery_id: int) -> dict[str, str]:
    """The custom_args of one personalization (SendGrid wants string values)."""
    return {CUSTOM_ARG_CAMPAIGN: str(campaign_id), CUSTOM_ARG_DELIVERY: str(delivery_id)}


# SendGrid event name -> our EventKind. open/click are ignored: SendGrid's own tracking is off
# (our pixel and redirects count them); group_resubscribe is never acted on automatically.
_KINDS = {
    "processed": EventKind.PROCESSED,
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DEFERRED,
    "bounce": EventKind.BOUNCE,
    "dropped": EventKind.DROPPED,
    "spamreport": EventKind.SPAMREPORT,
    "unsubscribe": EventKind.UNSUBSCRIBE,
    "group_unsubscribe": EventKind.UNSUBSCRIBE,
}
# dropped reasons that mean SendGrid already suppresses the address: mirror it here.
_DROPPED_SUPPRESSION = {
    "bounced address": SuppressionReason.HARD_BOUNCE,
    "spam reporting address": SuppressionReason.SPAM_REPORT,
}
# What we keep of an event (not the whole object: custom args and categories are ours anyway).
_DETAIL_KEYS = (
    "email",
    "event",
    "reason",
    "status",
    "type",
    "response",
    "attempt",
    "sg_message_id",
    "smtp-id",
    "asm_group_id",
    "bounce_classification",
)


@dataclass
class BatchResult:
    recorded: int = 0
    duplicates: int = 0
    ignored: int = 0
    unmatched: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value) or None
    return None


def _event_id(event: Mapping[str, Any]) -> str:
    value = event.get("sg_event_id")
    if isinstance(value, str) and 0 < len(value) <= 100:
        return value
    # No id (should not happen): identical retries still collapse onto one synthetic id.
    digest = hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()[:40]
    return f"rp-{digest}"


def _occurred(event: Mapping[str, Any]) -> datetime:
    ts = event.get("timestamp")
    if isinstance(ts, int | float) and 0 < ts < 2**33:
        return datetime.fromtimestamp(ts, UTC)
    return utcnow()


@dataclass
class _Parsed:
    """One event, read and checked before anything is written."""

    index: int
    kind: EventKind
    name: str
    sg_event_id: str
    delivery_id: int | None
    campaign_id: int | None
    email: str | None
    message_id: str | None
    occurred_at: datetime
    detail: dict[str, Any]
    event: Mapping[str, Any]


@dataclass
class _Row:
    """The delivery an event belongs to, as read (locked) before the batch is applied."""

    id: int
    campaign_id: int
    member_id: int
    email: str
    batch_no: int
    local: str
    language: str


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _parse(index: int, event: Mapping[str, Any], *, check_nul: bool = True) -> _Parsed | None:
    """An event we act on, or None for one we ignore (SendGrid's opens and clicks...).

    Raises:
        ValueError: a value the database cannot store (a NUL byte: jsonb refuses it).
    """
    name = event.get("event")
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        return None
    detail = {k: event[k] for k in _DETAIL_KEYS if k in event}
    if check_nul and _has_nul(detail):
        raise ValueError("a value holds a NUL byte")
    email = event.get("email")
    message_id = event.get("sg_message_id")
    return _Parsed(
        index=index,
        kind=kind,
        name=str(name),
        sg_event_id=_event_id(event),
        delivery_id=_int(event.get(CUSTOM_ARG_DELIVERY)),
        campaign_id=_int(event.get(CUSTOM_ARG_CAMPAIGN)),
        email=members.email_key(email) if isinstance(email, str) else None,
        message_id=message_id.split(".", 1)[0] if isinstance(message_id, str) else None,
        occurred_at=_occurred(event),
        detail=detail,
        event=event,
    )


def process_batch(session: DbSession, batch_id: int) -> BatchResult | None:
    """Apply a stored webhook batch: events, delivery outcomes, counters, suppressions.

    Set-based, like the tracking flusher: one INSERT for the batch's events (ON CONFLICT on
    sg_event_id: SendGrid delivers events more than once), then one statement per kind of
    change for the events that were new, and the counters added once per campaign. Only
    a newly recorded event changes anything, so running a batch twice, or two batches
    holding the same events, counts once. An event the database cannot store is skipped
    and named in the batch's error; the rest still apply. Marks the batch processed.
    Flushes, does not commit.

    Returns:
        What happened, or None for an unknown or already processed batch.
    """
    batch = session.get(WebhookBatch, batch_id, with_for_update=True)
    if batch is None or batch.processed_at is not None:
        return None
    result = BatchResult()
    try:
        events = json.loads(batch.body)
    except ValueError:
        batch.error = "not JSON"
        batch.processed_at = utcnow()
        return result
    problems: list[str] = []
    parsed: list[_Parsed] = []
    # JSON can only carry a NUL as \u0000: a body without one needs no check per value.
    check_nul = "\\u0000" in batch.body
    for index, event in enumerate(events if isinstance(events, list) else []):
        if not isinstance(event, dict):
            continue
        try:
            item = _parse(index, event, check_nul=check_nul)
        except ValueError as exc:
            problems.append(f"event {index}: {exc}"[:300])
            result.failed += 1
            continue
        if item is None:
            result.ignored += 1
        else:
            parsed.append(item)
    apply_events(session, parsed, result, problems)
    batch.error = "\n".join(problems)[:5000] or None
    batch.processed_at = utcnow()
    session.flush()
    return result


def process_event(session: DbSession, event: Mapping[str, Any], result: BatchResult) -> None:
    """Apply one event (tests and tools; webhook batches go through `process_batch`)."""
    item = _parse(0, event)
    if item is None:
        result.ignored += 1
        return
    apply_events(session, [item], result, [])


def apply_events(
    session: DbSession, parsed: list[_Parsed], result: BatchResult, problems: list[str]
) -> None:
    """Record the events that are new and apply them, in bulk; one savepoint for all.

    Should the bulk insert fail on a value we did not foresee, the events are applied one
    by one, each in its own savepoint, so one bad event never holds back the rest.
    """
    savepoint = session.begin_nested()
    try:
        _apply_all(session, parsed, result)
        savepoint.commit()
        return
    except (ValueError, TypeError, sa.exc.IntegrityError, sa.exc.DataError):
        savepoint.rollback()
        log.exception("webhook events: the batch failed as a whole; applying one by one")
    for item in parsed:
        single = session.begin_nested()
        try:
            _apply_all(session, [item], result)
            single.commit()
        except (ValueError, TypeError, sa.exc.IntegrityError, sa.exc.DataError) as exc:
            single.rollback()
            problems.append(f"event {item.index}: {exc}"[:300])
            result.failed += 1


def _apply_all(session: DbSession, parsed: list[_Parsed], result: BatchResult) -> None:
    unique: dict[str, _Parsed] = {}
    for item in parsed:
        if item.sg_event_id in unique:
            result.duplicates += 1
        else:
            unique[item.sg_event_id] = item
    rows = _deliveries(session, list(unique.values()))
    # `processed` is applied, not stored: it only settles the ledger, whose conditional
    # updates are idempotent themselves, and a send brings one for every recipient (half of
    # all events). The raw batch keeps it for WEBHOOK_BATCH_DAYS.
    processed = [i for i in unique.values() if i.kind is EventKind.PROCESSED]
    stored = [i for i in unique.values() if i.kind is not EventKind.PROCESSED]
    new = _insert_events(session, stored, rows)
    result.duplicates += len(stored) - len(new)
    new += processed
    result.unmatched += sum(1 for item in parsed if _row_of(item, rows) is None)
    result.recorded += len(new)
    for item in new:
        result.by_kind[item.name] = result.by_kind.get(item.name, 0) + 1
    if not new:
        return
    now = utcnow()
    counters: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    matched = [(item, row) for item in new if (row := _row_of(item, rows)) is not None]
    _settle(session, matched, counters, now)
    _outcomes(session, matched, counters)
    _spam_reports(session, matched, counters)
    _suppressions_and_unsubscribes(session, new, rows)
    for campaign_id, deltas in counters.items():
        nonzero = {name: value for name, value in deltas.items() if value}
        if nonzero:
            bump_campaign_stats(session, campaign_id, **nonzero)


def _row_of(item: _Parsed, rows: Mapping[Any, _Row]) -> _Row | None:
    if item.delivery_id is not None:
        row = rows.get(item.delivery_id)
        if row is None or (item.campaign_id is not None and row.campaign_id != item.campaign_id):
            return None
        return row
    if item.message_id and item.email:
        return rows.get((item.message_id, item.email))
    return None


def _deliveries(session: DbSession, items: list[_Parsed]) -> dict[Any, _Row]:
    """The deliveries the events name, by id and, for events without our custom_args, by
    (SendGrid message id, address). Read without a lock: every change made from them is a
    conditional UPDATE that re-checks the row it changes."""
    d = DELIVERIES
    # Everything the batch needs of a delivery, read once (pk_deliveries): its batch for the
    # ledger, its local and language for the breakdown.
    columns = (
        d.c.id,
        d.c.campaign_id,
        d.c.member_id,
        d.c.email,
        d.c.batch_no,
        d.c.local,
        d.c.language,
    )
    ids = sorted({i.delivery_id for i in items if i.delivery_id is not None})
    found: dict[Any, _Row] = {}
    if ids:
        for values in session.execute(sa.select(*columns).where(sql.one_of(session, d.c.id, ids))):
            found[values[0]] = _Row(*values)
    # Without our custom_args (older messages): SendGrid's message id prefix is the
    # X-Message-Id of the whole request, so the address is needed to pick the recipient.
    pairs = sorted(
        {
            (i.message_id, i.email)
            for i in items
            if i.delivery_id is None and i.message_id and i.email
        }
    )
    for message_id, email in pairs:
        found_row = session.execute(
            sa.select(*columns).where(d.c.provider_message_id == message_id, d.c.email == email)
        ).first()
        if found_row is not None:
            found[(message_id, email)] = _Row(*found_row)
    return found


# PostgreSQL: the batch's events in one statement, their values as arrays sent in binary
# (%b: one parse and one round trip, where a multi-row INSERT of 1,000 events cost psycopg
# ~250 ms just to convert its 10,000 placeholders, and text arrays ~100 ms to quote).
# ON CONFLICT skips events SendGrid sent before.
_INSERT_EVENTS_PG = """
INSERT INTO events (kind, campaign_id, delivery_id, member_id, occurred_at, is_machine,
                    sg_event_id, detail)
SELECT v.kind, v.campaign_id, v.delivery_id, v.member_id, v.occurred_at, false,
       v.sg_event_id, v.detail::jsonb
  FROM unnest(%(kind)b::text[], %(campaign_id)b::integer[], %(delivery_id)b::bigint[],
              %(member_id)b::bigint[], %(occurred_at)b::timestamptz[], %(sg_event_id)b::text[],
              %(detail)b::text[])
       AS v(kind, campaign_id, delivery_id, member_id, occurred_at, sg_event_id, detail)
ON CONFLICT (sg_event_id) DO NOTHING
RETURNING sg_event_id
"""


def _insert_events(
    session: DbSession, items: list[_Parsed], rows: Mapping[Any, _Row]
) -> list[_Parsed]:
    """Insert the events SendGrid had not sent before; returns those (the new ones)."""
    if not items:
        return []
    values: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        row = _row_of(item, rows)
        values["kind"].append(item.kind.value)
        values["campaign_id"].append(row.campaign_id if row else None)
        values["delivery_id"].append(row.id if row else None)
        values["member_id"].append(row.member_id if row else None)
        values["occurred_at"].append(item.occurred_at)
        values["sg_event_id"].append(item.sg_event_id)
        values["detail"].append(item.detail)
    if sql.is_postgresql(session):
        values["detail"] = [json.dumps(detail) for detail in values["detail"]]
        connection = session.connection().connection.dbapi_connection
        assert connection is not None
        cursor = connection.cursor()
        try:
            cursor.execute(_INSERT_EVENTS_PG, values)
            inserted = {row[0] for row in cursor.fetchall()}
        finally:
            cursor.close()
    else:
        table: sa.Table = Event.__table__  # type: ignore[assignment]
        records = [
            dict(zip(values, column, strict=True)) for column in zip(*values.values(), strict=True)
        ]
        inserted = set(
            session.scalars(
                sql.insert(session, table)
                .on_conflict_do_nothing(index_elements=["sg_event_id"])
                .returning(table.c.sg_event_id),
                [{**r, "is_machine": False} for r in records],
            )
        )
    return [item for item in items if item.sg_event_id in inserted]


def _settle(
    session: DbSession,
    matched: list[tuple[_Parsed, _Row]],
    counters: dict[int, dict[str, int]],
    now: datetime,
) -> None:
    """SendGrid took these messages: settle the rows and the batches they belong to.

    `processed` rows become sent (also one still queued under a batch in flight: the event
    can beat the worker's own outcome, whose UPDATE then skips it — counted once). Any
    event at all confirms its batch's request reached SendGrid, which settles a batch a
    crash left in doubt (`ledger.confirm`).
    """
    processed = sorted({row.id for item, row in matched if item.kind is EventKind.PROCESSED})
    if processed:
        d = DELIVERIES
        changed = session.execute(
            sa.update(d)
            .where(
                sql.one_of(session, d.c.id, processed),
                d.c.status.not_in([DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value]),
            )
            .values(
                status=DeliveryStatus.SENT.value,
                sent_at=sa.func.coalesce(d.c.sent_at, now),
                error=None,
                updated_at=now,
            )
            .returning(d.c.campaign_id)
        ).scalars()
        for campaign_id in changed:
            counters[campaign_id]["sent"] += 1
    batches = {ledger.BatchKey(row.campaign_id, row.batch_no) for _, row in matched}
    for key in ledger.confirm(session, batches, now):
        settled = ledger.settle_unknown(session, key, now)
        counters[key.campaign_id]["sent"] += settled
        if settled:
            log.info(
                "campaign %s batch %s: SendGrid's events settle %s unknown deliveries as sent",
                key.campaign_id,
                key.batch_no,
                settled,
            )


def _outcomes(
    session: DbSession, matched: list[tuple[_Parsed, _Row]], counters: dict[int, dict[str, int]]
) -> None:
    """Each delivery's outcome moves up to the highest-ranked of its new events, once.

    One statement per outcome (at most four), each ``WITH old AS (SELECT id, outcome …
    WHERE id = ANY(:ids) AND <outcome ranks lower> FOR UPDATE) UPDATE … RETURNING
    old.outcome``: the row lock and the rank check on the row's latest version make two
    batches racing on one delivery count it once, and the outcome it had is what the
    counters move from.
    """
    best: dict[int, str] = {}
    for item, row in matched:
        outcome = OUTCOME_OF_EVENT.get(item.kind.value)
        if outcome is None:
            continue
        held = best.get(row.id)
        if held is None or OUTCOME_RANK[outcome] > OUTCOME_RANK[held]:
            best[row.id] = outcome
    by_outcome: dict[str, list[int]] = defaultdict(list)
    for delivery_id, outcome in best.items():
        by_outcome[outcome].append(delivery_id)
    changes: list[tuple[int, str | None, str | None]] = []
    d = DELIVERIES
    for outcome, ids in by_outcome.items():
        lower = [name for name, rank in OUTCOME_RANK.items() if rank < OUTCOME_RANK[outcome]]
        lower_now = sa.and_(
            sql.one_of(session, d.c.id, sorted(ids)),
            sa.or_(d.c.outcome.is_(None), d.c.outcome.in_(lower)),
        )
        if sql.is_postgresql(session):
            old = sa.select(d.c.id, d.c.outcome).where(lower_now).with_for_update().cte("old")
            changed = session.execute(
                sa.update(d)
                .where(d.c.id == old.c.id)
                .values(outcome=outcome)
                .returning(d.c.id, d.c.campaign_id, old.c.outcome)
            ).all()
        else:  # SQLite (development): one writer at a time, and RETURNING sees only `d`
            changed = session.execute(
                sa.select(d.c.id, d.c.campaign_id, d.c.outcome).where(lower_now)
            ).all()
            session.execute(
                sa.update(d).where(d.c.id.in_([row[0] for row in changed])).values(outcome=outcome)
            )
        for delivery_id, campaign_id, before in changed:
            counters[campaign_id][OUTCOME_COUNTER[outcome]] += 1
            if before in OUTCOME_RANK:
                counters[campaign_id][OUTCOME_COUNTER[before]] -= 1
            changes.append((delivery_id, before, outcome))
    if changes:
        where = {row.id: (row.campaign_id, row.local, row.language) for _, row in matched}
        breakdown.record_outcome_changes(session, changes, where=where)


def _spam_reports(
    session: DbSession, matched: list[tuple[_Parsed, _Row]], counters: dict[int, dict[str, int]]
) -> None:
    """A delivery's first spam report counts once, however many SendGrid sends."""
    rows = {row.id: row for item, row in matched if item.kind is EventKind.SPAMREPORT}
    if not rows:
        return
    counts: dict[int | None, int] = dict(
        session.execute(  # type: ignore[arg-type]
            sa.select(Event.delivery_id, sa.func.count())
            .where(
                sql.one_of(session, Event.delivery_id, list(rows)),
                Event.kind == EventKind.SPAMREPORT.value,
            )
            .group_by(Event.delivery_id)
        ).all()
    )
    new_here = Counter(row.id for item, row in matched if item.kind is EventKind.SPAMREPORT)
    for delivery_id, row in rows.items():
        if counts.get(delivery_id, 0) == new_here[delivery_id]:  # none before this batch
            counters[row.campaign_id]["spam_reports"] += 1


def _suppressions_and_unsubscribes(
    session: DbSession, new: list[_Parsed], rows: Mapping[Any, _Row]
) -> None:
    """Hard bounces, spam reports and SendGrid's drops suppress; unsubscribes unsubscribe.

    Rare events (a few per thousand), so one service call each.
    """
    for item in new:
        row = _row_of(item, rows)
        address = row.email if row is not None else item.email
        event = item.event
        if item.kind is EventKind.BOUNCE and address and event.get("type", "bounce") == "bounce":
            # A hard bounce; "blocked" is the receiver refusing for now (reputation, content).
            subscriptions.suppress(
                session, address, SuppressionReason.HARD_BOUNCE, str(event.get("reason", ""))[:500]
            )
        elif item.kind is EventKind.DROPPED and address:
            reason = _DROPPED_SUPPRESSION.get(str(event.get("reason", "")).strip().lower())
            if reason is not None:
                subscriptions.suppress(session, address, reason, "dropped by SendGrid")
        elif item.kind is EventKind.SPAMREPORT and address:
            subscriptions.suppress(session, address, SuppressionReason.SPAM_REPORT, "spam report")
        elif item.kind is EventKind.UNSUBSCRIBE:
            _unsubscribe(session, item, row, address)


def _unsubscribe(session: DbSession, item: _Parsed, row: _Row | None, address: str | None) -> None:
    if row is not None:
        lists = (
            None
            if item.name == "unsubscribe"
            else campaign_list_ids(session, row.campaign_id) or None
        )
        record_unsubscribe(
            session,
            row.id,
            list_ids=lists,
            source=UnsubscribeSource.WEBHOOK,
            detail={"sendgrid_event": item.name},
            record_event=False,
        )
    elif address:
        member = members.member_by_email(session, address)
        if member is not None:
            subscriptions.unsubscribe(
                session, member.id, list_ids=None, source=UnsubscribeSource.WEBHOOK
            )
