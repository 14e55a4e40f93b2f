"""A viewer reads a campaign report and the dashboard in a real browser, on desktop and phone."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.extensions import db
from app.models import CampaignStats
from app.models.base import utcnow
from app.services.organization import users
from tests import factories
from tests.e2e.conftest import docs_screenshot, screenshot
from tests.support import stats_scenario

pytestmark = pytest.mark.e2e

PASSWORD = "solidarity-forever"


@pytest.fixture
def report(app, live_server):
    """A campaign sent five days ago with a week of activity, an older one, and a viewer."""
    with app.app_context():
        now = utcnow()
        demo = stats_scenario.build_demo(db.session, started=now - timedelta(days=5, hours=3))
        stats_scenario.build_demo(
            db.session,
            members=120,
            seed=3,
            started=now - timedelta(days=19),
            name="Statement of support for striking port workers",
        )
        lst = factories.mailing_list(db.session)
        for weeks_ago in range(10):
            for _ in range(3 + weeks_ago % 4):
                sub = factories.subscribe(db.session, factories.member(db.session), lst)
                sub.subscribed_at = now - timedelta(weeks=weeks_ago, days=1)
        users.create_user(db.session, email="viewer@example.org", password=PASSWORD, role="viewer")
        db.session.commit()
        return demo.campaign.id


def _login(page, base_url: str) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("Email").fill("viewer@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/dashboard")


def _no_sideways_scroll(page, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways: {scroll}px wide for {width}px"


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 900, "desktop"), (390, 844, "phone")])
def test_report_and_dashboard_read_well(browser, live_server, report, width, height, name):
    context = browser.new_context(
        viewport={"width": width, "height": height}, is_mobile=name == "phone"
    )
    page = context.new_page()
    _login(page, live_server.url)

    assert page.get_by_role("heading", name="Recent campaigns").is_visible()
    assert page.get_by_role("heading", name="Deliverability, last 30 days").is_visible()
    assert page.get_by_role("img", name="List growth over the last 12 weeks").is_visible()
    _no_sideways_scroll(page, width)
    screenshot(page, f"stats-dashboard-{name}")

    page.get_by_role("link", name="Day of action Dec. 17: rally for Amar's release").first.click()
    page.wait_for_url(f"{live_server.url}/stats/campaigns/{report}")
    assert page.get_by_role("heading", name="What happened").is_visible()
    assert page.get_by_role("img", name="Opens and clicks, first 72 hours, per hour").is_visible()
    assert page.get_by_role("img", name="Opens and clicks, after that, per day").is_visible()
    assert page.get_by_text("Petition", exact=True).first.is_visible()
    _no_sideways_scroll(page, width)
    screenshot(page, f"stats-report-{name}")
    if name == "desktop":
        docs_screenshot(page, "campaign-report", height=1000)
    # The numbers behind the hourly chart, for screen readers and copying.
    page.get_by_text("Show the numbers").first.click()
    assert page.get_by_role("table", name="Opens and clicks, first 72 hours, per hour").is_visible()
    _no_sideways_scroll(page, width)

    page.goto(f"{live_server.url}/stats/campaigns/{report}/problems")
    _no_sideways_scroll(page, width)
    screenshot(page, f"stats-problems-{name}")
    context.close()


def test_the_report_updates_itself_while_sending(browser, live_server, app):
    """The open page polls its JSON endpoint and shows new figures without a reload."""
    with app.app_context():
        campaign = factories.campaign(db.session, status="sending", started_at=utcnow())
        db.session.add(CampaignStats(campaign_id=campaign.id, targeted=1000, sent=120))
        users.create_user(db.session, email="viewer@example.org", password=PASSWORD, role="viewer")
        db.session.commit()
        campaign_id = campaign.id
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, live_server.url)
    page.goto(f"{live_server.url}/stats/campaigns/{campaign_id}")
    assert page.get_by_text("120 of 1,000 handled").is_visible()
    marker = page.evaluate("window.__same_page = true")
    assert marker is True
    with app.app_context():
        stats = db.session.get(CampaignStats, campaign_id)
        assert stats is not None
        stats.sent = 640
        db.session.commit()
    page.get_by_text("640 of 1,000 handled").wait_for(timeout=15_000)
    assert page.evaluate("window.__same_page") is True  # updated in place, not reloaded
    context.close()
