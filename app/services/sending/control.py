"""Pause, resume, cancel and finish campaigns; the sweep that recovers from crashes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
import sqlalchemy as sa

from app import jobs
from app.models import (
    BatchStatus,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    SendBatch,
    User,
)
from app.models.base import utcnow
from app.models.deliveries import with_error
from app.services import DbSession
from app.services.sending import coordination, ledger, peers
from app.services.sending.ledger import BatchKey, Settlement
from app.services.sending.status import TransitionError, change_status, finish_if_done, require

log = logging.getLogger(__name__)

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
    settlement: Settlement | None = None,
) -> Campaign:
    """Resume a paused campaign where it stopped.

    Re-queues the batches that are still queued (or the dispatch, if the audience was
    never frozen); rows already sent stay sent. Clears the pause reason and the failed
    batch streak. Flushes, does not commit; the tasks leave after the commit.

    Raises:
        LookupError: no such campaign.
        TransitionError: the campaign is not paused.
    """
    campaign = _load(session, campaign_id)
    now = utcnow()
    require(campaign, CampaignStatus.SENDING, CampaignStatus.PAUSED)
    change_status(session, campaign, CampaignStatus.SENDING, reason="")
    if campaign.frozen_at is None:
        jobs.enqueue(session, jobs.DISPATCH_CAMPAIGN, campaign_id)
    else:
        batches = ledger.batch_numbers(session, campaign_id)
        for batch_no in batches:
            jobs.enqueue(session, jobs.SEND_BATCH, campaign_id, batch_no)
        if not batches:
            finish_if_done(session, campaign_id, now=now, settlement=settlement)
    if client is not None:
        coordination.reset_failures(client, campaign_id)
        coordination.touch(client, campaign_id, stall_seconds)
    session.flush()
    return campaign


def resend_unknown(
    session: DbSession,
    campaign_id: int,
    actor: User | None,
    *,
    client: redis.Redis | None = None,
    stall_seconds: float = 60.0,
) -> int:
    """Send now to the members a crash left unknown: the organizer's choice, with its risk.

    Without SendGrid's Event Webhook nothing can tell whether these members received the
    alert; the organizer may accept that some get a second copy. Their rows and batches
    are queued again (a sent campaign goes back to sending until they are done).
    Flushes, does not commit.

    Returns:
        How many members will be sent to again.

    Raises:
        LookupError: no such campaign.
        TransitionError: the campaign is not sending, paused or sent.
    """
    campaign = _load(session, campaign_id)
    now = utcnow()
    batches = list(
        session.scalars(
            sa.select(Delivery.batch_no)
            .where(
                Delivery.campaign_id == campaign_id,
                with_error(DeliveryStatus.UNKNOWN),
            )
            .distinct()
            .order_by(Delivery.batch_no)
        )
    )
    if not batches:
        raise TransitionError(
            "Every member's delivery is settled: nobody is waiting to be sent again."
        )
    if campaign.status_enum not in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
        require(campaign, CampaignStatus.SENDING, CampaignStatus.SENT)
        change_status(session, campaign, CampaignStatus.SENDING, reason="")
    reason = ledger.RESENT_BY.format(who=_who(actor))
    count = sum(
        ledger.requeue_unknown(session, BatchKey(campaign_id, b), reason, now) for b in batches
    )
    if campaign.status == CampaignStatus.SENDING.value:
        for batch_no in batches:
            jobs.enqueue(session, jobs.SEND_BATCH, campaign_id, batch_no)
    if client is not None:
        coordination.touch(client, campaign_id, stall_seconds)
    log.warning(
        "campaign %s: %s unknown deliveries sent again by %s", campaign_id, count, _who(actor)
    )
    session.flush()
    return count


def cancel(session: DbSession, campaign_id: int, actor: User | None) -> Campaign:
    """Cancel a scheduled, sending or paused campaign for good.

    Every still-queued delivery becomes skipped and every queued batch too, so no batch
    will send them; a batch already handed to the transport completes (its rows are
    recorded as sent: they left). Flushes, does not commit.

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
    session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign_id, SendBatch.status == BatchStatus.QUEUED.value)
        .values(status=BatchStatus.SKIPPED.value, finished_at=now, error=CANCELLED)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return campaign


@dataclass
class SweepReport:
    unknown: int = 0
    settled: int = 0
    resent: list[BatchKey] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    requeued: dict[int, list[int]] = field(default_factory=dict)
    redispatched: list[int] = field(default_factory=list)
    broker_lost: bool = False


