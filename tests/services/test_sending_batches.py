"""send_batch against the fake SendGrid: one request a batch, exactly once, every error kind."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa

from app import jobs
from app.infra.tokens import Scope, TokenSigner
from app.models import (
    Campaign,
    CampaignStats,
    CampaignStatus,
    Delivery,
    Member,
    SendBatch,
    Subscription,
    Suppression,
)
from app.models.base import utcnow
from app.models.deliveries import FILLFACTOR
from app.services import sending
from app.services.sending import coordination, ledger
from app.services.sending.batches import MAX_ATTEMPTS
from app.services.sending.progress import unknown_counts
from app.services.transports.sendgrid import SendGridTransport
from tests.fakes.sendgrid import FakeSendGrid
from tests.support.sending import (
    SECRET,
    add_members,
    clear_sending_keys,
    make_campaign,
    make_list,
    sending_context,
    setup_org,
)
from tests.support.statements import captured, explain


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


@pytest.fixture
def redis_url(test_environ) -> Iterator[str]:
    url = test_environ["REDIS_URL"]
    clear_sending_keys(url)
    yield url
    clear_sending_keys(url)


@pytest.fixture
def context(fake, redis_url):
    transport = SendGridTransport("SG.test", fake.url, connect_timeout=1, read_timeout=2)
    return sending_context(transport, redis_url)


def _campaign_to_freeze(session, members: int, **fields) -> tuple[Campaign, list[str]]:
    """A sending campaign to one new list of `members`, not frozen yet."""
    setup_org(session, **({"rate_per_minute": fields.pop("rate")} if "rate" in fields else {}))
    lst = make_list(session)
    emails = add_members(session, members, lst.id)
    campaign = make_campaign(session, [lst], **fields)
    campaign.status = CampaignStatus.SENDING.value
    session.flush()
    return campaign, emails


def _sending_campaign(session, members=12, *, batch_size=1000, **fields):
    campaign, emails = _campaign_to_freeze(session, members, **fields)
    result = sending.freeze_audience(session, campaign.id, batch_size=batch_size)
    session.commit()
    return campaign, emails, result.batches


def _claim_and_plan(session, campaign_id: int, batch_no: int):
    """Claim a batch, and EXPLAIN the claim's read of its rows in the same transaction."""
    with captured(session, lambda s: "FROM deliveries LEFT OUTER JOIN members" in s) as seen:
        claim = ledger.claim(session, ledger.BatchKey(campaign_id, batch_no), 1000, utcnow(), "t")
    statement, parameters, _ = seen[0]
    return claim, "\n".join(explain(session, statement, parameters))


def _statuses(session, campaign_id) -> dict[str, str]:
    return dict(
        session.execute(
            sa.select(Delivery.email, Delivery.status).where(Delivery.campaign_id == campaign_id)
        ).all()
    )


# The campaign read whole by the ORM, its variants, the organization's settings.
_RENDERING_READS = re.compile(
    r"campaigns\.id AS campaigns_id|FROM campaign_variants|FROM org_settings"
)


def test_a_batch_runs_the_same_few_statements_whatever_its_size(db_session, fake, context):
    """The campaign, its variants and the settings are read before the claim and kept over
    its commit (not read again to render); each statement is built once (`built_once`), so
    every batch sends the same texts."""
    campaign, _, _ = _sending_campaign(db_session, members=60, batch_size=10)
    campaign_id = campaign.id
    # Three English batches of six: the last batch's end is the campaign's, the French ones
    # render another skeleton.
    warm, one, two = db_session.scalars(
        sa.select(SendBatch.batch_no)
        .where(SendBatch.campaign_id == campaign_id, SendBatch.language == "en")
        .order_by(SendBatch.batch_no)
        .limit(3)
    )
    db_session.remove()  # each task starts with a new session

    def statements_of(batch_no: int) -> list[str]:
        skip = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")
        with captured(db_session, lambda s: not s.startswith(skip)) as seen:
            outcome = sending.send_batch(db_session, campaign_id, batch_no, context=context)
        db_session.remove()
        assert outcome.sent
        return [statement for statement, _, _ in seen]

    statements_of(warm)  # the process renders the campaign's skeleton once
    first, second = statements_of(one), statements_of(two)
    assert first == second
    claim = next(i for i, s in enumerate(first) if s.startswith("UPDATE send_batches SET status"))
    assert [s for s in first[:claim] if _RENDERING_READS.search(s)]
    assert not [s for s in first[claim + 1 :] if _RENDERING_READS.search(s)]
    assert len(first) <= 13, "\n".join(first)


