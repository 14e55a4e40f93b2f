"""Hits through the stream and the flusher: counted exactly once across crashes and outages."""

from __future__ import annotations

import http.client
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from app import jobs
from app.extensions import db
from app.infra.tokens import Scope
from app.models import Delivery
from app.services.stats import counters as stats
from app.services.tracking import hit_stream
from app.services.tracking.hits import decode_hits
from app.services.tracking.runtime import runtime
from tests.support.servers import RedisServer, free_port
from tests.support.tracking import (
    event_count,
    flush_all,
    reset_tracking,
    sent_campaign,
    stop_buffer,
)
from workers.tasks.tracking import flush_tracking

ROOT = Path(__file__).resolve().parents[2]


def _seed(app, members=6):
    with app.app_context():
        data = sent_campaign(db.session, app, members=members)
        db.session.commit()
        info = {
            "campaign": data.campaign.id,
            "links": [data.petition.id, data.info.id],
            "tokens": [data.token(i) for i in range(members)],
            "click_tokens": [data.click_token(i) for i in range(members)],
        }
        db.session.remove()
    return info


def _hit(client, seed, rng):
    index = rng.randrange(len(seed["tokens"]))
    if rng.random() < 0.6:
        token = seed["tokens"][index]
        response = client.get(f"/t/o/{token}.gif", headers={"User-Agent": "Mozilla/5.0 Firefox"})
        assert response.status_code == 200
    else:
        token = seed["click_tokens"][index]
        response = client.get(
            f"/t/c/{rng.choice(seed['links'])}/{token}", headers={"User-Agent": "Mozilla/5.0"}
        )
        assert response.status_code == 302


def _counters_match(app, campaign_id):
    with app.app_context():
        stored = stats.stored_stats(db.session, campaign_id)
        computed = stats.recompute_stats(db.session, campaign_id)
        db.session.remove()
    for name in stats.EVENT_COUNTERS:
        assert stored.campaign[name] == computed.campaign[name], name
    assert stored.links == computed.links
    assert stored.hourly == computed.hourly
    return stored.campaign


def _redis(app):
    # The app's own pool: closed with the app, so no socket is left for the GC to warn about.
    with app.app_context():
        from app.infra.redis_client import get_redis

        return get_redis()


@pytest.fixture
def clean(app, committed_db):
    reset_tracking(app)
    yield
    reset_tracking(app)


def test_hits_are_counted_exactly_once_through_the_stream(app, client, clean):
    seed = _seed(app)
    rng = random.Random(1)
    for _ in range(150):
        _hit(client, seed, rng)
    assert flush_all(app) == 150
    assert flush_all(app) == 0
    assert event_count(app) == 150
    counters = _counters_match(app, seed["campaign"])
    assert counters["opens_total"] + counters["clicks_total"] == 150
    with redis.Redis.from_url(app.config["REDIS_URL"]) as client_redis:
        assert hit_stream.backlog(client_redis) == 0


def test_a_run_that_has_caught_up_leaves_new_arrivals_to_the_next_tick(
    app, client, clean, monkeypatch
):
    """Hits keep arriving under load: a run that chased them would write dozens of tiny
    batches a second. Once a read of new entries comes back short it stops; the next beat
    tick writes what arrived meanwhile in one bulk batch."""
    from app.services.tracking import hits as tracking

    seed = _seed(app)
    rng = random.Random(3)
    for _ in range(5):
        _hit(client, seed, rng)
    runtime(app).buffer.flush()  # one short entry waiting

    record_hits = tracking.record_hits
    arrivals = []

    def record_while_hits_arrive(session, hits, **kwargs):
        if not arrivals:  # the web processes add more while the first batch is written
            for _ in range(7):
                _hit(client, seed, rng)
            runtime(app).buffer.flush()
            arrivals.append(7)
        return record_hits(session, hits, **kwargs)

    monkeypatch.setattr(tracking, "record_hits", record_while_hits_arrive)
    with app.app_context():
        assert flush_tracking.run(run_seconds=30) == 5
        db.session.remove()
    client_redis = _redis(app)
    assert hit_stream.backlog(client_redis) >= 1  # the new entries wait for the next tick
    monkeypatch.undo()
    assert flush_all(app, ship=False) == 7
    assert event_count(app) == 12
    assert hit_stream.backlog(client_redis) == 0


