"""Campaign authoring: create, update, duplicate and delete, status transitions, links, skeletons.

Every status change goes through `transition()`, which checks the model's TRANSITIONS table;
the sending service calls it too. Content is checked when it is saved (`save-time`, with
the line of each problem), so a campaign that reaches the sender renders; `assert_sendable`
says so once more before scheduling. `skeleton_for` is the one way a campaign variant is
rendered, for previews, test sends, the web archive and real sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask import current_app

from app.emails import (
    ContentError,
    EmailContent,
    Identity,
    Problem,
    Skeleton,
    build_skeleton,
    check_content,
    extract_links,
)
from app.emails.calendar import build_ics
from app.emails.content import LANGUAGES, LAYOUTS, BodyFormat
from app.emails.sandbox import (
    MARK_CLOSE,
    MARK_OPEN,
    SlotRegistry,
    apply_ops,
    render_organizer_text,
)
from app.infra.sql import is_postgresql
from app.models import (
    TRANSITIONS,
    Campaign,
    CampaignStatus,
    CampaignVariant,
    Link,
    MailingList,
    OrgSettings,
    Segment,
    Sender,
    campaign_lists,
)
from app.models.base import utcnow
from app.services import Conflict, DbSession, ServiceError

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200
# Content can be changed until sending starts; a scheduled campaign stays sendable.
EDITABLE_STATUSES = frozenset({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED})
# The "view in browser" page exists once the email has started going out.
ARCHIVED_STATUSES = frozenset({CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.SENT})
# A translation left blank in these fields uses the default language's value: the event
# happens at one date, time and address whatever the language of the email.
SHARED_FIELDS = ("event_date", "event_time", "event_end_time", "timezone", "address", "cta_url")
# Any of these written means the organizer started a translation.
_TRANSLATED_TEXT = ("subject", "preheader", "body")
_TRANSLATED_FIELDS = ("headline", "cta_label", "place", "what_to_bring", "byline")

INERT_PATH = "/mail/inert"
_REF_PURPOSE = b"rallypoint.campaign-ref.v1"
_REF_CHARS = 12


class CampaignError(ServiceError):
    """A campaign operation that cannot be done; the message is safe to show."""


class CampaignInvalid(CampaignError):
    """Input that would make a broken campaign; `problems` says where, with lines."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(
            "The campaign has problems: "
            + "; ".join(f"{p.field}: {p.message}" for p in self.problems)
        )


class CampaignConflict(Conflict, CampaignError):
    """The campaign's status does not allow this (deleting a sent campaign, editing one
    that is sending). The API answers 409."""


class TransitionRefused(CampaignConflict):
    """A status change the transition table forbids, or one that lost a race."""

    def __init__(self, campaign_id: int, current: str, wanted: str, detail: str = "") -> None:
        self.campaign_id = campaign_id
        self.current = current
        self.wanted = wanted
        allowed = ", ".join(sorted(TRANSITIONS.get(CampaignStatus(current), ()))) or "none"
        message = detail or (
            f"Campaign {campaign_id} is {current}; it cannot become {wanted} "
            f"(from {current} it can become: {allowed})."
        )
        super().__init__(message)


@dataclass(frozen=True)
class VariantInput:
    """One language's content as the organizer wrote it."""

    subject: str = ""
    preheader: str = ""
    body: str = ""
    body_format: str = "markdown"
    fields: Mapping[str, str] = field(default_factory=dict)

    def is_blank(self) -> bool:
        """True when nothing translatable was written (an untouched language tab)."""
        texts = [getattr(self, name) for name in _TRANSLATED_TEXT]
        texts += [self.fields.get(name, "") for name in _TRANSLATED_FIELDS]
        return not any(text.strip() for text in texts)


@dataclass(frozen=True)
class CampaignInput:
    """Everything an organizer sets on a campaign, from the web form or the API.

    `petition_flags` maps link addresses to the organizer's petition choice; addresses it
    does not mention keep their flag (new ones get the layout's default).
    """

    name: str
    layout: str
    from_email: str
    default_language: str
    variants: Mapping[str, VariantInput]
    reply_to: str = ""
    list_ids: Sequence[int] = ()
    segment_id: int | None = None
    petition_flags: Mapping[str, bool] = field(default_factory=dict)


# --- reading ------------------------------------------------------------------------------


