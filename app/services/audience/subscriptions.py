"""Unsubscribes and suppressions: they win over every list and every queued delivery, at once."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from app.models import (
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
    UnsubscribeSource,
    campaign_lists,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience.members import email_key


def _skip_queued_deliveries(session: DbSession, member_ids: sa.ColumnElement[bool]) -> int:
    """Mark still-queued deliveries skipped so no batch can send them (batches also re-check)."""
    result = session.execute(
        sa.update(Delivery)
        .where(member_ids, Delivery.status == DeliveryStatus.QUEUED.value)
        .values(
            status=DeliveryStatus.SKIPPED.value,
            error="unsubscribed or suppressed",
            updated_at=utcnow(),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def unsubscribe(
    session: DbSession,
    member_id: int,
    *,
    list_ids: Iterable[int] | None,
    source: UnsubscribeSource,
) -> int:
    """Unsubscribe a member from some lists, or from all of them when `list_ids` is None.

    Changes the member's subscriptions to unsubscribed (keeping when and how), and skips their
    queued deliveries of campaigns sent to those lists. Idempotent. Flushes, does not commit.

    Returns:
        How many subscriptions changed status.
    """
    now = utcnow()
    condition = [
        Subscription.member_id == member_id,
        Subscription.status != SubscriptionStatus.UNSUBSCRIBED.value,
    ]
    ids = None if list_ids is None else sorted(set(list_ids))
    if ids is not None:
        condition.append(Subscription.list_id.in_(ids))
    result = session.execute(
        sa.update(Subscription)
        .where(*condition)
        .values(
            status=SubscriptionStatus.UNSUBSCRIBED.value,
            unsubscribed_at=now,
            unsubscribe_source=source.value,
            updated_at=now,
        )
    )
    changed = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if ids is None:
        _skip_queued_deliveries(session, Delivery.member_id == member_id)
    else:
        campaigns_of_lists = sa.select(campaign_lists.c.campaign_id).where(
            campaign_lists.c.list_id.in_(ids)
        )
        _skip_queued_deliveries(
            session,
            sa.and_(Delivery.member_id == member_id, Delivery.campaign_id.in_(campaigns_of_lists)),
        )
    session.flush()
    return changed


def suppress(
    session: DbSession, email: str, reason: SuppressionReason, detail: str = ""
) -> Suppression:
    """Block an address everywhere: no list, import or queued batch will email it again.

    Creates the suppression (or keeps the existing one, first reason wins) and skips every
    queued delivery to that address. Idempotent. Flushes, does not commit.
    """
    address = email_key(email)
    existing = session.scalar(sa.select(Suppression).where(Suppression.email == address))
    if existing is None:
        existing = Suppression(email=address, reason=reason.value, detail=detail)
        session.add(existing)
    _skip_queued_deliveries(session, Delivery.email == address)
    session.flush()
    return existing


def unsuppress(session: DbSession, email: str) -> bool:
    """Lift a manual suppression. Bounces and spam reports stay: they protect deliverability."""
    address = email_key(email)
    row = session.scalar(sa.select(Suppression).where(Suppression.email == address))
    if row is None or row.reason != SuppressionReason.MANUAL.value:
        return False
    session.delete(row)
    session.flush()
    return True


def is_suppressed(session: DbSession, email: str) -> bool:
    address = email_key(email)
    return session.scalar(sa.select(Suppression.id).where(Suppression.email == address)) is not None
