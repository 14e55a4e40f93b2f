"""Signing: one response per email address per action, attribution, consent and tallies.

The hot path of a spike (90,000 members alerted at once): a first signature is one
INSERT ... ON CONFLICT DO NOTHING RETURNING on UNIQUE (action_id, email), plus, for a signer
an alert brought, one upsert of the campaign's tally rows in the same transaction. Signing
again (a replayed POST, a second visit) finds the row, updates the signer's details and
counts nothing. Nothing here updates a per-action counter row: the live count is a count of
responses (counts.py).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from app import jobs
from app.infra import sql
from app.models import (
    ActionResponse,
    ActionStatus,
    ActionTally,
    Delivery,
    MailingList,
    Member,
    OrgSettings,
    ResponseSource,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
    TallyDimension,
    action_lists,
)
from app.models.base import UTCDateTime, utcnow
from app.services import DbSession, Invalid
from app.services.actions.mail import CONFIRM_KIND, THANKS_KIND
from app.services.audience import members as audience_members
from app.services.audience import optin
from app.services.audience.subscriptions import is_suppressed

log = logging.getLogger(__name__)

# Bounds on what a signer sends (the columns' sizes; a form posting more is refused).
FIELD_LIMITS = {
    "first_name": 100,
    "last_name": 100,
    "postal_code": 20,
    "local": 100,
    "phone": 40,
    "comment": 1000,
    "city": 100,
    "utm_source": 100,
}
_RESPONSE_COLUMNS = (
    "action_id", "email", "first_name", "last_name", "postal_code", "city", "local", "phone",
    "comment", "language", "consent_given", "consent_wording", "consent_at", "consent_ip",
    "source", "campaign_id", "delivery_id", "link_id", "referrer_id", "referral_code",
    "utm_source", "ip", "user_agent", "counted", "flagged", "flag_reason", "created_at",
    "updated_at",
)  # fmt: skip
# The hot statement of a spike, written out: one round trip inserts the signature, finds
# the member who has the address (the delivery's member when they kept the pre-filled
# address; nobody's when a forwarded email's reader signs as themself) and, through
# UNIQUE (action_id, email), leaves an address that already signed alone (no row back: the
# caller updates it instead). A text() statement is compiled once per process; SQLAlchemy
# does not cache the compilation of an INSERT ... ON CONFLICT built with values().
# (S608: the names joined in are the constant above, never input.)
INSERT_RESPONSE = sa.text(
    f"INSERT INTO action_responses (member_id, {', '.join(_RESPONSE_COLUMNS)}) "  # noqa: S608
    f"VALUES ((SELECT id FROM members WHERE email = :email), "
    f"{', '.join(':' + c for c in _RESPONSE_COLUMNS)}) "
    "ON CONFLICT (action_id, email) DO NOTHING RETURNING id"
).bindparams(
    sa.bindparam("consent_at", type_=UTCDateTime()),
    sa.bindparam("created_at", type_=UTCDateTime()),
    sa.bindparam("updated_at", type_=UTCDateTime()),
)
CONSENT_WORDING = {
    "en": "Yes, {organization} may email me about this campaign and its other actions. "
    "I can unsubscribe at any time with the link in every email.",
    "fr": "Oui, {organization} peut m'écrire au sujet de cette campagne et de ses autres "
    "actions. Je peux me désabonner en tout temps grâce au lien de chaque courriel.",
}


class SignError(Invalid):
    """A signature that cannot be recorded; `field` names the input at fault."""


@dataclass
class Signature:
    """What the signer typed (or the API sent)."""

    email: str
    first_name: str = ""
    last_name: str = ""
    postal_code: str = ""
    local: str = ""
    phone: str = ""
    comment: str = ""
    city: str = ""
    language: str = "en"
    consent: bool = False


@dataclass
class Attribution:
    """Where the signature came from. Resolved by `attribution_for` from a verified reference,
    a referral code and the page's utm_source; an unknown code or reference leaves it direct."""

    source: ResponseSource = ResponseSource.DIRECT
    campaign_id: int | None = None
    delivery_id: int | None = None
    link_id: int | None = None
    member_id: int | None = None  # the member the delivery went to
    local: str = ""  # the delivery's local (frozen with the audience)
    language: str = ""
    referrer_id: int | None = None
    utm_source: str = ""


@dataclass
class Prefill:
    """What the page may show a member who arrived through their own alert."""

    first_name: str
    last_name: str
    email: str
    postal_code: str
    local: str
    language: str

    @property
    def display_name(self) -> str:
        initial = f" {self.last_name[:1]}." if self.last_name else ""
        return f"{self.first_name}{initial}".strip() or self.email.split("@")[0]