def list_campaigns(session: DbSession, *, limit: int = 200) -> list[Campaign]:
    """The most recently changed campaigns first."""
    query = sa.select(Campaign).order_by(Campaign.updated_at.desc(), Campaign.id.desc())
    return list(session.scalars(query.limit(limit)))


def get_campaign(session: DbSession, campaign_id: int) -> Campaign | None:
    return session.get(Campaign, campaign_id)


def list_ids_of(session: DbSession, campaign: Campaign) -> list[int]:
    """The ids of the campaign's lists, in id order."""
    query = sa.select(campaign_lists.c.list_id).where(campaign_lists.c.campaign_id == campaign.id)
    return sorted(session.scalars(query))


def lists_of(session: DbSession, campaign: Campaign) -> list[MailingList]:
    ids = list_ids_of(session, campaign)
    if not ids:
        return []
    query = sa.select(MailingList).where(MailingList.id.in_(ids)).order_by(MailingList.name)
    return list(session.scalars(query))


def all_lists(session: DbSession) -> list[MailingList]:
    """Every list an audience can be made of, by name."""
    return list(session.scalars(sa.select(MailingList).order_by(MailingList.name)))


def all_segments(session: DbSession) -> list[Segment]:
    """Every saved segment that can narrow an audience, by name."""
    return list(session.scalars(sa.select(Segment).order_by(Segment.name)))


def input_of(session: DbSession, campaign: Campaign) -> CampaignInput:
    """The campaign as input again: what an edit form starts from, what PATCH merges into."""
    links = {link.url: link.is_petition for link in campaign.links}
    return CampaignInput(
        name=campaign.name,
        layout=campaign.layout,
        from_email=campaign.from_email,
        reply_to=campaign.reply_to,
        default_language=campaign.default_language,
        list_ids=list_ids_of(session, campaign),
        segment_id=campaign.segment_id,
        variants={
            v.language: VariantInput(
                subject=v.subject,
                preheader=v.preheader,
                body=v.body,
                body_format=v.body_format,
                fields={str(k): str(val) for k, val in (v.fields or {}).items()},
            )
            for v in campaign.variants
        },
        petition_flags=links,
    )


# --- validation ---------------------------------------------------------------------------

# Attribute keys change when members are imported, not per request; a short cache keeps
# the save path free of a scan of every member. A key missing from the cache triggers one
# fresh read before anything is refused, so a stale cache never refuses a new attribute.
ATTRIBUTE_CACHE_SECONDS = 60.0
_attribute_cache: dict[str, tuple[float, frozenset[str]]] = {}
_attribute_lock = threading.Lock()


def known_attribute_keys(session: DbSession, *, fresh: bool = False) -> frozenset[str]:
    """The custom attribute keys that members have, cached per process for a minute.

    Args:
        session: Any session on the database.
        fresh: Read the database even when the cache is fresh.
    """
    bind = session.get_bind()
    cache_key = str(bind.engine.url) if isinstance(bind, (sa.Engine, sa.Connection)) else ""
    now = time.monotonic()
    with _attribute_lock:
        cached = _attribute_cache.get(cache_key)
    if cached is not None and not fresh and now - cached[0] < ATTRIBUTE_CACHE_SECONDS:
        return cached[1]
    keys = _read_attribute_keys(session)
    with _attribute_lock:
        _attribute_cache[cache_key] = (now, keys)
    return keys


def _read_attribute_keys(session: DbSession) -> frozenset[str]:
    if is_postgresql(session):
        # One pass over members, skipping the (usual) empty documents; jsonb_object_keys
        # is set-returning, DISTINCT keeps the answer as small as the set of keys.
        query = sa.text(
            "SELECT DISTINCT k FROM members, jsonb_object_keys(members.attributes) AS k "
            "WHERE members.attributes <> '{}'::jsonb"
        )
    else:
        query = sa.text(
            "SELECT DISTINCT j.key FROM members, json_each(members.attributes) AS j "
            "WHERE members.attributes <> '{}'"
        )
    return frozenset(str(key) for key in session.execute(query).scalars())


def _is_unknown_attribute(problem: Problem) -> bool:
    return problem.message.startswith("Unknown custom attribute")


def check_variant(session: DbSession, content: EmailContent) -> list[Problem]:
    """Check one variant as at save time, with the members' attribute keys.

    Returns:
        Problems with their own field names ("body", "headline"...), lines where known.
    """
    problems = check_content(content, known_attributes=known_attribute_keys(session))
    if any(_is_unknown_attribute(p) for p in problems):
        problems = check_content(
            content, known_attributes=known_attribute_keys(session, fresh=True)
        )
    return problems


