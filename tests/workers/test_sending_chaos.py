"""Exactly once with real workers, Redis and PostgreSQL: kill a worker, restart Redis, 429s.

Each test sends a campaign to a few thousand members through real Celery worker processes
(and a real beat for the tick and the sweep) to the fake SendGrid, breaks something in the
middle, and then checks the invariant (docs/architecture.md): every eligible member holds
exactly one message at the fake SendGrid, and nobody holds two.

The fake reports what it accepted through a signed Event Webhook to the app, served over
real HTTP, as SendGrid does; that is how a batch left in doubt by a crash gets settled —
sent if SendGrid reported on it, sent again once if the reports moved past it without it.
So at the end nobody is left 'unknown': every eligible member holds exactly one copy.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import (
    Campaign,
    Delivery,
    Member,
    SendBatch,
    SuppressionReason,
    UnsubscribeSource,
)
from app.services import sending
from app.services.audience import subscriptions
from tests.fakes.sendgrid import FakeSendGrid
from tests.fakes.sendgrid_events import EventWebhookSender
from tests.support.live import LiveServer
from tests.support.sending import (
    add_members,
    clear_sending_keys,
    make_campaign,
    make_list,
    setup_org,
)
from tests.support.workers import QUEUES, CeleryProcess, purge_queues, worker_environ

pytestmark = pytest.mark.chaos

MEMBERS = 3000
BATCH_SIZE = 50


class SlowFakeSendGrid(FakeSendGrid):
    """SendGrid taking a tenth of a second a request, so a crash lands mid-campaign."""

    delay = 0.1

    def _mail_send(self, authorization, raw):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        return super()._mail_send(authorization, raw)


@pytest.fixture
def webhook_app(other_app, committed_db):
    """The web app that receives the fake's Event Webhook, over real HTTP."""
    events = EventWebhookSender("", interval=0.2)
    app = other_app(SENDGRID_WEBHOOK_PUBLIC_KEY=events.public_key)
    server = LiveServer(app).start()
    events.url = f"{server.url}/webhooks/sendgrid"
    events.start()
    yield events
    events.stop()
    server.stop()


@pytest.fixture
def fake(webhook_app) -> Iterator[SlowFakeSendGrid]:
    with SlowFakeSendGrid(validate_sample=1.0, keep_bodies=False, events=webhook_app) as server:
        yield server


# Fast clocks for a test: a dead worker's lease lapses in 2 s, the sweep runs every second,
# and a batch in doubt may be judged 3 s after its claim (SENDGRID_READ_TIMEOUT is the margin
# a later batch must be claimed by to prove the event stream moved past it).
FAST_CLOCKS = {
    "SENDGRID_READ_TIMEOUT": "2",
    "SCHEDULER_TICK_SECONDS": "1",
    "SEND_SWEEP_SECONDS": "1",
    "SEND_LEASE_SECONDS": "2",
    "SEND_STALL_SECONDS": "3",
    "SEND_STUCK_SECONDS": "30",
    "SEND_UNKNOWN_WINDOW_SECONDS": "3",
}


@pytest.fixture
def chaos_env(test_environ, fake, webhook_app, tmp_path):
    purge_queues(test_environ["REDIS_URL"])
    clear_sending_keys(test_environ["REDIS_URL"])
    env = worker_environ(
        test_environ,
        MAIL_TRANSPORT="sendgrid",
        SENDGRID_API_KEY="SG.chaos",
        SENDGRID_API_HOST=fake.url,
        SENDGRID_WEBHOOK_PUBLIC_KEY=webhook_app.public_key,
        PUBLIC_BASE_URL="https://rally.example.org",
        SEND_BATCH_SIZE=str(BATCH_SIZE),
        **FAST_CLOCKS,
    )
    processes: list[CeleryProcess] = []

    def start(kind: str, *, concurrency: int = 2, queues: str = QUEUES, **overrides: str):
        process = CeleryProcess(
            kind, {**env, **overrides}, tmp_path, concurrency=concurrency, queues=queues
        ).start()
        processes.append(process)
        if kind == "worker":
            process.wait_ready(test_environ["REDIS_URL"])
        return process

    yield start
    for process in processes:
        process.stop()
    purge_queues(test_environ["REDIS_URL"])