def test_a_flusher_killed_between_commit_and_xack_counts_nothing_twice(
    app, client, clean, monkeypatch
):
    seed = _seed(app)
    rng = random.Random(2)
    for _ in range(80):
        _hit(client, seed, rng)
    runtime(app).buffer.flush()

    def crash(*_args, **_kwargs):
        raise RuntimeError("flusher killed after the commit, before XACK")

    monkeypatch.setattr(hit_stream, "acknowledge", crash)
    with app.app_context(), pytest.raises(RuntimeError):
        flush_tracking.run(run_seconds=5)
    assert event_count(app) == 80  # committed...
    client_redis = redis.Redis.from_url(app.config["REDIS_URL"])
    assert (
        client_redis.xpending(hit_stream.STREAM_KEY, hit_stream.GROUP)["pending"] > 0
    )  # ...not acked
    monkeypatch.undo()

    assert flush_all(app, ship=False) == 0  # the next run reads them again, records none twice
    assert event_count(app) == 80
    assert client_redis.xpending(hit_stream.STREAM_KEY, hit_stream.GROUP)["pending"] == 0
    counters = _counters_match(app, seed["campaign"])
    assert counters["opens_total"] + counters["clicks_total"] == 80


def test_malformed_entries_are_acknowledged_and_skipped(app, client, clean):
    seed = _seed(app, members=1)
    client_redis = _redis(app)
    client_redis.xadd(hit_stream.STREAM_KEY, {"h": b"not json"})
    client_redis.xadd(hit_stream.STREAM_KEY, {"x": b"[]"})
    client.get(f"/t/o/{seed['tokens'][0]}.gif")
    assert flush_all(app) == 1
    assert hit_stream.backlog(client_redis) == 0


def test_with_redis_down_hits_go_to_the_database_and_redirects_work(other_app, committed_db):
    app = other_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    seed = _seed(app, members=2)
    client = app.test_client()
    started = time.monotonic()
    for token, click_token in zip(seed["tokens"], seed["click_tokens"], strict=True):
        assert client.get(f"/t/c/{seed['links'][0]}/{click_token}").status_code == 302
        assert client.get(f"/t/o/{token}.gif").status_code == 200
    assert time.monotonic() - started < 2  # requests never wait for Redis
    deadline = time.monotonic() + 10
    while event_count(app) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # the buffer's own thread writes them
    assert event_count(app) == 4
    assert runtime(app).buffer.direct_writes == 4
    counters = _counters_match(app, seed["campaign"])
    assert (counters["clicks_total"], counters["opens_total"]) == (2, 2)
    stop_buffer(app)


@pytest.mark.chaos
def test_redis_restarted_during_a_run_of_hits_loses_none(other_app, committed_db):
    server = RedisServer().start()
    try:
        app = other_app(REDIS_URL=server.url)
        seed = _seed(app, members=20)
        client = app.test_client()
        rng = random.Random(3)
        stop = threading.Event()

        def flusher():
            while not stop.is_set():
                try:
                    with app.app_context():
                        flush_tracking.run(run_seconds=1)
                except Exception:  # noqa: S110 - Redis is down for a moment; try again
                    pass
                finally:
                    with app.app_context():
                        db.session.remove()
                time.sleep(0.05)

        thread = threading.Thread(target=flusher, daemon=True)
        thread.start()
        restarter = threading.Timer(0.6, server.restart, kwargs={"down_seconds": 0.3})
        restarter.start()
        hits_sent = 0
        started = time.monotonic()
        # Two seconds of hits with the restart in the middle, and at least 200 on a slow day.
        while (time.monotonic() - started < 2.0 or hits_sent < 200) and (
            time.monotonic() - started < 8.0
        ):
            _hit(client, seed, rng)
            hits_sent += 1
            time.sleep(0.002)
        restarter.join()
        buffer = runtime(app).buffer
        settle = time.monotonic() + 20
        while time.monotonic() < settle:
            buffer.flush()
            if event_count(app) >= hits_sent and buffer.retained == 0:
                break
            time.sleep(0.1)
        stop.set()
        thread.join(timeout=10)
        with app.app_context():
            flush_tracking.run(run_seconds=5)
            db.session.remove()
        hits_recorded = event_count(app)
        assert hits_sent >= 100
        assert hits_recorded == hits_sent
        _counters_match(app, seed["campaign"])
        stop_buffer(app)
    finally:
        server.cleanup()


