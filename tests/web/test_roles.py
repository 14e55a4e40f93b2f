"""Every page checks the role: a lower role is refused."""

from __future__ import annotations

import pytest

from app.models import Role
from tests.support.forms import submit

PAGES = [
    ("/dashboard", Role.VIEWER),
    ("/stats", Role.VIEWER),
    ("/settings/tokens", Role.VIEWER),
    ("/lists", Role.ORGANIZER),
    ("/campaigns", Role.ORGANIZER),
    ("/settings/users", Role.ADMIN),
]
RANK = {Role.VIEWER: 1, Role.ORGANIZER: 2, Role.ADMIN: 3}


@pytest.mark.parametrize(("path", "required"), PAGES)
@pytest.mark.parametrize("role", list(Role))
def test_page_requires_its_role(client, login_as, path, required, role):
    login_as(role)
    status = client.get(path).status_code
    assert status == (200 if RANK[role] >= RANK[required] else 403)


@pytest.mark.parametrize(("path", "_required"), PAGES)
def test_anonymous_visitors_are_sent_to_login(client, path, _required):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_organizer_cannot_create_users(client, login_as, db_session):
    from app.models import User

    login_as(Role.ORGANIZER)
    response = submit(
        client,
        "/settings/tokens",  # a page the organizer may open, for a valid CSRF token
        {"email": "new@example.org", "role": "admin", "password": "0123456789abc"},
        post_url="/settings/users",
    )
    assert response.status_code == 403
    assert db_session.query(User).filter_by(email="new@example.org").count() == 0


def test_admin_creates_a_user_who_can_log_in(client, login_as, db_session):
    login_as(Role.ADMIN)
    response = submit(
        client,
        "/settings/users",
        {
            "name": "Pat",
            "email": "Pat@Example.org",
            "role": "organizer",
            "password": "0123456789abc",
        },
    )
    assert response.status_code == 302
    submit(client, "/dashboard", {}, post_url="/logout")
    from tests.support.forms import login

    assert login(client, "pat@example.org", "0123456789abc").status_code == 302


def test_bad_user_input_changes_nothing(client, login_as, db_session):
    from app.models import User

    login_as(Role.ADMIN)
    before = db_session.query(User).count()
    response = submit(
        client, "/settings/users", {"email": "not-an-email", "role": "admin", "password": "short"}
    )
    assert response.status_code == 422
    assert db_session.query(User).count() == before


def test_admin_cannot_demote_themselves(client, login_as, db_session):
    admin = login_as(Role.ADMIN)
    response = submit(
        client, "/settings/users", {"role": "viewer"}, post_url=f"/settings/users/{admin.id}/role"
    )
    assert response.status_code == 302
    db_session.refresh(admin)
    assert admin.role == "admin"