def _email_problem(name: str, value: str, *, required: bool) -> Problem | None:
    if not value.strip():
        return Problem(name, None, "This field is required.") if required else None
    try:
        validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        return Problem(name, None, f"That email address is not valid: {error}")
    return None


def sender_for(session: DbSession, email: str) -> Sender | None:
    """The allowed sender with this address (any case), or None."""
    address = email.strip().lower()
    if not address:
        return None
    return session.scalar(sa.select(Sender).where(sa.func.lower(Sender.email) == address))


def _sender_problems(session: DbSession, from_email: str) -> list[Problem]:
    if sender_for(session, from_email) is not None:
        return []
    if session.scalar(sa.select(Sender.id).limit(1)) is None:
        message = "No sender is allowed yet: an admin adds one under Settings → Senders."
    elif not from_email.strip():
        message = "Choose who the email comes from."
    else:
        message = f"{from_email} is not an allowed sender; choose one from the list."
    return [Problem("from_email", None, message)]


def variant_content(layout: str, language: str, variant: VariantInput) -> EmailContent:
    """The render pipeline's view of one language of the input (blank fields dropped)."""
    return EmailContent(
        layout=layout,
        language=language,
        subject=variant.subject,
        preheader=variant.preheader,
        body=variant.body,
        body_format=cast(BodyFormat, variant.body_format),
        fields={k: v for k, v in variant.fields.items() if v.strip()},
    )


def normalise_input(data: CampaignInput) -> CampaignInput:
    """Drop untouched translations and fill a translation's shared fields from the default.

    Untouched means nothing translatable was written; the default language is always kept.
    Values are stripped of outer spaces except the body, whose indentation is Markdown.
    """
    variants: dict[str, VariantInput] = {}
    default = data.variants.get(data.default_language)
    for language, variant in data.variants.items():
        if language != data.default_language and variant.is_blank():
            continue
        fields = {k: v.strip() for k, v in variant.fields.items() if v.strip()}
        if default is not None and language != data.default_language:
            for name in SHARED_FIELDS:
                inherited = default.fields.get(name, "").strip()
                if name not in fields and inherited:
                    fields[name] = inherited
        spec = LAYOUTS.get(data.layout)
        if spec is not None:
            # Fields of another layout (left in the form after switching) are not content.
            fields = {k: v for k, v in fields.items() if k in spec.accepted}
        variants[language] = VariantInput(
            subject=variant.subject.strip(),
            preheader=variant.preheader.strip(),
            body=variant.body.rstrip(),
            body_format=variant.body_format,
            fields=fields,
        )
    return CampaignInput(
        name=data.name.strip(),
        layout=data.layout,
        from_email=data.from_email.strip().lower(),
        reply_to=data.reply_to.strip(),
        default_language=data.default_language,
        variants=variants,
        list_ids=tuple(dict.fromkeys(data.list_ids)),
        segment_id=data.segment_id,
        petition_flags=dict(data.petition_flags),
    )


def validate_input(
    session: DbSession, data: CampaignInput, *, require_lists: bool = False
) -> list[Problem]:
    """Check a campaign's input without changing anything.

    Variant problems are named "<language>.<field>", e.g. "fr.body" with its line.

    Args:
        session: The database session.
        data: Normalised input (see `normalise_input`).
        require_lists: Also require an audience (for a scheduled campaign).

    Returns:
        Every problem found; empty when the campaign can be saved.
    """
    problems: list[Problem] = []
    if not data.name:
        problems.append(Problem("name", None, "Give the campaign a name (only organizers see it)."))
    elif len(data.name) > MAX_NAME_CHARS:
        problems.append(Problem("name", None, f"Keep the name under {MAX_NAME_CHARS} characters."))
    if data.layout not in LAYOUTS:
        problems.append(Problem("layout", None, "Choose what kind of email this is."))
    if data.default_language not in LANGUAGES:
        problems.append(Problem("default_language", None, "The default language is en or fr."))
    problems += _sender_problems(session, data.from_email)
    reply_problem = _email_problem("reply_to", data.reply_to, required=False)
    if reply_problem is not None:
        problems.append(reply_problem)
    problems += _audience_problems(session, data, require_lists=require_lists)
    unknown = sorted(set(data.variants) - set(LANGUAGES))
    if unknown:
        problems.append(Problem("variants", None, f"Unknown language(s): {', '.join(unknown)}."))
    if data.default_language in LANGUAGES and data.default_language not in data.variants:
        problems.append(
            Problem(
                f"{data.default_language}.body",
                None,
                "Write the email in its default language.",
            )
        )
    if data.layout in LAYOUTS:
        for language in LANGUAGES:
            variant = data.variants.get(language)
            if variant is None:
                continue
            content = variant_content(data.layout, language, variant)
            for problem in check_variant(session, content):
                problems.append(
                    Problem(f"{language}.{problem.field}", problem.line, problem.message)
                )
    return problems


