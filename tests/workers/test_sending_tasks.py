"""Beat and a real worker: a scheduled campaign starts when due and goes out once, even with
two beats running (each tick is locked, and the tick's UPDATE starts a campaign once)."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from app.extensions import db
from app.models import Campaign, SendBatch
from app.models.base import utcnow
from tests.fakes.sendgrid import FakeSendGrid
from tests.support.sending import (
    add_members,
    clear_sending_keys,
    make_campaign,
    make_list,
    setup_org,
)
from tests.support.workers import CeleryProcess, purge_queues, worker_environ


def test_two_beats_start_a_due_campaign_once(app, committed_db, test_environ, tmp_path):
    purge_queues(test_environ["REDIS_URL"])
    clear_sending_keys(test_environ["REDIS_URL"])
    with app.app_context():
        setup_org(db.session)
        lst = make_list(db.session)
        emails = add_members(db.session, 250, lst.id)
        campaign = make_campaign(
            db.session, [lst], status="scheduled", send_at=utcnow() + timedelta(seconds=2)
        )
        db.session.commit()
        campaign_id = campaign.id

    processes = []
    with FakeSendGrid() as fake:
        env = worker_environ(
            test_environ,
            MAIL_TRANSPORT="sendgrid",
            SENDGRID_API_KEY="SG.beat",
            SENDGRID_API_HOST=fake.url,
            PUBLIC_BASE_URL="https://rally.example.org",
            SEND_BATCH_SIZE="100",
            SCHEDULER_TICK_SECONDS="0.5",
        )
        try:
            for kind in ("beat", "beat", "worker"):
                processes.append(CeleryProcess(kind, env, tmp_path).start())
            processes[-1].wait_ready(test_environ["REDIS_URL"])
            deadline = time.monotonic() + 60
            status = "scheduled"
            while status != "sent" and time.monotonic() < deadline:
                time.sleep(0.2)
                with app.app_context():
                    status = db.session.scalar(
                        sa.select(Campaign.status).where(Campaign.id == campaign_id)
                    )
                    db.session.remove()
            assert status == "sent", processes[-1].log()
            counts = fake.count_by_email()
        finally:
            for process in processes:
                process.stop()
            purge_queues(test_environ["REDIS_URL"])
    assert set(counts) == set(emails)
    assert set(counts.values()) == {1}
    # One request per batch of up to 100 members of one language. The stepped freeze
    # (20 members, then 160, then the other 70) ends a batch per language at each step, so
    # there are more, smaller requests than the 2 + 1 of a freeze in one statement.
    with app.app_context():
        sizes = db.session.scalars(
            sa.select(SendBatch.size).where(SendBatch.campaign_id == campaign_id)
        ).all()
        db.session.remove()
    assert sum(sizes) == 250
    assert max(sizes) <= 100
    assert fake.stats()["validated"] == fake.stats()["accepted_requests"] == len(sizes)
    assert len(sizes) <= 3 + 2 * 2  # at most one extra batch per language and later step
