"""A copied session cookie dies with the session: logout, password and role changes, and
"log out everywhere" all end cookies issued before (API tokens are not sessions)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, g, request_started
from flask.testing import FlaskClient

from app.models import Role, User
from app.services.organization import users
from tests.conftest import PASSWORD
from tests.support.forms import login, submit

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture(autouse=True)
def _user_loaded_per_request(app: Flask) -> Iterator[None]:
    """Start each request with an empty `g`, as production does.

    The db_session fixture keeps one app context pushed for the whole test, and requests
    reuse it, so what Flask-Login (`g._login_user`) and Flask-WTF (`g.csrf_token`) cache
    there would carry one client's user and CSRF token into the next client's request; in
    production every request has its own app context.
    """

    def forget(_sender: Flask, **_extra: Any) -> None:
        for name in list(vars(g)):
            g.pop(name)

    request_started.connect(forget, app)
    yield
    request_started.disconnect(forget, app)


def _copy(client: FlaskClient, app: Flask) -> FlaskClient:
    """Another browser holding a copy of `client`'s session cookie (a stolen cookie)."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def _logged_in(client: FlaskClient) -> bool:
    status = client.get("/dashboard").status_code
    assert status in (200, 302)
    return status == 200


def _logged_in_client(app: Flask, user: User) -> FlaskClient:
    browser = app.test_client()
    assert login(browser, user.email, PASSWORD).status_code == 302
    return browser


def test_a_copied_cookie_is_logged_out_by_logout(app, client, login_as):
    login_as(Role.VIEWER)
    thief = _copy(client, app)
    assert _logged_in(thief)

    assert submit(client, "/dashboard", {}, post_url="/logout").status_code == 302

    assert not _logged_in(client)
    assert not _logged_in(thief)


def test_a_password_change_ends_other_sessions_and_keeps_this_one(app, client, login_as):
    user = login_as(Role.ORGANIZER)
    thief = _copy(client, app)

    response = submit(client, "/settings/account", {"current": PASSWORD, "new": NEW_PASSWORD})
    assert response.status_code == 302

    assert _logged_in(client)
    assert not _logged_in(thief)
    other = app.test_client()
    assert login(other, user.email, PASSWORD).status_code == 401
    assert login(other, user.email, NEW_PASSWORD).status_code == 302


def test_a_wrong_current_password_changes_nothing(app, client, login_as, db_session):
    user = login_as(Role.VIEWER)
    thief = _copy(client, app)
    generation = user.session_generation

    response = submit(client, "/settings/account", {"current": "not it at all", "new": "x" * 12})

    assert response.status_code == 422
    assert "current password is not right" in response.get_data(as_text=True)
    db_session.refresh(user)
    assert user.session_generation == generation
    assert _logged_in(client)
    assert _logged_in(thief)


def test_a_role_change_ends_that_users_sessions(app, client, login_as, make_user):
    login_as(Role.ADMIN)
    member = make_user(Role.ORGANIZER)
    theirs = _logged_in_client(app, member)

    response = submit(
        client, "/settings/users", {"role": "viewer"}, post_url=f"/settings/users/{member.id}/role"
    )
    assert response.status_code == 302

    assert not _logged_in(theirs)
    assert _logged_in(client)  # the admin's own session is not the one that changed
    again = _logged_in_client(app, member)
    assert again.get("/campaigns/new").status_code == 403  # the new role applies at once


def test_saving_the_same_role_ends_nothing(app, client, login_as, make_user):
    login_as(Role.ADMIN)
    member = make_user(Role.ORGANIZER)
    theirs = _logged_in_client(app, member)
    submit(
        client,
        "/settings/users",
        {"role": "organizer"},
        post_url=f"/settings/users/{member.id}/role",
    )
    assert _logged_in(theirs)


def test_log_out_everywhere_ends_every_session_but_not_api_tokens(
    app, client, login_as, db_session
):
    user = login_as(Role.VIEWER)
    laptop = _logged_in_client(app, user)
    thief = _copy(client, app)
    issued = users.create_token(db_session, user)
    db_session.commit()

    response = submit(
        client, "/settings/account", {}, post_url="/settings/account/logout-everywhere"
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"

    assert not any(_logged_in(browser) for browser in (client, laptop, thief))
    api = app.test_client()
    me = api.get("/api/v1/me", headers={"Authorization": f"Bearer {issued.secret}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == user.email


def test_logout_everywhere_needs_csrf(client, login_as):
    login_as(Role.VIEWER)
    assert client.post("/settings/account/logout-everywhere").status_code == 400
    assert _logged_in(client)


@pytest.mark.parametrize(
    "forged", ["{id}", "{id}:x", "{id}:²", "{id}:", "²:0", "{id}:0:0", "99999999999:0"]
)
def test_malformed_session_ids_are_anonymous(client, login_as, forged):
    user = login_as(Role.ADMIN)
    with client.session_transaction() as session:
        session["_user_id"] = forged.format(id=user.id)
    assert not _logged_in(client)