def test_a_batch_is_one_request_with_one_personalization_each(db_session, fake, context):
    campaign, emails, batches = _sending_campaign(db_session, members=12)
    english = [e for i, e in enumerate(emails, 1) if i % 3]

    outcome = sending.send_batch(db_session, campaign.id, batches[0], context=context)

    assert outcome.sent == len(english)
    assert outcome.requeue_in is None
    assert fake.stats()["validated"] == 1  # the whole request passed SendGrid's schema
    [request] = fake.accepted
    body = request.body
    assert len(body["personalizations"]) == len(english)
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["tracking_settings"] == {
        "click_tracking": {"enable": False, "enable_text": False},
        "open_tracking": {"enable": False},
        "subscription_tracking": {"enable": False},
        "ganalytics": {"enable": False},
    }
    assert body["custom_args"] == {"rp_campaign": str(campaign.id)}
    assert body["categories"] == ["rallypoint", f"campaign-{campaign.id}"]
    assert body["from"]["email"] == "alerts@prairieworkers.example"

    deliveries = dict(
        db_session.execute(
            sa.select(Delivery.email, Delivery.id).where(Delivery.campaign_id == campaign.id)
        ).all()
    )
    signer = TokenSigner([SECRET])
    record = next(r for r in fake.records if r.email == "member1@example.org")
    delivery_id = deliveries["member1@example.org"]
    token = signer.sign(campaign.id, delivery_id, Scope.UNSUBSCRIBE)
    assert record.custom_args == {"rp_campaign": str(campaign.id), "rp_delivery": str(delivery_id)}
    assert record.headers["List-Unsubscribe"] == f"<https://rally.example.org/u/{token}>"
    assert record.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert record.headers["Message-ID"] == f"<d{delivery_id}.c{campaign.id}@prairieworkers.example>"
    html = record.render("text/html")
    assert "First1" in html
    assert token in html
    assert "-rp" not in html
    assert f"https://rally.example.org/u/{token}" in record.render("text/plain")
    # Each URL carries the token of its own use, and only that one.
    pixel = signer.sign(campaign.id, delivery_id, Scope.OPEN)
    click = signer.sign(campaign.id, delivery_id, Scope.CLICK)
    assert f"/t/o/{pixel}.gif" in html
    seen = set()
    for url in re.findall(r'(?:href|src)="https?://[^/"]+(/[^"]+)"', html):
        kind = next((k for k in ("/t/o/", "/t/c/", "/u/") if url.startswith(k)), None)
        if kind is not None:
            seen.add(kind)
            used = url.rsplit("/", 1)[1].removesuffix(".gif").split("#")[0]
            assert used == {"/t/o/": pixel, "/t/c/": click, "/u/": token}[kind], url
    assert seen >= {"/t/o/", "/u/"}  # this body has no links to track

    statuses = _statuses(db_session, campaign.id)
    assert {statuses[e] for e in english} == {"sent"}
    provider_ids = set(
        db_session.scalars(sa.select(Delivery.provider_message_id).where(Delivery.status == "sent"))
    )
    assert provider_ids == {request.message_id}
    stats = db_session.get(CampaignStats, campaign.id)
    assert (stats.targeted, stats.sent, stats.failed) == (12, len(english), 0)


def test_each_language_batch_gets_its_own_content(db_session, fake, context):
    campaign, _emails, batches = _sending_campaign(db_session, members=6)
    for batch_no in batches:
        sending.send_batch(db_session, campaign.id, batch_no, context=context)
    subjects = {r.body["subject"] for r in fake.accepted}
    assert len(fake.accepted) == 2
    assert len(subjects) == 2
    french = next(r for r in fake.records if r.email == "member3@example.org")
    english = next(r for r in fake.records if r.email == "member1@example.org")
    assert french.subject == "17 décembre\u00a0: rassemblement pour libérer Nadia Rahimi"
    assert english.subject == "Dec. 17: rally to bring Nadia Rahimi home"
    db_session.refresh(campaign)
    assert campaign.status == "sent"
    assert campaign.finished_at is not None


def test_running_a_batch_twice_sends_once(db_session, fake, context):
    campaign, _emails, batches = _sending_campaign(db_session, members=4, languages=("en",))
    first = sending.send_batch(db_session, campaign.id, batches[0], context=context)
    second = sending.send_batch(db_session, campaign.id, batches[0], context=context)
    assert (first.sent, second.claimed) == (4, 0)
    assert set(fake.count_by_email().values()) == {1}
    assert fake.stats()["requests"] == 1


