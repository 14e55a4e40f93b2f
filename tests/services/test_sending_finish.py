"""A campaign finishes only once its audience is frozen and settled, whatever runs meanwhile.

The windows an outside run found (issue 11): a sweep between "send now" and the freeze
finished a campaign with no rows; a sweep waiting on the freeze's lock finished it on the
snapshot taken before the freeze committed. Each test puts a sweep (or a batch's finish
check) in one of those windows, on real PostgreSQL connections where concurrency matters.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import redis
import sqlalchemy as sa

from app.extensions import db
from app.models import BatchStatus, Campaign, Delivery, SendBatch
from app.models.base import utcnow
from app.services import sending
from app.services.sending import ledger
from tests.support.sending import (
    add_members,
    clear_sending_keys,
    make_campaign,
    make_list,
    setup_org,
)


def _sweep(session, client, **overrides):
    now = overrides.pop("now", utcnow())
    return sending.sweep(
        session, now, client=client, stuck_seconds=300, stall_seconds=60, **overrides
    )


def _status(app, campaign_id: int) -> str:
    with app.app_context():
        status = db.session.scalar(sa.select(Campaign.status).where(Campaign.id == campaign_id))
        db.session.remove()
    return str(status)


def _started_campaign(session, members: int = 50):
    setup_org(session)
    lst = make_list(session)
    emails = add_members(session, members, lst.id)
    campaign = make_campaign(session, [lst], languages=("en",))
    sending.send_now(session, campaign)
    session.commit()
    return campaign, emails


def test_a_sweep_before_the_freeze_does_not_finish_the_campaign(db_session, test_environ):
    clear_sending_keys(test_environ["REDIS_URL"])
    client = redis.Redis.from_url(test_environ["REDIS_URL"])
    campaign, _ = _started_campaign(db_session)

    report = _sweep(db_session, client, now=utcnow() + timedelta(minutes=5))

    db_session.refresh(campaign)
    assert campaign.status == "sending"
    assert campaign.id not in report.finished
    assert report.redispatched == [campaign.id]  # its dispatch was lost: queued again
    result = sending.freeze_audience(db_session, campaign.id)
    db_session.commit()
    assert result.inserted == 50


def test_a_sweep_after_the_freeze_waits_for_every_batch(db_session, test_environ):
    clear_sending_keys(test_environ["REDIS_URL"])
    client = redis.Redis.from_url(test_environ["REDIS_URL"])
    campaign, _ = _started_campaign(db_session)
    sending.freeze_audience(db_session, campaign.id, batch_size=10)
    db_session.commit()

    assert _sweep(db_session, client).finished == []
    db_session.refresh(campaign)
    assert campaign.status == "sending"


def test_a_sweep_during_the_freeze_waits_for_it_and_does_not_finish(
    app, committed_db, test_environ
):
    """A sweep while the freeze holds the campaign's row lock reads `frozen_at` as last
    committed (not frozen) and returns without waiting for the lock (a stepped freeze's
    batches must not queue behind each step); it never finishes the campaign, neither then
    nor once the freeze has committed."""
    clear_sending_keys(test_environ["REDIS_URL"])
    client = redis.Redis.from_url(test_environ["REDIS_URL"])
    with app.app_context():
        campaign, _ = _started_campaign(db.session, members=200)
        campaign_id = campaign.id
        db.session.remove()

    frozen = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def freeze() -> None:
        try:
            with app.app_context():
                sending.freeze_audience(db.session, campaign_id, batch_size=50)
                db.session.flush()
                frozen.set()  # rows written, lock held, not committed
                release.wait(10)
                db.session.commit()
                db.session.remove()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            frozen.set()

    swept: list[sending.SweepReport] = []

    def sweep() -> None:
        try:
            with app.app_context():
                swept.append(_sweep(db.session, client))
                db.session.commit()
                db.session.remove()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    freezer = threading.Thread(target=freeze)
    freezer.start()
    assert frozen.wait(10)
    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    sweeper.join(5)
    assert not sweeper.is_alive(), "the sweep waited for the freeze's lock"
    release.set()
    freezer.join(10)
    sweep()  # and once the freeze has committed

    assert errors == []
    assert [report.finished for report in swept] == [[], []]
    assert _status(app, campaign_id) == "sending"
    with app.app_context():
        queued = db.session.scalar(
            sa.select(sa.func.count()).where(
                SendBatch.campaign_id == campaign_id, SendBatch.status == "queued"
            )
        )
        db.session.remove()
    assert queued == 4


def test_the_finish_check_needs_the_freeze(db_session):
    campaign, _ = _started_campaign(db_session)
    # Sending, no rows at all: before the freeze, "nothing left to send" means nothing.
    assert sending.finish_if_done(db_session, campaign.id) is False
    sending.freeze_audience(db_session, campaign.id)
    assert sending.finish_if_done(db_session, campaign.id) is False  # a batch is queued
    db_session.execute(
        sa.update(Delivery).where(Delivery.campaign_id == campaign.id).values(status="sent")
    )
    db_session.execute(
        sa.update(SendBatch).where(SendBatch.campaign_id == campaign.id).values(status="sent")
    )
    assert sending.finish_if_done(db_session, campaign.id) is True


def test_a_batch_in_doubt_keeps_its_campaign_open_while_sendgrid_may_settle_it(db_session):
    campaign, _ = _started_campaign(db_session, members=20)
    sending.freeze_audience(db_session, campaign.id, batch_size=10)
    now = utcnow()
    db_session.execute(
        sa.update(Delivery).where(Delivery.campaign_id == campaign.id).values(status="sent")
    )
    db_session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign.id)
        .values(status="sent", claimed_at=now)
    )
    db_session.execute(
        sa.update(Delivery)
        .where(Delivery.campaign_id == campaign.id, Delivery.batch_no == 1)
        .values(status="unknown", error="no answer")
    )
    db_session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign.id, SendBatch.batch_no == 1)
        .values(status=BatchStatus.UNKNOWN.value)
    )
    webhook = ledger.Settlement(webhook=True, window=600)
    assert sending.finish_if_done(db_session, campaign.id, now=now, settlement=webhook) is False
    # Without the webhook nothing will settle it: the campaign ends, the organizer is told.
    progress = sending.progress(db_session, campaign, settlement=ledger.Settlement())
    assert (progress.unknown, progress.unknown_state) == (10, "undecided")
    assert progress.errors[0]["kind"] == "unknown"
    # With it, the campaign waits; after twice the window the organizer decides.
    later = now + timedelta(seconds=webhook.give_up + 1)
    assert sending.finish_if_done(db_session, campaign.id, now=later, settlement=webhook) is True


def test_a_batch_ending_while_others_run_does_not_queue_for_the_campaign_lock(
    app, committed_db, test_environ
):
    """Each batch's finish check used to take the campaign's row lock, so the batches ending
    together queued behind each other's commit. With work left as last committed it
    answers without the lock; the last batch still takes it, and finishes the campaign."""
    clear_sending_keys(test_environ["REDIS_URL"])
    with app.app_context():
        campaign, _ = _started_campaign(db.session, members=20)
        campaign_id = campaign.id
        sending.freeze_audience(db.session, campaign_id, batch_size=10)
        db.session.commit()
        db.session.remove()

    engine = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    try:
        with engine.connect() as holder:
            holder.execute(
                sa.text("SELECT id FROM campaigns WHERE id = :id FOR UPDATE"), {"id": campaign_id}
            )
            with app.app_context():
                session = db.session
                session.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                # Batch 0 is done; batch 1 is still queued: not the end, answered at once.
                session.execute(
                    sa.update(Delivery)
                    .where(Delivery.campaign_id == campaign_id, Delivery.batch_no == 0)
                    .values(status="sent")
                )
                session.execute(
                    sa.update(SendBatch)
                    .where(SendBatch.campaign_id == campaign_id, SendBatch.batch_no == 0)
                    .values(status="sent")
                )
                assert sending.finish_if_done(session, campaign_id) is False
                session.commit()
                db.session.remove()
            holder.rollback()
        with app.app_context():
            session = db.session
            session.execute(
                sa.update(Delivery).where(Delivery.campaign_id == campaign_id).values(status="sent")
            )
            session.execute(
                sa.update(SendBatch)
                .where(SendBatch.campaign_id == campaign_id)
                .values(status="sent")
            )
            session.commit()
            assert sending.finish_if_done(session, campaign_id) is True
            session.commit()
            db.session.remove()
        assert _status(app, campaign_id) == "sent"
    finally:
        engine.dispose()
