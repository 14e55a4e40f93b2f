"""Retention: old events lose IP and user agent, old processed webhook batches go, figures stay."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa

from app import jobs
from app.models import Event, EventKind, WebhookBatch
from app.services.stats import breakdown, reports, retention
from app.services.stats import counters as stats
from app.services.tracking import webhook_events
from config.celeryconfig import celery_settings
from tests.support import stats_scenario
from workers.tasks.maintenance import purge_personal_data

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=200)  # the scenario's hits run over ~5 days from here
RECENT = NOW - timedelta(days=20)


@pytest.fixture
def client(test_environ):
    """The test Redis, without a watermark or lock left by an earlier test."""
    connection = redis.Redis.from_url(test_environ["REDIS_URL"])
    for key in connection.scan_iter("rp:retention:*"):
        connection.delete(key)
    yield connection
    for key in connection.scan_iter("rp:retention:*"):
        connection.delete(key)


def _purge(session, client, **options):
    options.setdefault("now", NOW)
    return retention.purge(
        session, client, tracking_days=90, webhook_days=30, commit=session.commit, **options
    )


def _events(session, campaign_id):
    """Every column of a campaign's events, by id."""
    session.expire_all()
    rows = session.scalars(sa.select(Event).where(Event.campaign_id == campaign_id))
    return {
        e.id: (e.kind, e.occurred_at, e.is_machine, e.link_id, e.delivery_id, dict(e.detail))
        for e in rows
    }


def _figures(session, campaign_id):
    """Everything the report shows and the verification commands compare."""
    session.expire_all()
    stored, computed = (
        stats.stored_stats(session, campaign_id),
        stats.recompute_stats(session, campaign_id),
    )
    assert stored.campaign == computed.campaign
    assert (stored.links, stored.hourly) == (computed.links, computed.hourly)
    stored_breakdown = breakdown.stored_breakdown(session, campaign_id)
    assert stored_breakdown == breakdown.recompute_breakdown(session, campaign_id)
    problems = reports.campaign_problems(session, campaign_id)
    return {
        "stats": stored,
        "breakdown": stored_breakdown,
        "funnel": reports.campaign_funnel(session, campaign_id),
        "timeline": reports.campaign_timeline(session, campaign_id, now=NOW),
        "links": reports.campaign_links(session, campaign_id),
        "by_local": reports.campaign_breakdown(session, campaign_id, "local"),
        "problems": (problems.total, problems.items),
        "outcomes": list(reports.outcome_csv(session, campaign_id)),
    }


def _batch(session, *, received_at, processed=True, error=None, body="[]"):
    batch = WebhookBatch(
        body=body,
        received_at=received_at,
        processed_at=received_at + timedelta(seconds=5) if processed else None,
        error=error,
    )
    session.add(batch)
    session.flush()
    return batch.id


def test_old_events_lose_ip_and_user_agent_and_keep_the_rest(db_session, client):
    old = stats_scenario.build(db_session, started=OLD)
    recent = stats_scenario.build(db_session, started=RECENT)
    old_before = _events(db_session, old.campaign.id)
    recent_before = _events(db_session, recent.campaign.id)
    tracked = {i for i, e in old_before.items() if e[0] in ("open", "click")}
    assert tracked
    assert all("ip" in old_before[i][5] and "ua" in old_before[i][5] for i in tracked)
    assert any(old_before[i][5].get("reasons") for i in tracked)  # machine hits say why

    report = _purge(db_session, client)

    assert report is not None
    assert report.finished
    assert report.events_cleaned == len(tracked)
    assert report.events_before == NOW - timedelta(days=90)
    after = _events(db_session, old.campaign.id)
    for event_id, (kind, at, machine, link, delivery, detail) in old_before.items():
        kept = {k: v for k, v in detail.items() if k not in ("ip", "ua")}
        assert after[event_id] == (kind, at, machine, link, delivery, kept)
    # SendGrid's events never held an IP: their detail (reasons for bounces) is untouched.
    assert all(after[i] == old_before[i] for i in old_before if i not in tracked)
    assert _events(db_session, recent.campaign.id) == recent_before


