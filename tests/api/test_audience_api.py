"""Audience API: lists, members, consent, subscriptions, suppressions, segments, imports, roles."""

from __future__ import annotations

import io

import pytest

from app import jobs
from app.models import MemberImport, Role, Subscription, SuppressionReason
from app.services.audience import imports, lists, subscriptions
from app.services.organization import users
from tests import factories as f
from tests.support.member_files import (
    HOSTILE_CSV,
    HOSTILE_FORMULA,
    NO_EMAIL_COLUMN,
    WINDOWS_1252_CSV,
)


@pytest.fixture
def token_for(db_session, make_user):
    def _token(role: Role) -> str:
        issued = users.create_token(db_session, make_user(role))
        db_session.commit()
        return issued.secret

    return _token


@pytest.fixture
def auth(token_for):
    return {"Authorization": f"Bearer {token_for(Role.ORGANIZER)}"}


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    return body["error"]


def test_the_status_comes_from_the_error_s_kind_not_its_words(client, auth, db_session):
    """A refusal whose sentence happens to say "already a member" is still a 422: the
    service's error class (Invalid, Conflict) picks the status, not the message."""
    long_value = {"already a member": "x" * 1001}
    refused = assert_error(
        client.post(
            "/api/v1/members",
            json={"email": "ana@example.org", "attributes": long_value},
            headers=auth,
        ),
        422,
        "validation_error",
    )
    assert "already a member is too long" in refused["message"]
    client.post("/api/v1/members", json={"email": "ana@example.org"}, headers=auth)
    assert_error(
        client.post("/api/v1/members", json={"email": "ANA@example.org"}, headers=auth),
        409,
        "conflict",
    )
    created = client.post("/api/v1/lists", json={"name": "Stewards"}, headers=auth).get_json()
    assert_error(
        client.post("/api/v1/lists", json={"name": "Stewards"}, headers=auth), 409, "conflict"
    )
    assert_error(
        client.patch(f"/api/v1/lists/{created['id']}", json={"name": ""}, headers=auth),
        422,
        "validation_error",
    )


def test_lists_crud_with_counts(client, auth, db_session):
    created = client.post(
        "/api/v1/lists",
        json={"name": "Action network", "opt_in": "double", "is_public": True},
        headers=auth,
    )
    assert created.status_code == 201
    body = created.get_json()
    assert (body["slug"], body["counts"]) == (
        "action-network",
        {"subscribed": 0, "unsubscribed": 0, "pending": 0},
    )
    assert_error(
        client.post("/api/v1/lists", json={"name": "Action network"}, headers=auth), 409, "conflict"
    )
    assert_error(
        client.post("/api/v1/lists", json={"name": "X", "opt_in": "triple"}, headers=auth),
        422,
        "validation_error",
    )
    list_id = body["id"]
    renamed = client.patch(
        f"/api/v1/lists/{list_id}", json={"name": "Rapid response"}, headers=auth
    )
    assert renamed.get_json()["name"] == "Rapid response"
    assert client.get("/api/v1/lists", headers=auth).get_json()[0]["name"] == "Rapid response"
    assert client.delete(f"/api/v1/lists/{list_id}", headers=auth).status_code == 204
    assert_error(client.get(f"/api/v1/lists/{list_id}", headers=auth), 404, "not_found")


def test_members_create_search_update_consent_unsubscribe(client, auth, db_session):
    lst = lists.create_list(db_session, name="All members")
    db_session.commit()
    created = client.post(
        "/api/v1/members",
        json={
            "email": "Pat@Example.org",
            "first_name": "Pat",
            "list_ids": [lst.id],
            "attributes": {"Shift": "Night"},
        },
        headers=auth,
    )
    assert created.status_code == 201, created.get_json()
    member = created.get_json()
    assert member["email"] == "pat@example.org"
    assert member["subscriptions"][0]["status"] == "subscribed"
    assert member["consent"]["state"] == "none"
    assert_error(
        client.post("/api/v1/members", json={"email": "pat@example.org"}, headers=auth),
        409,
        "conflict",
    )
    invalid = assert_error(
        client.post("/api/v1/members", json={"email": "nope"}, headers=auth),
        422,
        "validation_error",
    )
    assert "email" in invalid["details"]

    found = client.get("/api/v1/members?q=pat", headers=auth).get_json()
    assert [m["email"] for m in found["items"]] == ["pat@example.org"]

    patched = client.patch(
        f"/api/v1/members/{member['id']}",
        json={"local": "Local 30", "language": "fr"},
        headers=auth,
    )
    assert (patched.get_json()["local"], patched.get_json()["language"]) == ("Local 30", "fr")

    consented = client.post(
        f"/api/v1/members/{member['id']}/consent",
        json={"basis": "implied_membership", "source": "card"},
        headers=auth,
    )
    assert consented.get_json()["consent"]["state"] == "valid"
    ended = client.patch(
        f"/api/v1/members/{member['id']}",
        json={"membership_ended_at": "2020-01-01T00:00:00+00:00"},
        headers=auth,
    )
    assert ended.get_json()["consent"]["state"] == "expired"

    left = client.post(
        f"/api/v1/members/{member['id']}/unsubscribe", json={"list_ids": None}, headers=auth
    )
    assert left.get_json() == {"changed": 1}


