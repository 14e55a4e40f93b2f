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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
from app.services.stats import breakdown
from app.services.stats.counters import (
    OUTCOME_COUNTER,
    OUTCOME_OF_EVENT,
    OUTCOME_RANK,
    bump_campaign_stats,
)
from app.services.tracking.hits import campaign_list_ids, record_unsubscribe

log = logging.getLogger(__name__)

# The contract with the sender: keys of custom_args, values are decimal strings.
CUSTOM_ARG_DELIVERY = "rp_delivery"
CUSTOM_ARG_CAMPAIGN = "rp_campaign"


_UNSETTLED = (DeliveryStatus.UNKNOWN.value, DeliveryStatus.SENDING.value)


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


def _find_delivery(session: DbSession, event: Mapping[str, Any]) -> Delivery | None:
    delivery_id = _int(event.get(CUSTOM_ARG_DELIVERY))
    campaign_id = _int(event.get(CUSTOM_ARG_CAMPAIGN))
    if delivery_id is not None:
        # Row lock: two workers on overlapping batches change one delivery's outcome in turn.
        delivery = session.scalar(
            sa.select(Delivery).where(Delivery.id == delivery_id).with_for_update()
        )
        if delivery is None or (campaign_id is not None and delivery.campaign_id != campaign_id):
            return None
        return delivery
    # Without our custom_args (older messages): SendGrid's message id prefix is the
    # X-Message-Id of the whole request, so the address is needed to pick the recipient.
    message_id = event.get("sg_message_id")
    email = event.get("email")
    if isinstance(message_id, str) and isinstance(email, str) and message_id:
        return session.scalar(
            sa.select(Delivery)
            .where(
                Delivery.provider_message_id == message_id.split(".", 1)[0],
                Delivery.email == members.email_key(email),
            )
            .with_for_update()
        )
    return None


def _insert_event(session: DbSession, values: dict[str, Any]) -> bool:
    """Insert unless the sg_event_id is known; True when this call inserted it."""
    table: sa.Table = Event.__table__  # type: ignore[assignment]
    result = session.execute(
        sql.insert(session, table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["sg_event_id"])
        .returning(table.c.id)
    )
    return result.first() is not None