def test_report_figures_are_identical_before_and_after(db_session, client):
    old = stats_scenario.build(db_session, started=OLD)
    cid = old.campaign.id
    # A processed raw batch (a spam report) that the run deletes: its event and count stay.
    d = old.deliveries[9]
    body = [
        {
            "event": "spamreport",
            "email": d.email,
            "timestamp": int((OLD + timedelta(days=3)).timestamp()),
            "sg_event_id": "retention-spam-1",
            webhook_events.CUSTOM_ARG_DELIVERY: str(d.id),
            webhook_events.CUSTOM_ARG_CAMPAIGN: str(cid),
        }
    ]
    batch_id = _batch(db_session, received_at=OLD, processed=False, body=json.dumps(body))
    webhook_events.process_batch(db_session, batch_id)
    before = _figures(db_session, cid)
    assert before["stats"].campaign["spam_reports"] == 2
    assert before["problems"][0] > 0

    report = _purge(db_session, client)

    assert report is not None
    assert report.events_cleaned > 0
    assert report.batches_deleted == 1
    assert db_session.get(WebhookBatch, batch_id) is None
    assert _figures(db_session, cid) == before


def test_processed_old_batches_go_unprocessed_failed_and_recent_ones_stay(db_session, client):
    long_ago = NOW - timedelta(days=45)
    gone = [_batch(db_session, received_at=long_ago - timedelta(hours=h)) for h in range(3)]
    unprocessed = _batch(db_session, received_at=long_ago, processed=False)
    failed = _batch(db_session, received_at=long_ago, error="event 0: bad value")
    not_json = _batch(db_session, received_at=long_ago, error="not JSON", body="{")
    recent = _batch(db_session, received_at=NOW - timedelta(days=29))

    report = _purge(db_session, client, webhook_batch=2)  # two transactions and a last one

    assert report is not None
    assert report.batches_deleted == 3
    assert (report.kept_unprocessed, report.kept_failed) == (1, 2)
    db_session.expire_all()
    left = set(db_session.scalars(sa.select(WebhookBatch.id).where(WebhookBatch.id >= gone[0])))
    assert left == {unprocessed, failed, not_json, recent}
    assert not left & set(gone)


def test_a_second_run_changes_nothing_even_without_its_watermark(db_session, client):
    old = stats_scenario.build(db_session, started=OLD)
    _batch(db_session, received_at=OLD)
    first = _purge(db_session, client)
    assert first is not None
    assert first.events_cleaned > 0
    assert first.batches_deleted == 1
    events = _events(db_session, old.campaign.id)
    figures = _figures(db_session, old.campaign.id)

    again = _purge(db_session, client)
    for key in client.scan_iter("rp:retention:events-from:*"):
        client.delete(key)  # Redis emptied: the walk starts from the first event
    lost = _purge(db_session, client)

    for report in (again, lost):
        assert report is not None
        assert report.finished
        assert (report.events_cleaned, report.batches_deleted) == (0, 0)
    assert _events(db_session, old.campaign.id) == events
    assert _figures(db_session, old.campaign.id) == figures


def test_small_batches_and_a_time_limit_finish_over_several_runs(db_session, client):
    old = stats_scenario.build(db_session, started=OLD)
    recent = stats_scenario.build(db_session, started=RECENT)
    personal = sum(
        1 for e in _events(db_session, old.campaign.id).values() if e[0] in ("open", "click")
    )
    recent_before = _events(db_session, recent.campaign.id)

    cleaned, runs = 0, 0
    while True:
        # One batch of 7 ids a run: each run stops at its (zero) time limit after one commit.
        report = _purge(db_session, client, event_batch=7, run_seconds=0)
        assert report is not None
        cleaned += report.events_cleaned
        runs += 1
        if report.finished:
            break
        assert runs < 100
    assert runs > 3
    assert cleaned == personal
    assert all(
        "ip" not in e[5] and "ua" not in e[5] for e in _events(db_session, old.campaign.id).values()
    )
    assert _events(db_session, recent.campaign.id) == recent_before


