"""Subscribing people to lists: double opt-in with signed confirmation links, and form tokens.

A subscription through a form, the API or an organizer goes to `subscribe()`. On a double
opt-in list (and whenever someone who unsubscribed from a list is added back) it becomes
pending and a confirmation email with a signed link leaves on the transactional queue; the
link confirms it (`confirm()`), which records express consent. Suppressed addresses are never
subscribed, silently: the same outcome is shown to the public, so a form cannot tell who is
suppressed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from app import jobs
from app.emails import EmailContent, Recipient
from app.models import (
    ConsentBasis,
    MailingList,
    Member,
    OrgSettings,
    Sender,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience.consent import record_consent
from app.services.audience.notices import notice_batch, plain
from app.services.audience.subscriptions import is_suppressed

log = logging.getLogger(__name__)

# The kind of the transactional job (app.services.sending.transactional) that sends confirmations.
OPTIN_KIND = "optin_confirmation"
CONFIRM_SALT = "rallypoint.optin-confirm.v1"
FORM_SALT = "rallypoint.embed-form.v1"
CONFIRM_MAX_AGE = timedelta(days=7)
# A form submitted again within this time does not send another confirmation email, so a
# form cannot be used to flood someone's inbox.
RESEND_AFTER = timedelta(minutes=30)
FORM_WORDING = {
    "en": "Yes, I want to receive emails from {organization} about {list}. "
    "I can unsubscribe at any time.",
    "fr": "Oui, je veux recevoir les courriels de {organization} au sujet de {list}. "
    "Je peux me désabonner en tout temps.",
}


class SubscribeOutcome(StrEnum):
    SUBSCRIBED = "subscribed"  # on the list now
    PENDING = "pending"  # waiting for the person to confirm by email
    ALREADY = "already"  # was already subscribed
    BLOCKED = "blocked"  # suppressed address: nothing done (never shown as such to the public)


class ConfirmOutcome(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY = "already"
    INVALID = "invalid"  # forged, tampered with, or for a subscription that is gone
    EXPIRED = "expired"


@dataclass(frozen=True)
class ConfirmResult:
    outcome: ConfirmOutcome
    mailing_list: MailingList | None = None


def _confirm_serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=CONFIRM_SALT)


def confirmation_token(secret_key: str, member_id: int, list_id: int, email: str) -> str:
    """A signed, timestamped link token for one member, list and address."""
    return str(_confirm_serializer(secret_key).dumps({"m": member_id, "l": list_id, "e": email}))


def read_confirmation_token(
    secret_key: str, token: str, max_age: timedelta = CONFIRM_MAX_AGE
) -> tuple[int, int, str]:
    """(member id, list id, email) from a confirmation token.

    Raises:
        SignatureExpired: older than `max_age`.
        BadSignature: forged or altered.
    """
    data = _confirm_serializer(secret_key).loads(token, max_age=int(max_age.total_seconds()))
    if not isinstance(data, dict):
        raise BadSignature("unexpected payload")
    try:
        return int(data["m"]), int(data["l"]), str(data["e"])
    except (KeyError, TypeError, ValueError):
        raise BadSignature("unexpected payload") from None


def form_token(secret_key: str, list_id: int) -> str:
    """The token an embedded form posts instead of a session CSRF token (it never expires)."""
    return str(URLSafeSerializer(secret_key, salt=FORM_SALT).dumps({"l": list_id}))


def check_form_token(secret_key: str, token: str, list_id: int) -> bool:
    """True when `token` was issued by this server for this list's embedded form."""
    try:
        data = URLSafeSerializer(secret_key, salt=FORM_SALT).loads(token or "")
    except BadSignature:
        return False
    return isinstance(data, dict) and data.get("l") == list_id


