"""An organizer schedules the Dec. 17 alert, watches it send, pauses, resumes, sees it finish.

A real Celery worker (a subprocess) sends to the fake SendGrid, which takes half a second a
request so there is time to pause in the middle; batches of ten make the progress visible.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Campaign, Delivery, SendBatch
from app.services import sending
from app.services.organization import users
from tests.e2e.conftest import docs_screenshot, screenshot
from tests.support.sending import (
    add_members,
    clear_sending_keys,
    make_campaign,
    make_list,
    setup_org,
)
from tests.support.workers import CeleryProcess, purge_queues, worker_environ
from tests.workers.test_sending_chaos import SlowFakeSendGrid

pytestmark = pytest.mark.e2e

MEMBERS = 120
PASSWORD = "solidarity-forever"


def _next_december_17() -> date:
    today = datetime.now(UTC).date()
    this_year = date(today.year, 12, 17)
    return this_year if this_year > today else date(today.year + 1, 12, 17)


@pytest.fixture
def fake():
    server = SlowFakeSendGrid(keep_bodies=False)
    server.delay = 0.5
    with server:
        yield server


@pytest.fixture
def worker(test_environ, fake, tmp_path):
    purge_queues(test_environ["REDIS_URL"])
    clear_sending_keys(test_environ["REDIS_URL"])
    env = worker_environ(
        test_environ,
        MAIL_TRANSPORT="sendgrid",
        SENDGRID_API_KEY="SG.browser",
        SENDGRID_API_HOST=fake.url,
        PUBLIC_BASE_URL="https://rally.example.org",
        SEND_BATCH_SIZE="10",
    )
    process = CeleryProcess("worker", env, tmp_path, concurrency=1).start()
    process.wait_ready(test_environ["REDIS_URL"])
    yield process
    process.stop()
    purge_queues(test_environ["REDIS_URL"])


@pytest.fixture
def alert(app, live_server):
    with app.app_context():
        setup_org(db.session)
        lst = make_list(db.session, "Prairie members")
        add_members(db.session, MEMBERS, lst.id)
        campaign = make_campaign(db.session, [lst], name="Day of action, Dec. 17")
        users.create_user(
            db.session, email="organizer@example.org", password=PASSWORD, role="organizer"
        )
        db.session.commit()
        return campaign.id


def _count(app, campaign_id: int, status: str) -> int:
    with app.app_context():
        count = db.session.scalar(
            sa.select(sa.func.count()).where(
                Delivery.campaign_id == campaign_id, Delivery.status == status
            )
        )
        db.session.remove()
    return int(count or 0)


def _in_flight(app, campaign_id: int) -> int:
    """Batches claimed and not yet recorded (their request may be with SendGrid)."""
    with app.app_context():
        count = db.session.scalar(
            sa.select(sa.func.count()).where(
                SendBatch.campaign_id == campaign_id, SendBatch.status == "sending"
            )
        )
        db.session.remove()
    return int(count or 0)


def test_schedule_watch_pause_resume_finish(app, page, live_server, alert, worker, fake):
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill("organizer@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/dashboard")

    page.goto(f"{live_server.url}/campaigns/{alert}/send")
    panel = page.locator("#send-panel")
    assert f"Who will receive it: {MEMBERS} members" in panel.inner_text()

    day = _next_december_17()
    page.get_by_label("Date").fill(day.isoformat())
    page.get_by_label("Time").fill("09:00")
    page.get_by_role("button", name="Schedule").click()
    expected = f"Scheduled for {day:%A}, December 17, {day.year} at 9:00 AM MST"
    panel.get_by_text(expected).wait_for()
    screenshot(page, "send-panel-scheduled")

    # Dec. 17, 9:00 comes: the beat tick (called here with that time) starts the campaign.
    with app.app_context():
        send_at = db.session.get(Campaign, alert).send_at
        assert sending.tick(db.session, send_at + timedelta(seconds=1)) == [alert]
        db.session.commit()
        db.session.remove()

    page.reload()
    page.locator(".badge", has_text="Sending").wait_for()
    page.wait_for_function(
        "() => Number(document.querySelector('#send-panel [data-field=sent]')"
        ".textContent.replace(/\\D/g, '')) >= 20",
        timeout=30_000,
    )
    screenshot(page, "send-panel-sending")
    docs_screenshot(page, "send-panel-sending", height=620)

    page.get_by_role("button", name="Pause").click()
    page.locator(".badge", has_text="Paused").wait_for()
    assert "Paused by organizer@example.org." in panel.inner_text()
    # The batch already with SendGrid when the pause came finishes; then nothing leaves.
    deadline = time.monotonic() + 10
    while _in_flight(app, alert) and time.monotonic() < deadline:
        time.sleep(0.1)
    paused_at = _count(app, alert, "sent")
    time.sleep(1.5)
    assert _count(app, alert, "sent") == paused_at
    assert paused_at < MEMBERS
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "send-panel-paused-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    page.get_by_role("button", name="Resume sending").click()
    page.locator(".badge", has_text="Sending").wait_for()
    page.locator(".badge", has_text="Sent").wait_for(timeout=60_000)
    text = panel.inner_text()
    assert f"{MEMBERS} sent of {MEMBERS}" in text
    assert "100% done" in text
    screenshot(page, "send-panel-sent")

    counts = fake.count_by_email()
    assert len(counts) == MEMBERS
    assert set(counts.values()) == {1}