def test_unsubscribe_or_suppression_after_dispatch_stops_the_delivery(db_session, fake, context):
    campaign, emails, batches = _sending_campaign(db_session, members=5, languages=("en",))
    # Changed behind the services' backs (as an import or a bulk fix might): the claim
    # re-checks, so these two are still skipped.
    db_session.execute(
        sa.update(Subscription)
        .where(
            Subscription.member_id
            == sa.select(Member.id).where(Member.email == emails[0]).scalar_subquery()
        )
        .values(status="unsubscribed")
    )
    db_session.add(Suppression(email=emails[1], reason="spam_report"))
    db_session.commit()

    outcome = sending.send_batch(db_session, campaign.id, batches[0], context=context)

    assert outcome.skipped == 2
    assert outcome.sent == 3
    assert set(fake.count_by_email()) == set(emails[2:])
    statuses = _statuses(db_session, campaign.id)
    assert statuses[emails[0]] == statuses[emails[1]] == "skipped"


def test_a_paused_or_cancelled_campaign_sends_nothing(db_session, fake, context):
    campaign, _, batches = _sending_campaign(db_session, members=3, languages=("en",))
    sending.pause(db_session, campaign.id, actor=None)
    db_session.commit()
    assert sending.send_batch(db_session, campaign.id, batches[0], context=context).claimed == 0
    assert fake.stats()["requests"] == 0

    sending.cancel(db_session, campaign.id, actor=None)
    db_session.commit()
    assert set(_statuses(db_session, campaign.id).values()) == {"skipped"}


def test_429_puts_rows_back_and_holds_every_worker_until_the_reset(db_session, fake, context):
    campaign, _emails, batches = _sending_campaign(db_session, members=3, languages=("en",))
    fake.fail_next(1, "429", reset_in=3)

    outcome = sending.send_batch(db_session, campaign.id, batches[0], context=context)

    assert outcome.released == 3
    assert outcome.requeue_in is not None
    assert 2 <= outcome.requeue_in <= 10
    assert outcome.next_attempt == 1
    assert set(_statuses(db_session, campaign.id).values()) == {"queued"}
    assert coordination.provider_blocked_for(context.redis) > 1
    # Another run before the reset does not even ask SendGrid.
    again = sending.send_batch(db_session, campaign.id, batches[0], context=context, attempt=1)
    assert again.claimed == 0
    assert again.requeue_in is not None
    assert again.next_attempt == 1
    assert fake.stats()["requests"] == 1

    context.redis.delete("rp:sending:provider-blocked")
    done = sending.send_batch(db_session, campaign.id, batches[0], context=context, attempt=1)
    assert done.sent == 3
    assert set(fake.count_by_email().values()) == {1}


def test_5xx_retries_with_backoff_then_pauses_after_repeated_failed_batches(
    db_session, fake, context
):
    campaign, _, batches = _sending_campaign(db_session, members=3, languages=("en",))
    fake.set_mode("500")
    outcome = sending.send_batch(db_session, campaign.id, batches[0], context=context)
    assert outcome.requeue_in is not None
    assert 0 < outcome.requeue_in <= 10
    assert set(_statuses(db_session, campaign.id).values()) == {"queued"}

    for _ in range(context.max_failed_batches):
        last = sending.send_batch(
            db_session, campaign.id, batches[0], context=context, attempt=MAX_ATTEMPTS - 1
        )
        assert last.requeue_in is None  # out of attempts: the batch counts as failed
    db_session.refresh(campaign)
    assert campaign.status == "paused"
    assert "3 batches in a row" in campaign.status_reason
    assert "internal server error" in campaign.status_reason
    assert set(_statuses(db_session, campaign.id).values()) == {"queued"}  # nothing lost


def test_400_fails_the_batch_with_sendgrids_message(db_session, fake, context):
    campaign, _, batches = _sending_campaign(db_session, members=3, languages=("en",))
    fake.fail_next(1, "400")
    outcome = sending.send_batch(db_session, campaign.id, batches[0], context=context)
    assert outcome.failed == 3
    assert outcome.requeue_in is None
    progress = sending.progress(db_session, campaign)
    assert progress.failed == 3
    [error] = progress.errors
    assert "The from email does not contain a valid address. (from.email)" in error["message"]
    assert db_session.get(CampaignStats, campaign.id).failed == 3
    db_session.refresh(campaign)
    assert campaign.status == "sent"  # nothing left to try; the failures are on the page


def test_401_pauses_at_once_and_keeps_the_rows_queued(db_session, fake, context):
    campaign, _, batches = _sending_campaign(db_session, members=3, languages=("en",))
    fake_with_key = FakeSendGrid(api_key="SG.right").start()
    try:
        transport = SendGridTransport("SG.wrong", fake_with_key.url)
        bad_key = sending_context(transport, _redis_url(context.redis))
        outcome = sending.send_batch(db_session, campaign.id, batches[0], context=bad_key)
    finally:
        fake_with_key.stop()
    assert outcome.paused
    db_session.refresh(campaign)
    assert campaign.status == "paused"
    assert "401" in campaign.status_reason
    assert "resume" in campaign.status_reason
    assert set(_statuses(db_session, campaign.id).values()) == {"queued"}


