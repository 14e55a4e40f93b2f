"""The stats pages show the figures the raw events give, to viewers, and change nothing."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest

from app.models import CampaignStats, Role
from app.services.stats import breakdown
from app.services.stats import counters as stats
from tests import factories
from tests.support import stats_scenario
from tests.support.forms import csrf_token


@pytest.fixture
def scenario(db_session):
    built = stats_scenario.build(db_session)
    db_session.commit()
    return built


def _tiles(page: str) -> dict[str, int]:
    """The funnel's stat tiles: label -> number as shown."""
    found = re.findall(r'<span class="n">([\d,]+)</span><span class="l">([^<]+)</span>', page)
    return {label: int(number.replace(",", "")) for number, label in found}


def test_report_page_shows_the_figures_recomputed_from_raw_events(
    client, login_as, db_session, scenario
):
    login_as(Role.VIEWER)
    cid = scenario.campaign.id
    response = client.get(f"/stats/campaigns/{cid}")
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    c = stats.recompute_stats(db_session, cid).campaign
    assert _tiles(page) == {
        "Targeted": c["targeted"],
        "Sent": c["sent"],
        "Delivered": c["delivered"],
        "Bounced": c["bounced"],
        "Opened": c["opens_human_unique"],
        "Clicked a link": c["clicks_human_unique"],
        "Clicked the petition": c["petition_clicks_human_unique"],
        "Signed": c["signed"],
        "Unsubscribed": c["unsubscribes"],
        "Spam reports": c["spam_reports"],
    }
    # The all-opens figure (machine opens included) and its rate over delivered.
    rate = f"{100 * c['opens_unique'] / c['delivered']:.1f}%"
    assert f"{c['opens_unique']} ({rate}) with automatic opens" in page
    assert f"out of the {c['delivered']} emails delivered" in page
    # Links: petition marked; the breakdown per local matches the recomputation.
    petition = '/petition/free-amar</span> <span class="badge alert">Petition'
    assert petition in page
    expected = breakdown.recompute_breakdown(db_session, cid, signatures=True)[
        ("local", "Local 101")
    ]
    row = re.search(r"<td class=\"primary\">Local 101</td>(.*?)</tr>", page, re.S)
    assert row is not None
    cells = re.findall(r'data-label="[^"]+">(?:<span class="v">)?([\d,]+)', row[1])
    numbers = [int(n.replace(",", "")) for n in cells]
    assert numbers == [
        expected["targeted"],
        expected["delivered"],
        expected["opens_human_unique"],
        expected["clicks_human_unique"],
        expected["petition_clicks_human_unique"],
        expected["signed"],
        expected["unsubscribes"],
    ]
    # Both timeline charts, each with its accessible name and its numbers table.
    assert page.count('role="img"') == 4  # hourly and daily, wide and narrow
    assert "First 72 hours, per hour" in page
    assert "After that, per day" in page
    assert "Show the numbers" in page


def test_live_endpoint_returns_the_same_figures_and_parts(client, login_as, db_session, scenario):
    login_as(Role.VIEWER)
    cid = scenario.campaign.id
    response = client.get(f"/stats/campaigns/{cid}/live")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["funnel"]["counts"] == stats.recompute_stats(db_session, cid).campaign
    assert set(body["html"]) == {"status", "funnel", "timeline", "links", "breakdown"}
    assert "Clicked the petition" in body["html"]["funnel"]
    assert body["poll_seconds"] == 0  # sent weeks ago: the page stops asking


def test_report_polls_while_sending(client, login_as, db_session):
    login_as(Role.VIEWER)
    c = factories.campaign(db_session, status="sending", started_at=stats_scenario.STARTED)
    db_session.add(CampaignStats(campaign_id=c.id, targeted=10, sent=4))
    db_session.commit()
    page = client.get(f"/stats/campaigns/{c.id}").get_data(as_text=True)
    assert 'data-poll="5"' in page
    assert "4 of 10 handled" in page
    assert client.get(f"/stats/campaigns/{c.id}/live").get_json()["poll_seconds"] == 5


def test_draft_and_unknown_campaigns(client, login_as, db_session):
    login_as(Role.VIEWER)
    draft = factories.campaign(db_session)
    db_session.commit()
    page = client.get(f"/stats/campaigns/{draft.id}").get_data(as_text=True)
    assert "hasn't been sent yet" in page
    assert client.get("/stats/campaigns/999999").status_code == 404
    assert client.get("/stats/campaigns/999999/live").status_code == 404
    assert client.get("/stats/campaigns/999999/outcomes.csv").status_code == 404
    assert client.get(f"/stats/campaigns/{draft.id}/problems?kind=nope").status_code == 404
    assert client.get(f"/stats/campaigns/{draft.id}/problems?page=0").status_code == 404


def test_problems_page_lists_addresses_and_reasons(client, login_as, scenario):
    login_as(Role.VIEWER)
    cid = scenario.campaign.id
    page = html.unescape(client.get(f"/stats/campaigns/{cid}/problems").get_data(as_text=True))
    assert "4 addresses" in page
    assert "550 5.1.1 mailbox unavailable" in page
    assert "user unknown" in page
    bounced = client.get(f"/stats/campaigns/{cid}/problems?kind=bounced").get_data(as_text=True)
    assert "1 address" in bounced
    assert "mailbox unavailable" not in bounced


def test_csv_download_is_streamed_and_formula_safe(client, login_as, db_session):
    login_as(Role.VIEWER)
    c = factories.campaign(db_session, status="sent")
    m = factories.member(db_session, first_name="=1+2", last_name="@SUM(A1)")
    factories.delivery(db_session, c, m, status="sent")
    db_session.commit()
    response = client.get(f"/stats/campaigns/{c.id}/outcomes.csv")
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0]["first_name"] == "'=1+2"
    assert rows[0]["last_name"] == "'@SUM(A1)"


