"""What sending borrows from campaigns, audience and tracking, in one place.

Each function here is the interface another feature provides (issue 4: campaigns, issue 3:
audience, issue 6: tracking). Until their branches land on main, sending uses the small
stand-ins below; each is marked `TODO(merge)` with what replaces it, so the merge is a
one-file change.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.emails.content import EmailContent, Identity
from app.emails.render import Skeleton, build_skeleton
from app.models import Campaign, CampaignVariant, ConsentBasis, Link, Member, OrgSettings, Sender
from app.services import DbSession

log = logging.getLogger(__name__)


def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """`module.name` when that feature's branch has landed, else None."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


# -- campaigns (issue 4) ---------------------------------------------------------------


def identity_for(session: DbSession) -> Identity | None:
    """The CASL sender identification from OrgSettings, or None when it is not filled in.

    TODO(merge campaigns): use app.services.campaigns.identity_for.
    """
    settings = session.get(OrgSettings, 1)
    if settings is None:
        return None
    identity = Identity(settings.organization, settings.mailing_address, settings.contact)
    if not all(
        part.strip() for part in (identity.organization, identity.mailing_address, identity.contact)
    ):
        return None
    return identity


def is_allowed_sender(session: DbSession, email: str) -> bool:
    """Whether `email` is one of the allowed From addresses (Settings → Senders)."""
    address = email.strip().lower()
    return (
        session.scalar(sa.select(Sender.id).where(sa.func.lower(Sender.email) == address))
        is not None
    )


def content_for(campaign: Campaign, variant: CampaignVariant) -> EmailContent:
    """A variant as the render pipeline's plain data.

    TODO(merge campaigns): use app.services.campaigns.content_for(campaign, language).
    """
    return EmailContent(
        layout=campaign.layout,
        language=variant.language,
        subject=variant.subject,
        preheader=variant.preheader,
        body=variant.body,
        body_format=variant.body_format,  # type: ignore[arg-type]
        fields={str(k): str(v) for k, v in (variant.fields or {}).items()},
    )


def build_campaign_skeleton(
    session: DbSession, campaign: Campaign, variant: CampaignVariant, *, base_url: str
) -> Skeleton:
    """Render one variant for a real send: tracked links, pixel, per-member unsubscribe.

    Links found in the campaign's link table become click-tracking links to their id;
    others stay as written.

    TODO(merge campaigns): use app.services.campaigns.skeleton_for(session, campaign,
    language, tracking=True), which also adds the archive and calendar links.
    """
    identity = identity_for(session)
    if identity is None:
        raise ValueError("The organization's name, mailing address and contact are not set.")
    link_ids = {
        url: str(link_id)
        for url, link_id in session.execute(
            sa.select(Link.url, Link.id).where(Link.campaign_id == campaign.id)
        )
    }
    return build_skeleton(
        content_for(campaign, variant),
        identity,
        links=link_ids.get,
        tracking=True,
        base_url=base_url,
    )


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


# -- tracking (issue 6) ------------------------------------------------------------------


def bump_campaign_stats(session: DbSession, campaign_id: int, **deltas: int) -> None:
    """Add to the campaign's counters (targeted, sent, failed) in the caller's transaction.

    TODO(merge tracking): app.services.stats.bump_campaign_stats is used as soon as it
    exists; before that there are no counters to bump (progress reads the ledger).
    """
    deltas = {name: value for name, value in deltas.items() if value}
    if not deltas:
        return
    bump = _optional("app.services.stats", "bump_campaign_stats")
    if bump is not None:
        bump(session, campaign_id, **deltas)