def sweep(
    session: DbSession,
    now: datetime,
    *,
    client: redis.Redis,
    stuck_seconds: float,
    stall_seconds: float,
    settlement: Settlement | None = None,
) -> SweepReport:
    """Recover what crashes and broker losses leave behind; run by beat every few seconds.

    1. Abandoned batches: claimed ('sending') with no lease for longer than a lease lives —
       their worker died — or for longer than `stuck_seconds` whatever the lease says,
       become 'unknown' (the request may have left; never sent again blindly).
    2. Batches in doubt that SendGrid's events show never arrived are queued again, once
       (`ledger.judge_unknown`; only with the Event Webhook configured).
    3. Each sending campaign whose audience is frozen and settled is finished
       (`finish_if_done`, under its row lock).
    4. A sending campaign that made no progress for `stall_seconds` (no heartbeat in Redis,
       no batch in flight) — or every sending campaign at once when Redis lost its data, and
       the broker's queues with it — gets its queued batches queued again, or its dispatch
       if its audience was never frozen. A duplicate batch task claims nothing.

    Flushes, does not commit; enqueued tasks leave after the commit.
    """
    settlement = settlement or Settlement()
    report = SweepReport()
    report.broker_lost = coordination.broker_lost_messages(client)
    if report.broker_lost:
        log.warning("sweep: Redis lost its data (restart?): queuing every sending campaign again")
    _abandoned(session, now, client, stuck_seconds, settlement, report)
    report.resent = ledger.judge_unknown(session, now, settlement)
    for key in report.resent:
        jobs.enqueue(session, jobs.SEND_BATCH, key.campaign_id, key.batch_no)

    sending = session.execute(
        sa.select(Campaign.id, Campaign.started_at, Campaign.frozen_at).where(
            Campaign.status == CampaignStatus.SENDING.value
        )
    ).all()
    flying = {flight.key.campaign_id for flight in ledger.in_flight(session)}
    for campaign_id, started_at, frozen_at in sending:
        if finish_if_done(session, campaign_id, now=now, settlement=settlement):
            report.finished.append(campaign_id)
            continue
        if not report.broker_lost:
            if campaign_id in flying or coordination.is_alive(client, campaign_id):
                continue
            if started_at is not None and now - started_at < timedelta(seconds=stall_seconds):
                continue  # just started: its dispatch may still be on its way
        _requeue(session, campaign_id, frozen_at is not None, now, report)
        coordination.touch(client, campaign_id, stall_seconds)
    session.flush()
    return report


def _abandoned(
    session: DbSession,
    now: datetime,
    client: redis.Redis,
    stuck_seconds: float,
    settlement: Settlement,
    report: SweepReport,
) -> None:
    flights = ledger.in_flight(session)
    if not flights:
        return
    alive = coordination.leased(client, [(f.key.campaign_id, f.key.batch_no) for f in flights])
    for flight in flights:
        age = (now - flight.claimed_at).total_seconds()
        if age > stuck_seconds:
            pass  # longer than any request can take, whatever the lease says
        elif alive is None or (flight.key.campaign_id, flight.key.batch_no) in alive:
            continue  # alive (or Redis is down and we cannot tell: wait)
        elif age <= settlement.lease:
            continue  # a lease lapses within its ttl; a Redis restart's refresh is on its way
        unknown, sent = ledger.abandon(session, flight, now)
        report.unknown += unknown
        report.settled += sent
        if sent:
            peers.bump_campaign_stats(session, flight.key.campaign_id, sent=sent)
        if unknown or sent:
            log.warning(
                "sweep: campaign %s batch %s was abandoned by its worker: %s unknown, %s sent",
                flight.key.campaign_id,
                flight.key.batch_no,
                unknown,
                sent,
            )


def _requeue(
    session: DbSession, campaign_id: int, frozen: bool, now: datetime, report: SweepReport
) -> None:
    if not frozen:
        jobs.enqueue(session, jobs.DISPATCH_CAMPAIGN, campaign_id)
        report.redispatched.append(campaign_id)
        return
    ledger.reopen_stranded(session, campaign_id, now)
    batches = ledger.batch_numbers(session, campaign_id)
    for batch_no in batches:
        jobs.enqueue(session, jobs.SEND_BATCH, campaign_id, batch_no)
    if batches:
        report.requeued[campaign_id] = batches
        log.warning(
            "sweep: campaign %s made no progress; queued %s batches again",
            campaign_id,
            len(batches),
        )
