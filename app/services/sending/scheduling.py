"""Scheduling: check a campaign can go, schedule or send it now, and the beat tick."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from app import jobs
from app.emails.content import Problem
from app.models import Campaign, CampaignStatus, User
from app.models.base import utcnow
from app.services import DbSession
from app.services.organization.settings import org_timezone
from app.services.sending import peers
from app.services.sending.audience import SegmentUnavailable, has_audience
from app.services.sending.status import (
    SendingError,
    allowed,
    change_status,
    require,
)

log = logging.getLogger(__name__)

MAX_AHEAD = timedelta(days=366)

# The tick's UPDATE and the TRANSITIONS table must agree.
assert allowed(CampaignStatus.SCHEDULED, CampaignStatus.SENDING)


def check_sendable(session: DbSession, campaign: Campaign) -> list[Problem]:
    """Everything that stops a campaign from being scheduled or sent, for the organizer.

    campaigns.assert_sendable's checks — every variant renders (`check_content`, the same
    save-time checks, so a campaign that does not render can never be scheduled), an
    allowed sender, a valid reply-to, at least one list, the organization's identity
    (CASL) — and a segment that still exists.
    """
    problems = peers.sendability_problems(session, campaign)
    if (
        campaign.segment_id is not None
        and peers.segment_clause(session, campaign.segment_id) is None
    ):
        problems.append(
            Problem("segment_id", None, "The campaign's segment no longer exists; choose another.")
        )
    return problems


def to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A wall-clock time in `zone` as UTC.

    Raises:
        SendingError: the time does not exist there (the hour skipped when clocks go
            forward). A repeated hour (clocks going back) means its first occurrence.
    """
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    aware = local.replace(tzinfo=zone, fold=0)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != local.replace(fold=0):
        raise SendingError(
            [
                Problem(
                    "send_at",
                    None,
                    f"{local:%H:%M} doesn't exist on {local:%B} {local.day} in {zone.key}: "
                    "the clocks jump forward that night. Choose another time.",
                )
            ]
        )
    return aware.astimezone(UTC)


def schedule(
    session: DbSession,
    campaign: Campaign,
    send_at: datetime,
    timezone: str | None = None,
    *,
    actor: User | None = None,
    now: datetime | None = None,
) -> Campaign:
    """Schedule a draft (or move a scheduled campaign) to `send_at`.

    Args:
        send_at: a wall-clock time in `timezone` (naive), or an aware datetime.
        timezone: an IANA name; the organization's time zone when omitted.

    Stores send_at in UTC; the beat tick starts the campaign when it is due. Flushes, does
    not commit.

    Raises:
        SendingError: the time is not in the future (or over a year ahead), or the
            campaign cannot be sent as it is (every problem listed).
        TransitionError: the campaign's status does not allow scheduling.
    """
    now = now or utcnow()
    if campaign.status != CampaignStatus.SCHEDULED.value:
        require(campaign, CampaignStatus.SCHEDULED, CampaignStatus.DRAFT)
    try:
        zone = ZoneInfo(timezone) if timezone else org_timezone(session)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SendingError([Problem("timezone", None, f"Unknown time zone {timezone!r}.")]) from exc
    when = to_utc(send_at, zone)
    problems = []
    if when <= now:
        problems.append(Problem("send_at", None, "Choose a time in the future."))
    elif when > now + MAX_AHEAD:
        problems.append(Problem("send_at", None, "Choose a time within the next year."))
    problems += check_sendable(session, campaign)
    if problems:
        raise SendingError(problems)
    if campaign.status == CampaignStatus.SCHEDULED.value:
        campaign.send_at = when
        campaign.updated_at = now
    else:
        change_status(session, campaign, CampaignStatus.SCHEDULED, reason="", send_at=when)
    log.info("campaign %s scheduled for %s by %s", campaign.id, when, actor.email if actor else "-")
    session.flush()
    return campaign


def unschedule(session: DbSession, campaign: Campaign, *, actor: User | None = None) -> Campaign:
    """Turn a scheduled campaign back into a draft. Flushes, does not commit.

    Raises:
        TransitionError: the campaign is not scheduled (too late: it may be sending).
    """
    require(campaign, CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
    change_status(session, campaign, CampaignStatus.DRAFT, reason="")
    session.flush()
    return campaign


def send_now(
    session: DbSession,
    campaign: Campaign,
    *,
    actor: User | None = None,
    now: datetime | None = None,
) -> Campaign:
    """Start sending a draft or scheduled campaign at once.

    Moves it to sending (conditionally: a double click starts it once) and enqueues its
    dispatch, which leaves after the commit. Flushes, does not commit.

    Raises:
        SendingError: the campaign cannot be sent as it is, or nobody would receive it.
        TransitionError: the campaign's status does not allow sending.
    """
    now = now or utcnow()
    require(campaign, CampaignStatus.SENDING, CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
    problems = check_sendable(session, campaign)
    if not problems:
        try:
            if not has_audience(session, campaign, now):
                problems.append(
                    Problem(
                        "lists",
                        None,
                        "Nobody would receive it: no one on the chosen lists is subscribed "
                        "with valid consent.",
                    )
                )
        except SegmentUnavailable as exc:
            problems.append(Problem("segment", None, str(exc)))
    if problems:
        raise SendingError(problems)
    change_status(session, campaign, CampaignStatus.SENDING, reason="", send_at=now)
    jobs.enqueue(session, jobs.DISPATCH_CAMPAIGN, campaign.id)
    log.info("campaign %s sent now by %s", campaign.id, actor.email if actor else "-")
    session.flush()
    return campaign


def tick(session: DbSession, now: datetime | None = None) -> list[int]:
    """Start every scheduled campaign that is due; run by beat every few seconds.

    One conditional UPDATE moves them from scheduled to sending and returns their ids::

        UPDATE campaigns SET status = 'sending', started_at = :now
         WHERE status = 'scheduled' AND send_at <= :now RETURNING id

    (ix_campaigns_status_send_at). Two beats, or two ticks racing, cannot start one
    campaign twice: the second UPDATE finds it no longer scheduled. Enqueues one
    DISPATCH_CAMPAIGN per started campaign, sent after the commit. Flushes, does not commit.

    Returns:
        The ids of the campaigns started.
    """
    now = now or utcnow()
    ids = list(
        session.scalars(
            sa.update(Campaign)
            .where(
                Campaign.status == CampaignStatus.SCHEDULED.value,
                Campaign.send_at <= now,
            )
            .values(
                status=CampaignStatus.SENDING.value,
                started_at=now,
                status_reason="",
                updated_at=now,
            )
            .returning(Campaign.id)
            .execution_options(synchronize_session=False)
        )
    )
    for campaign_id in ids:
        jobs.enqueue(session, jobs.DISPATCH_CAMPAIGN, campaign_id)
        log.info("campaign %s is due: sending", campaign_id)
    session.flush()
    return ids