def subscribe(
    session: DbSession,
    member: Member,
    mailing_list: MailingList,
    *,
    source: SubscriptionSource,
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> SubscribeOutcome:
    """Add a member to a list, respecting suppressions, earlier unsubscribes and opt-in.

    - Suppressed address: nothing changes (BLOCKED).
    - Already subscribed: nothing changes (ALREADY).
    - Double opt-in list, or the member once unsubscribed from this list: the subscription
      becomes pending and, unless one left within RESEND_AFTER, a confirmation email is
      enqueued (jobs.SEND_TRANSACTIONAL, kind "optin_confirmation", transactional queue)
      (PENDING).
    - Otherwise subscribed now (SUBSCRIBED); through a form this records express consent
      with the form's wording and the request details (CASL proof).

    Imports do not come here: they subscribe in bulk (app.services.audience.imports). Flushes; the
    email leaves only when the caller commits.

    Args:
        session: the database session.
        member: the member.
        mailing_list: the list.
        source: form, api or admin.
        detail: what to keep as proof of consent (IP address, user agent, page).
        now: the time (tests pin it).
    """
    now = now or utcnow()
    if is_suppressed(session, member.email):
        return SubscribeOutcome.BLOCKED
    subscription = session.get(Subscription, (member.id, mailing_list.id))
    if subscription is not None and subscription.status == SubscriptionStatus.SUBSCRIBED:
        return SubscribeOutcome.ALREADY
    was_unsubscribed = (
        subscription is not None and subscription.status == SubscriptionStatus.UNSUBSCRIBED
    )
    if mailing_list.opt_in == "double" or was_unsubscribed:
        if subscription is None:
            subscription = Subscription(
                member_id=member.id,
                list_id=mailing_list.id,
                status=SubscriptionStatus.PENDING.value,
                source=source.value,
            )
            session.add(subscription)
        elif subscription.status != SubscriptionStatus.PENDING:
            subscription.status = SubscriptionStatus.PENDING.value
            subscription.source = source.value
        recently = (
            subscription.confirmation_sent_at is not None
            and subscription.confirmation_sent_at > now - RESEND_AFTER
        )
        if not recently:
            # The task sends only while this is unset and sets it when the email leaves, so
            # a second queued copy of the job (a form sent twice) sends nothing more.
            subscription.confirmation_sent_at = None
            jobs.enqueue(
                session,
                jobs.SEND_TRANSACTIONAL,
                OPTIN_KIND,
                {"member_id": member.id, "list_id": mailing_list.id},
            )
        session.flush()
        return SubscribeOutcome.PENDING
    if subscription is None:
        subscription = Subscription(member_id=member.id, list_id=mailing_list.id)
        session.add(subscription)
    subscription.status = SubscriptionStatus.SUBSCRIBED.value
    subscription.source = source.value
    subscription.subscribed_at = now
    subscription.unsubscribed_at = None
    subscription.unsubscribe_source = None
    if source is SubscriptionSource.FORM:
        _record_form_consent(session, member, mailing_list, detail, now)
    session.flush()
    return SubscribeOutcome.SUBSCRIBED


def _organization(session: DbSession) -> str:
    settings = session.get(OrgSettings, 1)
    return (settings.organization if settings else "") or "us"


def form_wording(session: DbSession, mailing_list: MailingList, language: str = "en") -> str:
    """The consent sentence a public form shows (and the consent record keeps)."""
    template = FORM_WORDING.get(language, FORM_WORDING["en"])
    return template.format(organization=_organization(session), list=mailing_list.name)


def _record_form_consent(
    session: DbSession,
    member: Member,
    mailing_list: MailingList,
    detail: Mapping[str, Any] | None,
    now: datetime,
    *,
    how: str = "form",
) -> None:
    record_consent(
        session,
        member,
        ConsentBasis.EXPRESS,
        source=f"{how}: {mailing_list.name}",
        at=now,
        detail={
            "list_id": mailing_list.id,
            "list": mailing_list.name,
            "wording": form_wording(session, mailing_list, member.language),
            **dict(detail or {}),
        },
    )


def confirm(
    session: DbSession,
    secret_key: str,
    token: str,
    *,
    detail: Mapping[str, Any] | None = None,
    max_age: timedelta = CONFIRM_MAX_AGE,
    now: datetime | None = None,
) -> ConfirmResult:
    """Confirm a pending subscription from a confirmation link.

    Changes the subscription to subscribed (source form) and records express consent with
    the request details; a suppressed address stays unsubscribed (the link is refused).
    Enqueues nothing. Flushes.
    """
    now = now or utcnow()
    try:
        member_id, list_id, email = read_confirmation_token(secret_key, token, max_age)
    except SignatureExpired:
        return ConfirmResult(ConfirmOutcome.EXPIRED)
    except BadSignature:
        return ConfirmResult(ConfirmOutcome.INVALID)
    member = session.get(Member, member_id)
    mailing_list = session.get(MailingList, list_id)
    subscription = session.get(Subscription, (member_id, list_id))
    if member is None or mailing_list is None or subscription is None or member.email != email:
        return ConfirmResult(ConfirmOutcome.INVALID)
    if is_suppressed(session, member.email):
        return ConfirmResult(ConfirmOutcome.INVALID, mailing_list)
    if subscription.status == SubscriptionStatus.SUBSCRIBED:
        return ConfirmResult(ConfirmOutcome.ALREADY, mailing_list)
    if subscription.status != SubscriptionStatus.PENDING:
        # Unsubscribed since the email was sent: an old link must not undo that.
        return ConfirmResult(ConfirmOutcome.INVALID, mailing_list)
    subscription.status = SubscriptionStatus.SUBSCRIBED.value
    subscription.source = SubscriptionSource.FORM.value
    subscription.subscribed_at = now
    subscription.unsubscribed_at = None
    subscription.unsubscribe_source = None
    _record_form_consent(session, member, mailing_list, detail, now, how="double opt-in confirmed")
    session.flush()
    return ConfirmResult(ConfirmOutcome.CONFIRMED, mailing_list)


class ConfirmationNotSent(Exception):
    """The confirmation email cannot be sent (no sender identity configured, ...)."""


def send_confirmation(
    session: DbSession,
    transport: Any,
    member_id: int,
    list_id: int,
    *,
    secret_key: str,
    base_url: str,
) -> int:
    """Send the double opt-in confirmation email of a pending subscription, once.

    Sends through `transport` (one recipient, no tracking) and sets the subscription's
    confirmation_sent_at. Does nothing (0) when the subscription is no longer pending, the
    email already left, or the address is suppressed. Flushes.

    Returns:
        How many messages the transport accepted (1 or 0).

    Raises:
        ConfirmationNotSent: no organization identity or sender address is set up.
        app.services.transports.TransportError: the transport refused or failed.
    """

    subscription = session.get(Subscription, (member_id, list_id))
    if (
        subscription is None
        or subscription.status != SubscriptionStatus.PENDING
        or subscription.confirmation_sent_at is not None
    ):
        return 0
    member = session.get(Member, member_id)
    mailing_list = session.get(MailingList, list_id)
    if member is None or mailing_list is None or is_suppressed(session, member.email):
        return 0
    settings = session.get(OrgSettings, 1)
    if settings is None or not all(
        part.strip() for part in (settings.organization, settings.mailing_address, settings.contact)
    ):
        raise ConfirmationNotSent(
            "Set the organization's name, mailing address and contact under Settings: "
            "CASL requires them in every email, confirmation requests included."
        )
    sender = session.scalar(
        sa.select(Sender).order_by(Sender.is_default.desc(), Sender.id).limit(1)
    )
    if sender is None:
        raise ConfirmationNotSent("Add a sender address under Settings first.")
    base = base_url.rstrip("/")
    token = confirmation_token(secret_key, member.id, mailing_list.id, member.email)
    content = _confirmation_content(
        member.language, plain(mailing_list.name), f"{base}/subscribe/confirm/{token}"
    )
    batch = notice_batch(
        settings,
        sender,
        content,
        base_url=base,
        inert_url=f"{base}/subscribe/{mailing_list.slug}",
        to=Recipient(
            first_name=member.first_name,
            last_name=member.last_name,
            email=member.email,
            language=member.language,
        ),
        category="optin-confirmation",
    )
    transport.send_batch(batch)
    subscription.confirmation_sent_at = utcnow()
    session.flush()
    return 1


def _confirmation_content(language: str, list_name: str, url: str) -> Any:
    if language == "fr":
        return EmailContent(
            layout="action_alert",
            language="fr",
            subject=f"Confirmez votre abonnement : {list_name}",
            preheader="Un clic pour confirmer votre abonnement.",
            body=(
                f"Quelqu'un (nous espérons que c'est vous) a demandé à recevoir nos courriels "
                f"au sujet de **{list_name}**.\n\nSi ce n'est pas vous, ignorez ce message : "
                "vous ne recevrez rien de plus. Le lien est valide pendant 7 jours."
            ),
            body_format="markdown",
            fields={
                "headline": "Confirmez votre abonnement",
                "cta_label": "Oui, je m'abonne",
                "cta_url": url,
            },
        )
    return EmailContent(
        layout="action_alert",
        language="en",
        subject=f"Please confirm your subscription: {list_name}",
        preheader="One click to confirm your subscription.",
        body=(
            f"Someone (we hope it was you) asked to receive our emails about "
            f"**{list_name}**.\n\nIf it wasn't you, just ignore this email: you won't hear "
            "from us again. The link works for 7 days."
        ),
        body_format="markdown",
        fields={
            "headline": "Confirm your subscription",
            "cta_label": "Yes, subscribe me",
            "cta_url": url,
        },
    )
