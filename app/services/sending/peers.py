"""What sending borrows from campaigns, audience and tracking, in one place.

Each function here is the interface another feature provides (issue 4: campaigns, issue 3:
audience, issue 6: tracking). Campaigns is on main and used directly. Where a branch had
not landed when this was written, a small stand-in is marked `TODO(merge)` with what
replaces it, so the merge is a one-file change.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.emails.content import EmailContent, Identity, Problem
from app.emails.render import Skeleton
from app.models import Campaign, CampaignStatus, ConsentBasis, Member
from app.services import DbSession, campaigns, stats

log = logging.getLogger(__name__)


def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """`module.name` when that feature's branch has landed, else None."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


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
    """SQL on `members`: CASL consent is valid at `now` (express, or implied and unexpired).

    TODO(merge audience): app.services.consent.consent_valid_clause is used as soon as it
    exists; this copy of its rule (members without a consent record are never sent to)
    only covers the time before.
    """
    shared = _optional("app.services.consent", "consent_valid_clause")
    if shared is not None:
        clause: sa.ColumnElement[bool] = shared(now)
        return clause
    return sa.or_(
        Member.consent_basis == ConsentBasis.EXPRESS.value,
        sa.and_(
            Member.consent_basis == ConsentBasis.IMPLIED_MEMBERSHIP.value,
            Member.consent_expires_at.is_(None),
        ),
        sa.and_(Member.consent_basis.is_not(None), Member.consent_expires_at > now),
    )


def segment_clause(session: DbSession, segment_id: int) -> sa.ColumnElement[bool] | None:
    """SQL on `members` for a saved segment, or None when segments cannot be compiled yet.

    TODO(merge audience): return the audience branch's compile_segment(...) for the segment
    (its signature was not settled when this was written). Until then a campaign narrowed
    by a segment is refused when it is scheduled, rather than sent to the whole lists.
    """
    return None


# -- tracking (issue 6, on main) ---------------------------------------------------------


def bump_campaign_stats(session: DbSession, campaign_id: int, **deltas: int) -> None:
    """Add to the campaign's counters (targeted, sent, failed) in the caller's transaction,
    through app.services.stats.bump_campaign_stats (tracking, on main)."""
    deltas = {name: value for name, value in deltas.items() if value}
    if deltas:
        stats.bump_campaign_stats(session, campaign_id, **deltas)
