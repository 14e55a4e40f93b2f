"""Login, logout, CSRF, the login rate limit and password storage."""

from __future__ import annotations

import pytest

from app.models import Role
from tests.conftest import PASSWORD
from tests.support.forms import csrf_token, login, submit


def test_login_then_dashboard_then_logout(client, make_user):
    user = make_user(Role.ORGANIZER)
    response = login(client, user.email, PASSWORD)
    assert response.status_code == 302
    assert response.headers["Location"] == "/dashboard"
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Dashboard" in page
    assert user.email in page

    response = submit(client, "/dashboard", {}, post_url="/logout")
    assert response.status_code == 302
    assert client.get("/dashboard").status_code == 302  # back to the login page


def test_wrong_password_is_refused_without_saying_which_part_was_wrong(client, make_user):
    user = make_user(Role.ADMIN)
    response = login(client, user.email, "not the password")
    assert response.status_code == 401
    assert "don&#39;t match an active account" in response.get_data(as_text=True)
    unknown = login(client, "nobody@example.org", "whatever123")
    assert unknown.status_code == 401
    assert client.get("/dashboard").status_code == 302


def test_inactive_user_cannot_log_in(client, make_user, db_session):
    user = make_user(Role.ADMIN)
    user.is_active = False
    db_session.commit()
    assert login(client, user.email, PASSWORD).status_code == 401


def test_login_without_csrf_token_is_refused(client, make_user):
    user = make_user(Role.ADMIN)
    response = client.post("/login", data={"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "form has expired" in response.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 302


def test_logout_needs_a_post_with_csrf(client, login_as):
    login_as(Role.VIEWER)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.get("/dashboard").status_code == 200


def test_login_attempts_are_rate_limited(client, make_user):
    user = make_user(Role.ADMIN)
    statuses = [login(client, user.email, "wrong-password").status_code for _ in range(10)]
    assert statuses == [401] * 10
    blocked = login(client, user.email, PASSWORD)
    assert blocked.status_code == 429
    assert client.get("/dashboard").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example.com/", "//evil.example.com/x"])
def test_next_parameter_never_leaves_the_site(client, make_user, target):
    user = make_user(Role.ADMIN)
    token = csrf_token(client, "/login")
    response = client.post(
        f"/login?next={target}",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/dashboard"


def test_next_parameter_keeps_local_paths(client, make_user):
    user = make_user(Role.ADMIN)
    token = csrf_token(client, "/login")
    response = client.post(
        "/login?next=/settings/users",
        data={"email": user.email, "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/settings/users"


def test_passwords_are_stored_as_argon2_hashes(make_user):
    user = make_user(Role.VIEWER)
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


def test_session_cookie_is_httponly_and_samesite(client, make_user):
    user = make_user(Role.ADMIN)
    response = login(client, user.email, PASSWORD)
    cookie = response.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
