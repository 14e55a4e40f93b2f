"""Scheduling rules, the status guards of each action, the rate bucket and the beat lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis

from app import jobs
from app.models import CampaignStatus, Delivery, Segment, SendBatch
from app.services import sending
from app.services.sending import coordination
from app.services.sending.rate_limit import TokenBucket, bucket_capacity
from app.services.sending.scheduling import to_utc
from tests.support.sending import (
    add_members,
    clear_sending_keys,
    make_campaign,
    make_list,
    setup_org,
)

EDMONTON = ZoneInfo("America/Edmonton")


@pytest.fixture
def client(test_environ):
    url = test_environ["REDIS_URL"]
    clear_sending_keys(url)
    yield redis.Redis.from_url(url)
    clear_sending_keys(url)


@pytest.fixture
def campaign(db_session):
    setup_org(db_session)
    lst = make_list(db_session)
    add_members(db_session, 4, lst.id)
    row = make_campaign(db_session, [lst])
    db_session.commit()
    return row


def test_wall_clock_times_follow_the_zone_and_its_daylight_saving():
    assert to_utc(datetime(2026, 12, 17, 9, 0), EDMONTON) == datetime(
        2026, 12, 17, 16, 0, tzinfo=UTC
    )
    assert to_utc(datetime(2026, 7, 1, 9, 0), EDMONTON) == datetime(2026, 7, 1, 15, 0, tzinfo=UTC)
    # 01:30 on the night clocks go back happens twice: the first one is meant.
    assert to_utc(datetime(2026, 11, 1, 1, 30), EDMONTON) == datetime(
        2026, 11, 1, 7, 30, tzinfo=UTC
    )
    with pytest.raises(sending.SendingError, match="clocks jump forward"):
        to_utc(datetime(2026, 3, 8, 2, 30), EDMONTON)


def test_schedule_stores_utc_and_can_move(db_session, campaign):
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    sending.schedule(db_session, campaign, datetime(2026, 12, 17, 9, 0), now=now)
    assert campaign.status == "scheduled"
    assert campaign.send_at == datetime(2026, 12, 17, 16, 0, tzinfo=UTC)
    sending.schedule(
        db_session, campaign, datetime(2026, 12, 17, 12, 0), "America/Toronto", now=now
    )
    assert campaign.send_at == datetime(2026, 12, 17, 17, 0, tzinfo=UTC)
    sending.unschedule(db_session, campaign)
    assert campaign.status == "draft"
    assert campaign.send_at is None


def test_a_campaign_that_does_not_render_cannot_be_scheduled(db_session, campaign):
    campaign.variants[0].body = "Hello {{ member.first_name | upper( }}"
    db_session.flush()
    with pytest.raises(sending.SendingError) as caught:
        sending.schedule(
            db_session,
            campaign,
            datetime.now(UTC) + timedelta(days=1),
            now=datetime.now(UTC),
        )
    assert any(p.field == "en.body" and p.line == 1 for p in caught.value.problems)
    assert campaign.status == "draft"


def test_a_segment_narrows_the_audience(db_session, campaign):
    segment = Segment(
        name="French speakers", rules=[{"field": "language", "op": "equals", "value": "fr"}]
    )
    db_session.add(segment)
    db_session.flush()
    campaign.segment_id = segment.id
    assert sending.check_sendable(db_session, campaign) == []
    assert sending.audience_count(db_session, campaign) == 1  # member3 of four
    campaign.status = CampaignStatus.SENDING.value
    sending.freeze_audience(db_session, campaign.id)
    emails = {d.email for d in db_session.query(Delivery).filter_by(campaign_id=campaign.id)}
    assert emails == {"member3@example.org"}


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("draft", "resume"),
        ("draft", "pause"),
        ("draft", "cancel"),
        ("paused", "send_now"),
        ("sending", "send_now"),
        ("sent", "cancel"),
        ("sending", "schedule"),
        ("draft", "unschedule"),
    ],
)
def test_each_action_only_from_its_own_statuses(db_session, campaign, client, status, action):
    campaign.status = status
    db_session.flush()
    calls = {
        "resume": lambda: sending.resume(db_session, campaign.id, None, client=client),
        "pause": lambda: sending.pause(db_session, campaign.id, None),
        "cancel": lambda: sending.cancel(db_session, campaign.id, None),
        "send_now": lambda: sending.send_now(db_session, campaign),
        "schedule": lambda: sending.schedule(
            db_session, campaign, datetime.now(UTC) + timedelta(days=1)
        ),
        "unschedule": lambda: sending.unschedule(db_session, campaign),
    }
    with pytest.raises(sending.TransitionError):
        calls[action]()
    assert campaign.status == status
    assert jobs.pending_jobs(db_session) == []


def test_send_now_twice_starts_once(db_session, campaign):
    sending.send_now(db_session, campaign)
    with pytest.raises(sending.TransitionError):
        sending.send_now(db_session, campaign)
    assert [j.name for j in jobs.pending_jobs(db_session)] == [jobs.DISPATCH_CAMPAIGN]


def test_send_now_refuses_an_empty_audience(db_session):
    setup_org(db_session)
    lst = make_list(db_session)
    row = make_campaign(db_session, [lst])
    with pytest.raises(sending.SendingError, match="Nobody would receive it"):
        sending.send_now(db_session, row)


def test_resume_requeues_only_batches_with_queued_rows(db_session, campaign, client):
    campaign.status = CampaignStatus.SENDING.value
    sending.freeze_audience(db_session, campaign.id, batch_size=1)
    db_session.commit()
    db_session.query(Delivery).filter(Delivery.batch_no == 0).update({"status": "sent"})
    db_session.query(SendBatch).filter(SendBatch.batch_no == 0).update({"status": "sent"})
    sending.pause(db_session, campaign.id, None)
    db_session.commit()
    sending.resume(db_session, campaign.id, None, client=client)
    batches = sorted(j.args[1] for j in jobs.pending_jobs(db_session) if j.name == jobs.SEND_BATCH)
    assert 0 not in batches
    assert len(batches) == 3
    assert coordination.is_alive(client, campaign.id)


def test_resume_of_a_campaign_paused_before_dispatch_dispatches(db_session, campaign, client):
    sending.send_now(db_session, campaign)
    db_session.commit()
    sending.pause(db_session, campaign.id, None)
    db_session.commit()
    sending.resume(db_session, campaign.id, None, client=client)
    assert [j.name for j in jobs.pending_jobs(db_session)] == [jobs.DISPATCH_CAMPAIGN]


def test_cancel_skips_what_is_still_queued(db_session, campaign):
    campaign.status = CampaignStatus.SENDING.value
    sending.freeze_audience(db_session, campaign.id)
    sending.cancel(db_session, campaign.id, None)
    statuses = {d.status for d in db_session.query(Delivery).filter_by(campaign_id=campaign.id)}
    assert statuses == {"skipped"}
    assert campaign.status == "cancelled"
    assert campaign.finished_at is not None


def test_the_bucket_never_grants_more_than_its_rate_across_workers(client, test_environ):
    per_minute = 600  # 10 a second, 100 to start with
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        bucket = TokenBucket(redis.Redis.from_url(test_environ["REDIS_URL"]), per_minute)
        for _ in range(30):
            grant = bucket.take(7)
            with lock:
                granted.append(grant.granted)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    started = datetime.now(UTC)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = (datetime.now(UTC) - started).total_seconds()
    assert bucket_capacity(per_minute) == 100
    assert sum(granted) <= 100 + 10 * elapsed + 1


def test_the_bucket_says_how_long_to_wait_and_takes_refunds(client):
    bucket = TokenBucket(client, 60)  # one a second, ten to start with
    assert bucket.take(25).granted == 10
    empty = bucket.take(5)
    assert empty.granted == 0
    assert 4 <= empty.wait <= 5.1
    bucket.refund(3)
    assert bucket.take(5).granted == 3
    assert TokenBucket(client, 0).take(1000).granted == 1000  # no limit


def test_a_second_beat_does_nothing_while_the_first_holds_the_lock(client):
    with (
        coordination.exclusive(client, "tick", ttl=5) as first,
        coordination.exclusive(client, "tick", ttl=5) as second,
    ):
        assert (first, second) == (True, False)
    with coordination.exclusive(client, "tick", ttl=5) as again:
        assert again