def _audience_problems(
    session: DbSession, data: CampaignInput, *, require_lists: bool
) -> list[Problem]:
    problems: list[Problem] = []
    if data.list_ids:
        found = set(
            session.scalars(sa.select(MailingList.id).where(MailingList.id.in_(data.list_ids)))
        )
        missing = [str(i) for i in data.list_ids if i not in found]
        if missing:
            problems.append(Problem("list_ids", None, f"No such list: {', '.join(missing)}."))
    elif require_lists:
        problems.append(Problem("list_ids", None, "Choose at least one list to send to."))
    if data.segment_id is not None and session.get(Segment, data.segment_id) is None:
        problems.append(Problem("segment_id", None, "That segment no longer exists."))
    return problems


# --- writing ------------------------------------------------------------------------------


def create_campaign(session: DbSession, data: CampaignInput, *, actor_id: int | None) -> Campaign:
    """Create a draft campaign with its variants, lists and links.

    Args:
        session: The database session (flushed, not committed).
        data: The organizer's input.
        actor_id: The user creating it.

    Returns:
        The new draft.

    Raises:
        CampaignInvalid: With every problem (field, line, message); nothing is created.
    """
    data = normalise_input(data)
    problems = validate_input(session, data)
    if problems:
        raise CampaignInvalid(problems)
    campaign = Campaign(status=CampaignStatus.DRAFT.value, created_by_id=actor_id)
    _apply(session, campaign, data)
    log.info("campaign %s created by user %s", campaign.id, actor_id)
    return campaign


def update_campaign(session: DbSession, campaign: Campaign, data: CampaignInput) -> Campaign:
    """Replace a draft's or a scheduled campaign's content, audience and sender.

    The campaign row is locked first, so the scheduling tick cannot start sending it in
    the middle of the change. A scheduled campaign must stay sendable (lists included).

    Raises:
        CampaignConflict: The campaign is sending or done; it cannot change any more.
        CampaignInvalid: With every problem; nothing is changed.
    """
    _lock(session, campaign)
    if campaign.status_enum not in EDITABLE_STATUSES:
        raise CampaignConflict(
            f"This campaign is {campaign.status}; only drafts and scheduled campaigns can be "
            "edited. Duplicate it to write a new one."
        )
    data = normalise_input(data)
    scheduled = campaign.status_enum is CampaignStatus.SCHEDULED
    problems = validate_input(session, data, require_lists=scheduled)
    if problems:
        raise CampaignInvalid(problems)
    _apply(session, campaign, data)
    return campaign


def _lock(session: DbSession, campaign: Campaign) -> None:
    # FOR UPDATE on PostgreSQL (SQLite has one writer anyway); refresh reads the status
    # the scheduler may have just changed.
    session.refresh(campaign, with_for_update=True)


def _apply(session: DbSession, campaign: Campaign, data: CampaignInput) -> None:
    sender = sender_for(session, data.from_email)
    campaign.name = data.name
    campaign.layout = data.layout
    campaign.from_email = sender.email if sender is not None else data.from_email
    campaign.from_name = sender.name if sender is not None else ""
    campaign.reply_to = data.reply_to
    campaign.default_language = data.default_language
    campaign.segment_id = data.segment_id
    # Explicit: changing only variants would not touch the campaign row, and the
    # skeleton cache is keyed by updated_at.
    campaign.updated_at = utcnow()
    if campaign not in session:
        session.add(campaign)
    existing = {v.language: v for v in campaign.variants}
    for language, variant in data.variants.items():
        row = existing.pop(language, None)
        if row is None:
            row = CampaignVariant(language=language)
            campaign.variants.append(row)
        row.subject = variant.subject
        row.preheader = variant.preheader
        row.body = variant.body
        row.body_format = variant.body_format
        row.fields = dict(variant.fields)
    for row in existing.values():
        campaign.variants.remove(row)
    session.flush()
    _set_lists(session, campaign, data.list_ids)
    sync_links(session, campaign, petition_flags=data.petition_flags)


