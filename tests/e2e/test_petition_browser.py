"""The hosted petition in Chromium: the Done-when journey of issue 14.

A member receives the petition alert (the outbox transport writes it; the development inbox
shows it), clicks its button, lands on the hosted petition already greeted by name, signs
with one press and shares; a second person signs through the share link. The campaign
report then shows 1 signed for the alert, and the petition's report both signatures, the
second credited to the first signer's share.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app import demo
from app.emails.content import Recipient
from app.extensions import db
from app.infra.tokens import Scope
from app.models import ActionStatus
from app.services import actions
from app.services.actions.petitions import PetitionData
from app.services.campaigns import authoring as campaigns
from app.services.tracking import hits as tracking
from app.services.tracking.runtime import runtime
from app.services.transports import OutgoingBatch, OutgoingRecipient
from app.services.transports.outbox import OutboxTransport
from tests import factories
from tests.e2e.conftest import docs_screenshot, screenshot
from tests.support.servers import free_port
from tests.support.tracking import reset_tracking

pytestmark = pytest.mark.e2e

ADMIN, PASSWORD = "admin@example.org", "demo-password-123"


class _Server:
    """The app on a port chosen first, so PUBLIC_BASE_URL names this very server (a link to
    /a/<slug> is then a hosted action of this instance)."""

    def __init__(self, other_app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = other_app(PUBLIC_BASE_URL=self.url)
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(other_app, committed_db) -> Iterator[_Server]:
    running = _Server(other_app)
    reset_tracking(running.app)
    yield running
    reset_tracking(running.app)
    running.stop()


def _alert_in_outbox(server: _Server, outbox: Path) -> dict[str, int]:
    """A petition, an alert whose button links to it, sent to one member through the outbox."""
    app = server.app
    with app.app_context():
        session = db.session
        demo.load(session, admin_email=ADMIN, admin_password=PASSWORD)
        lst = factories.mailing_list(session, name="Action alerts")
        member = factories.member(
            session, email="amelie@example.org", first_name="Amélie", last_name="Roy"
        )
        factories.subscribe(session, member, lst)
        petition = actions.create_petition(
            session,
            PetitionData(
                title="Free Amar Fayaz",
                slug="free-amar",
                goal=100,
                versions={
                    "en": {
                        "headline": "Bring Amar home",
                        "target": "His Excellency, the High Commissioner",
                        "petition_text": "We call on you to secure Amar Fayaz's release.",
                    }
                },
            ),
            owner_id=None,
        )
        actions.transition(session, petition, ActionStatus.OPEN)
        hosted = f"{server.url}/a/{petition.slug}"
        alert = demo.demo_campaigns()[2]
        variants = {
            lang: replace(v, fields={**v.fields, "cta_url": hosted})
            for lang, v in alert.variants.items()
        }
        campaign = campaigns.create_campaign(
            session, replace(alert, variants=variants, list_ids=[lst.id]), actor_id=None
        )
        sent_at = datetime.now(UTC) - timedelta(minutes=5)
        campaign.status, campaign.started_at = "sent", sent_at
        delivery = factories.delivery(
            session, campaign, member, status="sent", sent_at=sent_at, local="Local 30"
        )
        session.commit()
        tokens = runtime(app).signer.sign_all(campaign.id, delivery.id)
        skeleton = campaigns.skeleton_for(session, campaign, "en", tracking=True)
        recipient = Recipient(
            first_name="Amélie",
            email=member.email,
            open_token=tokens[Scope.OPEN],
            click_token=tokens[Scope.CLICK],
            unsubscribe_url=tracking.unsubscribe_url(server.url, tokens[Scope.UNSUBSCRIBE]),
            preferences_url=tracking.preferences_url(server.url, tokens[Scope.UNSUBSCRIBE]),
        )
        OutboxTransport(str(outbox)).send_batch(
            OutgoingBatch(
                from_email="alerts@prairieworkers.example",
                from_name="Prairie Workers",
                reply_to="",
                skeleton=skeleton,
                recipients=[OutgoingRecipient(member.email, recipient, delivery.id)],
            )
        )
        ids = {"campaign": campaign.id, "petition": petition.id}
        subject = campaign.variants[0].subject
        session.remove()
    return {**ids, "subject": subject}  # type: ignore[dict-item]


def test_alert_to_signature_to_share_to_reports(browser, server, test_environ):
    outbox = Path(test_environ["OUTBOX_DIR"])
    for old in outbox.glob("*.eml"):
        old.unlink()
    ids = _alert_in_outbox(server, outbox)

    member = browser.new_context(viewport={"width": 390, "height": 844})
    page = member.new_page()
    page.goto(f"{server.url}/login")
    page.get_by_label("Email").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{server.url}/dev/outbox")
    page.get_by_role("link", name=re.compile("Amélie, one minute")).first.click()
    frame = page.frame_locator("iframe.mail-frame")
    button = frame.locator(f"a[href*='/t/c/']:has-text('{_button_label()}')").first
    with page.expect_popup() as opened:
        button.click()
    petition = opened.value
    petition.wait_for_load_state()
    landed = opened.value.evaluate("() => performance.getEntriesByType('navigation')[0].name")
    assert f"{server.url}/a/free-amar?r=" in landed
    assert "amelie" not in landed.lower()
    petition.get_by_text("Sign as Amélie R.").wait_for()
    # The reference stays in the form, not in the address bar a member might copy.
    petition.wait_for_function("() => !location.search.includes('r=')")
    assert petition.locator("input[name=r]").count() == 1
    screenshot(petition, "petition-prefilled-phone")
    petition.get_by_role("button", name="Sign").click()  # one press
    petition.get_by_role("heading", name="Thank you for signing").wait_for()
    assert petition.locator("[data-count]").inner_text() == "1"
    share_url = petition.locator("#share-url").input_value()
    assert "ref=" in share_url
    assert petition.locator("#share-whatsapp").get_attribute("href").startswith("https://wa.me/")
    petition.get_by_role("button", name="Copy link").click()
    petition.get_by_role("button", name="Link copied").wait_for()
    screenshot(petition, "petition-thanks-phone")

    friend = browser.new_context(viewport={"width": 390, "height": 844})
    other = friend.new_page()
    other.goto(share_url)
    assert other.get_by_text("Sign as").count() == 0
    other.get_by_label("First name").fill("Bea")
    other.get_by_label("Email").fill("bea@example.org")
    other.get_by_role("button", name="Sign").click()
    other.get_by_role("heading", name="Thank you for signing").wait_for()
    # The page and the signature opened no session: the browser holds no cookie of ours.
    assert friend.cookies() == []
    friend.close()

    page.goto(f"{server.url}/stats/campaigns/{ids['campaign']}")
    signed = page.locator("#funnel-signed")
    assert signed.locator(".n").inner_text() == "1"
    assert "1 more through their shares" in signed.inner_text()
    screenshot(page, "campaign-report-signed")

    page.goto(f"{server.url}/actions/{ids['petition']}")
    assert page.locator("#total-signatures").inner_text() == "2"
    sources = page.locator("#by-source").inner_text()
    assert "Alert:" in sources
    assert "Shares (second-order" in sources
    referrers = page.locator("#referrers").inner_text()
    assert "Amélie R" in referrers
    assert "1" in referrers
    screenshot(page, "petition-report")
    docs_screenshot(page, "petition-report", height=1100)
    member.close()


def _button_label() -> str:
    alert = demo.demo_campaigns()[2]
    return str(alert.variants["en"].fields.get("cta_label", "Sign"))