def process_batch(session: DbSession, batch_id: int) -> BatchResult | None:
    """Apply a stored webhook batch: events, delivery outcomes, counters, suppressions.

    Each event is recorded once (ON CONFLICT on sg_event_id); only a newly recorded event
    changes anything, so running a batch twice, or two batches holding the same events,
    counts once. Marks the batch processed. Flushes, does not commit.

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
    problems = []
    for index, event in enumerate(events if isinstance(events, list) else []):
        if not isinstance(event, dict):
            continue
        savepoint = session.begin_nested()
        try:
            process_event(session, event, result)
            savepoint.commit()
        except (ValueError, TypeError, sa.exc.IntegrityError, sa.exc.DataError) as exc:
            # One event the database or our code cannot take must not hold back the rest
            # (SendGrid would otherwise redeliver the whole batch for a day).
            savepoint.rollback()
            log.exception("webhook batch %s: event %s skipped", batch_id, index)
            problems.append(f"event {index}: {exc}"[:300])
            result.failed += 1
    batch.error = "\n".join(problems)[:5000] or None
    batch.processed_at = utcnow()
    session.flush()
    return result


def process_event(session: DbSession, event: Mapping[str, Any], result: BatchResult) -> None:
    name = event.get("event")
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        result.ignored += 1
        return
    delivery = _find_delivery(session, event)
    if delivery is None:
        result.unmatched += 1
    detail = {k: event[k] for k in _DETAIL_KEYS if k in event}
    inserted = _insert_event(
        session,
        {
            "kind": kind.value,
            "campaign_id": delivery.campaign_id if delivery else None,
            "delivery_id": delivery.id if delivery else None,
            "member_id": delivery.member_id if delivery else None,
            "occurred_at": _occurred(event),
            "is_machine": False,
            "sg_event_id": _event_id(event),
            "detail": detail,
        },
    )
    if not inserted:
        result.duplicates += 1
        return
    result.recorded += 1
    result.by_kind[str(name)] = result.by_kind.get(str(name), 0) + 1
    _apply(session, kind, event, delivery)


def _apply(
    session: DbSession, kind: EventKind, event: Mapping[str, Any], delivery: Delivery | None
) -> None:
    email = event.get("email") if isinstance(event.get("email"), str) else None
    address = delivery.email if delivery is not None else email

    if kind is EventKind.PROCESSED:
        # SendGrid took the message. Settle a row a crash left 'unknown', and also one still
        # 'sending' (the event can beat the worker's own success UPDATE). Conditional, so the
        # worker's UPDATE (also only from 'sending'/'unknown') and this one count it once.
        if delivery is not None and delivery.status in _UNSETTLED:
            settled = session.execute(
                sa.update(Delivery)
                .where(Delivery.id == delivery.id, Delivery.status.in_(_UNSETTLED))
                .values(
                    status=DeliveryStatus.SENT.value,
                    sent_at=sa.func.coalesce(Delivery.sent_at, _occurred(event)),
                    updated_at=utcnow(),
                ),
                execution_options={"synchronize_session": "fetch"},
            )
            if settled.rowcount:  # type: ignore[attr-defined]
                bump_campaign_stats(session, delivery.campaign_id, sent=1)
        return

    if kind.value in OUTCOME_OF_EVENT and delivery is not None:
        outcome = OUTCOME_OF_EVENT[kind.value]
        current = delivery.outcome if delivery.outcome in OUTCOME_RANK else None
        if current is None or OUTCOME_RANK[outcome] > OUTCOME_RANK[current]:
            deltas = {OUTCOME_COUNTER[outcome]: 1}
            if current is not None:
                deltas[OUTCOME_COUNTER[current]] = -1
            delivery.outcome = outcome
            bump_campaign_stats(session, delivery.campaign_id, **deltas)
            breakdown.record_outcome_changes(session, [(delivery.id, current, outcome)])

    if kind is EventKind.BOUNCE and address and event.get("type", "bounce") == "bounce":
        # A hard bounce; "blocked" is the receiver refusing for now (reputation, content).
        subscriptions.suppress(
            session, address, SuppressionReason.HARD_BOUNCE, str(event.get("reason", ""))[:500]
        )
    elif kind is EventKind.DROPPED and address:
        reason = _DROPPED_SUPPRESSION.get(str(event.get("reason", "")).strip().lower())
        if reason is not None:
            subscriptions.suppress(session, address, reason, "dropped by SendGrid")
    elif kind is EventKind.SPAMREPORT:
        if address:
            subscriptions.suppress(session, address, SuppressionReason.SPAM_REPORT, "spam report")
        if delivery is not None and not _seen_before(session, delivery.id, EventKind.SPAMREPORT):
            bump_campaign_stats(session, delivery.campaign_id, spam_reports=1)
    elif kind is EventKind.UNSUBSCRIBE:
        if delivery is not None:
            lists = (
                None
                if event.get("event") == "unsubscribe"
                else campaign_list_ids(session, delivery.campaign_id) or None
            )
            record_unsubscribe(
                session,
                delivery.id,
                list_ids=lists,
                source=UnsubscribeSource.WEBHOOK,
                detail={"sendgrid_event": event.get("event")},
                record_event=False,
            )
        elif address:
            member = members.member_by_email(session, address)
            if member is not None:
                subscriptions.unsubscribe(
                    session, member.id, list_ids=None, source=UnsubscribeSource.WEBHOOK
                )


def _seen_before(session: DbSession, delivery_id: int, kind: EventKind) -> bool:
    """More than the event just inserted of this kind for the delivery."""
    count = session.scalar(
        sa.select(sa.func.count()).where(Event.delivery_id == delivery_id, Event.kind == kind.value)
    )
    return (count or 0) > 1
