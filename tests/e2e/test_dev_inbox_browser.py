"""The development inbox in a browser, on a phone: the list, a message, its links."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.emails.content import Identity, Recipient
from app.emails.render import build_skeleton
from app.emails.samples import SAMPLES
from app.extensions import db
from app.services.organization import users
from app.services.transports import OutgoingBatch, OutgoingRecipient
from app.services.transports.outbox import OutboxTransport
from tests.e2e.conftest import SCREENSHOTS, screenshot

pytestmark = pytest.mark.e2e


def test_an_organizer_reads_a_message_in_the_inbox(app, page, live_server, test_environ):
    directory = Path(test_environ["OUTBOX_DIR"])
    for old in directory.glob("*.eml"):
        old.unlink()
    skeleton = build_skeleton(
        SAMPLES[("day_of_action", "en")],
        Identity("Prairie Public Workers' Union", "PO Box 1245\nEdmonton AB", "1-800-555-0199"),
        tracking=False,
        base_url="https://t.example.org",
        inert_url="https://t.example.org/inert",
    )
    OutboxTransport(str(directory)).send_batch(
        OutgoingBatch(
            from_email="alerts@prairieworkers.example",
            from_name="Prairie Public Workers' Union",
            reply_to="",
            skeleton=skeleton,
            recipients=[OutgoingRecipient("ana@example.org", Recipient(first_name="Ana"))],
        )
    )
    with app.app_context():
        users.create_user(
            db.session, email="dev@example.org", password="solidarity-forever", role="organizer"
        )
        db.session.commit()

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill("dev@example.org")
    page.get_by_label("Password").fill("solidarity-forever")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{live_server.url}/dev/outbox")
    screenshot(page, "dev-inbox-phone")
    page.get_by_role("link", name="Dec. 17: rally to bring Nadia Rahimi home").click()
    frame = page.frame_locator("iframe.mail-frame")
    petition = frame.locator("a[href^='https://prairieworkers.example/petitions']").first
    petition.wait_for()
    # Links open in a new tab (the sandbox allows pop-ups, nothing else).
    assert frame.locator("base").get_attribute("target") == "_blank"
    assert "ana@example.org" in page.locator("#headers").inner_text()
    screenshot(page, "dev-inbox-message-phone")
    page.locator("#headers").screenshot(path=str(SCREENSHOTS / "dev-inbox-headers-phone.png"))