def _redis_url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_no_answer_after_sending_leaves_the_rows_unknown_not_resent(db_session, fake, redis_url):
    campaign, _, batches = _sending_campaign(db_session, members=3, languages=("en",))
    transport = SendGridTransport("SG.test", fake.url, connect_timeout=1, read_timeout=0.5)
    context = sending_context(transport, redis_url)
    fake.fail_next(1, "hang", accepted=True, hang_seconds=5)

    outcome = sending.send_batch(db_session, campaign.id, batches[0], context=context)

    assert outcome.unknown == 3
    assert set(_statuses(db_session, campaign.id).values()) == {"unknown"}
    again = sending.send_batch(db_session, campaign.id, batches[0], context=context)
    assert again.claimed == 0
    assert set(fake.count_by_email().values()) == {1}  # SendGrid had taken it: one copy
    db_session.refresh(campaign)
    assert campaign.status == "sent"
    assert sending.progress(db_session, campaign).unknown == 3


def test_a_connection_refused_is_retried_and_nothing_is_lost(db_session, redis_url):
    campaign, _, batches = _sending_campaign(db_session, members=2, languages=("en",))
    from tests.support.servers import free_port

    transport = SendGridTransport("SG.test", f"http://127.0.0.1:{free_port()}", connect_timeout=1)
    outcome = sending.send_batch(
        db_session, campaign.id, batches[0], context=sending_context(transport, redis_url)
    )
    assert outcome.released == 2
    assert outcome.requeue_in is not None
    assert set(_statuses(db_session, campaign.id).values()) == {"queued"}


def test_with_a_send_rate_each_batch_is_one_burst_and_the_next_waits(db_session, fake, context):
    campaign, _, batches = _sending_campaign(db_session, members=30, languages=("en",), rate=60)
    # 60 a minute: a bucket of 10 tokens, one more each second; batches of 10, one request.
    assert len(batches) == 3
    first = sending.send_batch(db_session, campaign.id, batches[0], context=context)
    assert (first.sent, first.requeue_in) == (10, None)
    second = sending.send_batch(
        db_session, campaign.id, batches[1], context=context, sleep=lambda s: None
    )
    assert second.claimed <= 2  # nothing or what refilled meanwhile, never a burst
    assert second.claimed or second.requeue_in  # waits for its tokens
    assert sum(fake.count_by_email().values()) == 10 + second.sent


def test_a_send_rate_lowered_mid_campaign_splits_a_batch_into_requests(db_session, fake, context):
    campaign, emails, batches = _sending_campaign(db_session, members=30, languages=("en",))
    assert len(batches) == 1
    setup_org(db_session, rate_per_minute=60)  # the organizer slows the send down
    db_session.commit()

    first = sending.send_batch(db_session, campaign.id, batches[0], context=context)

    assert (first.sent, first.requeue_in) == (10, 0.0)  # the rest follows at once
    statuses = _statuses(db_session, campaign.id)
    assert sorted(statuses[e] for e in emails[:10]) == ["sent"] * 10
    assert {statuses[e] for e in emails[10:]} == {"queued"}
    batch = db_session.get(SendBatch, (campaign.id, batches[0]))
    assert batch.status == "queued"
    assert sending.progress(db_session, campaign).sending == 0
    assert set(fake.count_by_email()) == set(emails[:10])


def test_finishing_happens_once_when_the_last_batches_end(db_session, fake, context):
    campaign, _, batches = _sending_campaign(db_session, members=6, batch_size=2, languages=("en",))
    outcomes = [sending.send_batch(db_session, campaign.id, b, context=context) for b in batches]
    assert [o.finished for o in outcomes] == [False, False, True]
    db_session.refresh(campaign)
    assert campaign.status == "sent"
    assert sending.finish_if_done(db_session, campaign.id) is False


