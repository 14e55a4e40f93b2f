"""`flask lists create` and `flask org set`: what a scripted install needs before it can send."""

from __future__ import annotations

from email.utils import parseaddr

import click
from flask.cli import AppGroup

from app.extensions import db
from app.services.audience import lists
from app.services.organization import settings as org_settings
from app.services.organization.settings import SettingsError

lists_cli = AppGroup("lists", help="Mailing lists.")
org_cli = AppGroup("org", help="The organization: identity in every footer, time zone, senders.")

# The settings service names its form's fields; a refusal names the option instead.
OPTION_OF_FIELD = {
    "organization": "--name",
    "mailing_address": "--address",
    "contact": "--contact",
    "timezone": "--timezone",
    "sender": "--sender",
    "default_sender": "--default-sender",
}


@lists_cli.command("create")
@click.argument("name")
@click.option("--description", default="", help="Shown on the public sign-up form.")
@click.option("--public", is_flag=True, help="Offer a public sign-up form for this list.")
@click.option(
    "--double-opt-in",
    is_flag=True,
    help="New sign-ups confirm by email before they are subscribed.",
)
def create_list_command(name: str, description: str, public: bool, double_opt_in: bool) -> None:
    """Create a mailing list called NAME (`flask members import --list NAME` fills it)."""
    try:
        created = lists.create_list(
            db.session,
            name=name,
            description=description,
            is_public=public,
            opt_in="double" if double_opt_in else "single",
        )
    except lists.ListError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    visibility = f"public form at /subscribe/{created.slug}" if created.is_public else "private"
    summary = f"id {created.id}, {created.opt_in} opt-in, {visibility}"
    click.echo(f"Created list {created.name} ({summary})")


@org_cli.command("set")
@click.option("--name", help="The organization's name, as every email's footer shows it.")
@click.option(
    "--address",
    multiple=True,
    help="Postal address, one line per --address (CASL requires a mailing address).",
)
@click.option("--contact", help="A phone number, email or web address where people reach you.")
@click.option("--timezone", help="Where scheduled campaigns' times are read, e.g. America/Toronto.")
@click.option(
    "--sender",
    "senders",
    multiple=True,
    help='An allowed From address, "Name <email>" or just the email; repeat for more.',
)
@click.option("--default-sender", help="The From address new campaigns start with.")
def set_org_command(
    name: str | None,
    address: tuple[str, ...],
    contact: str | None,
    timezone: str | None,
    senders: tuple[str, ...],
    default_sender: str | None,
) -> None:
    """Set the organization's identity, time zone and allowed senders.

    Options left out keep their current value; senders already allowed are kept. Nothing
    changes unless every option is valid.
    """
    try:
        _set_identity(name, address, contact, timezone)
        added = [_allow_sender(value) for value in senders]
        if default_sender:
            _make_default(default_sender)
    except SettingsError as exc:
        db.session.rollback()
        option = OPTION_OF_FIELD.get(exc.field, "--sender")
        raise click.ClickException(f"{option}: {exc}") from exc
    db.session.commit()
    _echo_settings([email for email in added if email])


def _set_identity(
    name: str | None, address: tuple[str, ...], contact: str | None, timezone: str | None
) -> None:
    if name is None and not address and contact is None and timezone is None:
        return
    row = org_settings.get_settings(db.session)
    org_settings.update_identity(
        db.session,
        organization=row.organization if name is None else name,
        mailing_address="\n".join(address) if address else row.mailing_address,
        contact=row.contact if contact is None else contact,
        timezone=row.timezone if timezone is None else timezone,
    )


def _allow_sender(value: str) -> str | None:
    """Allow one "Name <email>" sender; None when it was already allowed."""
    name, email = parseaddr(value)
    if not email or "@" not in email:
        raise SettingsError("sender", f"{value!r} is not an email address or Name <email>.")
    known = {sender.email for sender in org_settings.allowed_senders(db.session)}
    if email.strip().lower() in known:
        return None
    try:
        return org_settings.add_sender(db.session, email=email, name=name).email
    except SettingsError as exc:
        raise SettingsError("sender", str(exc)) from exc


def _make_default(email: str) -> None:
    wanted = email.strip().lower()
    for sender in org_settings.allowed_senders(db.session):
        if sender.email == wanted:
            org_settings.set_default_sender(db.session, sender)
            return
    raise SettingsError(
        "default_sender", f"{email} is not an allowed sender; add it with --sender first."
    )


def _echo_settings(added: list[str]) -> None:
    row = org_settings.get_settings(db.session)
    db.session.commit()  # get_settings may have created the row
    click.echo(f"Organization: {row.organization or '(not set)'}")
    click.echo("Address: " + (row.mailing_address.replace("\n", ", ") or "(not set)"))
    click.echo(f"Contact: {row.contact or '(not set)'}")
    click.echo(f"Time zone: {row.timezone}")
    for sender in org_settings.allowed_senders(db.session):
        flags = (("default", sender.is_default), ("new", sender.email in added))
        marks = [mark for mark, on in flags if on]
        label = f"{sender.name} <{sender.email}>" if sender.name else sender.email
        click.echo(f"Sender: {label}" + (f" ({', '.join(marks)})" if marks else ""))