def test_subscribe_endpoint_respects_suppression_and_double_opt_in(client, auth, db_session):
    double = lists.create_list(db_session, name="Action", opt_in="double")
    subscriptions.suppress(db_session, "blocked@example.org", SuppressionReason.MANUAL)
    db_session.commit()
    url = f"/api/v1/lists/{double.id}/subscriptions"
    pending = client.post(url, json={"email": "sam@example.org"}, headers=auth).get_json()
    assert pending["outcome"] == "pending"
    blocked = client.post(url, json={"email": "blocked@example.org"}, headers=auth).get_json()
    assert blocked["outcome"] == "blocked"
    assert db_session.get(Subscription, (blocked["member_id"], double.id)) is None
    gone = client.delete(f"{url}/{pending['member_id']}", headers=auth)
    assert gone.get_json() == {"changed": 1}


def test_suppressions(client, auth, db_session):
    assert (
        client.post(
            "/api/v1/suppressions", json={"email": "X@Example.org"}, headers=auth
        ).status_code
        == 201
    )
    assert [s["email"] for s in client.get("/api/v1/suppressions", headers=auth).get_json()] == [
        "x@example.org"
    ]
    subscriptions.suppress(db_session, "bounce@example.org", SuppressionReason.HARD_BOUNCE)
    db_session.commit()
    assert_error(
        client.delete("/api/v1/suppressions/bounce@example.org", headers=auth), 409, "conflict"
    )
    assert client.delete("/api/v1/suppressions/x@example.org", headers=auth).status_code == 204
    assert_error(
        client.delete("/api/v1/suppressions/x@example.org", headers=auth), 404, "not_found"
    )


def test_segments_with_count_and_refusals(client, auth, db_session):
    f.member(db_session, email="a@example.org", language="fr")
    f.member(db_session, email="b@example.org")
    db_session.commit()
    rules = [{"field": "language", "op": "equals", "value": "fr"}]
    created = client.post("/api/v1/segments", json={"name": "French", "rules": rules}, headers=auth)
    assert created.status_code == 201
    segment_id = created.get_json()["id"]
    assert client.get(f"/api/v1/segments/{segment_id}/count", headers=auth).get_json() == {
        "count": 1
    }
    assert client.post(
        "/api/v1/segments/count", json={"rules": [], "match": "any"}, headers=auth
    ).get_json() == {"count": 2}
    refused = assert_error(
        client.post(
            "/api/v1/segments",
            json={
                "name": "Bad",
                "rules": [{"field": "id; DROP TABLE members", "op": "equals", "value": 1}],
            },
            headers=auth,
        ),
        422,
        "validation_error",
    )
    assert "unknown field" in refused["details"]["problems"][0]["message"]
    assert "fields" in client.get("/api/v1/segments/fields", headers=auth).get_json()
    export = client.get(f"/api/v1/segments/{segment_id}/export", headers=auth)
    assert export.mimetype == "text/csv"
    assert "a@example.org" in export.get_data(as_text=True)


def test_segment_fields_list_the_menu_in_order_with_the_positive_operator_first(client, auth):
    """The editor selects a field's first operator and choice: that must be the expected one
    (not the alphabetical first, "is not subscribed to" or "expired"), in a JSON encoding
    whose order survives (lists, not objects whose keys a JSON encoder may sort)."""
    fields = client.get("/api/v1/segments/fields", headers=auth).get_json()["fields"]
    names = [field["name"] for field in fields]
    assert names[:6] == ["list", "local", "language", "postal_code", "consent", "attribute"]
    first = {
        field["name"]: (
            field["ops"][0]["label"],
            field["choices"][0]["label"] if field["choices"] else None,
        )
        for field in fields
    }
    assert first["list"] == ("is subscribed to", None)
    assert first["local"] == ("contains", None)
    assert first["postal_code"] == ("contains", None)
    assert first["language"] == ("is", "English")
    assert first["consent"] == ("is", "valid (can be emailed)")
    assert first["attribute"] == ("contains", None)
    by_name = {field["name"]: field for field in fields}
    assert [op["op"] for op in by_name["list"]["ops"]] == [
        "subscribed",
        "not_subscribed",
        "unsubscribed",
        "pending",
    ]