def test_progress_counts_the_ledger(db_session, fake, context):
    campaign, _emails, batches = _sending_campaign(
        db_session, members=4, batch_size=2, languages=("en",)
    )
    before = sending.progress(db_session, campaign)
    assert (before.total, before.queued, before.sent, before.frozen) == (4, 4, 0, True)
    sending.send_batch(db_session, campaign.id, batches[0], context=context)
    # The send page asks every second: the counts and the rate are one read of the campaign's
    # rows (besides the rows of batches in flight, a handful).
    whole = lambda s: "FROM deliveries" in s and "send_batches" not in s  # noqa: E731
    with captured(db_session, whole) as reads:
        during = sending.progress(db_session, campaign)
    assert len(reads) == 1, reads
    assert (during.sent, during.queued, during.percent) == (2, 2, 50.0)
    assert during.rate_per_minute == 8.0  # 2 sent in the last 15 s
    assert during.seconds_left is not None
    assert during.to_json()["status"] == "sending"


def test_the_sweep_declares_abandoned_batches_unknown_and_requeues_stalled_campaigns(
    db_session, redis_url
):
    campaign, _, _batches = _sending_campaign(
        db_session, members=4, batch_size=2, languages=("en",)
    )
    now = utcnow()
    # Batch 0 was claimed ten minutes ago by a worker that died (no lease in Redis).
    db_session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign.id, SendBatch.batch_no == 0)
        .values(
            status="sending",
            claimed_at=now - timedelta(minutes=10),
            claimed_upto=sa.select(sa.func.max(Delivery.id))
            .where(Delivery.campaign_id == campaign.id, Delivery.batch_no == 0)
            .scalar_subquery(),
        )
    )
    db_session.execute(
        sa.update(Campaign)
        .where(Campaign.id == campaign.id)
        .values(started_at=now - timedelta(minutes=11))
    )
    db_session.commit()
    client = redis.Redis.from_url(redis_url)

    report = sending.sweep(db_session, now, client=client, stuck_seconds=300, stall_seconds=60)

    assert report.unknown == 2
    assert db_session.get(SendBatch, (campaign.id, 0)).status == "unknown"
    assert report.requeued == {campaign.id: [1]}
    assert [j.args for j in jobs.pending_jobs(db_session) if j.name == jobs.SEND_BATCH] == [
        (campaign.id, 1)
    ]
    db_session.commit()
    # The sweep marked the campaign alive: the next sweep does not queue it again.
    again = sending.sweep(db_session, now, client=client, stuck_seconds=300, stall_seconds=60)
    assert again.requeued == {}
    assert again.unknown == 0


def test_a_batch_whose_lease_is_alive_is_left_alone_until_stuck(db_session, redis_url):
    campaign, _, _ = _sending_campaign(db_session, members=2, languages=("en",))
    now = utcnow()
    db_session.execute(
        sa.update(SendBatch)
        .where(SendBatch.campaign_id == campaign.id)
        .values(status="sending", claimed_at=now - timedelta(seconds=100), claimed_upto=10**9)
    )
    db_session.commit()
    client = redis.Redis.from_url(redis_url)
    with coordination.Lease(client, campaign.id, 0, "t0ken", ttl=5):
        report = sending.sweep(db_session, now, client=client, stuck_seconds=300, stall_seconds=60)
        assert report.unknown == 0
        db_session.commit()
        late = now + timedelta(seconds=250)
        report = sending.sweep(db_session, late, client=client, stuck_seconds=300, stall_seconds=60)
        assert report.unknown == 2  # longer than any request can take: whatever the lease says


def test_the_claim_checks_subscriptions_by_member_whatever_the_statistics(db_session):
    """With no statistics (a first send right after an import), the planner once walked
    ix_subscriptions_list_status and filtered every subscriber of the list per recipient."""
    campaign, _, batches = _sending_campaign(db_session, members=20_000, languages=("en",))
    _claim, plan = _claim_and_plan(db_session, campaign.id, batches[0])
    assert "pk_subscriptions" in plan, plan
    assert "ix_subscriptions_list_status" not in plan, plan
    # The freeze analyzed what it wrote: a batch is found by (campaign, batch), not
    # by scanning every queued row of the campaign for its batch number.
    assert "ix_deliveries_campaign_batch" in plan, plan


def test_the_claim_finds_its_batch_by_index_when_many_campaigns_had_a_batch_0(db_session):
    """Every small campaign has a batch 0, so the statistics say batch 0 is common; ordered
    by the bare id, a big campaign's first claim was planned as a walk of pk_deliveries from
    the oldest row, filtering for the batch: cheap by the planner's uniform guess, every
    older campaign's rows read in fact (seen in the suite, depending on test order)."""
    setup_org(db_session)
    small = make_list(db_session, "Stewards")
    add_members(db_session, 300, small.id, prefix="steward")
    lst = make_list(db_session)
    add_members(db_session, 20_000, lst.id)

    def frozen(lists):
        campaign = make_campaign(db_session, lists, languages=("en",))
        campaign.status = CampaignStatus.SENDING.value
        db_session.flush()
        batches = sending.freeze_audience(db_session, campaign.id).batches
        db_session.commit()
        return campaign, batches

    # Earlier small campaigns: one batch each, all numbered 0, so batch 0 looks common.
    for _ in range(30):
        frozen([small])
    campaign, batches = frozen([lst])
    db_session.execute(sa.text("ANALYZE deliveries"))
    _claim, plan = _claim_and_plan(db_session, campaign.id, batches[0])
    assert "pk_deliveries" not in plan, plan
    assert "ix_deliveries_campaign_batch" in plan, plan


