"""The send panel: roles, the audience count, scheduling in the org's time zone, the buttons."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from app import jobs
from app.models import Campaign, Delivery, Role, campaign_lists
from tests.support.forms import csrf_token
from tests.support.sending import (
    add_members,
    finished_with_unknown,
    make_campaign,
    make_list,
    setup_org,
)

ACTIONS = ["schedule", "now", "pause", "resume", "cancel", "unschedule", "resend-unknown"]


@pytest.fixture
def campaign(db_session):
    setup_org(db_session)
    lst = make_list(db_session)
    add_members(db_session, 7, lst.id)
    row = make_campaign(db_session, [lst])
    db_session.commit()
    return row


def _page(campaign_id: int) -> str:
    return f"/campaigns/{campaign_id}/send"


def _post(client, campaign_id: int, action: str, data=None):
    token = csrf_token(client, _page(campaign_id))
    return client.post(
        f"/campaigns/{campaign_id}/send/{action}", data={"csrf_token": token, **(data or {})}
    )


def test_viewers_are_refused_everywhere(client, login_as, db_session, campaign):
    login_as(Role.VIEWER)
    token = csrf_token(client, "/settings/tokens")  # a page a viewer may open
    assert client.get(_page(campaign.id)).status_code == 403
    assert client.get(f"/campaigns/{campaign.id}/send/progress.json").status_code == 403
    for action in ACTIONS:
        response = client.post(
            f"/campaigns/{campaign.id}/send/{action}",
            data={"csrf_token": token, "date": "2099-12-17", "time": "09:00"},
        )
        assert response.status_code == 403
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "draft"


def test_anonymous_visitors_go_to_login(client, campaign):
    response = client.get(_page(campaign.id))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_unknown_campaign_is_404(client, login_as):
    login_as(Role.ORGANIZER)
    assert client.get(_page(999_999)).status_code == 404


def test_the_panel_shows_who_will_receive_it(client, login_as, campaign):
    login_as(Role.ORGANIZER)
    html = client.get(_page(campaign.id)).get_data(as_text=True)
    assert "Who will receive it: <strong>7</strong> members" in html
    assert "Times are in America/Edmonton (MST)" in html or "(MDT)" in html
    assert "Before you can send" not in html


def test_the_panel_lists_what_stops_a_campaign(client, login_as, db_session, campaign):
    db_session.execute(campaign_lists.delete().where(campaign_lists.c.campaign_id == campaign.id))
    campaign.from_email = "someone@else.example"
    db_session.commit()
    login_as(Role.ORGANIZER)
    html = client.get(_page(campaign.id)).get_data(as_text=True)
    assert "Before you can send this campaign" in html
    assert "Choose at least one list to send to." in html
    assert "someone@else.example is not an allowed sender" in html
    assert "Send now" not in html


def next_december_17() -> date:
    today = datetime.now(UTC).date()
    this_year = date(today.year, 12, 17)
    return this_year if this_year > today else date(today.year + 1, 12, 17)


def test_scheduling_uses_the_organizations_time_zone(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    day = next_december_17()
    response = _post(client, campaign.id, "schedule", {"date": day.isoformat(), "time": "09:00"})
    assert response.status_code == 302
    db_session.expire_all()
    row = db_session.get(Campaign, campaign.id)
    assert row.status == "scheduled"
    assert row.send_at == datetime(day.year, 12, 17, 16, 0, tzinfo=UTC)  # 09:00 MST
    html = client.get(_page(campaign.id)).get_data(as_text=True)
    expected = f"{day:%A}, December 17, {day.year} at 9:00 AM MST"
    assert f"Scheduled for <strong>{expected}</strong>" in html


@pytest.mark.parametrize(
    ("date", "time", "message"),
    [
        ("2001-01-01", "09:00", "Choose a time in the future."),
        ("2099-01-01", "09:00", "Choose a time within the next year."),
        ("2099-03-08", "02:30", "the clocks jump forward that night"),
        ("", "09:00", "Choose a date."),
        ("2099-13-40", "09:00", "Not a valid date value."),
    ],
)
def test_bad_times_are_refused_and_change_nothing(
    client, login_as, db_session, campaign, date, time, message
):
    login_as(Role.ORGANIZER)
    response = _post(client, campaign.id, "schedule", {"date": date, "time": time})
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert message in html
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "draft"


def test_send_now_pause_resume_cancel(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    assert _post(client, campaign.id, "now").status_code == 302
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "sending"

    html = client.get(_page(campaign.id)).get_data(as_text=True)
    assert 'data-status="sending"' in html
    assert "Pause" in html

    assert _post(client, campaign.id, "pause").status_code == 302
    db_session.expire_all()
    paused = db_session.get(Campaign, campaign.id)
    assert paused.status == "paused"
    assert paused.status_reason.startswith("Paused by organizer-")
    assert "Resume sending" in client.get(_page(campaign.id)).get_data(as_text=True)

    assert _post(client, campaign.id, "resume").status_code == 302
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "sending"

    assert _post(client, campaign.id, "cancel").status_code == 302
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "cancelled"


def test_a_forbidden_step_says_so_and_changes_nothing(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    response = _post(client, campaign.id, "pause")
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "A draft campaign can&#39;t be paused." in html
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "draft"


def test_send_now_queues_the_dispatch_after_commit(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    _post(client, campaign.id, "now")
    # The view committed: the dispatch left with the commit (nothing pending remains).
    assert jobs.pending_jobs(db_session) == []


def test_progress_json(client, login_as, campaign):
    login_as(Role.ORGANIZER)
    data = client.get(f"/campaigns/{campaign.id}/send/progress.json").get_json()
    assert data["status"] == "draft"
    assert data["total"] == 7
    assert data["frozen"] is False


def test_next_cannot_send_people_elsewhere(client, login_as, campaign):
    login_as(Role.ORGANIZER)
    for target in ("https://evil.example/", "//evil.example/", "/campaigns/\\evil"):
        response = _post(client, campaign.id, "pause", {"next": target})
        assert response.headers["Location"] == _page(campaign.id)


def test_actions_need_a_csrf_token(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    response = client.post(f"/campaigns/{campaign.id}/send/now")
    assert response.status_code == 400
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "draft"
    assert db_session.scalar(sa.select(Campaign.send_at).where(Campaign.id == campaign.id)) is None


def test_a_sent_campaign_s_send_page_points_to_its_report(client, login_as, db_session, campaign):
    login_as(Role.ORGANIZER)
    report = f'href="/stats/campaigns/{campaign.id}"'
    assert report not in client.get(_page(campaign.id)).get_data(as_text=True)  # a draft
    campaign.status = "sent"
    db_session.commit()
    assert report in client.get(_page(campaign.id)).get_data(as_text=True)


def test_members_who_may_have_missed_it_are_shown_and_can_be_sent_to(
    client, login_as, db_session, campaign, monkeypatch
):
    """Without SendGrid's webhook nothing settles them: the organizer is told, and decides."""
    login_as(Role.ORGANIZER)
    unknown = finished_with_unknown(db_session, campaign)
    assert unknown == 2

    page = client.get(_page(campaign.id)).get_data(as_text=True)
    assert "2 members may not have received it" in page
    assert "Send to them now" in page
    listing = client.get("/campaigns").get_data(as_text=True)
    assert "2 may have missed it" in listing
    report = client.get(f"/stats/campaigns/{campaign.id}").get_data(as_text=True)
    assert "2 may have missed it" in report

    sent = []
    monkeypatch.setattr(jobs, "send_now", sent.append)
    response = _post(client, campaign.id, "resend-unknown")
    assert response.status_code == 302
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "sending"
    statuses = db_session.scalars(
        sa.select(Delivery.status).where(Delivery.campaign_id == campaign.id)
    ).all()
    assert sorted(statuses).count("queued") == 2
    assert "unknown" not in statuses
    assert [j.args for j in sent if j.name == jobs.SEND_BATCH] == [(campaign.id, 0)]
    # Nobody left in doubt: a second press says so and changes nothing.
    again = _post(client, campaign.id, "resend-unknown")
    assert again.status_code == 302
    assert "nobody is waiting" in client.get(_page(campaign.id)).get_data(as_text=True)