class SignableAction(Protocol):
    """What signing reads of an action: the ORM row, or its public snapshot (public.py)."""

    @property
    def id(self) -> int: ...
    @property
    def slug(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def fields(self) -> dict[str, Any]: ...
    @property
    def require_confirmation(self) -> bool: ...
    @property
    def send_thank_you(self) -> bool: ...


@dataclass
class SignOutcome:
    session: DbSession
    response_id: int
    referral_code: str
    created: bool
    counted: bool
    subscriptions: dict[int, str] = field(default_factory=dict)  # list id -> outcome

    @property
    def response(self) -> ActionResponse:
        """The response row (loaded on first use; the hot path never needs it)."""
        row = self.session.get(ActionResponse, self.response_id)
        assert row is not None
        return row


def consent_wording(session: DbSession, language: str) -> str:
    """The sentence beside the consent box (and kept with the consent: CASL s.10 proof)."""
    settings = session.get(OrgSettings, 1)
    organization = (settings.organization if settings else "") or "Our union"
    address = (settings.mailing_address if settings else "").strip()
    wording = CONSENT_WORDING.get(language, CONSENT_WORDING["en"]).format(organization=organization)
    if address:
        wording += f" ({organization}, {' '.join(address.split())})"
    return wording


def delivery_prefill(session: DbSession, campaign_id: int, delivery_id: int) -> Prefill | None:
    """The member a verified reference names, or None if the delivery is gone or belongs to
    another campaign (the reference proved only what it signed)."""
    row = session.execute(
        sa.select(Delivery.campaign_id, Delivery.local, Member)
        .join(Member, Member.id == Delivery.member_id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None or row.campaign_id != campaign_id:
        return None
    member: Member = row.Member
    return Prefill(
        member.first_name,
        member.last_name,
        member.email,
        member.postal_code,
        row.local or member.local,
        member.language,
    )


def attribution_for(
    session: DbSession,
    action: SignableAction,
    *,
    delivery: tuple[int, int, int] | None = None,
    referral_code: str = "",
    utm_source: str = "",
    embed: bool = False,
) -> Attribution:
    """Resolve where a signature came from.

    Args:
        delivery: (campaign id, delivery id, link id) from a reference the caller verified.
        referral_code: the `ref` of a share link; ignored unless it names a response to this
            action.
        utm_source: kept as given (bounded).
        embed: the form was posted from the embeddable snippet.
    """
    utm = (utm_source or "")[: FIELD_LIMITS["utm_source"]]
    if delivery is not None:
        campaign_id, delivery_id, link_id = delivery
        row = session.execute(
            sa.select(Delivery.member_id, Delivery.local, Delivery.language).where(
                Delivery.id == delivery_id, Delivery.campaign_id == campaign_id
            )
        ).first()
        if row is not None:
            return Attribution(
                ResponseSource.ALERT,
                campaign_id,
                delivery_id,
                link_id or None,
                row.member_id,
                row.local or "",
                row.language or "",
                utm_source=utm,
            )
    code = (referral_code or "")[:16]
    if code:
        referrer = session.execute(
            sa.select(
                ActionResponse.id,
                ActionResponse.campaign_id,
                ActionResponse.delivery_id,
                ActionResponse.local,
                ActionResponse.language,
            ).where(ActionResponse.referral_code == code, ActionResponse.action_id == action.id)
        ).first()
        if referrer is not None:
            # Second-order reach: the referrer's alert (if an alert brought them) is credited
            # too, in its `shared` tally, never in `signed`.
            return Attribution(
                ResponseSource.SHARE,
                referrer.campaign_id,
                None,
                None,
                None,
                referrer.local if referrer.campaign_id else "",
                referrer.language if referrer.campaign_id else "",
                referrer_id=referrer.id,
                utm_source=utm,
            )
    return Attribution(ResponseSource.EMBED if embed else ResponseSource.DIRECT, utm_source=utm)


def _clean_signature(action: SignableAction, signature: Signature) -> dict[str, Any]:
    try:
        email = audience_members.clean_email(signature.email)
    except audience_members.MemberError as exc:
        raise SignError(str(exc), "email") from None
    values: dict[str, Any] = {"email": email}
    for name in ("first_name", "last_name", "postal_code", "local", "phone", "comment", "city"):
        value = " ".join((getattr(signature, name) or "").split())
        if name == "comment":
            value = (getattr(signature, name) or "").strip()
        if len(value) > FIELD_LIMITS[name]:
            raise SignError(f"This is longer than {FIELD_LIMITS[name]} characters.", name)
        if "\x00" in value:
            raise SignError("Text cannot contain NUL characters.", name)
        values[name] = value
    if not values["first_name"]:
        raise SignError("Please give your name.", "first_name")
    modes = action.fields or {}
    for name in ("postal_code", "city", "local", "phone", "comment"):
        if modes.get(name, "off") == "required" and not values[name]:
            raise SignError("This field is required.", name)
    values["language"] = signature.language if signature.language in ("en", "fr") else "en"
    return values


def new_referral_code() -> str:
    return secrets.token_urlsafe(9)  # 12 characters, 72 bits


def sign(
    session: DbSession,
    action: SignableAction,
    signature: Signature,
    attribution: Attribution,
    *,
    ip: str = "",
    user_agent: str = "",
    flag_reason: str = "",
    now: datetime | None = None,
) -> SignOutcome:
    """Record a signature: insert the response, or update the signer's details if this
    address already signed (never counted twice). Flushes; the caller commits before showing
    the thank-you page.

    - Attribution (source, campaign, delivery, referrer) is the first signature's: signing
      again through another link does not move the credit.
    - The member is the delivery's when the signer kept the pre-filled address, else the
      member with this address, if any (a forwarded email's reader is not the member).
    - A new counted response bumps the campaign tallies (ActionTally) in this transaction.
    - Consent ticked: express consent is recorded (wording, time, IP) and the signer is
      subscribed to the action's lists through optin.subscribe; a suppressed address, or one
      unsubscribed from a list, is never (re)subscribed by a signature.
    - `flag_reason` (the per-address limit) flags the response for review; it still counts.

    Raises:
        SignError: the petition is not open, or a field is missing, too long or invalid.
    """
    if action.status != ActionStatus.OPEN.value:
        raise SignError("This petition is closed.", "status")
    now = now or utcnow()
    values = _clean_signature(action, signature)
    if not values["local"] and attribution.local:
        values["local"] = attribution.local
    wording = consent_wording(session, values["language"]) if signature.consent else ""
    counted = not action.require_confirmation
    code = new_referral_code()
    params = {
        **values,
        "action_id": action.id,
        "consent_given": signature.consent,
        "consent_wording": wording,
        "consent_at": now if signature.consent else None,
        "consent_ip": (ip or "")[:45] if signature.consent else "",
        "source": attribution.source.value,
        "campaign_id": attribution.campaign_id,
        "delivery_id": attribution.delivery_id,
        "link_id": attribution.link_id,
        "referrer_id": attribution.referrer_id,
        "referral_code": code,
        "utm_source": attribution.utm_source,
        "ip": (ip or "")[:45],
        "user_agent": (user_agent or "")[:300],
        "counted": counted,
        "flagged": bool(flag_reason),
        "flag_reason": flag_reason[:200],
        "created_at": now,
        "updated_at": now,
    }
    new_id = session.execute(INSERT_RESPONSE, params).scalar()
    if new_id is not None:
        if counted:
            _bump_tallies(
                session,
                attribution.campaign_id,
                attribution.source.value,
                attribution,
                values["language"],
                now,
                +1,
            )
        outcome = SignOutcome(session, int(new_id), code, True, counted)
        # The signer's own email, sent by the transactional task after the commit: the
        # confirmation link when the petition counts only confirmed signatures, else the
        # thank-you when the organizer asked for one.
        if action.require_confirmation:
            jobs.enqueue(session, jobs.SEND_TRANSACTIONAL, CONFIRM_KIND, {"response_id": new_id})
        elif action.send_thank_you:
            jobs.enqueue(session, jobs.SEND_TRANSACTIONAL, THANKS_KIND, {"response_id": new_id})
    else:
        response = session.scalars(
            sa.select(ActionResponse).where(
                ActionResponse.action_id == action.id, ActionResponse.email == values["email"]
            )
        ).one()
        for name, value in values.items():
            if value or name in ("comment",):
                setattr(response, name, value)
        if response.member_id is None:
            response.member_id = session.scalar(
                sa.select(Member.id).where(Member.email == values["email"])
            )
        if signature.consent and not response.consent_given:
            response.consent_given = True
            response.consent_wording = wording
            response.consent_at = now
            response.consent_ip = (ip or "")[:45]
        if flag_reason and not response.flagged:
            response.flagged, response.flag_reason = True, flag_reason[:200]
        response.updated_at = now
        outcome = SignOutcome(session, response.id, response.referral_code, False, False)
    if signature.consent:
        outcome.subscriptions = _subscribe(
            session, action, outcome.response, wording, ip, user_agent, now
        )
    session.flush()
    return outcome


def _subscribe(
    session: DbSession,
    action: SignableAction,
    response: ActionResponse,
    wording: str,
    ip: str,
    user_agent: str,
    now: datetime,
) -> dict[int, str]:
    lists = list(
        session.scalars(
            sa.select(MailingList)
            .join(action_lists, action_lists.c.list_id == MailingList.id)
            .where(action_lists.c.action_id == action.id)
        )
    )
    if not lists or is_suppressed(session, response.email):
        return {}
    member, _created = audience_members.get_or_create_member(
        session,
        email=response.email,
        first_name=response.first_name,
        last_name=response.last_name,
        language=response.language,
        postal_code=response.postal_code,
    )
    response.member_id = response.member_id or member.id
    outcomes = {}
    for mailing_list in lists:
        existing = session.get(Subscription, (member.id, mailing_list.id))
        if existing is not None and existing.status == SubscriptionStatus.UNSUBSCRIBED.value:
            outcomes[mailing_list.id] = "unsubscribed"  # their choice stands
            continue
        outcome = optin.subscribe(
            session,
            member,
            mailing_list,
            source=SubscriptionSource.FORM,
            detail={
                "wording": wording,
                "ip": (ip or "")[:45],
                "user_agent": (user_agent or "")[:300],
                "page": f"/a/{action.slug}",
                "action_id": action.id,
            },
            now=now,
        )
        outcomes[mailing_list.id] = outcome.value
    return outcomes


def _tally_keys(attribution: Attribution, language: str, now: datetime) -> list[tuple[str, str]]:
    keys = [(TallyDimension.TOTAL.value, "")]
    keys.append((TallyDimension.LOCAL.value, (attribution.local or "")[:100]))
    keys.append((TallyDimension.LANGUAGE.value, attribution.language or language))
    if attribution.link_id:
        keys.append((TallyDimension.LINK.value, str(attribution.link_id)))
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    keys.append((TallyDimension.HOUR.value, hour.isoformat()))
    return keys


def _bump_tallies(
    session: DbSession,
    campaign_id: int | None,
    source: str,
    attribution: Attribution,
    language: str,
    now: datetime,
    delta: int,
) -> None:
    """Add `delta` to the campaign's tallies (signed for an alert, shared for a share).

    One INSERT ... ON CONFLICT for the five rows, in key order so two signers lock them in
    the same order.
    """
    if campaign_id is None:
        return
    column = "signed" if source == ResponseSource.ALERT.value else "shared"
    table: sa.Table = ActionTally.__table__  # type: ignore[assignment]
    rows = [
        {"campaign_id": campaign_id, "dimension": d, "value": v, column: delta}
        for d, v in sorted(_tally_keys(attribution, language, now))
    ]
    stmt = sql.insert(session, table).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["campaign_id", "dimension", "value"],
            set_={column: table.c[column] + stmt.excluded[column]},
        )
    )


def _attribution_of(session: DbSession, response: ActionResponse) -> Attribution:
    """The tally keys of a stored response (to take it back out when it is removed)."""
    local, language = "", response.language
    if response.delivery_id is not None:
        row = session.execute(
            sa.select(Delivery.local, Delivery.language).where(Delivery.id == response.delivery_id)
        ).first()
        if row is not None:
            local, language = row.local or "", row.language or language
    elif response.referrer_id is not None:
        referrer = session.get(ActionResponse, response.referrer_id)
        if referrer is not None:
            local, language = referrer.local, referrer.language
    return Attribution(
        ResponseSource(response.source),
        response.campaign_id,
        link_id=response.link_id,
        local=local,
        language=language,
    )


def remove_response(session: DbSession, response: ActionResponse) -> None:
    """An organizer removes a (flagged) signature: it stops counting, in the live count and
    in its campaign's tallies (the hour it was counted in), and leaves the review queue.
    Removing twice changes nothing. Flushes."""
    if response.removed_at is not None:
        return
    if response.counted:
        counted_at = response.confirmed_at or response.created_at
        _bump_tallies(
            session,
            response.campaign_id,
            response.source,
            _attribution_of(session, response),
            response.language,
            counted_at,
            -1,
        )
    response.counted = False
    response.removed_at = utcnow()
    response.flagged = False
    session.flush()


def keep_response(session: DbSession, response: ActionResponse) -> None:
    """An organizer reviewed a flagged signature and keeps it (it leaves the queue). Flushes."""
    response.flagged = False
    session.flush()


def confirm_response(session: DbSession, response: ActionResponse) -> bool:
    """Count a signature waiting for its email confirmation; True if it changed. Flushes."""
    if response.counted or response.removed_at is not None:
        return False
    response.counted = True
    response.confirmed_at = utcnow()
    _bump_tallies(
        session,
        response.campaign_id,
        response.source,
        _attribution_of(session, response),
        response.language,
        response.confirmed_at,
        +1,
    )
    session.flush()
    return True


def responses_by_ids(
    session: DbSession, action_id: int, ids: Sequence[int]
) -> list[ActionResponse]:
    return list(
        session.scalars(
            sa.select(ActionResponse).where(
                ActionResponse.action_id == action_id, ActionResponse.id.in_(list(ids))
            )
        )
    )
