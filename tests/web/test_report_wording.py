"""How the report and the dashboard word their figures: delivery that is not reported, one
format for every rate, and a timeline whose activity all fell in one hour."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from app.extensions import db
from app.models import CampaignHourly, CampaignStats, Role
from app.services.organization import users
from app.web import report_view
from tests import factories

NOW = datetime(2026, 11, 30, 15, 40, tzinfo=UTC)
# A campaign sent through SMTP or the outbox: no delivery report ever comes back.
SMTP_COUNTS = {
    "targeted": 1000,
    "sent": 1000,
    "opens_unique": 150,
    "opens_human_unique": 123,
    "clicks_unique": 44,
    "clicks_human_unique": 40,
    "petition_clicks_unique": 21,
    "petition_clicks_human_unique": 20,
    "unsubscribes": 3,
    "spam_reports": 1,
}


@pytest.fixture
def smtp_campaign(db_session):
    campaign = factories.campaign(db_session, status="sent", started_at=NOW - timedelta(hours=5))
    db_session.add(CampaignStats(campaign_id=campaign.id, **SMTP_COUNTS))
    db_session.commit()
    return campaign


def _visible_text(page: str) -> str:
    """The page's text, without styles (whose widths are percentages too) or markup."""
    page = re.sub(r"<style.*?</style>", " ", page, flags=re.S)
    page = re.sub(r'style="[^"]*"', " ", page)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _percentages(text: str) -> list[str]:
    return re.findall(r"\d[\d,]*(?:\.\d+)?%", text)


def test_delivery_that_is_not_reported_is_not_shown_as_zero(
    client, login_as, db_session, smtp_campaign
):
    login_as(Role.VIEWER)
    page = client.get(f"/stats/campaigns/{smtp_campaign.id}").get_data(as_text=True)
    text = " ".join(_visible_text(page).split())
    assert "— Delivered not reported by the mail service" in text
    assert "— Bounced not reported by the mail service" in text
    assert "0.0% of sent" not in text
    assert "rates are out of the 1,000 emails sent" in text
    assert "12.3% of sent" in text  # opened, out of sent
    # The funnel's bars skip the step nobody reported.
    assert '<span class="fl">Delivered</span>' not in page


def test_the_api_says_delivery_is_unknown_rather_than_zero(client, make_user, smtp_campaign):
    viewer = make_user(Role.VIEWER)
    token = users.create_token(db.session, viewer).secret
    db.session.commit()
    body = client.get(
        f"/api/v1/stats/campaigns/{smtp_campaign.id}",
        headers={"Authorization": f"Bearer {token}"},
    ).get_json()
    assert body["denominator"] == "sent"
    assert (body["rates"]["delivered"], body["rates"]["bounced"]) == (
        None,
        None,
    )
    assert body["rates"]["opened_human"] == 0.123


def test_every_rate_on_the_report_and_dashboard_has_one_decimal(
    client, login_as, db_session, smtp_campaign
):
    login_as(Role.VIEWER)
    report = _visible_text(
        client.get(f"/stats/campaigns/{smtp_campaign.id}").get_data(as_text=True)
    )
    assert "0.3% of sent" in report  # 3 unsubscribes in 1,000 (was "0.30%")
    assert "0.1% of sent" in report  # 1 spam report in 1,000 (was "0.10%")
    dashboard = _visible_text(client.get("/dashboard").get_data(as_text=True))
    shown = _percentages(report) + _percentages(dashboard)
    assert shown, "the pages show rates"
    wrong = [p for p in shown if not re.fullmatch(r"\d[\d,]*\.\d%", p)]
    assert wrong == []


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (None, "—"),
        (0.0, "0.0%"),
        (0.00004, "<0.1%"),
        (0.003, "0.3%"),
        (0.1234, "12.3%"),
        (1, "100.0%"),
    ],
)
def test_one_rate_format(rate, shown):
    assert report_view.pct(rate) == shown


def test_a_timeline_with_one_hour_draws_one_bar_and_says_so(
    client, login_as, db_session, monkeypatch
):
    """All the opens and clicks so far fell in the hour the campaign went out: a line through
    one point would be a dot, so the chart draws one bar per series and says what it is."""
    login_as(Role.VIEWER)
    hour = NOW.replace(minute=0)
    campaign = factories.campaign(db_session, status="sent", started_at=NOW - timedelta(minutes=20))
    db_session.add(CampaignStats(campaign_id=campaign.id, **SMTP_COUNTS))
    db_session.add(
        CampaignHourly(
            campaign_id=campaign.id,
            hour=hour,
            opens_unique=150,
            opens_human_unique=123,
            clicks_unique=44,
            clicks_human_unique=40,
        )
    )
    db_session.commit()
    monkeypatch.setattr(report_view, "utcnow", lambda: NOW)
    page = client.get(f"/stats/campaigns/{campaign.id}").get_data(as_text=True)
    assert "All activity in one hour (" in page
    chart = page[page.index('<div class="chart">') :]
    chart = chart[: chart.index("</div>")]
    assert "<polyline" not in chart
    # One bar per series (opened, clicked), in the wide and the narrow drawing.
    bars = re.findall(r'<g class="bars (s\d)"><rect [^>]*height="([\d.]+)"', chart)
    assert [series for series, _ in bars] == ["s1", "s2", "s1", "s2"]
    assert all(float(height) > 20 for _, height in bars)