@dataclass
class Campaign_:
    id: int
    eligible: set[str]
    stopped: set[str]  # unsubscribed or suppressed after dispatch


def _dispatched_campaign(app, batch_size: int = BATCH_SIZE) -> Campaign_:
    """A campaign to MEMBERS members, its audience frozen, then three members stopped."""
    with app.app_context():
        session = db.session
        setup_org(session)
        lst = make_list(session)
        emails = add_members(session, MEMBERS, lst.id)
        campaign = make_campaign(session, [lst])
        sending.send_now(session, campaign)
        session.commit()  # the dispatch task waits in the queue until a worker starts
        sending.freeze_audience(session, campaign.id, batch_size=batch_size)
        # After dispatch: an unsubscribe and a suppression through the services, and one
        # unsubscribe behind their back (only the claim-time check can catch that one).
        last = emails[-3:]
        member = session.scalar(sa.select(Member).where(Member.email == last[0]))
        subscriptions.unsubscribe(
            session, member.id, list_ids=None, source=UnsubscribeSource.ONE_CLICK
        )
        subscriptions.suppress(session, last[1], SuppressionReason.SPAM_REPORT)
        session.execute(
            sa.text(
                "UPDATE subscriptions SET status = 'unsubscribed' WHERE member_id = "
                "(SELECT id FROM members WHERE email = :email)"
            ),
            {"email": last[2]},
        )
        session.commit()
        return Campaign_(campaign.id, set(emails) - set(last), set(last))


def _sent_count(app, campaign_id: int) -> int:
    with app.app_context():
        count = db.session.scalar(
            sa.select(sa.func.count()).where(
                Delivery.campaign_id == campaign_id, Delivery.status == "sent"
            )
        )
        db.session.remove()
        return int(count or 0)