def _set_lists(session: DbSession, campaign: Campaign, list_ids: Sequence[int]) -> None:
    session.execute(campaign_lists.delete().where(campaign_lists.c.campaign_id == campaign.id))
    if list_ids:
        session.execute(
            campaign_lists.insert(),
            [{"campaign_id": campaign.id, "list_id": list_id} for list_id in list_ids],
        )


def delete_campaign(session: DbSession, campaign: Campaign) -> None:
    """Delete a draft with its variants and links.

    Raises:
        CampaignConflict: The campaign is not a draft (its history must stay).
    """
    _lock(session, campaign)
    if campaign.status_enum is not CampaignStatus.DRAFT:
        raise CampaignConflict(
            f"This campaign is {campaign.status}; only drafts can be deleted."
            + (" Unschedule it first." if campaign.status == CampaignStatus.SCHEDULED else "")
        )
    session.delete(campaign)
    session.flush()
    log.info("campaign %s deleted", campaign.id)


def duplicate_campaign(session: DbSession, campaign: Campaign, *, actor_id: int | None) -> Campaign:
    """Copy a campaign of any status into a new draft: content, sender, audience, petition flags.

    Returns:
        The new draft, named "Copy of …".
    """
    source = input_of(session, campaign)
    copy = Campaign(
        status=CampaignStatus.DRAFT.value,
        created_by_id=actor_id,
        name=f"Copy of {campaign.name}"[:MAX_NAME_CHARS],
        layout=campaign.layout,
        from_email=campaign.from_email,
        from_name=campaign.from_name,
        reply_to=campaign.reply_to,
        default_language=campaign.default_language,
        segment_id=campaign.segment_id,
    )
    for variant in campaign.variants:
        copy.variants.append(
            CampaignVariant(
                language=variant.language,
                subject=variant.subject,
                preheader=variant.preheader,
                body=variant.body,
                body_format=variant.body_format,
                fields=dict(variant.fields or {}),
            )
        )
    session.add(copy)
    session.flush()
    _set_lists(session, copy, source.list_ids)
    sync_links(session, copy, petition_flags=source.petition_flags)
    return copy


# --- status -------------------------------------------------------------------------------


def transition(
    session: DbSession, campaign: Campaign, to_status: CampaignStatus | str, reason: str = ""
) -> Campaign:
    """Change a campaign's status, if the TRANSITIONS table allows it.

    The change is one conditional UPDATE (`WHERE status = <current>`), so two workers or
    two clicks racing for the same change cannot both make it: the loser gets
    TransitionRefused. Moving to sending stamps started_at (once); moving to sent,
    cancelled or failed stamps finished_at.

    Args:
        session: The database session (flushed, not committed).
        campaign: The campaign; its in-memory status is the one checked.
        to_status: The new status.
        reason: Why, for the organizer (e.g. "Paused after 3 failed batches"); stored in
            status_reason, cleared when empty.

    Returns:
        The campaign, refreshed.

    Raises:
        TransitionRefused: The table forbids the change, or the status changed meanwhile.
    """
    wanted = CampaignStatus(to_status)
    current = CampaignStatus(campaign.status)
    if wanted not in TRANSITIONS[current]:
        raise TransitionRefused(campaign.id, current.value, wanted.value)
    now = utcnow()
    values: dict[str, Any] = {"status": wanted.value, "status_reason": reason, "updated_at": now}
    if wanted is CampaignStatus.SENDING:
        values["started_at"] = sa.func.coalesce(Campaign.started_at, now)
    if wanted in (CampaignStatus.SENT, CampaignStatus.CANCELLED, CampaignStatus.FAILED):
        values["finished_at"] = now
    if wanted is CampaignStatus.DRAFT:
        values["send_at"] = None
    session.flush()
    result = session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.status == current.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.refresh(campaign)
    if int(result.rowcount or 0) != 1:  # type: ignore[attr-defined]
        raise TransitionRefused(
            campaign.id,
            campaign.status,
            wanted.value,
            detail=f"Campaign {campaign.id} changed to {campaign.status} meanwhile; "
            f"it was not made {wanted.value}.",
        )
    log.info("campaign %s: %s -> %s %s", campaign.id, current, wanted, reason)
    return campaign


