"""Test sends through a real Celery worker on the transactional queue, into the outbox."""

from __future__ import annotations

import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker

from app.extensions import db
from app.models import Delivery, Event
from app.services.campaigns import authoring as campaigns
from app.services.campaigns import previews
from tests.support.campaigns import sample_input, setup_org


@pytest.fixture
def worker(app):
    import workers.tasks  # noqa: F401 - registers the tasks with the app's Celery

    celery = app.extensions["celery"]
    with start_worker(
        celery, pool="solo", perform_ping_check=False, shutdown_timeout=10, queues=["transactional"]
    ) as running:
        yield running


def _wait_for(directory: Path, count: int, timeout: float = 20.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(directory.glob("test-*.eml"))
        if len(files) >= count:
            return files
        time.sleep(0.1)
    raise AssertionError(f"only {len(list(directory.glob('test-*.eml')))} of {count} messages")


def test_a_test_send_reaches_the_outbox_untracked(app, committed_db, worker, test_environ):
    outbox = Path(test_environ["OUTBOX_DIR"])
    before = set(outbox.glob("*.eml"))
    with app.app_context():
        setup_org(db.session)
        campaign = campaigns.create_campaign(
            db.session, sample_input("action_alert", languages=("en", "fr")), actor_id=None
        )
        previews.request_test_send(
            db.session, campaign, ["ana@example.org", "bo@example.org"], language="fr"
        )
        db.session.commit()  # the job leaves now, for the worker

    files = [f for f in _wait_for(outbox, len(before) + 2) if f not in before]
    messages = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    assert sorted(m["To"] for m in messages) == ["ana@example.org", "bo@example.org"]
    for message in messages:
        assert message["Subject"].startswith("[TEST] ")
        assert "signez pour Nadia" in message["Subject"]
        html = message.get_body(("html",)).get_content()
        assert "/t/c/" not in html
        assert "/t/o/" not in html
        assert "/mail/inert" in html
    with app.app_context():
        for model in (Delivery, Event):
            assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 0
    for f in files:
        f.unlink()