def test_the_claim_is_never_compiled_or_run_in_parallel(db_session):
    """Under `make bench-send`, auto_explain showed claims of 1,000 indexed rows (2-5 ms of
    work) spending 20-60 ms in LLVM's JIT or ~50 ms starting a parallel worker: the sub-plan
    inflated the estimate past jit_above_cost and parallel_setup_cost. The claim turns both
    off for its own transaction; here the server is told that everything is worth a JIT and
    a parallel plan, and the claim's statement still gets neither."""
    campaign, _, batches = _sending_campaign(db_session, members=3_000, languages=("en",))
    connection = db_session.connection()
    server_jit = connection.execute(sa.text("SELECT current_setting('jit')")).scalar()
    for setting in (
        "jit_above_cost",
        "parallel_setup_cost",
        "parallel_tuple_cost",
        "min_parallel_table_scan_size",
        "min_parallel_index_scan_size",
    ):
        connection.execute(sa.text(f"SET LOCAL {setting} = 0"))
    explain = "EXPLAIN (COSTS OFF) SELECT * FROM deliveries JOIN members ON members.id = member_id"
    eager = "\n".join(connection.execute(sa.text(explain)).scalars())
    assert "Gather" in eager, eager  # what the session alone would do
    claim, plan = _claim_and_plan(db_session, campaign.id, batches[0])
    assert claim is not None
    assert len(claim.rows) == 1000
    assert "Gather" not in plan, plan
    assert "JIT" not in plan, plan
    db_session.rollback()
    # SET LOCAL: the next transaction plans with the server's settings again.
    assert db_session.scalar(sa.text("SELECT current_setting('jit')")) == server_jit


def _freeze_checks(session, campaign_id: int) -> tuple[list[str], sending.FreezeResult]:
    """Freeze, and what session_replication_role was while the INSERT into deliveries ran
    ('replica': its foreign-key triggers did not fire)."""
    with captured(session, lambda s: s.startswith("INSERT INTO deliveries")) as seen:
        result = sending.freeze_audience(session, campaign_id)
    return [role for *_, role in seen], result


def test_the_freeze_skips_the_foreign_key_checks_its_rows_cannot_fail(db_session):
    """The freeze's two foreign-key checks per row (campaign: locked by the freeze itself;
    member: read by the same statement) cost ~14 µs a row, a third of the freeze. A role that
    may turn them off does: no member row is locked by the freeze, every row is written,
    and the transaction plans without JIT (0.2-0.3 s of LLVM per step before). Without the
    change the INSERT runs with the triggers on ('origin')."""
    campaign, emails = _campaign_to_freeze(db_session, 300)
    roles, result = _freeze_checks(db_session, campaign.id)
    assert roles == ["replica"]
    assert result.inserted == len(emails)
    assert db_session.scalar(sa.text("SELECT current_setting('jit')")) == "off"
    # The checks are back on for whatever the transaction does next.
    assert db_session.scalar(sa.text("SHOW session_replication_role")) == "origin"
    db_session.rollback()


def test_a_role_that_may_not_skip_them_freezes_with_the_checks(db_session):
    """Production roles are rarely superusers: the freeze keeps the checks and still works.
    The role, its grants and SET ROLE vanish with the rolled-back transaction."""
    campaign, emails = _campaign_to_freeze(db_session, 50)
    db_session.execute(sa.text("CREATE ROLE rp_plain_freeze NOLOGIN"))
    db_session.execute(sa.text("GRANT ALL ON ALL TABLES IN SCHEMA public TO rp_plain_freeze"))
    db_session.execute(sa.text("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO rp_plain_freeze"))
    db_session.execute(sa.text("SET LOCAL ROLE rp_plain_freeze"))
    roles, result = _freeze_checks(db_session, campaign.id)
    assert roles == ["origin"]
    assert result.inserted == len(emails)
    db_session.rollback()


