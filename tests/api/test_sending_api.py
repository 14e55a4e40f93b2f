"""The sending API: organizers only, 409 on a forbidden transition, 422 with the problems."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.models import Campaign, Role
from app.services.organization import users
from tests.support.sending import (
    add_members,
    finished_with_unknown,
    make_campaign,
    make_list,
    setup_org,
)


@pytest.fixture
def token_for(db_session, make_user):
    def _token(role: Role) -> dict[str, str]:
        issued = users.create_token(db_session, make_user(role))
        db_session.commit()
        return {"Authorization": f"Bearer {issued.secret}"}

    return _token


@pytest.fixture
def campaign(db_session):
    setup_org(db_session)
    lst = make_list(db_session)
    add_members(db_session, 5, lst.id)
    row = make_campaign(db_session, [lst])
    db_session.commit()
    return row


def _url(campaign_id: int, action: str) -> str:
    return f"/api/v1/campaigns/{campaign_id}/{action}"


def _soon() -> str:
    when = datetime.now(UTC) + timedelta(days=3)
    return when.strftime("%Y-%m-%dT09:30:00")


def test_without_a_token_401_and_viewers_403(client, token_for, campaign):
    assert client.post(_url(campaign.id, "send-now")).status_code == 401
    viewer = token_for(Role.VIEWER)
    for action in ("schedule", "send-now", "pause", "resume", "cancel", "unschedule"):
        response = client.post(_url(campaign.id, action), json={"send_at": _soon()}, headers=viewer)
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    assert client.get(_url(campaign.id, "progress"), headers=viewer).status_code == 403


def test_schedule_then_progress(client, db_session, token_for, campaign):
    headers = token_for(Role.ORGANIZER)
    response = client.post(
        _url(campaign.id, "schedule"),
        json={"send_at": _soon(), "timezone": "America/Edmonton"},
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "scheduled"
    assert body["total"] == 5
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).send_at.hour in (16, 15)  # 09:30 local

    progress = client.get(_url(campaign.id, "progress"), headers=headers).get_json()
    assert progress["status"] == "scheduled"
    assert progress["unknown"] == 0


def test_an_offset_wins_over_the_time_zone(client, db_session, token_for, campaign):
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    response = client.post(
        _url(campaign.id, "schedule"),
        json={"send_at": when.isoformat(), "timezone": "Asia/Tokyo"},
        headers=token_for(Role.ORGANIZER),
    )
    assert response.status_code == 200
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).send_at == when


def test_unsendable_campaign_is_422_with_every_problem(client, db_session, token_for, campaign):
    campaign.variants[0].subject = "{{ member.first_name "
    campaign.from_email = "nobody@else.example"
    db_session.commit()
    response = client.post(_url(campaign.id, "send-now"), headers=token_for(Role.ORGANIZER))
    assert response.status_code == 422
    error = response.get_json()["error"]
    fields = {p["field"] for p in error["details"]["problems"]}
    assert "from_email" in fields
    assert "en.subject" in fields
    db_session.expire_all()
    assert db_session.get(Campaign, campaign.id).status == "draft"


@pytest.mark.parametrize("action", ["pause", "resume", "unschedule"])
def test_a_transition_the_table_forbids_is_409(client, token_for, campaign, action):
    response = client.post(_url(campaign.id, action), headers=token_for(Role.ORGANIZER))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"
    assert "draft campaign" in response.get_json()["error"]["message"]


def test_send_now_pause_resume_cancel(client, db_session, token_for, campaign):
    headers = token_for(Role.ORGANIZER)
    assert client.post(_url(campaign.id, "send-now"), headers=headers).status_code == 202
    assert client.post(_url(campaign.id, "send-now"), headers=headers).status_code == 409
    assert client.post(_url(campaign.id, "pause"), headers=headers).get_json()["status"] == "paused"
    assert (
        client.post(_url(campaign.id, "resume"), headers=headers).get_json()["status"] == "sending"
    )
    body = client.post(_url(campaign.id, "cancel"), headers=headers).get_json()
    assert body["status"] == "cancelled"
    assert client.post(_url(campaign.id, "resume"), headers=headers).status_code == 409


def test_unknown_campaign_is_404(client, token_for):
    response = client.get(_url(424242, "progress"), headers=token_for(Role.ORGANIZER))
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_bad_body_is_422(client, token_for, campaign):
    response = client.post(
        _url(campaign.id, "schedule"),
        json={"send_at": "next tuesday"},
        headers=token_for(Role.ORGANIZER),
    )
    assert response.status_code == 422
    assert "send_at" in response.get_json()["error"]["details"]["json"]


def test_the_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for action in ("schedule", "send-now", "pause", "resume", "cancel", "progress"):
        assert f"/api/v1/campaigns/{{campaign_id}}/{action}" in paths


def test_unknown_members_are_in_progress_errors_and_can_be_sent_to(
    client, db_session, token_for, campaign
):
    headers = token_for(Role.ORGANIZER)
    finished_with_unknown(db_session, campaign)

    progress = client.get(_url(campaign.id, "progress"), headers=headers).get_json()
    assert (progress["unknown"], progress["unknown_state"]) == (2, "undecided")
    assert [e["kind"] for e in progress["errors"]] == ["unknown"]
    assert "may not have received it" in progress["errors"][0]["message"]

    response = client.post(_url(campaign.id, "resend-unknown"), headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["status"], body["unknown"], body["queued"]) == ("sending", 0, 2)
    again = client.post(_url(campaign.id, "resend-unknown"), headers=headers)
    assert again.status_code == 409
