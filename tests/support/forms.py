"""Helpers to use the web UI from the Flask test client, CSRF tokens included."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: FlaskClient, url: str) -> str:
    page = client.get(url)
    match = _CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} (status {page.status_code})"
    return match.group(1)


def submit(client: FlaskClient, form_url: str, data: dict[str, Any], post_url: str | None = None):
    """GET the form page for its CSRF token, then POST `data` with it."""
    token = csrf_token(client, form_url)
    return client.post(post_url or form_url, data={**data, "csrf_token": token})


def login(client: FlaskClient, email: str, password: str):
    return submit(client, "/login", {"email": email, "password": password})