def test_a_freeze_racing_another_continues_after_what_it_froze(db_session):
    """Without ON CONFLICT: a second dispatch whose step looks at members the first one has
    frozen meanwhile (it waited for the campaign's lock) writes only those after the ledger's
    highest member, rather than failing on the unique constraint."""
    campaign, emails = _campaign_to_freeze(db_session, 40)
    first = sending.freeze_audience(db_session, campaign.id, limit=25, after_member=0)
    assert first.inserted == 25
    second = sending.freeze_audience(db_session, campaign.id, limit=30, after_member=0)
    assert second.inserted == 5
    frozen = db_session.scalars(
        sa.select(Delivery.email).where(Delivery.campaign_id == campaign.id)
    ).all()
    assert sorted(frozen) == sorted(emails[:30])
    db_session.rollback()


def test_a_delivery_whose_member_row_was_deleted_is_skipped_at_claim(db_session):
    """Rallypoint never deletes a member, but one deleted by hand (with the freeze's checks
    off, its delivery may outlive it) must not leave a row queued under a closed batch."""
    campaign, emails, batches = _sending_campaign(db_session, members=5, languages=("en",))
    gone = db_session.scalar(
        sa.select(Delivery.member_id).where(Delivery.campaign_id == campaign.id).limit(1)
    )
    db_session.execute(sa.text("SET LOCAL session_replication_role = replica"))
    db_session.execute(sa.text("DELETE FROM subscriptions WHERE member_id = :id"), {"id": gone})
    db_session.execute(sa.text("DELETE FROM members WHERE id = :id"), {"id": gone})
    db_session.execute(sa.text("SET LOCAL session_replication_role = origin"))
    # The claim's read (marking the row skipped would re-check the reference: the row was
    # inserted by this test's own transaction, which a real freeze's is not).
    rows, bad = ledger._read_rows(db_session, ledger.BatchKey(campaign.id, batches[0]), 1000)
    orphan = db_session.scalar(
        sa.select(Delivery.id).where(
            Delivery.campaign_id == campaign.id, Delivery.member_id == gone
        )
    )
    assert bad == [orphan]
    assert len(rows) == len(emails) - 1
    db_session.rollback()


def test_the_freeze_reads_the_ledger_once_per_step_whatever_the_statistics(db_session):
    """The freeze leaves out members already in the campaign's ledger by continuing after its
    highest member id: one read of the unique (campaign_id, member_id) index per step. As a
    NOT EXISTS per member (an anti-join with the ledger), stale statistics (members added,
    not analyzed; the ledger's taken before the campaign had rows) made it a nested loop over
    the campaign's rows: 62 s for a 100,000-member step that takes 1 s."""
    setup_org(db_session)
    lst = make_list(db_session)
    add_members(db_session, 2_000, lst.id)

    def campaign_sending():
        campaign = make_campaign(db_session, [lst])
        campaign.status = CampaignStatus.SENDING.value
        db_session.flush()
        return campaign

    for _ in range(2):
        sending.freeze_in_steps(db_session, campaign_sending().id, first=300)
    # Statistics of the ledger as an earlier freeze left them (they know no rows of the next
    # campaign); the members' were never taken.
    db_session.execute(sa.text("ANALYZE deliveries"))
    with captured(db_session, lambda s: s.startswith("INSERT INTO deliveries")) as steps:
        sending.freeze_in_steps(db_session, campaign_sending().id, first=300)
    assert len(steps) > 1
    for statement, parameters, _ in steps:
        plan = explain(db_session, statement, parameters)
        reads = [line for line in plan if " on deliveries" in line and "Insert on" not in line]
        assert len(reads) == 1, "\n".join(plan)
        # max(member_id) of the campaign: the last entry of the unique index, read once.
        assert "Scan Backward using uq_deliveries_campaign_id_member_id" in reads[0], plan


def test_the_freeze_leaves_statistics_of_the_columns_the_claim_is_planned_on(db_session):
    """The claims right after a freeze are planned on the ledger's statistics; the freeze
    analyzes the four columns those plans read (a third of a whole-table ANALYZE: 68
    against 172-205 ms at 100,000 rows), not the other sixteen."""
    campaign, _ = _campaign_to_freeze(db_session, 1_500)
    with captured(db_session, lambda s: s.startswith("ANALYZE")) as issued:
        sending.freeze_audience(db_session, campaign.id)
    assert [statement for statement, *_ in issued] == [
        "ANALYZE deliveries (campaign_id, batch_no, status, member_id)"
    ]
    stats = set(
        db_session.scalars(sa.text("SELECT attname FROM pg_stats WHERE tablename = 'deliveries'"))
    )
    assert {"campaign_id", "batch_no", "status", "member_id"} <= stats
    db_session.rollback()


