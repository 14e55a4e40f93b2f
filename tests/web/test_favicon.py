"""The favicon: served at /favicon.ico and linked from every page's head, no login needed."""

from __future__ import annotations

import re

import pytest


def test_favicon_ico_is_an_icon_cached_for_a_week(client):
    with client.get("/favicon.ico") as response:  # a file response: closed when read
        body = response.get_data()
    assert response.status_code == 200
    assert response.mimetype == "image/vnd.microsoft.icon"
    assert body[:4] == b"\x00\x00\x01\x00"  # ICONDIR: reserved 0, type 1 (icon)
    assert response.headers["Cache-Control"] == "public, max-age=604800"


@pytest.mark.parametrize("path", ["/login", "/subscribe/no-such-list", "/u/forged-token"])
def test_pages_link_icons_that_exist(client, path):
    html = client.get(path).get_data(as_text=True)
    icons = re.findall(r'<link rel="icon" href="([^"]+)"', html)
    assert len(icons) == 2, html[:600]
    for href in icons:
        with client.get(href) as icon:
            icon.get_data()
        assert icon.status_code == 200, href
        assert icon.mimetype in {"image/svg+xml", "image/vnd.microsoft.icon"}
