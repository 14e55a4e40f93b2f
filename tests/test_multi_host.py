"""Several hosts: Redis through Sentinel, PostgreSQL through PgBouncer, a read replica.

The settings are checked on their own; then a real Sentinel (master, replica, passwords) carries
the app's clients, the broker and the tracking buffer through a failover, and a real PgBouncer
in transaction pooling mode carries an import (COPY, temporary tables, advisory lock), an
export (server-side cursor) and a send by a worker and beat.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db, limiter
from app.infra import redis_client
from app.models import Campaign, Member
from app.models.base import utcnow
from app.services.audience import export
from app.services.audience.imports import import_members
from app.services.tracking import hit_stream
from app.services.tracking.hit_buffer import HitBuffer
from config.settings import ConfigError, ProductionConfig, TestingConfig
from tests.fakes.sendgrid import FakeSendGrid
from tests.support.limiter import session_limiter_kept
from tests.support.multi_host import PgBouncer, SentinelGroup
from tests.support.sending import add_members, make_campaign, make_list, setup_org
from tests.support.servers import free_port
from tests.support.workers import CeleryProcess, worker_environ

PROD = {
    "RALLYPOINT_ENV": "production",
    "DATABASE_URL": "postgresql://u@db/r",
    "SECRET_KEY": "s" * 40,
}


@pytest.fixture(autouse=True)
def _session_limiter_kept() -> Iterator[None]:
    """Each create_app() here rebinds the global limiter (to a Sentinel gone after the test)."""
    with session_limiter_kept():
        yield


# -- the settings -----------------------------------------------------------------------------


def test_sentinel_settings_build_the_broker_and_limiter_addresses():
    config = ProductionConfig(
        environ={
            **PROD,
            "REDIS_SENTINELS": "10.0.0.11:26379, 10.0.0.12:26379,[fd00::13]:26380",
            "REDIS_SENTINEL_MASTER": "rp",
            "REDIS_PASSWORD": "p@ss/word",
            "REDIS_SENTINEL_PASSWORD": "sp",
            "REDIS_DB": "2",
        }
    )
    config.validate()
    assert config.REDIS_SENTINELS == [
        ("10.0.0.11", 26379),
        ("10.0.0.12", 26379),
        ("fd00::13", 26380),
    ]
    assert redis_client.broker_url(config) == (
        "sentinel://:p%40ss%2Fword@10.0.0.11:26379/2;sentinel://:p%40ss%2Fword@10.0.0.12:26379/2;"
        "sentinel://:p%40ss%2Fword@[fd00::13]:26380/2"
    )
    assert redis_client.broker_options(config) == {
        "master_name": "rp",
        "sentinel_kwargs": {"password": "sp"},
    }
    assert config.RATELIMIT_STORAGE_URI == (
        "redis+sentinel://10.0.0.11:26379,10.0.0.12:26379,[fd00::13]:26380/rp"
    )
    assert config.RATELIMIT_STORAGE_OPTIONS == {
        "password": "p@ss/word",
        "sentinel_kwargs": {"password": "sp"},
    }
    app = create_app(config)
    transport = app.extensions["celery"].conf.broker_transport_options
    assert transport["master_name"] == "rp"
    assert transport["visibility_timeout"] == 3600


def test_without_sentinels_everything_uses_redis_url():
    config = ProductionConfig(environ={**PROD, "REDIS_URL": "redis://r:6380/1"})
    assert redis_client.broker_url(config) == "redis://r:6380/1"
    assert redis_client.broker_options(config) == {}
    assert config.RATELIMIT_STORAGE_URI == "redis://r:6380/1"


@pytest.mark.parametrize("bad", ["10.0.0.1", "10.0.0.1:port", ":26379", "h:0", "h:70000"])
def test_a_bad_sentinel_list_is_refused(bad):
    with pytest.raises(ConfigError, match="REDIS_SENTINELS must list host:port"):
        ProductionConfig(environ={**PROD, "REDIS_SENTINELS": f"h:1,{bad}"})


def test_transaction_pooling_turns_off_prepared_statements_and_names_the_direct_url():
    plain = ProductionConfig(environ=PROD)
    assert "connect_args" not in plain.SQLALCHEMY_ENGINE_OPTIONS
    assert plain.DATABASE_TRANSACTION_POOLING is False
    pooled = ProductionConfig(
        environ={**PROD, "DATABASE_DIRECT_URL": "postgresql://u@db-direct:5432/r"}
    )
    assert pooled.DATABASE_TRANSACTION_POOLING is True
    assert pooled.DATABASE_DIRECT_URL == "postgresql+psycopg://u@db-direct:5432/r"
    assert pooled.SQLALCHEMY_ENGINE_OPTIONS["connect_args"] == {"prepare_threshold": None}
    explicit = ProductionConfig(environ={**PROD, "DATABASE_TRANSACTION_POOLING": "1"})
    assert explicit.SQLALCHEMY_ENGINE_OPTIONS["connect_args"] == {"prepare_threshold": None}


def test_a_replica_url_becomes_the_replica_bind_and_must_be_postgresql():
    config = ProductionConfig(environ={**PROD, "DATABASE_REPLICA_URL": "postgres://ro@replica/r"})
    assert config.SQLALCHEMY_BINDS["replica"]["url"] == "postgresql+psycopg://ro@replica/r"
    bad = ProductionConfig(environ={**PROD, "DATABASE_REPLICA_URL": "mysql://ro@replica/r"})
    with pytest.raises(ConfigError, match="DATABASE_REPLICA_URL must be a postgresql"):
        bad.validate()


def test_exports_read_on_the_replica_when_one_is_configured(test_environ, committed_db):
    """The replica here is the same database under another URL; the export must use its
    engine (Flask-SQLAlchemy's "replica" bind), which the pool's checkouts show."""
    app = create_app(
        TestingConfig(
            environ={**test_environ, "DATABASE_REPLICA_URL": test_environ["DATABASE_URL"]}
        )
    )
    with app.app_context():
        setup_org(db.session)
        lst = make_list(db.session)
        add_members(db.session, 30, lst.id)
        db.session.commit()
        replica = db.engines["replica"]
        assert replica is not db.engine
        checkouts = []
        sa.event.listen(replica, "checkout", lambda *_: checkouts.append(1))
        text = "".join(export.export_list(db.session, lst))
        assert text.count("\n") == 31
        assert checkouts == [1]
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


# -- Redis through Sentinel ---------------------------------------------------------------------

needs_sentinel = pytest.mark.skipif(
    shutil.which("redis-sentinel") is None, reason="redis-sentinel is not installed"
)


@pytest.fixture
def sentinel_group():
    group = SentinelGroup().start()
    try:
        yield group
    finally:
        group.cleanup()


@needs_sentinel
def test_clients_and_tracking_buffer_follow_a_sentinel_failover(test_environ, sentinel_group):
    app = create_app(TestingConfig(environ={**test_environ, **sentinel_group.environ()}))
    first = sentinel_group.master_port()
    with app.app_context():
        client = redis_client.get_redis()
        client.set("rp:test:before", "1")
        assert limiter.storage.check()  # flask-limiter's storage through the Sentinel too
        recorded: list[object] = []
        buffer = HitBuffer(app.config, recorded.extend, interval_ms=10**6)  # no thread runs
        buffer.add("o", 1, 10, 0, "203.0.113.9", "ua", False)
        buffer.flush()
        master = redis.Redis(port=first, password=SentinelGroup.PASSWORD)
        assert master.xlen(hit_stream.STREAM_KEY) == 1

        second = sentinel_group.failover()
        assert second != first
        promoted = redis.Redis(port=second, password=SentinelGroup.PASSWORD)
        # What an unreplicated tail looks like: the promoted replica lacks the entry.
        promoted.delete(hit_stream.STREAM_KEY)
        deadline = time.monotonic() + 10
        while True:  # the first command on a connection to the demoted master may fail
            try:
                client.set("rp:test:after", "2")
                break
            except redis.RedisError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert promoted.get("rp:test:after") == b"2"
        assert promoted.get("rp:test:before") == b"1"
        buffer.add("c", 1, 11, 5, "203.0.113.9", "ua", False)
        buffer.flush()
        hit_ids = [
            hit.hit_id
            for _, fields in promoted.xrange(hit_stream.STREAM_KEY)
            for hit in hit_stream.decode_hits(fields[b"h"])
        ]
        # The new master's replication id told the buffer to add its unconfirmed entry again.
        assert len(hit_ids) == 2
        assert len(set(hit_ids)) == 2
        assert recorded == []
        buffer.close()


@needs_sentinel
def test_a_campaign_sent_through_a_sentinel_failover_reaches_everyone_once(
    app, committed_db, test_environ, sentinel_group, tmp_path
):
    with app.app_context():
        setup_org(db.session, rate_per_minute=3000)  # 600 members take about 12 s
        lst = make_list(db.session)
        emails = add_members(db.session, 600, lst.id)
        campaign = make_campaign(
            db.session, [lst], status="scheduled", send_at=utcnow() + timedelta(seconds=1)
        )
        db.session.commit()
        campaign_id = campaign.id
    processes = []
    with FakeSendGrid() as fake:
        env = worker_environ(
            test_environ,
            **sentinel_group.environ(),
            MAIL_TRANSPORT="sendgrid",
            SENDGRID_API_KEY="SG.sentinel",
            SENDGRID_API_HOST=fake.url,
            PUBLIC_BASE_URL="https://rally.example.org",
            SEND_BATCH_SIZE="50",
            SCHEDULER_TICK_SECONDS="0.5",
            SEND_SWEEP_SECONDS="1",
            SEND_STALL_SECONDS="5",
        )
        try:
            processes.append(CeleryProcess("worker", env, tmp_path).start())
            master_url = (
                f"redis://:{SentinelGroup.PASSWORD}@127.0.0.1:{sentinel_group.master_port()}/0"
            )
            processes[0].wait_ready(master_url)
            processes.append(CeleryProcess("beat", env, tmp_path).start())
            deadline = time.monotonic() + 30
            while fake.stats()["accepted_requests"] < 2:
                assert time.monotonic() < deadline, processes[0].log()
                time.sleep(0.1)
            sentinel_group.failover()
            status = ""
            deadline = time.monotonic() + 90
            while status != "sent":
                assert time.monotonic() < deadline, processes[0].log()
                time.sleep(0.3)
                with app.app_context():
                    status = db.session.scalar(
                        sa.select(Campaign.status).where(Campaign.id == campaign_id)
                    )
                    db.session.remove()
            counts = fake.count_by_email()
        finally:
            for process in processes:
                process.stop()
    assert set(counts) == set(emails)
    assert set(counts.values()) == {1}
    assert sentinel_group.master_port() != sentinel_group.ports["master"]


# -- PostgreSQL through PgBouncer (transaction pooling) -----------------------------------------

needs_pgbouncer = pytest.mark.skipif(
    shutil.which("pgbouncer") is None, reason="pgbouncer is not installed"
)


@pytest.fixture
def pgbouncer(database_url):
    server = make_url(database_url)
    bouncer = PgBouncer(server.host or "127.0.0.1", server.port or 5432, server.username).start()
    try:
        yield bouncer
    finally:
        bouncer.cleanup()


@needs_pgbouncer
def test_import_export_and_send_through_pgbouncer_in_transaction_mode(
    app, committed_db, test_environ, database_url, pgbouncer, tmp_path
):
    pooled = pgbouncer.url(make_url(database_url).database)
    env = {**test_environ, "DATABASE_URL": pooled, "DATABASE_DIRECT_URL": database_url}
    bounced = create_app(TestingConfig(environ=env))
    rows = ["email,first_name,language,local"] + [
        f"member{i}@example.org,M{i},{'fr' if i % 3 == 0 else 'en'},Local {i % 4}"
        for i in range(3000)
    ]
    path = tmp_path / "members.csv"
    path.write_text("\n".join(rows) + "\n")
    with bounced.app_context():
        setup_org(db.session)
        lst = make_list(db.session)
        db.session.commit()
        # COPY, temporary tables ON COMMIT DROP, SET LOCAL and an advisory xact lock, all in
        # the import's one transaction.
        _job, report = import_members(
            db.session, path=path, list_id=lst.id, strategy="copy", consent="express"
        )
        db.session.commit()
        assert report.added == 3000, report
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 3000
        # A server-side cursor (yield_per) read through the pool, inside its transaction.
        exported = "".join(export.export_list(db.session, lst))
        assert exported.count("@example.org") == 3000
        # The same statement again and again through a pool of two server connections:
        # psycopg's prepared statements would be missing on the other connection.
        db.session.commit()
        with db.engine.connect() as one, db.engine.connect() as two:
            for _ in range(12):
                for connection in (one, two):
                    assert connection.scalar(sa.text("SELECT count(*) FROM members")) == 3000
                    connection.commit()  # the server connection goes back to the pool
        campaign = make_campaign(
            db.session, [lst], status="scheduled", send_at=utcnow() + timedelta(seconds=1)
        )
        db.session.commit()
        campaign_id = campaign.id
        db.session.remove()
        db.engine.dispose()

    processes = []
    with FakeSendGrid() as fake:
        worker_env = worker_environ(
            env,
            MAIL_TRANSPORT="sendgrid",
            SENDGRID_API_KEY="SG.pgbouncer",
            SENDGRID_API_HOST=fake.url,
            PUBLIC_BASE_URL="https://rally.example.org",
            SEND_BATCH_SIZE="500",
            SCHEDULER_TICK_SECONDS="0.5",
        )
        try:
            processes.append(CeleryProcess("worker", worker_env, tmp_path).start())
            processes[0].wait_ready(test_environ["REDIS_URL"])
            processes.append(CeleryProcess("beat", worker_env, tmp_path).start())
            status = ""
            deadline = time.monotonic() + 90
            while status != "sent":
                assert time.monotonic() < deadline, processes[0].log() + pgbouncer.log()
                time.sleep(0.3)
                with app.app_context():
                    status = db.session.scalar(
                        sa.select(Campaign.status).where(Campaign.id == campaign_id)
                    )
                    db.session.remove()
            counts = fake.count_by_email()
        finally:
            for process in processes:
                process.stop()
    assert len(counts) == 3000
    assert set(counts.values()) == {1}
    assert "prepared statement" not in processes[0].log()


# -- behind a load balancer ---------------------------------------------------------------------


def test_the_balancers_health_check_needs_no_worker(client):
    """`/healthz?scope=web` answers for this web process (its database) without pinging a
    worker; the full check says 503 with no worker running."""
    assert client.get("/healthz").status_code == 503
    response = client.get("/healthz?scope=web")
    assert response.status_code == 200
    assert list(response.get_json()["parts"]) == ["database"]


def test_tracking_flush_ms_zero_puts_each_hit_in_redis_before_the_request_ends(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.delete(hit_stream.STREAM_KEY)
    buffer = HitBuffer(redis_server.url, lambda hits: None, interval_ms=0)
    try:
        buffer.add("o", 1, 10, 0, "203.0.113.9", "ua", False)
        assert client.xlen(hit_stream.STREAM_KEY) == 1  # no flush called, no thread waited
        buffer.add("c", 1, 10, 3, "203.0.113.9", "ua", False)
        assert client.xlen(hit_stream.STREAM_KEY) == 2
    finally:
        buffer.close()
        client.delete(hit_stream.STREAM_KEY)


# -- the operator's commands (docs/operations.md) ----------------------------------------------


def test_pause_all_pauses_every_sending_campaign_and_resume_takes_one_back(app, db_session):
    setup_org(db_session)
    lst = make_list(db_session)
    add_members(db_session, 5, lst.id)
    sending_ones = [make_campaign(db_session, [lst], status="sending") for _ in range(2)]
    draft = make_campaign(db_session, [lst])
    db_session.commit()
    runner = app.test_cli_runner()
    out = runner.invoke(args=["sending", "pause-all"])
    assert out.exit_code == 0, out.output
    assert "2 campaign(s) paused." in out.output
    assert [c.status for c in sending_ones] == ["paused", "paused"]
    assert draft.status == "draft"
    listed = runner.invoke(args=["sending", "list"])
    assert f"{sending_ones[0].id}\tpaused" in listed.output
    out = runner.invoke(args=["sending", "resume", str(sending_ones[0].id)])
    assert out.exit_code == 0, out.output
    assert sending_ones[0].status == "sending"
    refused = runner.invoke(args=["sending", "resume", str(draft.id)])
    assert refused.exit_code != 0
    assert draft.status == "draft"


def test_a_redis_that_refuses_info_still_takes_the_hits(tmp_path):
    """The failover check reads INFO; a managed Redis that renamed it must not push every
    tracking hit to the database."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(tmp_path), "--rename-command", "INFO", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        direct: list[object] = []
        buffer = HitBuffer(f"redis://127.0.0.1:{port}/0", direct.extend, interval_ms=10**6)
        buffer.add("o", 1, 10, 0, "203.0.113.9", "ua", False)
        buffer.flush()
        assert client.xlen(hit_stream.STREAM_KEY) == 1
        assert direct == []
        buffer.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