def test_a_batch_outcome_writes_no_index_entry(db_session):
    """A batch's outcome is the send's one write a recipient: it changes no indexed column
    and finds room on the row's page (the table's fillfactor), so PostgreSQL writes the new
    version beside the old one and no index entry (a heap-only update). With `status` in an
    index, or full pages, every recipient cost a new entry in each of six indexes."""
    campaign, _, _ = _sending_campaign(db_session, members=2_000, languages=("en",))
    options = db_session.scalar(
        sa.text("SELECT reloptions FROM pg_class WHERE relname = 'deliveries'")
    )
    assert f"fillfactor={FILLFACTOR}" in options
    ids = db_session.scalars(sa.select(Delivery.id).where(Delivery.campaign_id == campaign.id))
    sent = ledger.record_sent(db_session, list(ids), now=utcnow(), provider_message_id="m" * 22)
    updated, heap_only = db_session.execute(
        sa.text(
            "SELECT pg_stat_get_xact_tuples_updated(CAST('deliveries' AS regclass)), "
            "pg_stat_get_xact_tuples_hot_updated(CAST('deliveries' AS regclass))"
        )
    ).one()
    assert (sent, updated, heap_only) == (2_000, 2_000, 2_000)
    db_session.rollback()


def test_rows_in_doubt_are_counted_from_an_index_of_those_rows_only(db_session):
    """The campaign list and the report count each campaign's unknown rows; the partial
    ix_deliveries_campaign_errors holds the rows with an error only (in doubt or refused),
    so the freeze and every sent outcome write nothing to it (a whole-campaign
    (campaign, status) index cost a send about 2 µs a recipient)."""
    campaign, _, _ = _sending_campaign(db_session, members=300, languages=("en",))
    ids = db_session.scalars(
        sa.select(Delivery.id).where(Delivery.campaign_id == campaign.id).order_by(Delivery.id)
    ).all()
    ledger.record_sent(db_session, ids[10:], now=utcnow())
    ledger.record_unknown(db_session, ids[:10], "no answer", now=utcnow())
    db_session.execute(sa.text("ANALYZE deliveries"))
    db_session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    with captured(db_session, lambda s: "count(*)" in s) as seen:
        assert unknown_counts(db_session, [campaign.id]) == {campaign.id: 10}
    statement, parameters, _ = seen[0]
    plan = "\n".join(explain(db_session, statement, parameters))
    assert "ix_deliveries_campaign_errors" in plan, plan


def test_the_finish_check_looks_for_a_queued_row_batch_by_batch(db_session):
    """At the end of a send no row is queued: the check reads ix_deliveries_campaign_batch
    batch by batch (a sub-plan per send_batches row), not the campaign's rows as a join."""
    campaign, _, _ = _sending_campaign(db_session, members=3_000, batch_size=100, languages=("en",))
    ids = db_session.scalars(sa.select(Delivery.id).where(Delivery.campaign_id == campaign.id))
    ledger.record_sent(db_session, list(ids), now=utcnow())
    db_session.execute(sa.update(SendBatch).values(status="sent"))
    db_session.execute(sa.text("ANALYZE deliveries"))
    db_session.execute(sa.text("ANALYZE send_batches"))
    with captured(db_session, lambda s: "frozen_at IS NOT NULL" in s) as seen:
        assert sending.finish_if_done(db_session, campaign.id)
    statement, parameters, _ = seen[0]
    plan = "\n".join(explain(db_session, statement, parameters))
    probe = re.search(r"ix_deliveries_campaign_batch.*\n.*Index Cond: .*batch_no = ", plan)
    assert probe, plan


def test_a_batch_closed_with_a_row_still_queued_is_queued_again(db_session):
    """The sweep's safety net: a closed batch holding a queued row would keep its campaign
    from finishing forever; only that batch goes back to queued."""
    campaign, _, batches = _sending_campaign(
        db_session, members=30, batch_size=10, languages=("en",)
    )
    stranded, *others = batches
    ids = db_session.scalars(
        sa.select(Delivery.id).where(
            Delivery.campaign_id == campaign.id, Delivery.batch_no != stranded
        )
    ).all()
    ledger.record_sent(db_session, list(ids), now=utcnow())
    db_session.execute(sa.update(SendBatch).values(status="sent"))
    assert not sending.finish_if_done(db_session, campaign.id)  # a row is still queued

    assert ledger.reopen_stranded(db_session, campaign.id, utcnow()) == [stranded]
    statuses = dict(
        db_session.execute(
            sa.select(SendBatch.batch_no, SendBatch.status).where(
                SendBatch.campaign_id == campaign.id
            )
        ).all()
    )
    assert statuses == {stranded: "queued", **dict.fromkeys(others, "sent")}
    assert ledger.reopen_stranded(db_session, campaign.id, utcnow()) == []