def sendability_problems(session: DbSession, campaign: Campaign) -> list[Problem]:
    """Everything that stops this campaign from being sent now (see `assert_sendable`)."""
    problems = validate_input(session, input_of(session, campaign), require_lists=True)
    if not identity_complete(identity_for(session)):
        problems.append(
            Problem(
                "identity",
                None,
                "The organization's name, mailing address and contact must be filled in "
                "(Settings → Organization); the law requires them in every email.",
            )
        )
    return problems


def assert_sendable(session: DbSession, campaign: Campaign) -> None:
    """Make sure a campaign can be scheduled or sent: it renders in every language, comes
    from an allowed sender, has a valid reply-to and at least one list, and the
    organization's identity is complete.

    Raises:
        CampaignInvalid: With every problem found.
    """
    problems = sendability_problems(session, campaign)
    if problems:
        raise CampaignInvalid(problems)


# --- links --------------------------------------------------------------------------------


def campaign_urls(campaign: Campaign) -> list[str]:
    """Every link address of every variant, default language first, in order of appearance."""
    urls: dict[str, None] = {}
    ordered = sorted(campaign.variants, key=lambda v: v.language != campaign.default_language)
    for variant in ordered:
        try:
            found = extract_links(content_for(campaign, variant.language))
        except ContentError:
            continue  # content is checked at save; a broken variant has no links to track
        urls.update(dict.fromkeys(found))
    return list(urls)


def button_urls(fields: Iterable[Mapping[str, Any] | None]) -> set[str]:
    """The main button's address in each language's `fields`: the campaign's action link.

    Whatever the layout (an action alert's petition, a day of action's RSVP or petition), it
    counts in the petition (action) figures unless the organizer unticks it.
    """
    return {url for f in fields if (url := str((f or {}).get("cta_url", "")).strip())}


def _default_petition_urls(campaign: Campaign) -> set[str]:
    return button_urls(v.fields for v in campaign.variants)


def is_hosted_action_url(url: str) -> bool:
    """A link to one of this instance's hosted actions (/a/<slug>): an action link always."""
    return url.startswith(base_url() + "/a/")


def sync_links(
    session: DbSession, campaign: Campaign, *, petition_flags: Mapping[str, bool] | None = None
) -> list[Link]:
    """Make the campaign's link table match its content.

    Each distinct address gets one row; positions follow the order of appearance; an
    address that stays keeps its row (its id is in tracked links already). New addresses
    are petitions when they are the main button's (`button_urls`, any layout), unless
    `petition_flags` says otherwise. Addresses no longer in the content are removed.

    Args:
        session: The database session (flushed).
        campaign: The campaign, with its variants.
        petition_flags: Organizer choices by address; others keep their flag.

    Returns:
        The links in position order.
    """
    flags = dict(petition_flags or {})
    urls = campaign_urls(campaign)
    by_url = {link.url: link for link in campaign.links}
    defaults = _default_petition_urls(campaign)
    for url, link in list(by_url.items()):
        if url not in urls:
            campaign.links.remove(link)
    session.flush()
    for position, url in enumerate(urls):
        existing = by_url.get(url)
        if existing is None:
            link = Link(url=url, is_petition=url in defaults or is_hosted_action_url(url))
            campaign.links.append(link)
        else:
            link = existing
        link.position = position
        if url in flags:
            link.is_petition = bool(flags[url])
    session.flush()
    campaign.links.sort(key=lambda link: link.position)
    return list(campaign.links)


def set_petition_flags(session: DbSession, campaign: Campaign, flags: Mapping[int, bool]) -> None:
    """Flag links as petitions (or not), by link id; allowed whatever the status, since
    it only changes how clicks are counted.

    Raises:
        CampaignError: A link id is not one of this campaign's.
    """
    links = {link.id: link for link in campaign.links}
    unknown = [str(link_id) for link_id in flags if link_id not in links]
    if unknown:
        raise CampaignError(f"This campaign has no link {', '.join(unknown)}.")
    for link_id, value in flags.items():
        links[link_id].is_petition = bool(value)
    session.flush()


# --- rendering ----------------------------------------------------------------------------


