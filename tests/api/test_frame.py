"""The JSON API frame: bearer tokens, roles, one error shape, the OpenAPI document."""

from __future__ import annotations

import pytest

from app.models import Role
from app.services.organization import users


@pytest.fixture
def token_for(db_session, make_user):
    def _token(role: Role) -> str:
        user = make_user(role)
        issued = users.create_token(db_session, user)
        db_session.commit()
        return issued.secret

    return _token


def _auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _assert_error_shape(response, status: int, code: str) -> None:
    assert response.status_code == status
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_me_returns_the_token_owner(client, token_for):
    response = client.get("/api/v1/me", headers=_auth(token_for(Role.VIEWER)))
    assert response.status_code == 200
    assert response.get_json()["role"] == "viewer"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer rp_notarealtoken", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 500],
)
def test_missing_or_bad_token_is_401(client, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/me", headers=headers)
    _assert_error_shape(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_401(client, db_session, make_user):
    user = make_user(Role.ADMIN)
    issued = users.create_token(db_session, user)
    db_session.commit()
    assert client.get("/api/v1/me", headers=_auth(issued.secret)).status_code == 200
    users.revoke_token(db_session, issued.token.id)
    db_session.commit()
    _assert_error_shape(client.get("/api/v1/me", headers=_auth(issued.secret)), 401, "unauthorized")


def test_tokens_are_stored_hashed(db_session, make_user):
    issued = users.create_token(db_session, make_user(Role.VIEWER))
    assert issued.secret not in (issued.token.token_hash, issued.token.prefix)
    assert len(issued.token.token_hash) == 64


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ORGANIZER])
def test_lower_roles_cannot_manage_users(client, token_for, role):
    secret = token_for(role)
    _assert_error_shape(client.get("/api/v1/users", headers=_auth(secret)), 403, "forbidden")
    response = client.post(
        "/api/v1/users",
        json={"email": "x@example.org", "role": "admin", "password": "0123456789"},
        headers=_auth(secret),
    )
    _assert_error_shape(response, 403, "forbidden")


def test_admin_creates_user_and_duplicates_conflict(client, token_for):
    secret = token_for(Role.ADMIN)
    body = {"email": "api-user@example.org", "role": "organizer", "password": "0123456789"}
    created = client.post("/api/v1/users", json=body, headers=_auth(secret))
    assert created.status_code == 201
    assert created.get_json()["email"] == "api-user@example.org"
    assert "password" not in created.get_json()
    _assert_error_shape(
        client.post("/api/v1/users", json=body, headers=_auth(secret)), 409, "conflict"
    )


def test_invalid_body_is_422_with_field_details(client, token_for, db_session):
    from app.models import User

    secret = token_for(Role.ADMIN)
    before = db_session.query(User).count()
    response = client.post(
        "/api/v1/users", json={"email": "nope", "role": "king"}, headers=_auth(secret)
    )
    _assert_error_shape(response, 422, "validation_error")
    details = response.get_json()["error"]["details"]
    assert "json" in details
    assert {"email", "role", "password"} <= set(details["json"])
    assert db_session.query(User).count() == before


def test_malformed_json_is_400(client, token_for):
    response = client.post(
        "/api/v1/users",
        data="{not json",
        content_type="application/json",
        headers=_auth(token_for(Role.ADMIN)),
    )
    assert response.status_code in (400, 422)
    assert "error" in response.get_json()


def test_unknown_endpoint_is_404_in_the_error_shape(client):
    _assert_error_shape(client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_openapi_document_and_docs_page(client):
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    doc = spec.get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/me", "/api/v1/users"} <= set(doc["paths"])
    assert "bearerAuth" in doc["components"]["securitySchemes"]
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "/api/v1/users" in page.get_data(as_text=True)


def test_api_does_not_need_csrf_but_web_forms_do(client, token_for):
    response = client.post(
        "/api/v1/users",
        json={"email": "nocsrf@example.org", "role": "viewer", "password": "0123456789"},
        headers=_auth(token_for(Role.ADMIN)),
    )
    assert response.status_code == 201
