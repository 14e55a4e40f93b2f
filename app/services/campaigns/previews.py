"""Previews as a member, live previews of unsaved edits, and test sends: nothing is tracked.

Every path here renders through the same skeletons as a real send, with tracking off:
links stay as written, there is no open pixel, and the unsubscribe and preference links
point at a harmless page. No delivery and no event is ever written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import scoped_session

from app import jobs
from app.emails import (
    ContentError,
    EmailContent,
    Identity,
    Problem,
    Recipient,
    Skeleton,
    build_skeleton,
    extract_links,
)
from app.emails.content import LANGUAGES, LAYOUTS
from app.emails.samples import SAMPLE_RECIPIENTS
from app.models import LANGUAGE_NAMES, Campaign, Member
from app.services import DbSession
from app.services.campaigns import authoring as campaign_service
from app.services.campaigns.authoring import CampaignInput, CampaignInvalid
from app.services.transports import OutgoingBatch, OutgoingRecipient, Transport

log = logging.getLogger(__name__)

MAX_TEST_ADDRESSES = 5
TEST_SUBJECT_PREFIX = "[TEST] "
TEST_SEND_KIND = "campaign_test"
# Shown in a preview when the organization settings are not filled in yet.
PLACEHOLDER_IDENTITY = Identity(
    "Your organization (Settings → Organization)",
    "Its mailing address",
    "Its phone, email or web address",
)


@dataclass(frozen=True)
class Preview:
    """One rendered email and who it was rendered for.

    Attributes:
        language: The variant shown (the member's language, else the default).
        subject, html, text: The email as the member would get it, without tracking.
        recipient_label: "Mathieu Côté <mathieu@…>" or "a sample French-speaking member".
        member_id: The member previewed, None for a sample.
        notes: Warnings for the organizer (e.g. the identity is not set up).
    """

    language: str
    subject: str
    html: str
    text: str
    recipient_label: str
    member_id: int | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DraftPreview:
    """A live preview of unsaved input: problems of the language shown, or the email."""

    language: str
    problems: list[Problem]
    preview: Preview | None
    links: list[str]


def recipient_for(member: Member, *, email: str | None = None) -> Recipient:
    """A member's merge values (plain strings), with no token and no personal links."""
    return Recipient(
        first_name=member.first_name or "",
        last_name=member.last_name or "",
        email=email or member.email,
        local=member.local or "",
        language=member.language or "",
        postal_code=member.postal_code or "",
        attributes=dict(member.attributes or {}),
    )


def sample_recipient(language: str) -> Recipient:
    """A made-up member speaking `language`, for previews without a real member."""
    sample = SAMPLE_RECIPIENTS.get(language) or SAMPLE_RECIPIENTS["en"]
    return Recipient(
        first_name=sample.first_name,
        last_name=sample.last_name,
        email=sample.email,
        local=sample.local,
        language=sample.language,
        postal_code=sample.postal_code,
    )


def _sample_label(language: str) -> str:
    return f"a sample {LANGUAGE_NAMES.get(language, language)}-speaking member"


def find_members(session: DbSession, query: str, *, limit: int = 10) -> list[Member]:
    """Members whose email starts with `query` (case-insensitive), for the preview search."""
    text = query.strip().lower()
    if len(text) < 2:
        return []
    # Emails are stored lower-case; a prefix LIKE on the unique email index.
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = session.scalars(
        sa.select(Member)
        .where(Member.email.like(f"{escaped}%", escape="\\"))
        .order_by(Member.email)
        .limit(limit)
    )
    return list(rows)


def _untracked_skeleton(
    session: DbSession, campaign: Campaign, language: str
) -> tuple[Skeleton, tuple[str, ...]]:
    if campaign_service.identity_complete(campaign_service.identity_for(session)):
        return campaign_service.skeleton_for(session, campaign, language, tracking=False), ()
    # The organization identity is incomplete: show the email anyway, and say so.
    skeleton = build_skeleton(
        campaign_service.content_for(campaign, language),
        PLACEHOLDER_IDENTITY,
        tracking=False,
        base_url=campaign_service.base_url(),
        archive_url=campaign_service.view_in_browser_url(campaign, language),
        calendar_url=campaign_service.calendar_url(campaign, language),
        inert_url=campaign_service.inert_url(),
    )
    return skeleton, (_IDENTITY_NOTE,)


_IDENTITY_NOTE = (
    "The footer shows placeholders: an admin must fill in Settings → Organization "
    "before anything can be sent."
)


def preview_campaign(
    session: DbSession,
    campaign: Campaign,
    *,
    member: Member | None = None,
    language: str | None = None,
) -> Preview:
    """Render a saved campaign as `member` (or a sample member) would get it, untracked.

    Args:
        session: The database session (read only).
        campaign: The campaign.
        member: The member; None for a sample member speaking `language`.
        language: For a sample member, the language (default: the campaign's).

    Raises:
        ContentError: The campaign does not render (a saved campaign always does).
    """
    if member is not None:
        wanted = member.language
        recipient = recipient_for(member)
        label = f"{member.full_name or member.email} <{member.email}>"
    else:
        wanted = language if language in LANGUAGES else campaign.default_language
        recipient = sample_recipient(wanted)
        label = _sample_label(wanted)
    content = campaign_service.content_for(campaign, wanted)
    skeleton, notes = _untracked_skeleton(session, campaign, content.language)
    email = skeleton.personalize(recipient)
    return Preview(
        language=content.language,
        subject=email.subject,
        html=email.html,
        text=email.text,
        recipient_label=label,
        member_id=member.id if member is not None else None,
        notes=notes,
    )


def preview_input(
    session: DbSession,
    data: CampaignInput,
    *,
    language: str,
    member: Member | None = None,
) -> DraftPreview:
    """Render unsaved input (the edit form as it is now) through the real pipeline.

    Nothing is saved. Problems are those of the variant shown, named like save-time
    problems ("fr.body", line 3). `links` lists the addresses of every variant that
    renders, for the petition checkboxes.
    """
    data = campaign_service.normalise_input(data)
    links: list[str] = []
    for lang in LANGUAGES:
        variant = data.variants.get(lang)
        if variant is None or data.layout not in LAYOUTS:
            continue
        try:
            found = extract_links(campaign_service.variant_content(data.layout, lang, variant))
        except (ContentError, ValueError):
            continue
        links += [url for url in found if url not in links]
    shown = language if language in data.variants else data.default_language
    variant = data.variants.get(shown)
    if variant is None or data.layout not in LAYOUTS:
        problem = Problem("layout", None, "Choose a kind of email and write it to see a preview.")
        return DraftPreview(shown, [problem], None, links)
    content: EmailContent = campaign_service.variant_content(data.layout, shown, variant)
    problems = [
        Problem(f"{shown}.{p.field}", p.line, p.message)
        for p in campaign_service.check_variant(session, content)
    ]
    if problems:
        return DraftPreview(shown, problems, None, links)
    identity = campaign_service.identity_for(session)
    notes: tuple[str, ...] = ()
    if not campaign_service.identity_complete(identity):
        identity, notes = PLACEHOLDER_IDENTITY, (_IDENTITY_NOTE,)
    inert = campaign_service.inert_url()
    try:
        skeleton = build_skeleton(
            content,
            identity,
            tracking=False,
            base_url=campaign_service.base_url(),
            archive_url=inert,
            calendar_url=inert if data.layout == "day_of_action" else None,
            inert_url=inert,
        )
    except ContentError as error:
        problems = [Problem(f"{shown}.{p.field}", p.line, p.message) for p in error.problems]
        return DraftPreview(shown, problems, None, links)
    recipient = recipient_for(member) if member is not None else sample_recipient(shown)
    email = skeleton.personalize(recipient)
    label = (
        f"{member.full_name or member.email} <{member.email}>"
        if member is not None
        else _sample_label(shown)
    )
    preview = Preview(shown, email.subject, email.html, email.text, label, None, notes)
    return DraftPreview(shown, [], preview, links)


def parse_test_addresses(raw: str | Iterable[str]) -> list[str]:
    """Read up to five addresses (comma, semicolon, space or newline separated).

    Raises:
        CampaignInvalid: No address, more than five, or an invalid one (field "emails").
    """
    items: list[str] = []
    chunks = [raw] if isinstance(raw, str) else list(raw)
    for chunk in chunks:
        for part in str(chunk).replace(";", ",").replace("\n", ",").replace(" ", ",").split(","):
            if part.strip():
                items.append(part.strip())
    if not items:
        raise CampaignInvalid([Problem("emails", None, "Enter at least one email address.")])
    addresses: list[str] = []
    for item in items:
        try:
            address = validate_email(item, check_deliverability=False).normalized.lower()
        except EmailNotValidError as error:
            message = f"{item} is not a valid email address: {error}"
            raise CampaignInvalid([Problem("emails", None, message)]) from error
        if address not in addresses:
            addresses.append(address)
    if len(addresses) > MAX_TEST_ADDRESSES:
        message = f"A test goes to {MAX_TEST_ADDRESSES} addresses at most ({len(addresses)} given)."
        raise CampaignInvalid([Problem("emails", None, message)])
    return addresses


def request_test_send(
    session: DbSession,
    campaign: Campaign,
    emails: str | Iterable[str],
    *,
    language: str | None = None,
    member_id: int | None = None,
) -> list[str]:
    """Queue a test send of a saved campaign on the transactional queue.

    Checks the addresses and that the campaign can render with a complete identity and
    an allowed sender; the audience is not needed. Enqueues SEND_TRANSACTIONAL
    (kind "campaign_test") after the transaction commits. Records nothing else.

    Returns:
        The normalised addresses.

    Raises:
        CampaignInvalid: Bad addresses, an unknown member, or a campaign that can't be sent.
    """
    addresses = parse_test_addresses(emails)
    if language is not None and language not in LANGUAGES:
        raise CampaignInvalid([Problem("language", None, "The language must be en or fr.")])
    if member_id is not None and session.get(Member, member_id) is None:
        raise CampaignInvalid([Problem("member_id", None, "That member does not exist.")])
    problems = [
        p for p in campaign_service.sendability_problems(session, campaign) if p.field != "list_ids"
    ]
    if problems:
        raise CampaignInvalid(problems)
    payload = {
        "campaign_id": campaign.id,
        "emails": addresses,
        "language": language,
        "member_id": member_id,
    }
    real = session() if isinstance(session, scoped_session) else session
    jobs.enqueue(real, jobs.SEND_TRANSACTIONAL, TEST_SEND_KIND, payload)
    log.info("campaign %s: test send queued to %d address(es)", campaign.id, len(addresses))
    return addresses


def send_test(
    session: DbSession,
    transport: Transport,
    *,
    campaign_id: int,
    emails: list[str],
    language: str | None = None,
    member_id: int | None = None,
) -> int:
    """Send a test of a campaign to a few addresses, untracked, subject marked [TEST].

    Each address gets the variant of `language` (else the member's language, else the
    default) with the merge values of `member_id`, or of the member who has that address,
    or none (so merge defaults show). Writes no delivery and no event.

    Returns:
        How many messages the transport accepted (0 when the campaign is gone).
    """
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        log.warning("test send: campaign %s no longer exists", campaign_id)
        return 0
    as_member = session.get(Member, member_id) if member_id is not None else None
    by_email = {
        m.email: m for m in session.scalars(sa.select(Member).where(Member.email.in_(emails)))
    }
    groups: dict[str, list[OutgoingRecipient]] = {}
    for address in emails:
        member = as_member or by_email.get(address)
        wanted = language or (member.language if member is not None else None)
        variant = campaign_service.content_for(campaign, wanted or campaign.default_language)
        recipient = (
            recipient_for(member, email=address) if member is not None else Recipient(email=address)
        )
        groups.setdefault(variant.language, []).append(OutgoingRecipient(address, recipient))
    sent = 0
    for variant_language, recipients in groups.items():
        skeleton = campaign_service.skeleton_for(
            session, campaign, variant_language, tracking=False
        )
        transport.send_batch(
            OutgoingBatch(
                from_email=campaign.from_email,
                from_name=campaign.from_name,
                reply_to=campaign.reply_to,
                skeleton=skeleton,
                recipients=recipients,
                categories=("test",),
                subject_prefix=TEST_SUBJECT_PREFIX,
            )
        )
        sent += len(recipients)
    log.info("campaign %s: test sent to %d address(es)", campaign_id, sent)
    return sent