def test_import_upload_is_accepted_then_reports(
    client, auth, db_session, app, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path))
    lst = lists.create_list(db_session, name="All members")
    db_session.commit()
    refused = assert_error(
        client.post(
            "/api/v1/imports",
            data={"list_id": str(lst.id), "file": (io.BytesIO(NO_EMAIL_COLUMN), "x.csv")},
            content_type="multipart/form-data",
            headers=auth,
        ),
        422,
        "validation_error",
    )
    assert "no 'email' column" in refused["message"]
    accepted = client.post(
        "/api/v1/imports",
        data={
            "list_id": str(lst.id),
            "consent": "express",
            "file": (io.BytesIO(HOSTILE_CSV), "m.csv"),
        },
        content_type="multipart/form-data",
        headers=auth,
    )
    assert accepted.status_code == 202, accepted.get_json()
    body = accepted.get_json()
    assert body["status"] == "queued"
    assert body["status_url"] == f"/api/v1/imports/{body['id']}"
    # The job left for the broker on commit; run the task's service steps here.
    imports.start_import(db_session, body["id"])
    imports.run_import(db_session, body["id"])
    db_session.commit()
    done = client.get(body["status_url"], headers=auth).get_json()
    report = done["report"]
    assert (done["status"], report["added"], report["skipped"], report["warnings"]) == (
        "done",
        8,
        5,
        4,
    )
    assert report["warning_reasons"]["unknown language"] == 1
    issues = client.get(f"{body['status_url']}/issues?per_page=4", headers=auth).get_json()
    assert [(i["line"], i["kind"]) for i in issues] == [
        (6, "skipped"),
        (7, "skipped"),
        (8, "warning"),
        (9, "warning"),
    ]
    assert issues[2]["reason"] == "field 'First name' is not valid UTF-8: imported without it"
    export = client.get(f"/api/v1/lists/{lst.id}/export", headers=auth).get_data(as_text=True)
    assert "'" + HOSTILE_FORMULA.replace('"', '""') in export
    assert db_session.get(MemberImport, body["id"]).origin == "api"
    assert jobs.pending_jobs(db_session) == []


def test_import_of_a_windows_1252_file_reports_how_it_was_read(
    client, auth, db_session, app, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path))
    lst = lists.create_list(db_session, name="Membres")
    db_session.commit()
    accepted = client.post(
        "/api/v1/imports",
        data={"list_id": str(lst.id), "file": (io.BytesIO(WINDOWS_1252_CSV), "membres.csv")},
        content_type="multipart/form-data",
        headers=auth,
    )
    assert accepted.status_code == 202, accepted.get_json()
    body = accepted.get_json()
    imports.start_import(db_session, body["id"])
    imports.run_import(db_session, body["id"])
    db_session.commit()
    report = client.get(body["status_url"], headers=auth).get_json()["report"]
    assert (report["added"], report["skipped"]) == (5, 0)
    assert (report["encoding"], report["note"]) == ("windows-1252", imports.WINDOWS_1252_NOTE)


ENDPOINTS = [
    ("get", "/api/v1/lists"),
    ("post", "/api/v1/lists"),
    ("get", "/api/v1/members"),
    ("post", "/api/v1/members"),
    ("get", "/api/v1/suppressions"),
    ("post", "/api/v1/suppressions"),
    ("get", "/api/v1/segments"),
    ("post", "/api/v1/segments/count"),
    ("post", "/api/v1/imports"),
    ("get", "/api/v1/imports/1"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_viewers_are_refused(client, token_for, method, path):
    headers = {"Authorization": f"Bearer {token_for(Role.VIEWER)}"}
    response = getattr(client, method)(path, json={}, headers=headers)
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_anonymous_is_401(client, method, path):
    assert_error(getattr(client, method)(path, json={}), 401, "unauthorized")


def test_audience_endpoints_are_in_the_openapi_document(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path in [
        "/api/v1/lists",
        "/api/v1/lists/{list_id}/subscriptions",
        "/api/v1/members/{member_id}/consent",
        "/api/v1/suppressions",
        "/api/v1/segments/{segment_id}/count",
        "/api/v1/imports",
        "/api/v1/imports/{import_id}/issues",
    ]:
        assert path in paths, path
    assert "multipart/form-data" in paths["/api/v1/imports"]["post"]["requestBody"]["content"]
