"""Campaign status changes for sending, always through the TRANSITIONS table."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.emails.content import Problem
from app.infra.sql import built_once
from app.models import TRANSITIONS, Campaign, CampaignStatus
from app.models.base import utcnow
from app.services import DbSession
from app.services.campaigns.authoring import TransitionRefused
from app.services.sending import ledger, peers
from app.services.sending.ledger import Settlement

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


def finish_if_done(
    session: DbSession,
    campaign_id: int,
    *,
    now: datetime | None = None,
    settlement: Settlement | None = None,
) -> bool:
    """Move a sending campaign to sent once its audience is frozen and every row is settled.

    Every path that can end a campaign (its last batch, the sweep, the freeze of an empty
    audience, a resume with nothing left) comes through here, and it decides under the
    campaign's row lock on committed data:

    0. A plain read first: not frozen, or work left, as last committed — return at once, so
       the batches ending while others still run never queue for the lock.
    1. ``SELECT … FROM campaigns WHERE id = :id FOR UPDATE``: waits for a freeze in progress
       (the freeze holds this lock until it commits), and serialises the last batches.
    2. Not sending, or not frozen (`frozen_at` is set in the freeze's own transaction):
       nothing to decide. "No rows left" before the freeze has committed means nothing.
    3. A new statement, so under READ COMMITTED a new snapshot that sees what the freeze
       and the batches committed: no batch queued or in flight, no row queued, and no
       batch in doubt that SendGrid's events may still settle (with the webhook on).
       A conditional UPDATE folded into one statement would evaluate its NOT EXISTS on the
       snapshot taken before it waited for the lock, and finish a campaign whose freeze
       committed in the meantime.

    Flushes, does not commit (the lock is held until the caller commits).

    Returns:
        True if this call finished the campaign.
    """
    now = now or utcnow()
    settlement = settlement or Settlement()
    params = {
        "p_campaign": campaign_id,
        "p_since": now - timedelta(seconds=settlement.give_up),
    }
    # Step 0, one plain read. Not frozen as of the last commit: nothing to decide, and no
    # need to wait for the lock a freeze step holds (whoever completes the freeze checks
    # again after its commit: freeze_in_steps, or a one-step freeze's batches after theirs).
    # Work left as last committed: not the end, and no need to queue for the lock behind
    # the other batches ending now. Every batch commits its outcome before this check, so
    # of two batches ending together the later check sees both outcomes: the last one
    # always goes on to the locked decision below (and the sweep checks again anyway).
    if not session.scalar(_maybe_done(session, settlement.webhook), params):
        return False
    state = session.execute(
        sa.select(Campaign.status, Campaign.frozen_at)
        .where(Campaign.id == campaign_id)
        .with_for_update()
    ).first()
    if state is None or state.status != CampaignStatus.SENDING.value or state.frozen_at is None:
        return False
    # Again, in a new statement: on what committed before the lock was ours.
    if session.scalar(_busy(session, settlement.webhook), params):
        return False
    done = conditional_status(
        session,
        campaign_id,
        CampaignStatus.SENDING,
        CampaignStatus.SENT,
        finished_at=now,
        updated_at=now,
    )
    if done:
        log.info("campaign %s: sent", campaign_id)
    return done


def _work_left(webhook: bool) -> sa.ColumnElement[bool]:
    """A batch queued or in flight, a row queued, or (with the webhook) a batch in doubt that
    SendGrid's events may still settle; the campaign and `since` (now - give_up) bound."""
    campaign = sa.bindparam("p_campaign", type_=sa.Integer)
    in_doubt = (
        ledger.awaiting_since(campaign, sa.bindparam("p_since", type_=sa.DateTime(timezone=True)))
        if webhook
        else sa.false()
    )
    # The cheap reads first: OR stops at the first that finds something.
    return sa.or_(ledger.open_batches(campaign), in_doubt, ledger.queued_rows(campaign))


@built_once
def _maybe_done(session: DbSession, webhook: bool) -> sa.Select[tuple[bool]]:
    """Frozen, and no work left: one plain read (each batch's end runs it)."""
    return sa.select(sa.and_(Campaign.frozen_at.is_not(None), ~_work_left(webhook))).where(
        Campaign.id == sa.bindparam("p_campaign")
    )


@built_once
def _busy(session: DbSession, webhook: bool) -> sa.Select[tuple[bool]]:
    return sa.select(_work_left(webhook))


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
