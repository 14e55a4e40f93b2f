"""Organization settings and allowed senders: admins only, bad input changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from app.models import OrgSettings, Role, Sender
from app.services.organization import settings as org_settings
from app.services.organization.settings import SettingsError
from tests import factories
from tests.support.campaigns import sample_input, setup_org
from tests.support.forms import csrf_token, submit

PAGES = ["/settings/organization", "/settings/senders"]


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", [Role.VIEWER, Role.ORGANIZER])
def test_only_admins_open_the_organization_settings(client, login_as, path, role):
    login_as(role)
    assert client.get(path).status_code == 403
    token = csrf_token(client, "/settings/tokens")
    response = client.post(
        path, data={"csrf_token": token, "organization": "X", "email": "x@example.org"}
    )
    assert response.status_code == 403


def test_admin_sets_the_identity(client, login_as, db_session):
    login_as(Role.ADMIN)
    response = submit(
        client,
        "/settings/organization",
        {
            "organization": "  Prairie Public Workers' Union ",
            "mailing_address": "PO Box 1\n\n Edmonton AB  ",
            "contact": "1-800-555-0199",
            "timezone": "America/Winnipeg",
        },
    )
    assert response.status_code == 302
    row = db_session.get(OrgSettings, 1)
    assert row.organization == "Prairie Public Workers' Union"
    assert row.mailing_address == "PO Box 1\nEdmonton AB"
    assert row.timezone == "America/Winnipeg"


@pytest.mark.parametrize(
    ("field", "value"),
    [("organization", ""), ("mailing_address", "   "), ("contact", ""), ("timezone", "Mars/Base")],
)
def test_incomplete_identity_is_refused(client, login_as, db_session, field, value):
    login_as(Role.ADMIN)
    data = {
        "organization": "Union",
        "mailing_address": "PO Box 1",
        "contact": "info@union.example",
        "timezone": "America/Edmonton",
        field: value,
    }
    response = submit(client, "/settings/organization", data)
    assert response.status_code == 422
    assert "field-error" in response.get_data(as_text=True)
    row = db_session.get(OrgSettings, 1)
    assert row is None or row.organization != "Union"


def test_senders_add_default_and_remove(client, login_as, db_session):
    login_as(Role.ADMIN)
    first = submit(client, "/settings/senders", {"email": "A@Union.example", "name": "Action"})
    assert first.status_code == 302
    submit(client, "/settings/senders", {"email": "news@union.example", "name": "News"})
    senders = {s.email: s for s in db_session.scalars(sa.select(Sender))}
    assert senders["a@union.example"].is_default  # the first one
    assert not senders["news@union.example"].is_default

    duplicate = submit(client, "/settings/senders", {"email": "a@union.example", "name": "x"})
    assert duplicate.status_code == 422
    invalid = submit(client, "/settings/senders", {"email": "not an address", "name": "x"})
    assert invalid.status_code == 422
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Sender)) == 2

    news = senders["news@union.example"]
    submit(client, "/settings/senders", {}, post_url=f"/settings/senders/{news.id}/default")
    db_session.expire_all()
    assert db_session.get(Sender, news.id).is_default
    assert not db_session.get(Sender, senders["a@union.example"].id).is_default

    submit(client, "/settings/senders", {}, post_url=f"/settings/senders/{news.id}/remove")
    remaining = db_session.scalars(sa.select(Sender)).all()
    assert [(s.email, s.is_default) for s in remaining] == [("a@union.example", True)]


def test_a_sender_in_use_by_a_scheduled_campaign_stays(db_session):
    from app.services.campaigns import authoring as campaigns
    from tests import factories

    sender = setup_org(db_session)
    lst = factories.mailing_list(db_session)
    campaign = campaigns.create_campaign(
        db_session, sample_input(list_ids=(lst.id,)), actor_id=None
    )
    campaigns.transition(db_session, campaign, "scheduled")
    with pytest.raises(SettingsError, match="about to send"):
        org_settings.remove_sender(db_session, sender)
    campaigns.transition(db_session, campaign, "draft")
    org_settings.remove_sender(db_session, sender)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Sender)) == 0


def test_without_a_time_zone_the_dashboard_report_and_send_panel_show_the_same_one(
    app, client, login_as, db_session, monkeypatch
):
    """No settings row yet: every page falls back to RALLYPOINT_TIMEZONE, never to UTC."""
    monkeypatch.setitem(app.config, "TIMEZONE", "America/Halifax")
    db_session.execute(sa.delete(OrgSettings))
    sent = factories.campaign(
        db_session,
        name="Day of action, Jan. 15",
        status="sent",
        started_at=datetime(2026, 1, 15, 18, 0, tzinfo=UTC),
        finished_at=datetime(2026, 1, 15, 18, 30, tzinfo=UTC),
    )
    db_session.commit()
    login_as(Role.ORGANIZER)
    dashboard = client.get("/dashboard").get_data(as_text=True)
    report = client.get(f"/stats/campaigns/{sent.id}").get_data(as_text=True)
    panel = client.get(f"/campaigns/{sent.id}/send").get_data(as_text=True)
    # 18:00 UTC is 2:00 pm in Halifax (AST, UTC-4); UTC would say 6:00 pm.
    assert "Jan 15, 2026, 2:00 pm" in dashboard
    assert "Started Jan 15, 2026, 2:00 pm · finished Jan 15, 2026, 2:30 pm" in report
    assert "Finished Thursday, January 15, 2026 at 2:30 PM AST." in panel
