"""A member opens an alert in Chromium, signs the petition through its button, and unsubscribes.

Until the email renderer is on main, the alert's HTML is built here from the tracking URLs
(app.services.tracking.open_url / click_url / unsubscribe_url), as the sender will.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import CampaignStats, Delivery, Link, OrgSettings, Subscription
from app.services import tracking
from app.services.tracking_runtime import runtime
from tests import factories
from tests.e2e.conftest import screenshot
from tests.support.tracking import flush_all, reset_tracking

pytestmark = pytest.mark.e2e

DESKTOP_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
PETITION_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Petition</title></head>
<body><h1>Free Amar Fayaz</h1><p>Add your name: tell the High Commission to act now.</p>
<form><label>Name <input name="name"></label><button>Sign</button></form></body></html>"""


def alert_html(base: str, token: str, petition: Link, info: Link) -> str:
    """A small but realistic action alert, linked the way the sender links it."""
    sign = html.escape(tracking.click_url(base, petition.id, token))
    more = html.escape(tracking.click_url(base, info.id, token))
    unsubscribe = html.escape(tracking.unsubscribe_url(base, token))
    pixel = html.escape(tracking.open_url(base, token))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Day of action</title></head>
<body style="font-family: sans-serif; max-width: 600px; margin: auto; padding: 16px">
<p style="color:#b3261e;font-weight:700">ACTION ALERT</p>
<h1>Day of action, Dec. 17: rally for Amar Fayaz's release</h1>
<p>Sisters, brothers and friends: our member has been detained for eight months. Stand with
him and his family. Sign the petition before the rally.</p>
<p><a href="{sign}" style="background:#b3261e;color:#fff;padding:12px 18px;border-radius:8px;
text-decoration:none;display:inline-block">Sign the petition</a></p>
<p><a href="{more}">Read about the rally</a></p>
<hr><p style="font-size:12px;color:#555">Prairie Workers Union, 10 Main St., Calgary AB ·
<a href="{unsubscribe}">Unsubscribe</a></p>
<img src="{pixel}" width="1" height="1" alt="">
</body></html>"""


class _Site:
    """A second local web server: the member's webmail (showing the alert) and the petition."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {"/petition": PETITION_PAGE.encode()}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.pages.get(self.path.split("?")[0])
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"not found")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[_Site]:
    with _Site() as s:
        yield s


def test_member_opens_signs_and_unsubscribes_in_one_click(app, live_server, browser, site):
    reset_tracking(app)
    with app.app_context():
        session = db.session
        session.add(
            OrgSettings(id=1, organization="Prairie Workers Union", contact="office@pwu.example")
        )
        lst = factories.mailing_list(session, name="Action alerts")
        member = factories.member(session, first_name="Rosa")
        factories.subscribe(session, member, lst)
        campaign = factories.campaign(session, lists=[lst], status="sent")
        petition = Link(campaign_id=campaign.id, url=f"{site.url}/petition", is_petition=True)
        info = Link(campaign_id=campaign.id, url=f"{site.url}/rally", position=1)
        session.add_all([petition, info])
        from datetime import UTC, datetime, timedelta

        delivery = factories.delivery(
            session, campaign, member, status="sent", sent_at=datetime.now(UTC) - timedelta(hours=2)
        )
        session.commit()
        token = runtime(app).signer.sign(campaign.id, delivery.id)
        site.pages["/mail"] = alert_html(live_server.url, token, petition, info).encode()
        ids = (campaign.id, delivery.id, member.id, lst.id)
        session.remove()

    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=DESKTOP_CHROME)
    page = context.new_page()
    try:
        page.goto(f"{site.url}/mail")
        page.wait_for_load_state("networkidle")  # the pixel has loaded
        page.get_by_role("link", name="Sign the petition").click()
        page.wait_for_url(f"{site.url}/petition")
        assert page.get_by_role("heading", name="Free Amar Fayaz").is_visible()

        page.goto(f"{site.url}/mail")
        page.get_by_role("link", name="Unsubscribe").click()
        page.wait_for_url(f"{live_server.url}/u/**")
        assert page.get_by_role("heading", name="Stop these emails?").is_visible()
        screenshot(page, "unsubscribe-page-phone")
        page.get_by_role("button", name="Unsubscribe", exact=True).click()  # the one click
        page.get_by_role("heading", name="You're unsubscribed").wait_for()
        assert "Action alerts" in page.content()
        screenshot(page, "unsubscribed-phone")
    finally:
        context.close()

    assert flush_all(app) >= 2  # the open and the petition click (the page may reload the pixel)
    campaign_id, delivery_id, member_id, list_id = ids
    with app.app_context():
        session = db.session
        row = session.get(Delivery, delivery_id)
        assert row.human_opened_at is not None
        assert row.human_petition_clicked_at is not None
        assert row.unsubscribed_at is not None
        subscription = session.get(Subscription, (member_id, list_id))
        assert (subscription.status, subscription.unsubscribe_source) == ("unsubscribed", "link")
        stats = session.get(CampaignStats, campaign_id)
        assert stats.petition_clicks_human_unique == 1
        assert stats.opens_human_unique == 1
        assert stats.unsubscribes == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(Link)) == 2
        session.remove()
    reset_tracking(app)
