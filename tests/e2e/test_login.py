"""A person logs in with a real browser and reaches the dashboard, on desktop and phone."""

from __future__ import annotations

import pytest

from app.extensions import db
from app.services.organization import users
from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.e2e


@pytest.fixture
def organizer(app):
    with app.app_context():
        user = users.create_user(
            db.session, email="org@example.org", password="solidarity-forever", role="organizer"
        )
        db.session.commit()
        return user.email


def test_login_reaches_the_dashboard(page, live_server, organizer):
    page.goto(f"{live_server.url}/dashboard")
    assert "/login" in page.url
    page.get_by_label("Email").fill(organizer)
    page.get_by_label("Password").fill("solidarity-forever")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/dashboard")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    desktop_nav = page.get_by_role("navigation", name="Main")
    assert desktop_nav.get_by_role("link", name="Campaigns").is_visible()
    screenshot(page, "dashboard-desktop")


def test_wrong_password_shows_a_message(page, live_server, organizer):
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill(organizer)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_text("don't match an active account").is_visible()


def test_phone_layout_has_a_menu(browser, live_server, organizer):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill(organizer)
    page.get_by_label("Password").fill("solidarity-forever")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/dashboard")
    nav_link = page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Lists")
    assert not nav_link.is_visible()  # folded away on a phone
    page.get_by_text("Menu").click()
    assert nav_link.is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page must not scroll sideways on a phone"
    screenshot(page, "dashboard-phone")
    context.close()


def test_a_page_load_asks_for_nothing_that_is_missing(page, live_server):
    # A browser fetches the page's icon (or, without a link, /favicon.ico): it used to be a 404.
    failures: list[str] = []
    page.on("response", lambda r: failures.append(r.url) if r.status >= 400 else None)
    page.goto(f"{live_server.url}/login")
    page.wait_for_load_state("networkidle")
    statuses = page.evaluate(
        """async () => Promise.all(
            [...document.querySelectorAll('link[rel="icon"]'), {href: '/favicon.ico'}]
              .map(async (link) => (await fetch(link.href)).status))"""
    )
    assert statuses == [200, 200, 200]
    assert failures == []