@pytest.mark.chaos
def test_a_real_worker_flushes_hits_and_processes_webhook_batches(app, client, clean):
    from tests.support.tracking import WebhookSigner

    seed = _seed(app, members=2)
    for token in seed["tokens"]:
        client.get(f"/t/o/{token}.gif")
    runtime(app).buffer.flush()
    import workers.tasks  # noqa: F401 - registers every task with the app's Celery

    celery = app.extensions["celery"]
    celery.control.purge()  # messages other tests left behind (their rows are gone)
    with start_worker(
        celery,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        queues=["default", "webhooks"],
    ):
        deadline = time.monotonic() + 30
        while event_count(app, "open") < 2 and time.monotonic() < deadline:
            with app.app_context():
                jobs.send_now(jobs.Job(jobs.FLUSH_TRACKING))  # what beat does every second
            time.sleep(0.5)
        assert event_count(app, "open") == 2

        signer = WebhookSigner()
        with app.app_context():
            delivery = db.session.get(Delivery, 1) or db.session.query(Delivery).first()
            delivery_id, campaign_id = delivery.id, delivery.campaign_id
            db.session.remove()
        body = (
            f'[{{"email":"x@example.org","timestamp":{int(time.time())},"event":"delivered",'
            f'"sg_event_id":"w1","rp_delivery":"{delivery_id}","rp_campaign":"{campaign_id}"}}]'
        ).encode()
        original = app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"]
        app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = signer.public_key
        try:
            assert (
                client.post(
                    "/webhooks/sendgrid", data=body, headers=signer.headers(body)
                ).status_code
                == 202
            )
        finally:
            app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = original
        deadline = time.monotonic() + 20
        outcome = None
        while time.monotonic() < deadline and outcome is None:
            with app.app_context():
                outcome = db.session.get(Delivery, delivery_id).outcome
                db.session.remove()
            time.sleep(0.1)
        assert outcome == "delivered"


