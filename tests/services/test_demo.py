"""Demo data: valid campaigns in every layout, loaded once however often `load` runs."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa

from app import demo
from app.models import Action, Campaign, OrgSettings, Sender, User
from app.services.actions import petitions
from app.services.campaigns import authoring as campaigns


def _counts(session) -> tuple[int, ...]:
    return tuple(
        session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (User, Sender, Campaign, OrgSettings)
    )


def test_demo_loads_once_and_every_campaign_is_sendable_once_lists_exist(db_session):
    assert demo.load(db_session, admin_email="admin@example.org", admin_password="x" * 12)
    first = _counts(db_session)
    assert first == (1, 2, 3, 1)
    assert not demo.load(db_session, admin_email="admin@example.org", admin_password="x" * 12)
    assert _counts(db_session) == first

    rows = db_session.scalars(sa.select(Campaign).order_by(Campaign.id)).all()
    assert [c.layout for c in rows] == ["statement", "day_of_action", "action_alert"]
    day = rows[1]
    assert {v.language for v in day.variants} == {"en", "fr"}
    assert [link.is_petition for link in day.links] == [True]
    assert [link.is_petition for link in rows[2].links] == [True]
    # The demo audience (lists and members) loads before the drafts, which are addressed
    # to its lists, so every draft can be sent at once.
    for campaign in rows:
        assert {lst.name for lst in campaigns.lists_of(db_session, campaign)} == {
            "All members",
            "Action network",
        }
        campaigns.assert_sendable(db_session, campaign)


def test_the_day_of_action_is_the_next_dec_17():
    assert demo._next_dec_17(date(2025, 11, 1)) == date(2025, 12, 17)
    assert demo._next_dec_17(date(2025, 12, 17)) == date(2025, 12, 17)
    assert demo._next_dec_17(date(2025, 12, 18)) == date(2026, 12, 17)


def test_demo_bodies_read_as_typed_paragraphs():
    day = demo.demo_campaigns(date(2025, 11, 1))[1]
    body = day.variants["en"].body
    assert "police took her away without a warrant" in body
    assert day.variants["en"].fields["event_date"] == "2025-12-17"
    assert demo.unwrap("> a\n> b\n\n- x\n  y\n- z\n") == "> a b\n\n- x y\n- z\n"


def test_demo_has_one_open_hosted_petition_in_both_languages(db_session):
    demo.load(db_session, admin_email="admin@example.org", admin_password="x" * 12)
    demo.load(db_session, admin_email="admin@example.org", admin_password="x" * 12)
    [action] = db_session.scalars(sa.select(Action)).all()
    assert (action.slug, action.status) == ("free-nadia-rahimi", "open")
    assert {v.language for v in action.versions} == {"en", "fr"}
    assert petitions.list_ids_of(db_session, action.id)  # consenting signers join a list