def content_for(campaign: Campaign, language: str) -> EmailContent:
    """The campaign's content in `language`, or in its default language when there is no
    such variant (members get their language's variant, else the default).

    Raises:
        CampaignError: The campaign has no variant at all in its default language.
    """
    variants = {v.language: v for v in campaign.variants}
    variant = variants.get(language) or variants.get(campaign.default_language)
    if variant is None:
        raise CampaignError(f"Campaign {campaign.id} has no content in its default language.")
    return EmailContent(
        layout=campaign.layout,
        language=variant.language,
        subject=variant.subject,
        preheader=variant.preheader,
        body=variant.body,
        body_format=cast(BodyFormat, variant.body_format),
        fields={str(k): str(v) for k, v in (variant.fields or {}).items()},
    )


def org_settings(session: DbSession) -> OrgSettings | None:
    return session.get(OrgSettings, 1)


def identity_for(session: DbSession) -> Identity:
    """The CASL sender identification from the organization settings (blank if unset)."""
    row = org_settings(session)
    if row is None:
        return Identity("", "", "")
    return Identity(row.organization, row.mailing_address, row.contact)


def identity_complete(identity: Identity) -> bool:
    """True when the footer can carry the name, mailing address and contact CASL requires."""
    return all(
        p.strip() for p in (identity.organization, identity.mailing_address, identity.contact)
    )


def _config() -> Mapping[str, Any]:
    return current_app.config


def _ref_keys() -> list[bytes]:
    config = _config()
    secrets = [str(config["SECRET_KEY"]), *config.get("SECRET_KEY_FALLBACKS", [])]
    return [hmac.new(s.encode(), _REF_PURPOSE, hashlib.sha256).digest() for s in secrets]


def _ref(key: bytes, campaign_id: int) -> str:
    digest = hmac.new(key, str(campaign_id).encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:_REF_CHARS]


def campaign_ref(campaign_id: int) -> str:
    """The signed part of a campaign's public addresses (archive, calendar): without it,
    nobody can walk the ids to read other campaigns."""
    return _ref(_ref_keys()[0], campaign_id)


def check_campaign_ref(campaign_id: int, ref: str) -> bool:
    """True when `ref` was made by `campaign_ref` with the current or a previous secret."""
    return any(hmac.compare_digest(_ref(key, campaign_id), ref) for key in _ref_keys())


def base_url() -> str:
    return str(_config()["PUBLIC_BASE_URL"]).rstrip("/")


def inert_url() -> str:
    """Where unsubscribe and preference links point when nothing may be recorded."""
    return base_url() + INERT_PATH


def archive_url(campaign: Campaign, language: str | None = None) -> str:
    """The public "view in browser" address of the campaign (in `language`, if not the
    default)."""
    url = f"{base_url()}/archive/{campaign.id}-{campaign_ref(campaign.id)}"
    if language and language != campaign.default_language:
        url += f"?lang={language}"
    return url


def preview_url(campaign: Campaign, language: str | None = None) -> str:
    """The organizers' preview page of the campaign (a login is needed)."""
    url = f"{base_url()}/campaigns/{campaign.id}/preview"
    if language and language != campaign.default_language:
        url += f"?lang={language}"
    return url


def view_in_browser_url(campaign: Campaign, language: str | None = None) -> str:
    """Where an untracked rendering's "view in browser" points: the public archive once the
    campaign has started going out, the organizers' preview before (the archive is a 404
    until then)."""
    if is_archived(campaign):
        return archive_url(campaign, language)
    return preview_url(campaign, language)


def calendar_url(campaign: Campaign, language: str | None = None) -> str | None:
    """The day of action's .ics address, None for other layouts."""
    if campaign.layout != "day_of_action":
        return None
    url = f"{base_url()}/calendar/{campaign.id}.ics?k={campaign_ref(campaign.id)}"
    if language and language != campaign.default_language:
        url += f"&lang={language}"
    return url


def is_archived(campaign: Campaign) -> bool:
    """True when the web archive may show the campaign: it has started going out."""
    status = campaign.status_enum
    if status in ARCHIVED_STATUSES:
        return True
    ended = status in (CampaignStatus.CANCELLED, CampaignStatus.FAILED)
    return ended and campaign.started_at is not None


def _view_in_browser(campaign: Campaign, language: str, *, tracking: bool) -> str:
    # A member's email always points at the public archive, never at a page behind a login.
    if tracking:
        return archive_url(campaign, language)
    return view_in_browser_url(campaign, language)


