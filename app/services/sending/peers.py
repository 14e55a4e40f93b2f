"""What sending borrows from campaigns, audience and tracking, in one place.

Each function here is the interface another feature provides (campaigns, audience,
tracking), so the sending code names its dependencies in one module.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from app.emails.content import EmailContent, Identity, Problem
from app.emails.render import Skeleton
from app.models import Campaign, CampaignStatus, Segment
from app.services import DbSession
from app.services.audience import consent, segments
from app.services.campaigns import authoring as campaigns
from app.services.stats import counters as stats

log = logging.getLogger(__name__)


# -- campaigns (issue 4, on main) -------------------------------------------------------


def identity_for(session: DbSession) -> Identity | None:
    """The CASL sender identification from OrgSettings, or None when it is incomplete."""
    identity = campaigns.identity_for(session)
    return identity if campaigns.identity_complete(identity) else None


def sendability_problems(session: DbSession, campaign: Campaign) -> list[Problem]:
    """What stops the campaign from being scheduled or sent (campaigns.assert_sendable's
    checks: it renders in every language, an allowed sender, a valid reply-to, at least
    one list, the organization's identity)."""
    return campaigns.sendability_problems(session, campaign)


def content_for(campaign: Campaign, language: str) -> EmailContent:
    """The variant in `language`, else the default language's, as plain data."""
    return campaigns.content_for(campaign, language)


def skeleton_for(session: DbSession, campaign: Campaign, language: str) -> Skeleton:
    """The tracked skeleton of a real send (campaigns.skeleton_for caches it per process,
    keyed by campaign, language and updated_at)."""
    return campaigns.skeleton_for(session, campaign, language, tracking=True)


def transition(
    session: DbSession, campaign: Campaign, to_status: CampaignStatus, reason: str = ""
) -> Campaign:
    """The one status change of campaigns (TRANSITIONS, conditional UPDATE)."""
    return campaigns.transition(session, campaign, to_status, reason)


# -- audience (issue 3) ------------------------------------------------------------------


def consent_valid_clause(now: datetime) -> sa.ColumnElement[bool]:
    """SQL on `members`: CASL consent is valid at `now` (express, or implied and unexpired)."""
    return consent.consent_valid_clause(now)


def segment_clause(session: DbSession, segment_id: int) -> sa.ColumnElement[bool] | None:
    """SQL on `members` for a saved segment; None when the segment no longer exists."""
    segment = session.get(Segment, segment_id)
    if segment is None:
        return None
    return segments.segment_condition(segment)


# -- tracking (issue 6, on main) ---------------------------------------------------------


def bump_campaign_stats(session: DbSession, campaign_id: int, **deltas: int) -> None:
    """Add to the campaign's counters (targeted, sent, failed) in the caller's transaction,
    through app.services.stats.counters.bump_campaign_stats (tracking, on main)."""
    deltas = {name: value for name, value in deltas.items() if value}
    if deltas:
        stats.bump_campaign_stats(session, campaign_id, **deltas)
