"""Members: create, edit and find people, one row per normalised email address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.infra.sql import is_postgresql
from app.models import Language, MailingList, Member, Subscription, Suppression
from app.services import Conflict, DbSession, Invalid
from app.services.audience.member_csv import InvalidEmail, normalise_email, normalise_postal_code

# PostgreSQL advisory lock key shared by everything that inserts members: imports take it
# exclusively (they look addresses up, then insert without ON CONFLICT), single creations take
# it shared, so they never wait for each other, only for an import.
MEMBER_INSERT_LOCK = 0x52504D49  # "RPMI"

EDITABLE_FIELDS = ("first_name", "last_name", "language", "postal_code", "local")
_LIMITS = {"first_name": 200, "last_name": 200, "postal_code": 20, "local": 100}
_WORDS = {
    "first_name": "First name",
    "last_name": "Last name",
    "postal_code": "Postal code",
    "local": "Local",
}
MAX_ATTRIBUTES = 100


class MemberError(Invalid):
    """A member change that cannot be made. `field` names the input at fault, if any."""


class MemberExists(Conflict, MemberError):
    """A member with that address exists already."""


def lock_member_inserts(session: DbSession) -> None:
    """Wait for a running import before inserting a member (PostgreSQL; no-op elsewhere)."""
    if is_postgresql(session):
        session.execute(
            sa.text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": MEMBER_INSERT_LOCK}
        )


def clean_email(raw: str) -> str:
    """The stored form of an address (email-validator's syntax check, lower case).

    Raises:
        MemberError: not a valid address; the message says why.
    """
    try:
        return normalise_email(raw or "")
    except InvalidEmail as exc:
        raise MemberError(f"That email address is not valid: {exc}", "email") from None


def _clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in EDITABLE_FIELDS:
            raise MemberError(f"Unknown field {name}.", name)
        text = " ".join(str(value or "").split())
        if name == "language":
            text = text.lower() or Language.EN.value
            if text not in (Language.EN.value, Language.FR.value):
                raise MemberError("Language must be en (English) or fr (French).", name)
        elif name == "postal_code" and text:
            text = normalise_postal_code(text)
        if name in _LIMITS and len(text) > _LIMITS[name]:
            raise MemberError(f"{_WORDS[name]} is too long ({_LIMITS[name]} at most).", name)
        cleaned[name] = text
    return cleaned


def _clean_attributes(attributes: dict[str, Any] | None) -> dict[str, str]:
    if attributes is None:
        return {}
    if not isinstance(attributes, dict) or len(attributes) > MAX_ATTRIBUTES:
        raise MemberError("Custom fields must be a list of names and values.", "attributes")
    cleaned: dict[str, str] = {}
    for key, value in attributes.items():
        name = " ".join(str(key).split())
        if not name or len(name) > 100:
            raise MemberError("Each custom field needs a name (100 characters at most).")
        text = "" if value is None else str(value).strip()
        if len(text) > 1000:
            raise MemberError(f"The value of {name} is too long (1,000 characters at most).")
        cleaned[name] = text
    return cleaned


def email_key(raw: str) -> str:
    """The form an address is stored and looked up in, whoever typed or reported it.

    normalise_email's form (email-validator's normalisation, lower-cased: "JOSÉ@X.ORG" typed
    with a combining accent and "josé@x.org" are one address). An address it refuses (a
    webhook may report one) is only trimmed and lower-cased, so it can still be suppressed.
    Every lookup of a member, a delivery or a suppression by address goes through here.
    """
    try:
        return normalise_email(raw)
    except InvalidEmail:
        return raw.strip().lower()


def member_by_email(session: DbSession, email: str) -> Member | None:
    """The member with this address (in any case or Unicode form), or None."""
    return session.scalar(sa.select(Member).where(Member.email == email_key(email)))


def create_member(
    session: DbSession,
    *,
    email: str,
    attributes: dict[str, Any] | None = None,
    **fields: Any,
) -> Member:
    """Add a person. The only way members are created one at a time (see lock_member_inserts).

    Changes: inserts the member (no list, no consent). Enqueues nothing. Flushes.

    Raises:
        MemberError: invalid address or field, or a member with that address exists.
    """
    address = clean_email(email)
    values = _clean_fields(fields)
    lock_member_inserts(session)
    if session.scalar(sa.select(Member.id).where(Member.email == address)) is not None:
        raise MemberExists(f"{address} is already a member.", "email")
    member = Member(email=address, attributes=_clean_attributes(attributes), **values)
    session.add(member)
    session.flush()
    return member


def get_or_create_member(session: DbSession, *, email: str, **fields: Any) -> tuple[Member, bool]:
    """The member with this address, created with `fields` if new (existing ones are untouched
    except that empty names are filled in). Flushes.

    Raises:
        MemberError: invalid address or field.
    """
    address = clean_email(email)
    values = _clean_fields({k: v for k, v in fields.items() if v not in (None, "")})
    existing = session.scalar(sa.select(Member).where(Member.email == address))
    if existing is not None:
        for name in ("first_name", "last_name"):
            if name in values and not getattr(existing, name):
                setattr(existing, name, values[name])
        session.flush()
        return existing, False
    lock_member_inserts(session)
    existing = session.scalar(sa.select(Member).where(Member.email == address))
    if existing is not None:
        return existing, False
    member = Member(email=address, **values)
    session.add(member)
    session.flush()
    return member, True


def update_member(
    session: DbSession,
    member: Member,
    *,
    attributes: dict[str, Any] | None = None,
    **fields: Any,
) -> Member:
    """Change a member's fields (only those given) and, if given, replace custom attributes.

    The email address is the member's identity and is not changed here. Flushes.

    Raises:
        MemberError: an invalid field.
    """
    for name, value in _clean_fields(fields).items():
        setattr(member, name, value)
    if attributes is not None:
        member.attributes = {k: v for k, v in _clean_attributes(attributes).items() if v}
    session.flush()
    return member


@dataclass(frozen=True)
class MemberSubscription:
    mailing_list: MailingList
    subscription: Subscription


def subscriptions_of(session: DbSession, member_id: int) -> list[MemberSubscription]:
    rows = session.execute(
        sa.select(Subscription, MailingList)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(Subscription.member_id == member_id)
        .order_by(MailingList.name)
    ).all()
    return [MemberSubscription(lst, sub) for sub, lst in rows]


def suppression_of(session: DbSession, email: str) -> Suppression | None:
    return session.scalar(sa.select(Suppression).where(Suppression.email == email))


def parse_date(text: str) -> datetime | None:
    """'2024-05-31' -> an aware UTC datetime at midnight; '' -> None.

    Raises:
        MemberError: not a date.
    """

    text = (text or "").strip()
    if not text:
        return None
    try:
        return datetime.fromisoformat(text[:10]).replace(tzinfo=UTC)
    except ValueError:
        raise MemberError("Write the date as YYYY-MM-DD.") from None