SKELETON_CACHE_SIZE = 64
_skeletons: OrderedDict[tuple[Any, ...], Skeleton] = OrderedDict()
_skeleton_lock = threading.Lock()


def skeleton_for(
    session: DbSession,
    campaign: Campaign,
    language: str,
    *,
    tracking: bool,
    archive: bool = True,
) -> Skeleton:
    """The campaign's skeleton in `language` (or its default language), built once per process.

    Cached by campaign id, language, the campaign's updated_at (bumped by every edit),
    the identity and the base URL, so a batch task pays one small query, not a render.

    Args:
        session: The database session.
        campaign: The campaign.
        language: The member's language; the default variant is used when missing.
        tracking: True for real sends (tracked links, pixel, personal unsubscribe links);
            False for previews, test sends and the web archive (links as written).
        archive: Include the "view in browser" link: the public archive in a real send,
            else `view_in_browser_url` (the preview until the campaign goes out).

    Raises:
        ContentError: The campaign does not render (cannot happen after a valid save).
        ValueError: The organization identity is incomplete.
    """
    content = content_for(campaign, language)
    identity = identity_for(session)
    base = base_url()
    key = (
        campaign.id,
        content.language,
        campaign.updated_at,
        tracking,
        archive,
        is_archived(campaign),
        base,
        identity,
    )
    with _skeleton_lock:
        cached = _skeletons.get(key)
        if cached is not None:
            _skeletons.move_to_end(key)
            return cached
    link_refs: dict[str, str] = {}
    if tracking:
        rows = session.execute(sa.select(Link.url, Link.id).where(Link.campaign_id == campaign.id))
        link_refs = {url: str(link_id) for url, link_id in rows}
    skeleton = build_skeleton(
        content,
        identity,
        links=link_refs.get,
        tracking=tracking,
        base_url=base,
        archive_url=_view_in_browser(campaign, content.language, tracking=tracking)
        if archive
        else None,
        calendar_url=calendar_url(campaign, content.language),
        inert_url=None if tracking else inert_url(),
    )
    with _skeleton_lock:
        _skeletons[key] = skeleton
        while len(_skeletons) > SKELETON_CACHE_SIZE:
            _skeletons.popitem(last=False)
    return skeleton


def clear_caches() -> None:
    """Forget cached skeletons and attribute keys (tests; a settings change needs none)."""
    with _skeleton_lock:
        _skeletons.clear()
    with _attribute_lock:
        _attribute_cache.clear()


_MARKER = re.compile(f"{MARK_OPEN}(\\d+){MARK_CLOSE}")


def anonymous_text(source: str) -> str:
    """Render a one-line organizer text (a headline) for nobody in particular: merge
    fields print their defaults. For the calendar file and other public places.

    Raises:
        jinja2.TemplateError: The text does not render (checked at save, so not expected).
    """
    registry = SlotRegistry()
    text = render_organizer_text(source, registry, plain=True)
    specs = registry.specs
    return _MARKER.sub(lambda m: apply_ops("", specs[int(m.group(1))].ops), text)


def calendar_for(campaign: Campaign, language: str | None) -> str:
    """The day of action's .ics file in `language` (else the default).

    Raises:
        CampaignError: The campaign is not a day of action.
    """
    if campaign.layout != "day_of_action":
        raise CampaignError("Only a day of action has a calendar entry.")
    content = content_for(campaign, language or campaign.default_language)
    host = urlsplit(base_url()).hostname or "rallypoint.invalid"
    return build_ics(
        content.fields,
        uid=f"campaign-{campaign.id}@{host}",
        summary=anonymous_text(content.fields.get("headline", "")) or campaign.name,
        url=content.fields.get("cta_url") or None,
        dtstamp=campaign.updated_at,
    )


def status_label(campaign: Campaign) -> str:
    """The status in words for organizers."""
    return STATUS_LABELS.get(campaign.status, campaign.status)


STATUS_LABELS = {
    CampaignStatus.DRAFT.value: "Draft",
    CampaignStatus.SCHEDULED.value: "Scheduled",
    CampaignStatus.SENDING.value: "Sending",
    CampaignStatus.PAUSED.value: "Paused",
    CampaignStatus.SENT.value: "Sent",
    CampaignStatus.CANCELLED.value: "Cancelled",
    CampaignStatus.FAILED.value: "Failed",
}