def test_the_list_export_and_the_outcome_csv_neutralise_a_member_alike(
    client, login_as, db_session
):
    """One rule (app.infra.spreadsheets) for every download an organizer opens in a sheet."""
    login_as(Role.ORGANIZER)
    members = factories.mailing_list(db_session)
    hostile = ["=1+2", "-2+3", "@SUM(A1)", "\tTab", "+1-800", "Ana - B"]
    people = [
        factories.member(db_session, first_name=name, last_name=name, local=name)
        for name in hostile
    ]
    c = factories.campaign(db_session, lists=[members], status="sent")
    for m in people:
        factories.subscribe(db_session, m, members)
        factories.delivery(db_session, c, m, local=m.local, status="sent")
    db_session.commit()
    exported = client.get(f"/lists/{members.id}/export.csv").get_data(as_text=True)
    outcomes = client.get(f"/stats/campaigns/{c.id}/outcomes.csv").get_data(as_text=True)
    in_export = {r["email"]: r for r in csv.DictReader(io.StringIO(exported))}
    in_outcomes = {r["email"]: r for r in csv.DictReader(io.StringIO(outcomes))}
    for m, name in zip(people, hostile, strict=True):
        shown = name if name == "Ana - B" else "'" + name
        for column in ("first_name", "last_name", "local"):
            assert in_export[m.email][column] == in_outcomes[m.email][column] == shown


def test_stats_section_lists_reported_campaigns(client, login_as, db_session, scenario):
    login_as(Role.VIEWER)
    factories.campaign(db_session, name="Still a draft")
    db_session.commit()
    page = client.get("/stats").get_data(as_text=True)
    assert f'href="/stats/campaigns/{scenario.campaign.id}"' in page
    assert scenario.campaign.name in page
    assert "Still a draft" not in page
    assert client.get("/stats?page=x").status_code == 404


def test_stats_section_empty_state(client, login_as):
    login_as(Role.VIEWER)
    assert "No campaign has gone out yet" in client.get("/stats").get_data(as_text=True)


def test_dashboard_shows_recent_campaigns_health_and_growth(client, login_as, scenario):
    login_as(Role.VIEWER)
    page = html.unescape(client.get("/dashboard").get_data(as_text=True))
    assert "Recent campaigns" in page
    assert scenario.campaign.name in page
    assert "Deliverability, last 30 days" in page
    assert "List growth" in page
    assert "Gmail and Yahoo" in page
    # The navigation tiles stay, by role: a viewer has no Lists or Campaigns tile.
    assert 'class="card tile" href="/stats"' in page
    assert 'class="card tile" href="/lists"' not in page


def test_dashboard_tiles_for_organizers(client, login_as):
    login_as(Role.ORGANIZER)
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'class="card tile" href="/lists"' in page
    assert 'class="card tile" href="/campaigns"' in page


def test_member_activity_page_is_for_organizers(client, login_as, scenario):
    member_id = scenario.deliveries[0].member_id
    login_as(Role.ORGANIZER)
    page = client.get(f"/stats/members/{member_id}").get_data(as_text=True)
    assert "Campaigns and activity" in page
    assert scenario.campaign.name in page
    assert client.get("/stats/members/999999").status_code == 404


def test_viewers_cannot_open_a_member_page(client, login_as, scenario):
    login_as(Role.VIEWER)
    assert client.get(f"/stats/members/{scenario.deliveries[0].member_id}").status_code == 403


STATS_PAGES = [
    "/stats/campaigns/{cid}",
    "/stats/campaigns/{cid}/live",
    "/stats/campaigns/{cid}/problems",
    "/stats/campaigns/{cid}/outcomes.csv",
]


@pytest.mark.parametrize("path", STATS_PAGES)
@pytest.mark.parametrize("role", list(Role))
def test_every_role_reads_the_stats(client, login_as, scenario, path, role):
    login_as(role)
    assert client.get(path.format(cid=scenario.campaign.id)).status_code == 200


@pytest.mark.parametrize("path", [*STATS_PAGES, "/stats/members/1"])
def test_anonymous_visitors_are_sent_to_login(client, scenario, path):
    response = client.get(path.format(cid=scenario.campaign.id))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


# Write routes a viewer may use: logging in and out, their own API tokens, their own password
# and sessions. The public endpoints (tracking, unsubscribe, webhooks, public sign-up forms)
# are authorised by a signed token or are open to the public by design, not by a role.
VIEWER_WRITES = {
    "auth.login",
    "auth.logout",
    "settings.tokens_page",
    "settings.revoke_token",
    "settings.account_page",
    "settings.logout_everywhere",
}
PUBLIC_BLUEPRINTS = {"tracking", "unsubscribe", "webhooks", "subscribe", "actions_public"}
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _write_routes(app):
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) & WRITE_METHODS
        if not methods or rule.endpoint in VIEWER_WRITES or rule.rule.startswith("/api/"):
            continue
        if rule.endpoint.split(".")[0] in PUBLIC_BLUEPRINTS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "1", rule.rule)
        for method in sorted(methods):
            yield method, path


def test_a_viewer_reaches_no_write_route(app, client, login_as):
    login_as(Role.VIEWER)
    token = csrf_token(client, "/settings/tokens")
    routes = list(_write_routes(app))
    assert ("POST", "/settings/users") in routes  # the walk finds write routes at all
    for method, path in routes:
        response = client.open(path, method=method, data={"csrf_token": token})
        assert response.status_code == 403, (method, path, response.status_code)
