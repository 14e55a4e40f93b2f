"""Campaign status changes for sending, always through the TRANSITIONS table.

The workers' own moves (`finish_if_done`, `pause_itself`) live here too, beside the
conditional UPDATE they use, so the audience freeze, the batches and control all import
them from below without importing one another.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.emails.content import Problem
from app.models import TRANSITIONS, Campaign, CampaignStatus, Delivery, DeliveryStatus
from app.models.base import utcnow
from app.services import DbSession
from app.services.campaigns.authoring import TransitionRefused
from app.services.sending import peers

log = logging.getLogger(__name__)

STATUS_LABELS = {
    CampaignStatus.DRAFT: "Draft",
    CampaignStatus.SCHEDULED: "Scheduled",
    CampaignStatus.SENDING: "Sending",
    CampaignStatus.PAUSED: "Paused",
    CampaignStatus.SENT: "Sent",
    CampaignStatus.CANCELLED: "Cancelled",
    CampaignStatus.FAILED: "Failed",
}

_VERBS = {
    CampaignStatus.DRAFT: "turned back into a draft",
    CampaignStatus.SCHEDULED: "scheduled",
    CampaignStatus.SENDING: "sent",
    CampaignStatus.PAUSED: "paused",
    CampaignStatus.SENT: "marked as sent",
    CampaignStatus.CANCELLED: "cancelled",
    CampaignStatus.FAILED: "marked as failed",
}


class SendingError(ValueError):
    """The campaign cannot be scheduled or sent as it is; each problem says why."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(" ".join(p.message for p in self.problems))


class TransitionError(ValueError):
    """The status change is not allowed from the campaign's current status (HTTP 409)."""


def allowed(current: CampaignStatus, to: CampaignStatus) -> bool:
    return to in TRANSITIONS[current]


def ensure_allowed(current: CampaignStatus, to: CampaignStatus) -> None:
    if not allowed(current, to):
        label = STATUS_LABELS[current].lower()
        raise TransitionError(f"A {label} campaign can't be {_VERBS[to]}.")


def require(campaign: Campaign, to: CampaignStatus, *sources: CampaignStatus) -> None:
    """The action moves to `to` only from `sources` (a subset of what the table allows).

    E.g. the table lets paused → sending, but that is resume's move, not send now's, and
    draft → sending is send now's, not resume's.
    """
    current = campaign.status_enum
    if current not in sources:
        label = STATUS_LABELS[current].lower()
        raise TransitionError(f"A {label} campaign can't be {_VERBS[to]}.")
    ensure_allowed(current, to)


def change_status(
    session: DbSession,
    campaign: Campaign,
    to: CampaignStatus,
    *,
    reason: str = "",
    **values: Any,
) -> None:
    """Move `campaign` to `to` through campaigns.transition, then set `values` (send_at).

    campaigns.transition checks TRANSITIONS and repeats the status it decided on in its
    UPDATE (`WHERE status = <current>`), so two requests racing (a double click, the API
    and the UI, a worker pausing the campaign) cannot both apply. Flushes, does not commit.

    Raises:
        TransitionError: the table forbids the change, or the status changed meanwhile.
    """
    try:
        peers.transition(session, campaign, to, reason)
    except TransitionRefused as exc:
        raise TransitionError(str(exc)) from exc
    for name, value in values.items():
        setattr(campaign, name, value)
    session.flush()


def conditional_status(
    session: DbSession,
    campaign_id: int,
    current: CampaignStatus,
    to: CampaignStatus,
    *where: sa.ColumnElement[bool],
    **values: Any,
) -> bool:
    """`UPDATE campaigns SET status=to … WHERE id=… AND status=current [AND where…]`.

    For the workers' own moves (finish, pause itself): whichever worker gets there first
    makes the change; the others change nothing. Returns whether this call made it.
    """
    ensure_allowed(current, to)
    result = session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == current.value, *where)
        .values(status=to.value, updated_at=values.pop("updated_at", None) or utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _unfinished() -> sa.ColumnElement[bool]:
    return sa.exists().where(
        Delivery.campaign_id == Campaign.id,
        Delivery.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value]),
    )


def finish_if_done(session: DbSession, campaign_id: int, *, now: datetime | None = None) -> bool:
    """Move a sending campaign to sent when no delivery is queued or sending any more.

    One conditional UPDATE (`… WHERE status = 'sending' AND NOT EXISTS (…)`): when the
    last batches of a campaign end together, exactly one of them makes the change. The
    NOT EXISTS probes ix_deliveries_campaign_status. Call it after committing the batch's
    own outcome, or a concurrent batch's check could miss it. Flushes, does not commit.

    Returns:
        True if this call finished the campaign.
    """
    now = now or utcnow()
    done = conditional_status(
        session,
        campaign_id,
        CampaignStatus.SENDING,
        CampaignStatus.SENT,
        ~_unfinished(),
        finished_at=now,
        updated_at=now,
    )
    if done:
        log.info("campaign %s: sent", campaign_id)
    return done


def pause_itself(session: DbSession, campaign_id: int, reason: str, *, now: datetime) -> bool:
    """A worker pauses a sending campaign and says why (shown on the campaign page)."""
    paused = conditional_status(
        session,
        campaign_id,
        CampaignStatus.SENDING,
        CampaignStatus.PAUSED,
        status_reason=reason[:2000],
        updated_at=now,
    )
    if paused:
        log.warning("campaign %s paused itself: %s", campaign_id, reason)
    return paused