def test_events_are_cleaned_once_they_pass_the_limit(db_session, client):
    recent = stats_scenario.build(db_session, started=RECENT)
    report = _purge(db_session, client)
    assert report is not None
    assert report.events_cleaned == 0
    before = _events(db_session, recent.campaign.id)

    later = _purge(db_session, client, now=NOW + timedelta(days=100))

    assert later is not None
    assert later.events_cleaned > 0
    after = _events(db_session, recent.campaign.id)
    assert after.keys() == before.keys()
    assert all("ip" not in e[5] and "ua" not in e[5] for e in after.values())


def test_a_run_holding_the_lock_keeps_a_second_one_out(db_session, client):
    old = stats_scenario.build(db_session, started=OLD)
    before = _events(db_session, old.campaign.id)
    lock = client.lock(retention.LOCK_KEY, timeout=60, blocking=False)
    assert lock.acquire()
    try:
        assert _purge(db_session, client) is None
    finally:
        lock.release()
    assert _events(db_session, old.campaign.id) == before
    assert _purge(db_session, client) is not None


def test_a_period_below_one_day_is_refused(db_session, client):
    with pytest.raises(retention.RetentionError, match="tracking_days must be at least 1"):
        retention.purge(
            db_session, client, tracking_days=0, webhook_days=30, commit=db_session.commit
        )


def test_the_beat_task_runs_it_hourly(app, db_session, client):
    schedule = celery_settings("redis://127.0.0.1:6379/0")["beat_schedule"]
    assert {entry["task"] for entry in schedule.values()} >= {jobs.PURGE_PERSONAL_DATA}
    cid = stats_scenario.build(
        db_session, started=datetime.now(UTC) - timedelta(days=200)
    ).campaign.id
    tracked = sum(1 for e in _events(db_session, cid).values() if e[0] in ("open", "click"))
    with app.app_context():  # the task's own context removes the session afterwards
        changed = purge_personal_data.run()
        assert changed == tracked
        assert purge_personal_data.run() == 0
    assert all("ip" not in e[5] for e in _events(db_session, cid).values())


def test_cli_prints_what_was_removed(app, db_session, client):
    stats_scenario.build(db_session, started=datetime.now(UTC) - timedelta(days=200))
    _batch(db_session, received_at=datetime.now(UTC) - timedelta(days=40))
    _batch(db_session, received_at=datetime.now(UTC) - timedelta(days=40), error="event 1: x")
    opens_and_clicks = db_session.scalar(
        sa.select(sa.func.count())
        .select_from(Event)
        .where(Event.kind.in_([EventKind.OPEN.value, EventKind.CLICK.value]))
    )
    runner = app.test_cli_runner()

    result = runner.invoke(args=["retention", "run"])

    assert result.exit_code == 0, result.output
    assert f"from {opens_and_clicks} events recorded before" in result.output
    assert "Deleted 1 processed webhook batches" in result.output
    assert "Kept 0 unprocessed and 1 failed webhook batches" in result.output
    again = runner.invoke(args=["retention", "run"])
    assert again.exit_code == 0, again.output
    assert "from 0 events" in again.output
    assert "Deleted 0 processed" in again.output


def test_cli_says_so_when_another_run_is_under_way(app, db_session, client):
    lock = client.lock(retention.LOCK_KEY, timeout=60, blocking=False)
    assert lock.acquire()
    try:
        result = app.test_cli_runner().invoke(args=["retention", "run"])
    finally:
        lock.release()
    assert result.exit_code == 1
    assert "Another retention run is under way" in result.output
