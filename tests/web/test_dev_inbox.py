"""The development inbox: lists and opens outbox messages; 404 outside development."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app
from app.emails.content import Identity, Recipient
from app.emails.render import build_skeleton
from app.emails.samples import SAMPLES
from app.extensions import db, limiter
from app.models import Role
from app.services.transports import OutgoingBatch, OutgoingRecipient
from app.services.transports.outbox import OutboxTransport
from config.settings import ProductionConfig


@pytest.fixture
def outbox(test_environ) -> Path:
    directory = Path(test_environ["OUTBOX_DIR"])
    for old in directory.glob("*.eml"):
        old.unlink()
    skeleton = build_skeleton(
        SAMPLES[("action_alert", "en")],
        Identity("Local 42", "1 Main St, Edmonton AB", "info@local42.example.org"),
        tracking=False,
        base_url="https://t.example.org",
        inert_url="https://t.example.org/inert",
    )
    batch = OutgoingBatch(
        from_email="alerts@local42.example.org",
        from_name="Local 42",
        reply_to="",
        skeleton=skeleton,
        subject_prefix="[TEST] ",
        recipients=[OutgoingRecipient("ana@example.org", Recipient(first_name="Ana"))],
    )
    OutboxTransport(str(directory)).send_batch(batch)
    return directory


def test_the_inbox_lists_and_opens_messages(client, login_as, outbox):
    login_as(Role.ORGANIZER)
    listing = client.get("/dev/outbox").get_data(as_text=True)
    assert "[TEST] Ana, add your name for Nadia" in listing
    [eml] = outbox.glob("*.eml")

    page = client.get(f"/dev/outbox/{eml.name}").get_data(as_text=True)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page
    assert "ana@example.org" in page  # headers
    assert "Ana," in page  # the text part

    html = client.get(f"/dev/outbox/{eml.name}/html")
    assert html.status_code == 200
    assert html.headers["Content-Security-Policy"].startswith("sandbox allow-popups")
    assert "script-src" not in html.headers["Content-Security-Policy"]
    body = html.get_data(as_text=True)
    assert '<head><base target="_blank">' in body
    assert "https://prairieworkers.example/petitions/free-nadia" in body  # links work


def test_the_inbox_needs_an_organizer(client, login_as, outbox):
    assert client.get("/dev/outbox").status_code == 302
    login_as(Role.VIEWER)
    assert client.get("/dev/outbox").status_code == 403


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "../conftest.py",
        "%2Fetc%2Fpasswd",
        ".hidden.eml",
        "nothere.eml",
        "x.eml%00.txt",
    ],
)
def test_no_other_file_can_be_read(client, login_as, outbox, name):
    login_as(Role.ORGANIZER)
    assert client.get(f"/dev/outbox/{name}").status_code == 404
    assert client.get(f"/dev/outbox/{name}/html").status_code == 404


def test_an_empty_inbox_says_how_to_fill_it(client, login_as, test_environ):
    for old in Path(test_environ["OUTBOX_DIR"]).glob("*.eml"):
        old.unlink()
    login_as(Role.ORGANIZER)
    assert "No messages yet" in client.get("/dev/outbox").get_data(as_text=True)


def test_the_inbox_does_not_exist_in_production(test_environ, outbox):
    # create_app rebinds the one global limiter; put the session app's back afterwards.
    saved = dict(limiter.__dict__)
    production = create_app(ProductionConfig(environ=dict(test_environ)))
    try:
        client = production.test_client()
        assert client.get("/dev/outbox").status_code == 404
        [eml] = outbox.glob("*.eml")
        assert client.get(f"/dev/outbox/{eml.name}/html").status_code == 404
    finally:
        with production.app_context():
            db.engine.dispose()
        limiter.__dict__.clear()
        limiter.__dict__.update(saved)
