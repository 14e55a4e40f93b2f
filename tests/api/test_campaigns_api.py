"""/api/v1/campaigns: CRUD, save-time problems as 422, 409 on status, preview, test send."""

from __future__ import annotations

import pytest
import redis
import sqlalchemy as sa

from app.emails.samples import SAMPLES
from app.models import Campaign, CampaignStatus, Delivery, Event, Role
from app.services.organization import users
from tests import factories
from tests.support.campaigns import SENDER, setup_org


@pytest.fixture
def org(db_session):
    sender = setup_org(db_session)
    db_session.commit()
    return sender


@pytest.fixture
def token_for(db_session, make_user):
    def _token(role: Role) -> dict[str, str]:
        issued = users.create_token(db_session, make_user(role))
        db_session.commit()
        return {"Authorization": f"Bearer {issued.secret}"}

    return _token


@pytest.fixture
def organizer(token_for):
    return token_for(Role.ORGANIZER)


def _payload(layout: str = "action_alert", languages=("en", "fr"), **changes) -> dict:
    payload = {
        "name": f"API {layout}",
        "layout": layout,
        "from_email": SENDER,
        "default_language": languages[0],
        "variants": [
            {
                "language": lang,
                "subject": SAMPLES[layout, lang].subject,
                "preheader": SAMPLES[layout, lang].preheader,
                "body": SAMPLES[layout, lang].body,
                "fields": dict(SAMPLES[layout, lang].fields),
            }
            for lang in languages
        ],
    }
    payload.update(changes)
    return payload


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def _create(client, headers, **changes) -> dict:
    response = client.post("/api/v1/campaigns", json=_payload(**changes), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_create_read_list_update_delete(client, org, organizer, db_session):
    created = _create(client, organizer)
    assert created["status"] == "draft"
    assert created["from_name"] == "Prairie Workers"
    assert [v["language"] for v in created["variants"]] == ["en", "fr"]
    assert created["variants"][0]["fields"]["cta_label"] == "Sign the petition"
    assert created["links"][0]["is_petition"] is True

    listed = client.get("/api/v1/campaigns", headers=organizer).get_json()
    assert [(c["id"], c["languages"]) for c in listed] == [(created["id"], ["en", "fr"])]

    read = client.get(f"/api/v1/campaigns/{created['id']}", headers=organizer).get_json()
    assert read == created

    lst = factories.mailing_list(db_session)
    db_session.commit()
    patched = client.patch(
        f"/api/v1/campaigns/{created['id']}",
        json={"name": "Renamed", "list_ids": [lst.id]},
        headers=organizer,
    )
    assert patched.status_code == 200, patched.get_json()
    body = patched.get_json()
    assert (body["name"], body["list_ids"]) == ("Renamed", [lst.id])
    assert body["variants"] == created["variants"]  # untouched

    only_en = client.patch(
        f"/api/v1/campaigns/{created['id']}",
        json={"variants": _payload(languages=("en",))["variants"]},
        headers=organizer,
    )
    assert [v["language"] for v in only_en.get_json()["variants"]] == ["en"]

    deleted = client.delete(f"/api/v1/campaigns/{created['id']}", headers=organizer)
    assert deleted.status_code == 204
    missing = client.get(f"/api/v1/campaigns/{created['id']}", headers=organizer)
    _error(missing, 404, "not_found")


def test_broken_templates_are_422_with_field_and_line(client, org, organizer, db_session):
    payload = _payload(languages=("en",))
    payload["variants"][0]["body"] = "Hi\n\n{{ ''.__class__.__mro__ }}"
    payload["variants"][0]["fields"]["headline"] = "{{ member.nickname }}"
    error = _error(
        client.post("/api/v1/campaigns", json=payload, headers=organizer), 422, "validation_error"
    )
    problems = {(p["field"], p["line"]) for p in error["details"]["problems"]}
    assert problems == {("en.body", 3), ("en.headline", 1)}
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 0


def test_schema_errors_use_the_error_shape(client, org, organizer):
    error = _error(
        client.post("/api/v1/campaigns", json={"name": "x"}, headers=organizer),
        422,
        "validation_error",
    )
    assert "layout" in error["details"]["json"]


def test_unknown_sender_is_refused(client, org, organizer):
    error = _error(
        client.post(
            "/api/v1/campaigns", json=_payload(from_email="x@elsewhere.example"), headers=organizer
        ),
        422,
        "validation_error",
    )
    assert error["details"]["problems"][0]["field"] == "from_email"


@pytest.mark.parametrize("status", ["scheduled", "sending", "sent"])
def test_delete_is_409_unless_draft(client, org, organizer, db_session, status):
    created = _create(client, organizer)
    db_session.get(Campaign, created["id"]).status = status
    db_session.commit()
    error = _error(
        client.delete(f"/api/v1/campaigns/{created['id']}", headers=organizer), 409, "conflict"
    )
    assert "only drafts" in error["message"]
    assert db_session.get(Campaign, created["id"]) is not None


@pytest.mark.parametrize("status", ["sending", "sent", "cancelled"])
def test_update_is_409_once_sending(client, org, organizer, db_session, status):
    created = _create(client, organizer)
    db_session.get(Campaign, created["id"]).status = status
    db_session.commit()
    response = client.patch(
        f"/api/v1/campaigns/{created['id']}", json={"name": "Late"}, headers=organizer
    )
    _error(response, 409, "conflict")


def test_preview_as_member_or_sample_records_nothing(client, org, organizer, db_session):
    created = _create(client, organizer, layout="day_of_action")
    member = factories.member(db_session, first_name="Mathieu", language="fr")
    db_session.commit()
    url = f"/api/v1/campaigns/{created['id']}/preview"
    shown = client.post(url, json={"member_id": member.id}, headers=organizer).get_json()
    assert shown["language"] == "fr"
    assert shown["member_id"] == member.id
    assert "Bonjour Mathieu" in shown["text"]
    assert "/t/o/" not in shown["html"]
    sample = client.post(url, json={"language": "en"}, headers=organizer).get_json()
    assert sample["subject"].startswith("Dec. 17")
    assert sample["member_id"] is None
    _error(client.post(url, json={"member_id": 999999}, headers=organizer), 404, "not_found")
    for model in (Delivery, Event):
        assert db_session.scalar(sa.select(sa.func.count()).select_from(model)) == 0


def test_test_send_is_queued_and_checks_addresses(client, org, organizer, db_session, test_environ):
    url = test_environ["REDIS_URL"]
    queue = redis.Redis.from_url(url)
    queue.delete("transactional")
    created = _create(client, organizer)
    path = f"/api/v1/campaigns/{created['id']}/test-send"
    accepted = client.post(path, json={"emails": ["Me@Example.org"]}, headers=organizer)
    assert accepted.status_code == 202
    assert accepted.get_json() == {"queued_to": ["me@example.org"]}
    assert queue.llen("transactional") == 1
    too_many = [f"p{n}@example.org" for n in range(6)]
    _error(client.post(path, json={"emails": too_many}, headers=organizer), 422, "validation_error")
    bad = client.post(path, json={"emails": ["nope"]}, headers=organizer)
    assert _error(bad, 422, "validation_error")["details"]["problems"][0]["field"] == "emails"
    assert queue.llen("transactional") == 1
    queue.delete("transactional")


def test_a_day_of_action_button_is_the_action_link_from_creation(client, org, organizer):
    """Any layout's main button counts as the petition (action) link as soon as the campaign
    exists; unticked through the API, it stays unticked when the campaign is edited."""
    created = _create(client, organizer, layout="day_of_action")
    cta = SAMPLES["day_of_action", "en"].fields["cta_url"]
    assert [link["url"] for link in created["links"] if link["is_petition"]] == [cta]
    path = f"/api/v1/campaigns/{created['id']}"
    button = next(link["id"] for link in created["links"] if link["url"] == cta)
    unticked = client.patch(
        f"{path}/links/{button}", json={"is_petition": False}, headers=organizer
    )
    assert unticked.get_json()["is_petition"] is False
    edited = client.patch(path, json={"name": "Renamed"}, headers=organizer).get_json()
    assert not any(link["is_petition"] for link in edited["links"])


def test_links_and_petition_flags(client, org, organizer, db_session):
    created = _create(client, organizer, layout="statement")
    campaign_id = created["id"]
    links = client.get(f"/api/v1/campaigns/{campaign_id}/links", headers=organizer).get_json()
    assert [link["position"] for link in links] == list(range(len(links)))
    assert not any(link["is_petition"] for link in links)
    first = links[0]["id"]
    flagged = client.patch(
        f"/api/v1/campaigns/{campaign_id}/links/{first}",
        json={"is_petition": True},
        headers=organizer,
    )
    assert flagged.get_json()["is_petition"] is True
    other = _create(client, organizer, name="Other")
    response = client.patch(
        f"/api/v1/campaigns/{other['id']}/links/{first}",
        json={"is_petition": True},
        headers=organizer,
    )
    _error(response, 404, "not_found")


ROUTES = [
    ("get", "/api/v1/campaigns"),
    ("post", "/api/v1/campaigns"),
    ("get", "/api/v1/campaigns/{id}"),
    ("patch", "/api/v1/campaigns/{id}"),
    ("delete", "/api/v1/campaigns/{id}"),
    ("post", "/api/v1/campaigns/{id}/preview"),
    ("post", "/api/v1/campaigns/{id}/test-send"),
    ("get", "/api/v1/campaigns/{id}/links"),
    ("patch", "/api/v1/campaigns/{id}/links/1"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_viewers_are_403_and_anonymous_401_on_every_route(
    client, org, organizer, token_for, db_session, method, path
):
    created = _create(client, organizer)
    viewer = token_for(Role.VIEWER)
    url = path.format(id=created["id"])
    call = getattr(client, method)
    _error(call(url, json={}, headers=viewer), 403, "forbidden")
    _error(call(url, json={}), 401, "unauthorized")
    campaign = db_session.get(Campaign, created["id"])
    assert campaign is not None
    assert campaign.status == CampaignStatus.DRAFT


def test_campaign_routes_are_in_the_openapi_document(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    for path in (
        "/api/v1/campaigns",
        "/api/v1/campaigns/{campaign_id}",
        "/api/v1/campaigns/{campaign_id}/preview",
        "/api/v1/campaigns/{campaign_id}/test-send",
        "/api/v1/campaigns/{campaign_id}/links",
        "/api/v1/campaigns/{campaign_id}/links/{link_id}",
    ):
        assert path in spec["paths"], path
    assert set(spec["paths"]["/api/v1/campaigns/{campaign_id}"]) >= {"get", "patch", "delete"}