def _wait(app, campaign_id: int, *, sent_at_least: int | None = None, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with app.app_context():
            status = db.session.scalar(sa.select(Campaign.status).where(Campaign.id == campaign_id))
            db.session.remove()
        if sent_at_least is not None:
            if _sent_count(app, campaign_id) >= sent_at_least:
                return status
        elif status in ("sent", "paused", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"campaign {campaign_id} still {status} after {timeout}s")


def _ledger(app, campaign_id: int) -> dict[str, set[str]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(Delivery.status, Delivery.email).where(Delivery.campaign_id == campaign_id)
        ).all()
        db.session.remove()
    ledger: dict[str, set[str]] = {}
    for status, email in rows:
        ledger.setdefault(status, set()).add(email)
    return ledger


def _assert_exactly_once(app, fake: FakeSendGrid, campaign: Campaign_) -> None:
    counts = fake.count_by_email()
    ledger = _ledger(app, campaign.id)

    assert fake.internal_errors == []
    duplicates = {email: n for email, n in counts.items() if n > 1}
    assert duplicates == {}, "somebody got two copies"
    assert not ledger.get("queued")
    assert not ledger.get("sending")
    assert not ledger.get("failed")
    assert not ledger.get("unknown"), "a batch in doubt was never settled"
    assert ledger.get("skipped", set()) == campaign.stopped
    assert not set(counts) & campaign.stopped  # unsubscribe and suppression won
    assert ledger.get("sent", set()) == campaign.eligible  # nobody eligible was skipped...
    assert set(counts) == campaign.eligible  # ...and each of them is at SendGrid, once


def _batches(app, campaign_id: int) -> dict[int, tuple[str, int, bool]]:
    """Each batch's (status, resends, confirmed by an event)."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(
                SendBatch.batch_no, SendBatch.status, SendBatch.resends, SendBatch.confirmed_at
            ).where(SendBatch.campaign_id == campaign_id)
        ).all()
        db.session.remove()
    return {n: (status, resends, confirmed is not None) for n, status, resends, confirmed in rows}


def _batch_errors(app, campaign_id: int) -> dict[int, str]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(SendBatch.batch_no, SendBatch.error).where(
                SendBatch.campaign_id == campaign_id, SendBatch.error.is_not(None)
            )
        ).all()
        db.session.remove()
    return {n: e for n, e in rows if e}


def _wait_for(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_sigkill_a_worker_mid_campaign_and_start_another(app, committed_db, fake, chaos_env):
    campaign = _dispatched_campaign(app)
    beat = chaos_env("beat")
    first = chaos_env("worker")
    _wait(app, campaign.id, sent_at_least=MEMBERS // 5)

    first.kill()
    killed_at = _sent_count(app, campaign.id)
    chaos_env("worker")
    status = _wait(app, campaign.id)

    assert killed_at < len(campaign.eligible), "the kill came too late to test anything"
    assert status == "sent", first.log() + beat.log()
    _assert_exactly_once(app, fake, campaign)
    in_doubt = {n: b for n, b in _batches(app, campaign.id).items() if b[1] or not b[2]}
    print(f"killed at {killed_at} sent; batches settled after the kill: {in_doubt}")


@pytest.mark.parametrize("reached", [False, True], ids=["never-reached", "reached"])
def test_a_worker_killed_with_a_request_in_flight_is_settled_by_sendgrids_events(
    app, committed_db, fake, chaos_env, reached
):
    """One worker process of two dies while SendGrid holds its request unanswered.

    Never reached (the fake never took it): no event comes for that batch while events
    for later batches do, so after the window it is sent again, once. Reached (the fake
    took it, then the answer never came): its events settle it as sent; no second copy.
    Either way the campaign finishes by itself, within a minute of the kill.
    """
    fake.delay = 0.02
    campaign = _dispatched_campaign(app)
    chaos_env("beat")
    doomed = chaos_env("worker", concurrency=1)
    _wait(app, campaign.id, sent_at_least=MEMBERS // 10)
    fake.fail_next(1, "hang", accepted=reached, hang_seconds=60)
    _wait_for(lambda: fake.hanging == 1, 30, "a request held by the fake")
    doomed.kill()  # within the read timeout: the worker dies waiting for the answer
    killed = time.monotonic()
    chaos_env("worker", concurrency=1)  # the survivor sends the rest; their events follow
    status = _wait(app, campaign.id, timeout=90)
    took = time.monotonic() - killed

    assert status == "sent"
    _assert_exactly_once(app, fake, campaign)
    batches = _batches(app, campaign.id)
    resent = [n for n, (_, resends, _) in batches.items() if resends]
    detail = _batch_errors(app, campaign.id)
    if reached:
        assert resent == [], detail  # settled by its events, never sent again
    else:
        assert len(resent) == 1, detail  # the batch that never arrived, sent again once
    assert took < 60, f"finished {took:.0f}s after the kill"
    print(f"{'reached' if reached else 'never reached'}: finished {took:.1f}s after the kill")


def test_restart_redis_mid_campaign(app, committed_db, fake, chaos_env, redis_server):
    campaign = _dispatched_campaign(app)
    beat = chaos_env("beat", LOG_LEVEL="INFO")
    worker = chaos_env("worker", LOG_LEVEL="INFO")
    _wait(app, campaign.id, sent_at_least=MEMBERS // 5)

    # The broker loses every queued message (no persistence); recovery comes from the
    # ledger: the sweep notices Redis lost its data and queues the batches again.
    redis_server.restart(down_seconds=0.5)
    restarted = time.monotonic()
    restarted_at = _sent_count(app, campaign.id)
    try:
        resumed = _wait_for(
            lambda: _sent_count(app, campaign.id) > restarted_at + 2 * BATCH_SIZE,
            60,
            "sending resumed after the Redis restart",
        )
    except AssertionError:
        print("== worker\n", worker.log(), "\n== beat\n", beat.log())
        raise
    status = _wait(app, campaign.id, timeout=120)

    assert restarted_at < len(campaign.eligible), "the restart came too late to test anything"
    assert status == "sent", worker.log()
    _assert_exactly_once(app, fake, campaign)
    print(f"Redis restarted at {restarted_at} sent; sending again {resumed:.1f}s later")
    assert time.monotonic() - restarted >= resumed
    assert resumed < 15


def test_sendgrid_answers_429_and_500_at_random(app, committed_db, fake, chaos_env):
    fake.delay = 0.0
    fake.set_random_failures(p429=0.15, p500=0.15, seed=20251217)
    # Bigger batches: each 429 holds every worker until SendGrid's reset (a second or two).
    campaign = _dispatched_campaign(app, batch_size=200)
    chaos_env("beat", SEND_BATCH_SIZE="200")
    worker = chaos_env("worker", SEND_BATCH_SIZE="200")
    started = time.monotonic()
    status = _wait(app, campaign.id, timeout=120)
    print(f"sent with random 429/500 in {time.monotonic() - started:.1f}s: {fake.stats()}")

    assert status == "sent", worker.log()
    stats = fake.stats()
    assert stats["rejected"] > 5  # the failures did happen
    _assert_exactly_once(app, fake, campaign)


def _started(app, members: int, *, prefix: str) -> Campaign_:
    """A campaign to `members` new members, sent now (its dispatch queued, not yet run)."""
    with app.app_context():
        session = db.session
        setup_org(session)
        lst = make_list(session, name=f"List {prefix}")
        emails = add_members(session, members, lst.id, prefix=prefix)
        campaign = make_campaign(session, [lst])
        sending.send_now(session, campaign)
        session.commit()
        campaign_id = campaign.id
        db.session.remove()
        return Campaign_(campaign_id, set(emails), set())


def test_a_campaign_waiting_for_bulk_workers_is_never_marked_sent(
    app, committed_db, fake, chaos_env
):
    """The outside run's repro: workers on `default` only, none on `bulk`, press send now.

    The dispatch freezes the audience and the batches wait on `bulk`; sweep after sweep,
    the campaign must stay 'sending' with nobody sent. A bulk worker started later sends
    to every member once.
    """
    chaos_env("beat")
    chaos_env("worker", queues="default,webhooks")
    campaign = _started(app, 500, prefix="waiting")
    time.sleep(8)  # eight sweeps, twice the stall time: the old sweep finished it here

    with app.app_context():
        row = db.session.get(Campaign, campaign.id)
        state = (row.status, row.frozen_at is not None)
        db.session.remove()
    assert state == ("sending", True)
    assert _sent_count(app, campaign.id) == 0

    chaos_env("worker", queues="bulk")
    assert _wait(app, campaign.id, timeout=60) == "sent"
    _assert_exactly_once(app, fake, campaign)


def test_two_campaigns_sent_a_moment_apart_both_reach_everyone(app, committed_db, fake, chaos_env):
    fake.delay = 0.0
    chaos_env("beat")
    chaos_env("worker")
    first = _started(app, 2000, prefix="first")
    time.sleep(1.5)
    second = _started(app, 2000, prefix="second")

    assert _wait(app, first.id, timeout=90) == "sent"
    assert _wait(app, second.id, timeout=90) == "sent"
    counts = fake.count_by_email()
    assert {e: n for e, n in counts.items() if n > 1} == {}
    assert set(counts) == first.eligible | second.eligible
    assert _ledger(app, first.id) == {"sent": first.eligible}
    assert _ledger(app, second.id) == {"sent": second.eligible}
