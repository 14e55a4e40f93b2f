"""Input the database cannot store is a 404 or 422, never a 500; a list with members can go.

Ids beyond INTEGER in a path are a 404 (no such row can exist), in a body or a query a 422
naming the field; a NUL character in any text is a 422. Deleting a list that has
subscribers removes its subscriptions, by the API and the web alike.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.models import MailingList, Member, MemberImport, Role, Subscription
from app.services.organization import users
from tests import factories as f
from tests.api.test_campaigns_api import _payload
from tests.support.campaigns import setup_org
from tests.support.forms import submit

HUGE = 8589934591  # 2**33 - 1
HUGER = 20865833314411319296  # beyond 64 bits too


@pytest.fixture
def auth(db_session, make_user):
    issued = users.create_token(db_session, make_user(Role.ADMIN))
    db_session.commit()
    return {"Authorization": f"Bearer {issued.secret}"}


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", f"/api/v1/campaigns/{HUGE}/resume"),
        ("get", f"/api/v1/campaigns/{HUGE}"),
        ("post", "/api/v1/lists/3692228733649/subscriptions"),
        ("get", f"/api/v1/lists/{HUGER}"),
        ("patch", f"/api/v1/members/{HUGE}"),
        ("delete", f"/api/v1/lists/1/subscriptions/{HUGER}"),
        ("get", f"/api/v1/segments/{HUGE}/count"),
    ],
)
def test_ids_beyond_integer_in_a_path_are_404(client, auth, method, path):
    response = getattr(client, method)(path, headers=auth, json={"email": "a@example.org"})
    assert _error(response, 404)["code"] == "not_found"


@pytest.mark.parametrize(
    "path", [f"/lists/{HUGE}", f"/campaigns/{HUGER}", f"/members/{HUGE}", f"/segments/{HUGE}"]
)
def test_ids_beyond_integer_in_a_web_path_are_404(client, login_as, path):
    login_as(Role.ADMIN)
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("list_id", [HUGER, HUGE, -HUGE, str(HUGER)])
def test_list_ids_beyond_integer_in_a_campaign_body_are_422(client, auth, db_session, list_id):
    setup_org(db_session)
    db_session.commit()
    response = client.post("/api/v1/campaigns", json=_payload(list_ids=[list_id]), headers=auth)
    error = _error(response, 422)
    assert error["details"]["json"]["list_ids"]["0"] == [
        "Must be between -2147483648 and 2147483647."
    ]


def test_a_query_id_beyond_integer_is_422(client, auth):
    error = _error(client.get(f"/api/v1/members?list_id={HUGE}", headers=auth), 422)
    assert "list_id" in error["details"]["query"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/lists", {"name": "Act\x00ion"}, ("name",)),
        ("/api/v1/members", {"email": "nul@example.org", "first_name": "A\x00"}, ("first_name",)),
        (
            "/api/v1/members",
            {"email": "nul2@example.org", "attributes": {"shop": "x\x00y"}},
            ("attributes", "shop"),
        ),
        ("/api/v1/segments", {"name": "S\x00", "rules": []}, ("name",)),
    ],
)
def test_a_nul_character_in_text_is_422_naming_the_field(
    client, auth, db_session, path, body, field
):
    before = db_session.scalar(sa.select(sa.func.count()).select_from(Member))
    error = _error(client.post(path, json=body, headers=auth), 422)
    details = error["details"]["json"]
    for key in field:
        details = details[key]
    assert details == ["Text cannot contain NUL characters."]
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Member)) == before


def _list_with_members(db_session, count: int = 3) -> MailingList:
    lst = f.mailing_list(db_session)
    for _ in range(count):
        f.subscribe(db_session, f.member(db_session), lst)
    db_session.commit()
    return lst


def _subscriptions(db_session, list_id: int) -> int:
    db_session.expire_all()
    query = (
        sa.select(sa.func.count()).select_from(Subscription).where(Subscription.list_id == list_id)
    )
    return db_session.scalar(query)


def test_a_list_with_members_is_deleted_by_the_api(client, auth, db_session):
    lst = _list_with_members(db_session)
    members = db_session.scalar(sa.select(sa.func.count()).select_from(Member))
    assert _subscriptions(db_session, lst.id) == 3
    response = client.delete(f"/api/v1/lists/{lst.id}", headers=auth)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert db_session.get(MailingList, lst.id) is None
    assert _subscriptions(db_session, lst.id) == 0
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Member)) == members


def test_a_list_with_members_is_deleted_from_the_web(client, login_as, db_session):
    login_as(Role.ORGANIZER)
    lst = _list_with_members(db_session)
    response = submit(client, f"/lists/{lst.id}", {}, post_url=f"/lists/{lst.id}/delete")
    assert response.status_code == 302
    assert response.headers["Location"] == "/lists"
    assert db_session.get(MailingList, lst.id) is None
    assert _subscriptions(db_session, lst.id) == 0


def test_past_imports_keep_their_report_without_the_list(client, auth, db_session):
    lst = _list_with_members(db_session)
    done = MemberImport(list_id=lst.id, status="done", filename="a.csv", path="a.csv", origin="api")
    db_session.add(done)
    db_session.commit()
    assert client.delete(f"/api/v1/lists/{lst.id}", headers=auth).status_code == 204
    db_session.expire_all()
    assert db_session.get(MemberImport, done.id).list_id is None


@pytest.mark.parametrize("kind", ["segment", "import", "campaign"])
def test_a_list_still_in_use_is_refused_and_kept(client, auth, db_session, kind):
    lst = _list_with_members(db_session)
    if kind == "segment":
        rules = [{"field": "list", "op": "not_subscribed", "value": lst.id}]
        created = client.post(
            "/api/v1/segments", json={"name": "Not on it", "rules": rules}, headers=auth
        )
        assert created.status_code == 201, created.get_json()
    elif kind == "import":
        db_session.add(
            MemberImport(
                list_id=lst.id, status="running", filename="b.csv", path="b.csv", origin="api"
            )
        )
    else:
        f.campaign(db_session, lists=[lst])
    db_session.commit()
    error = _error(client.delete(f"/api/v1/lists/{lst.id}", headers=auth), 409)
    assert {"segment": "Not on it", "import": "import", "campaign": "Campaigns"}[kind] in error[
        "message"
    ]
    assert db_session.get(MailingList, lst.id) is not None
    assert _subscriptions(db_session, lst.id) == 3


def test_every_api_blueprint_refuses_what_cannot_be_stored(app):
    """A new API module built on flask-smorest's own Blueprint would skip the check."""
    import flask_smorest

    from app.api.blueprint import Blueprint

    smorest = [bp for bp in app.blueprints.values() if isinstance(bp, flask_smorest.Blueprint)]
    assert smorest
    assert [bp.name for bp in smorest if not isinstance(bp, Blueprint)] == []


@pytest.mark.parametrize(
    ("form_url", "data", "field"),
    [
        ("/lists/new", {"name": "a\x00b", "opt_in": "single"}, "name"),
        (
            "/members/new",
            {"email": "n@example.org", "first_name": "a\x00b", "language": "en", "list_id": "0"},
            "first_name",
        ),
    ],
)
def test_a_nul_character_in_a_web_form_is_422_naming_the_field(
    client, login_as, db_session, form_url, data, field
):
    login_as(Role.ADMIN)
    before = db_session.scalar(sa.select(sa.func.count()).select_from(Member))
    response = submit(client, form_url, data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Text cannot contain NUL characters" in page
    assert f"Remove the NUL character from: {field}." in page
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Member)) == before
