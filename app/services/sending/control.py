"""Pause, resume, cancel and finish campaigns; the sweep that recovers from crashes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
import sqlalchemy as sa

from app import jobs
from app.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, User
from app.models.base import utcnow
from app.services import DbSession
from app.services.sending import coordination
from app.services.sending.audience import queued_batches
from app.services.sending.status import change_status, finish_if_done, require

log = logging.getLogger(__name__)

STUCK = (
    "The worker sending this message stopped before it recorded the outcome; it is unknown "
    "whether it left. SendGrid's events will settle it."
)
CANCELLED = "The campaign was cancelled before this message was sent."


def _who(actor: User | None) -> str:
    return actor.email if actor is not None else "the system"


def _load(session: DbSession, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"No campaign {campaign_id}.")
    return campaign


def pause(session: DbSession, campaign_id: int, actor: User | None) -> Campaign:
    """Pause a sending campaign.

    Batches check the status when they claim rows, so no new message leaves once this
    commits; a batch already handed to the transport completes. Flushes, does not commit.

    Raises:
        LookupError: no such campaign.
        TransitionError: the campaign is not sending.
    """
    campaign = _load(session, campaign_id)
    require(campaign, CampaignStatus.PAUSED, CampaignStatus.SENDING)
    change_status(session, campaign, CampaignStatus.PAUSED, reason=f"Paused by {_who(actor)}.")
    session.flush()
    return campaign


def resume(
    session: DbSession,
    campaign_id: int,
    actor: User | None,
    *,
    client: redis.Redis | None = None,
    stall_seconds: float = 60.0,
) -> Campaign:
    """Resume a paused campaign where it stopped.

    Re-queues the batches that still have queued rows (or the dispatch, if the audience
    was never frozen); rows already sent stay sent. Clears the pause reason and the failed
    batch streak. Flushes, does not commit; the tasks leave after the commit.

    Raises:
        LookupError: no such campaign.
        TransitionError: the campaign is not paused.
    """
    campaign = _load(session, campaign_id)
    now = utcnow()
    require(campaign, CampaignStatus.SENDING, CampaignStatus.PAUSED)
    change_status(session, campaign, CampaignStatus.SENDING, reason="")
    frozen = session.scalar(
        sa.select(Delivery.id).where(Delivery.campaign_id == campaign_id).limit(1)
    )
    if frozen is None:
        jobs.enqueue(session, jobs.DISPATCH_CAMPAIGN, campaign_id)
    else:
        batches = queued_batches(session, campaign_id)
        for batch_no in batches:
            jobs.enqueue(session, jobs.SEND_BATCH, campaign_id, batch_no)
        if not batches:
            finish_if_done(session, campaign_id, now=now)
    if client is not None:
        coordination.reset_failures(client, campaign_id)
        coordination.touch(client, campaign_id, stall_seconds)
    session.flush()
    return campaign


def cancel(session: DbSession, campaign_id: int, actor: User | None) -> Campaign:
    """Cancel a scheduled, sending or paused campaign for good.

    Every still-queued delivery becomes skipped, so no batch will send it; a batch already
    handed to the transport completes. Flushes, does not commit.

    Raises:
        LookupError: no such campaign.
        TransitionError: the campaign cannot be cancelled from its status.
    """
    campaign = _load(session, campaign_id)
    now = utcnow()
    change_status(
        session, campaign, CampaignStatus.CANCELLED, reason=f"Cancelled by {_who(actor)}."
    )
    session.execute(
        sa.update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.QUEUED.value)
        .values(status=DeliveryStatus.SKIPPED.value, error=CANCELLED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return campaign


@dataclass
class SweepReport:
    unknown: int = 0
    finished: list[int] = field(default_factory=list)
    requeued: dict[int, list[int]] = field(default_factory=dict)
    redispatched: list[int] = field(default_factory=list)


def sweep(
    session: DbSession,
    now: datetime,
    *,
    client: redis.Redis,
    stuck_seconds: float,
    stall_seconds: float,
) -> SweepReport:
    """Recover what crashes and broker losses leave behind; run periodically by beat.

    1. Rows 'sending' for longer than `stuck_seconds` (more than any batch can take) were
       claimed by a worker that died: they become 'unknown', never sent again blindly.
    2. A sending campaign with nothing left queued or sending is finished.
    3. A sending campaign without progress for `stall_seconds` (no heartbeat in Redis: the
       broker lost its messages, or every worker died) gets its batches with queued rows
       queued again — or its dispatch, if its audience was never frozen. A duplicate batch
       task claims nothing, so guessing wrong costs a no-op.

    Flushes, does not commit; enqueued tasks leave after the commit.
    """
    report = SweepReport()
    active = sa.select(Campaign.id).where(
        Campaign.status.in_(
            [
                CampaignStatus.SENDING.value,
                CampaignStatus.PAUSED.value,
                CampaignStatus.CANCELLED.value,
            ]
        )
    )
    # Per campaign, ix_deliveries_campaign_status finds the 'sending' rows; updated_at is
    # when they were claimed.
    result = session.execute(
        sa.update(Delivery)
        .where(
            Delivery.campaign_id.in_(active),
            Delivery.status == DeliveryStatus.SENDING.value,
            Delivery.updated_at < now - timedelta(seconds=stuck_seconds),
        )
        .values(status=DeliveryStatus.UNKNOWN.value, error=STUCK, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    report.unknown = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if report.unknown:
        log.warning(
            "sweep: %s deliveries left 'sending' by a crash are now unknown", report.unknown
        )

    sending = session.execute(
        sa.select(Campaign.id, Campaign.started_at).where(
            Campaign.status == CampaignStatus.SENDING.value
        )
    ).all()
    for campaign_id, started_at in sending:
        if finish_if_done(session, campaign_id, now=now):
            report.finished.append(campaign_id)
            continue
        if coordination.is_alive(client, campaign_id):
            continue
        if started_at is not None and now - started_at < timedelta(seconds=stall_seconds):
            continue  # just started: its dispatch may still be on its way
        frozen = session.scalar(
            sa.select(Delivery.id).where(Delivery.campaign_id == campaign_id).limit(1)
        )
        if frozen is None:
            jobs.enqueue(session, jobs.DISPATCH_CAMPAIGN, campaign_id)
            report.redispatched.append(campaign_id)
        else:
            batches = queued_batches(session, campaign_id)
            for batch_no in batches:
                jobs.enqueue(session, jobs.SEND_BATCH, campaign_id, batch_no)
            if batches:
                report.requeued[campaign_id] = batches
                log.warning(
                    "sweep: campaign %s made no progress for %ss; queued %s batches again",
                    campaign_id,
                    stall_seconds,
                    len(batches),
                )
        coordination.touch(client, campaign_id, stall_seconds)
    session.flush()
    return report
