"""`flask lists create` and `flask org set`: a scripted install, without the web UI, can send."""

from __future__ import annotations

import sqlalchemy as sa

from app.models import MailingList, OrgSettings, Sender
from app.services.campaigns import authoring as campaigns
from app.services.organization import settings as org_settings
from tests.support.campaigns import SENDER, sample_input

ADDRESS = ["Prairie Workers Union Local 12", "10010 106 St NW", "Edmonton AB  T5J 3L8"]


def _org_args(**changes: object) -> list[str]:
    values: dict[str, object] = {
        "--name": "Prairie Workers Union",
        "--address": ADDRESS,
        "--contact": "780-555-0199 · prairieworkers.example",
        "--timezone": "America/Edmonton",
        "--sender": [f"Prairie Workers <{SENDER}>"],
    }
    values.update(changes)
    args = ["org", "set"]
    for option, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            args += [option, str(item)]
    return args


def _identity(session) -> tuple[str, str, str, str]:
    session.expire_all()
    row = session.get(OrgSettings, 1)
    if row is None:
        return ("", "", "", "")
    return (row.organization, row.mailing_address, row.contact, row.timezone)


def _senders(session) -> list[tuple[str, str, bool]]:
    rows = session.scalars(sa.select(Sender).order_by(Sender.email))
    return [(s.email, s.name, s.is_default) for s in rows]


def test_lists_create_makes_a_private_single_opt_in_list_by_default(app, db_session):
    out = app.test_cli_runner().invoke(args=["lists", "create", "All members"])
    assert out.exit_code == 0, out.output
    created = db_session.scalar(sa.select(MailingList).where(MailingList.name == "All members"))
    assert (created.is_public, created.opt_in) == (False, "single")
    assert f"Created list All members (id {created.id}, single opt-in, private)" in out.output


def test_lists_create_public_double_opt_in_with_a_description(app, db_session):
    args = ["lists", "create", "Réseau d'action", "--public", "--double-opt-in"]
    out = app.test_cli_runner().invoke(args=[*args, "--description", "Alerts in French"])
    assert out.exit_code == 0, out.output
    created = db_session.scalar(sa.select(MailingList))
    assert (created.is_public, created.opt_in, created.description) == (
        True,
        "double",
        "Alerts in French",
    )
    assert "public form at /subscribe/reseau-d-action" in out.output


def test_lists_create_refuses_a_taken_or_empty_name_and_changes_nothing(app, db_session):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["lists", "create", "Stewards"]).exit_code == 0
    again = runner.invoke(args=["lists", "create", "Stewards", "--public"])
    assert again.exit_code == 1
    assert "There is already a list called Stewards." in again.output
    empty = runner.invoke(args=["lists", "create", "  "])
    assert empty.exit_code == 1
    assert "Give the list a name." in empty.output
    rows = db_session.execute(sa.select(MailingList.name, MailingList.is_public)).all()
    assert rows == [("Stewards", False)]


def test_org_set_records_identity_time_zone_and_senders(app, db_session):
    out = app.test_cli_runner().invoke(args=_org_args())
    assert out.exit_code == 0, out.output
    assert _identity(db_session) == (
        "Prairie Workers Union",
        "\n".join(ADDRESS),
        "780-555-0199 · prairieworkers.example",
        "America/Edmonton",
    )
    assert _senders(db_session) == [(SENDER, "Prairie Workers", True)]
    assert f"Sender: Prairie Workers <{SENDER}> (default, new)" in out.output


def test_org_set_changes_only_what_it_is_given_and_keeps_known_senders(app, db_session):
    runner = app.test_cli_runner()
    assert runner.invoke(args=_org_args()).exit_code == 0
    out = runner.invoke(
        args=[
            "org",
            "set",
            "--timezone",
            "America/Toronto",
            "--sender",
            SENDER,  # already allowed: kept as it is, so a re-run script does not fail
            "--sender",
            "Locals <locals@prairieworkers.example>",
            "--default-sender",
            "LOCALS@prairieworkers.example",
        ]
    )
    assert out.exit_code == 0, out.output
    assert _identity(db_session)[0] == "Prairie Workers Union"
    assert _identity(db_session)[3] == "America/Toronto"
    assert _senders(db_session) == [
        (SENDER, "Prairie Workers", False),
        ("locals@prairieworkers.example", "Locals", True),
    ]


def test_org_set_refuses_bad_input_with_its_option_and_changes_nothing(app, db_session):
    runner = app.test_cli_runner()
    cases = [
        (_org_args(**{"--timezone": "Mars/Olympus"}), "--timezone: Choose a time zone"),
        (_org_args(**{"--name": " "}), "--name: Enter the organization's name"),
        (_org_args(**{"--sender": ["not an address"]}), "--sender: 'not an address' is not"),
        (_org_args(**{"--sender": ["Bad <bad@example>"]}), "--sender: That email address"),
        (_org_args(**{"--default-sender": "who@example.org"}), "--default-sender: who@example"),
        (["org", "set", "--contact", "780-555-0199"], "--name: Enter the organization"),
    ]
    for args, message in cases:
        out = runner.invoke(args=args)
        assert out.exit_code == 1, args
        assert message in out.output, out.output
        assert _identity(db_session) == ("", "", "", "")
        assert _senders(db_session) == []


def test_a_scripted_install_can_send(app, db_session, tmp_path):
    """Users, organization, list and members from the command line: the campaign is sendable."""
    runner = app.test_cli_runner()
    steps = [
        ["users", "create", "--email", "admin@prairieworkers.example", "--role", "admin"],
        _org_args(),
        ["lists", "create", "All members"],
    ]
    for args in steps:
        out = runner.invoke(args=[*args, *(["--password", "x" * 12] if "users" in args else [])])
        assert out.exit_code == 0, out.output
    members = tmp_path / "members.csv"
    members.write_text("email,first_name\namar@example.org,Amar\nbea@example.org,Bea\n")
    out = runner.invoke(args=["members", "import", str(members), "--list", "All members"])
    assert out.exit_code == 0, out.output

    list_id = db_session.scalar(sa.select(MailingList.id))
    draft = campaigns.create_campaign(db_session, sample_input(list_ids=(list_id,)), actor_id=None)
    assert campaigns.sendability_problems(db_session, draft) == []
    assert org_settings.default_sender(db_session).email == SENDER
