"""A member opens an alert in Chromium, signs the petition through its button, and unsubscribes.

The alert is the demo's petition alert, rendered by the real renderer with tracking on
(`campaigns.skeleton_for(..., tracking=True)` personalized with the member's token and
unsubscribe URLs, as the sender will do), and shown by a stand-in webmail page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.extensions import db
from app.infra.tokens import Scope
from app.models import CampaignStats, Delivery, Subscription
from app.services.tracking import hits as tracking
from app.services.tracking.runtime import runtime
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


def _rendered_alert(app, live_server, site) -> tuple[tuple[int, int, int, int], str]:
    """The demo petition alert, its petition pointing at the local petition page, rendered
    for one member with tracking on; returns the ids and the HTML."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from app import demo
    from app.emails.content import Recipient
    from app.services.campaigns import authoring as campaigns

    petition_url = f"{site.url}/petition"
    with app.app_context():
        session = db.session
        demo.load(session, admin_email="admin@example.org", admin_password="demo-password-123")
        lst = factories.mailing_list(session, name="Action alerts")
        member = factories.member(session, first_name="Rosa")
        factories.subscribe(session, member, lst)
        alert = demo.demo_campaigns()[2]
        variants = {
            lang: replace(v, fields={**v.fields, "cta_url": petition_url})
            for lang, v in alert.variants.items()
        }
        data = replace(
            alert, variants=variants, list_ids=[lst.id], petition_flags={petition_url: True}
        )
        campaign = campaigns.create_campaign(session, data, actor_id=None)
        campaign.status = "sent"
        delivery = factories.delivery(
            session, campaign, member, status="sent", sent_at=datetime.now(UTC) - timedelta(hours=2)
        )
        session.commit()
        base = live_server.url
        tokens = runtime(app).signer.sign_all(campaign.id, delivery.id)
        skeleton = campaigns.skeleton_for(session, campaign, "en", tracking=True)
        email = skeleton.personalize(
            Recipient(
                first_name="Rosa",
                email=member.email,
                open_token=tokens[Scope.OPEN],
                click_token=tokens[Scope.CLICK],
                unsubscribe_url=tracking.unsubscribe_url(base, tokens[Scope.UNSUBSCRIBE]),
                preferences_url=tracking.preferences_url(base, tokens[Scope.UNSUBSCRIBE]),
            )
        )
        ids = (campaign.id, delivery.id, member.id, lst.id)
        session.remove()
    return ids, email.html


def test_member_opens_signs_and_unsubscribes_in_one_click(
    app, live_server, browser, site, monkeypatch
):
    reset_tracking(app)
    monkeypatch.setitem(app.config, "PUBLIC_BASE_URL", live_server.url)
    ids, html_body = _rendered_alert(app, live_server, site)
    assert f"{live_server.url}/t/o/" in html_body  # the pixel
    site.pages["/mail"] = html_body.encode()

    context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=DESKTOP_CHROME)
    page = context.new_page()
    try:
        page.goto(f"{site.url}/mail")
        page.wait_for_load_state("networkidle")  # the pixel has loaded
        with context.expect_page() as opened:  # the button opens a new tab, as in webmail
            page.get_by_role("link", name="Sign the petition").first.click()
        petition = opened.value
        petition.wait_for_url(f"{site.url}/petition")
        assert petition.get_by_role("heading", name="Free Amar Fayaz").is_visible()
        petition.close()

        page.goto(f"{site.url}/mail")
        page.get_by_role("link", name="Unsubscribe", exact=True).click()
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
        session.remove()
    reset_tracking(app)