@pytest.mark.chaos
def test_gunicorn_worker_stop_flushes_the_buffer(test_environ, app, committed_db):
    """SIGTERM (a graceful stop) ships buffered hits even when the interval has not come."""
    server = RedisServer().start()
    seed = _seed(app, members=3)
    port = free_port()
    env = {
        **os.environ,
        **test_environ,
        "REDIS_URL": server.url,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "TRACKING_FLUSH_MS": "600000",  # nothing leaves before the stop
        "PYTHONPATH": str(ROOT),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    proc = subprocess.Popen(
        [str(gunicorn), "-c", "config/gunicorn.conf.py", "app:create_app()"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    conn.getresponse().read()
                finally:
                    conn.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        for i in range(30):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", f"/t/o/{seed['tokens'][i % 3]}.gif")
                assert conn.getresponse().status == 200
            finally:
                conn.close()
        client = redis.Redis.from_url(server.url)
        assert client.exists(hit_stream.STREAM_KEY) == 0  # still buffered in the worker
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        entries = client.xrange(hit_stream.STREAM_KEY)
        client.close()
        assert sum(len(decode_hits(fields[b"h"])) for _, fields in entries) == 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.cleanup()


@pytest.mark.chaos
def test_entries_redis_lost_are_added_again_from_the_web_process(other_app, committed_db):
    """Redis restarts between two flushes of an idle web process: its entries come back."""
    from app.services.tracking.hit_buffer import HitBuffer
    from app.services.tracking.hits import OPEN

    server = RedisServer().start()
    try:
        app = other_app(REDIS_URL=server.url)
        seed = _seed(app, members=2)
        direct: list = []
        buffer = HitBuffer(server.url, direct.extend, interval_ms=10**6)  # no thread runs
        with app.app_context():
            signer = runtime(app).signer
            refs = [signer.verify(t, Scope.OPEN) for t in seed["tokens"]]
        for ref in refs * 5:
            buffer._pending.append(
                (
                    "r." + str(len(buffer._pending)),
                    OPEN,
                    ref.campaign_id,
                    ref.delivery_id,
                    0,
                    time.time(),
                    "",
                    "UA",
                    False,
                )
            )
        assert buffer.flush() == 10
        assert buffer.retained == 10
        server.restart()  # the stream and the epoch are gone; the buffer did not notice
        buffer._last_poll = 0
        buffer.flush()  # a watermark poll sees a new epoch and adds the lost entries again
        assert direct == []
        with app.app_context():
            flush_tracking.run(run_seconds=5)
            db.session.remove()
        assert event_count(app) == 10
        buffer._last_poll = 0
        buffer.flush()
        assert buffer.retained == 0  # the flusher's watermark released them
    finally:
        server.cleanup()


def test_an_entry_that_can_never_be_recorded_is_parked_not_blocking(app, client, clean):
    from app.services.tracking.hits import encode_hits

    seed = _seed(app, members=1)
    with app.app_context():
        ref = runtime(app).signer.verify(seed["tokens"][0], Scope.OPEN)
    poison = [("p.1", "o", ref.campaign_id, ref.delivery_id, 0, 1e20, "", "UA", False)]
    client_redis = _redis(app)
    client_redis.xadd(hit_stream.STREAM_KEY, {"h": encode_hits(poison)})
    for _ in range(3):
        client.get(f"/t/o/{seed['tokens'][0]}.gif", headers={"User-Agent": "Bad\x00Agent"})
    assert flush_all(app) == 3
    assert event_count(app) == 3
    dead = client_redis.xrange(hit_stream.DEAD_KEY)
    assert len(dead) == 1
    assert b"p.1" in dead[0][1][b"h"]
    client_redis.delete(hit_stream.DEAD_KEY)
    assert hit_stream.backlog(client_redis) == 0


def test_through_a_redis_and_database_outage_hits_wait_on_disk_then_ship(
    other_app, committed_db, tmp_path, monkeypatch
):
    """Both stores down: memory stays bounded (hits go to spill files past SPILL_AFTER, and at
    a graceful stop), and once Redis answers again an idle process sends them all on."""
    from app.services.tracking.hit_buffer import HitBuffer
    from app.services.tracking.hits import OPEN

    monkeypatch.setattr(HitBuffer, "SPILL_AFTER", 5)
    monkeypatch.setattr(HitBuffer, "UNSPILL_EVERY", 0.0)
    server = RedisServer().start()
    try:
        app = other_app(REDIS_URL=server.url)
        seed = _seed(app, members=3)
        with app.app_context():
            signer = runtime(app).signer
            refs = [signer.verify(t, Scope.OPEN) for t in seed["tokens"]]

        def database_down(_hits):
            raise ConnectionError("the database is down too")

        dead = f"redis://127.0.0.1:{free_port()}/0"
        buffer = HitBuffer(dead, database_down, interval_ms=10**6, spill_dir=tmp_path)
        sent = 0

        def hits(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                ref = refs[sent % len(refs)]
                buffer._pending.append(
                    (f"s.{sent}", OPEN, ref.campaign_id, ref.delivery_id, 0, time.time(), "",
                     "UA", False)
                )  # fmt: skip
                sent += 1

        hits(4)
        with pytest.raises(ConnectionError):
            buffer.flush()
        assert buffer.buffered == 4  # few: kept in memory
        assert not list(tmp_path.iterdir())
        hits(8)
        with pytest.raises(ConnectionError):
            buffer.flush()
        assert buffer.buffered == 0  # past SPILL_AFTER: on disk
        assert buffer.spilled == 12
        hits(3)
        buffer.close()  # a graceful stop during the outage writes what is left
        assert buffer.spilled == 15
        assert len(list(tmp_path.glob("hits-*.json"))) == 2

        # Redis is back. An idle process (nothing new to send) notices and sends them on.
        restarted = HitBuffer(server.url, database_down, interval_ms=10**6, spill_dir=tmp_path)
        restarted._shipping = False  # as after a failed round: it must probe Redis itself
        for _ in range(6):
            restarted.flush()
        assert list(tmp_path.iterdir()) == []
        with app.app_context():
            flush_tracking.run(run_seconds=5)
            db.session.remove()
        assert event_count(app) == sent == 15
    finally:
        server.cleanup()


def test_the_flush_runs_in_a_thread_of_lower_priority(app):
    """TRACKING_FLUSH_NICE: the flush's thread is niced; the task's own thread is not."""
    from workers.tasks import tracking as flush_task

    seen: dict[str, int] = {}
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def work() -> int:
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["thread"] = threading.get_native_id()
        return 7

    with app.app_context():
        assert flush_task._in_niced_thread(5, work) == 7
    assert seen["nice"] == min(before + 5, 19)
    assert seen["thread"] != threading.get_native_id()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before

    def fails() -> int:
        raise RuntimeError("database refused")

    with app.app_context(), pytest.raises(RuntimeError, match="database refused"):
        flush_task._in_niced_thread(5, fails)
