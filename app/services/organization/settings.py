"""Organization settings: the CASL identity in every footer, the time zone, allowed senders."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask import current_app

from app.models import Campaign, CampaignStatus, OrgSettings, Sender
from app.services import DbSession

log = logging.getLogger(__name__)

MAX_ORGANIZATION = 200
MAX_CONTACT = 300
MAX_ADDRESS = 1000
MAX_SENDER_NAME = 200
# Where the organization is when nobody has said (RALLYPOINT_TIMEZONE overrides it).
DEFAULT_TIMEZONE = "America/Edmonton"


class SettingsError(ValueError):
    """Bad settings input; `field` names the form field, the message is safe to show."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def get_settings(session: DbSession) -> OrgSettings:
    """The one settings row, created with defaults when missing (flushed)."""
    row = session.get(OrgSettings, 1)
    if row is None:
        row = OrgSettings(id=1)
        session.add(row)
        session.flush()
    return row


def org_timezone(session: DbSession, fallback: str | None = None) -> ZoneInfo:
    """The organization's time zone: send times are picked in it and every page shows it.

    The zone in Settings; without one, `fallback`, else the TIMEZONE setting
    (RALLYPOINT_TIMEZONE), else America/Edmonton. A name that is no zone reads as
    America/Edmonton. The dashboard, the reports and the send panel all ask here, so they
    show one zone.
    """
    settings = session.get(OrgSettings, 1)
    if fallback is None:
        fallback = str(current_app.config.get("TIMEZONE") or DEFAULT_TIMEZONE)
    name = (settings.timezone if settings and settings.timezone else "") or fallback
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(DEFAULT_TIMEZONE)


def timezone_choices() -> list[str]:
    """Time zones to offer: Canada's first, then the rest of the Americas, then UTC."""
    zones = available_timezones()
    canada = [
        "America/St_Johns",
        "America/Halifax",
        "America/Moncton",
        "America/Toronto",
        "America/Winnipeg",
        "America/Regina",
        "America/Edmonton",
        "America/Vancouver",
        "America/Whitehorse",
        "America/Yellowknife",
        "America/Iqaluit",
    ]
    others = sorted(z for z in zones if z.startswith("America/") and z not in canada)
    return [z for z in canada if z in zones] + others + ["UTC"]


def update_identity(
    session: DbSession, *, organization: str, mailing_address: str, contact: str, timezone: str
) -> OrgSettings:
    """Change the sender identification (CASL: name, mailing address, contact) and time zone.

    Raises:
        SettingsError: A field is missing, too long, or the time zone is unknown; nothing
            is changed.
    """
    organization, contact = organization.strip(), contact.strip()
    lines = [line.strip() for line in mailing_address.strip().splitlines()]
    address = "\n".join(line for line in lines if line)
    checks = (
        ("organization", organization, MAX_ORGANIZATION, "the organization's name"),
        ("mailing_address", address, MAX_ADDRESS, "a mailing address"),
        ("contact", contact, MAX_CONTACT, "a phone number, email or web address"),
    )
    for name, value, limit, what in checks:
        if not value:
            raise SettingsError(name, f"Enter {what}: Canadian law (CASL) requires it.")
        if len(value) > limit:
            raise SettingsError(name, f"Keep this under {limit} characters.")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError) as error:
        raise SettingsError("timezone", "Choose a time zone from the list.") from error
    row = get_settings(session)
    row.organization = organization
    row.mailing_address = address
    row.contact = contact
    row.timezone = timezone
    session.flush()
    return row


def _normalise_sender(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as error:
        raise SettingsError("email", f"That email address is not valid: {error}") from error


def add_sender(session: DbSession, *, email: str, name: str, is_default: bool = False) -> Sender:
    """Allow a From address. The first sender becomes the default.

    Raises:
        SettingsError: Invalid or already allowed address, or a name that is too long.
    """
    address = _normalise_sender(email)
    name = name.strip()
    if len(name) > MAX_SENDER_NAME:
        raise SettingsError("name", f"Keep the name under {MAX_SENDER_NAME} characters.")
    exists = session.scalar(sa.select(Sender.id).where(sa.func.lower(Sender.email) == address))
    if exists is not None:
        raise SettingsError("email", f"{address} is already an allowed sender.")
    first = session.scalar(sa.select(Sender.id).limit(1)) is None
    sender = Sender(email=address, name=name, is_default=False)
    session.add(sender)
    session.flush()
    if is_default or first:
        set_default_sender(session, sender)
    return sender


def set_default_sender(session: DbSession, sender: Sender) -> None:
    """Make `sender` the one default sender (the first choice on new campaigns)."""
    session.execute(sa.update(Sender).where(Sender.id != sender.id).values(is_default=False))
    sender.is_default = True
    session.flush()


def remove_sender(session: DbSession, sender: Sender) -> None:
    """Stop allowing a From address.

    Raises:
        SettingsError: A scheduled, sending or paused campaign still uses it.
    """
    busy = (
        CampaignStatus.SCHEDULED.value,
        CampaignStatus.SENDING.value,
        CampaignStatus.PAUSED.value,
    )
    in_use = session.scalar(
        sa.select(sa.func.count())
        .select_from(Campaign)
        .where(sa.func.lower(Campaign.from_email) == sender.email.lower())
        .where(Campaign.status.in_(busy))
    )
    if in_use:
        raise SettingsError(
            "email", f"{sender.email} is used by {in_use} campaign(s) about to send or sending."
        )
    was_default = sender.is_default
    session.delete(sender)
    session.flush()
    if was_default:
        successor = session.scalar(sa.select(Sender).order_by(Sender.id).limit(1))
        if successor is not None:
            set_default_sender(session, successor)


def allowed_senders(session: DbSession) -> list[Sender]:
    """The From addresses an admin allowed, the default first."""
    return list(session.scalars(sa.select(Sender).order_by(Sender.is_default.desc(), Sender.email)))


def default_sender(session: DbSession) -> Sender | None:
    return session.scalar(sa.select(Sender).order_by(Sender.is_default.desc(), Sender.id).limit(1))
