"""Time a campaign report at 1M deliveries and 2M events against the same report at 1k.

Run from the repository root (PostgreSQL at 127.0.0.1:5432 or BENCH_DATABASE_URL)::

    python -m benchmarks.report [--big 1000000] [--small 1000] [--rounds 15] [--keep]

It creates a throwaway database, migrates it, fills one campaign with --big deliveries and
about two events each (delivered/bounce/drop, opens with Apple-style machine opens, clicks on
four links one of which is the petition, unsubscribes, spam reports) and another with --small,
in bulk with INSERT ... SELECT generate_series. The counters and rollups are then built by the
same recomputation the tests check against the incremental path (stats.recompute_stats,
breakdown.rebuild_breakdown). A logged-in viewer then requests the report page and its API
(funnel, timeline, links, breakdown) through the Flask test client: a warm-up, then rounds
alternating big and small; medians are compared. The last line printed is one JSON object:
big_ms, small_ms, ratio (the page), api_big_ms, api_small_ms, api_ratio (the five API calls
behind the page), problems_big_ms, problems_small_ms (first page of bounced/failed addresses),
the sizes, cpu_us_per_page (µs of CPU per report page view, big and small: load is this
process, the app and its test client; postgres the database's backends) and loadavg.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db
from app.models import Campaign, CampaignHourly, CampaignStats, Link, LinkStats, Role, User
from app.models.deliveries import BOUNCED_SQL, Delivery, DeliveryStatus, with_error
from app.services.organization import users
from app.services.stats import breakdown
from app.services.stats import counters as stats
from benchmarks.harness import CpuMeter, load_average
from config.settings import TestingConfig, normalise_database_url

PASSWORD = "benchmark-password-123"
STARTED = datetime.now(UTC).replace(microsecond=0) - timedelta(days=12)

# One campaign's members, deliveries and events from generate_series: ids base+1 .. base+n.
# The hash-like expressions ((i * prime) % m) spread outcomes and engagement evenly; opens
# follow an exponential decay (mean 9 hours) from the start, as real campaigns do.
MEMBERS_SQL = """
INSERT INTO members (id, email, first_name, last_name, language, postal_code, local,
                     attributes, consent_source, created_at, updated_at)
SELECT :base + i, 'c' || :cid || '-' || i || '@bench.example.org', 'First' || i, 'Member',
       CASE WHEN i % 4 = 0 THEN 'fr' ELSE 'en' END, '', 'Local ' || (100 + i % 40),
       '{}'::jsonb, 'benchmark', now(), now()
FROM generate_series(CAST(1 AS bigint), :n) AS i
"""
DELIVERIES_SQL = """
INSERT INTO deliveries (id, campaign_id, member_id, email, language, local, batch_no, status,
                        attempts, error, outcome, queued_at, sent_at, updated_at)
SELECT :base + i, :cid, :base + i, 'c' || :cid || '-' || i || '@bench.example.org',
       CASE WHEN i % 4 = 0 THEN 'fr' ELSE 'en' END, 'Local ' || (100 + i % 40), i / 1000,
       CASE WHEN i % 500 = 0 THEN 'failed' ELSE 'sent' END, 1,
       CASE WHEN i % 500 = 0 THEN '550 5.1.1 mailbox unavailable' END,
       CASE WHEN i % 500 = 0 THEN NULL
            WHEN (i * 37) % 100 < 2 THEN 'bounced'
            WHEN (i * 37) % 100 = 2 THEN 'dropped'
            ELSE 'delivered' END,
       :started, CASE WHEN i % 500 <> 0 THEN :started + (i / 1000) * interval '1 second' END,
       now()
FROM generate_series(CAST(1 AS bigint), :n) AS i
"""
OUTCOME_EVENTS_SQL = """
INSERT INTO events (kind, campaign_id, delivery_id, member_id, occurred_at, is_machine, detail)
SELECT CASE WHEN (i * 37) % 100 < 2 THEN 'bounce'
            WHEN (i * 37) % 100 = 2 THEN 'dropped' ELSE 'delivered' END,
       :cid, :base + i, :base + i, :started + (60 + i % 600) * interval '1 second', false,
       CASE WHEN (i * 37) % 100 < 2
            THEN '{"reason": "550 5.1.1 user unknown", "status": "5.1.1"}'::jsonb
            WHEN (i * 37) % 100 = 2 THEN '{"reason": "Bounced Address"}'::jsonb
            ELSE '{}'::jsonb END
FROM generate_series(CAST(1 AS bigint), :n) AS i
WHERE i % 500 <> 0
"""
# Openers: delivered, and (i * 53) % 100 < 48; 1 to 3 opens each; a fifth of openers have an
# Apple Mail Privacy Protection prefetch as their first "open" (flagged machine).
OPEN_EVENTS_SQL = """
INSERT INTO events (kind, campaign_id, delivery_id, member_id, occurred_at, is_machine, detail)
SELECT 'open', :cid, :base + i, :base + i,
       :started + CASE WHEN j = 1 AND (i * 17) % 10 < 2 THEN (90 + i % 300)::float8
                  ELSE LEAST(-ln((((i * 7919 + j * 104729) % 9973) + 1) / 9974.0) * 32400,
                             864000) END * interval '1 second',
       j = 1 AND (i * 17) % 10 < 2, '{}'::jsonb
FROM generate_series(CAST(1 AS bigint), :n) AS i CROSS JOIN generate_series(1, 3) AS j
WHERE i % 500 <> 0 AND (i * 37) % 100 >= 3 AND (i * 53) % 100 < 48 AND j <= 1 + i % 3
"""
CLICK_EVENTS_SQL = """
INSERT INTO events (kind, campaign_id, delivery_id, member_id, link_id, occurred_at,
                    is_machine, detail)
SELECT 'click', :cid, :base + i, :base + i, (:links)[1 + i % 4],
       :started + (LEAST(-ln((((i * 7919 + 104729) % 9973) + 1) / 9974.0) * 32400, 864000)
                   + 45) * interval '1 second',
       (i * 13) % 50 = 0, '{}'::jsonb
FROM generate_series(CAST(1 AS bigint), :n) AS i
WHERE i % 500 <> 0 AND (i * 37) % 100 >= 3 AND (i * 53) % 100 < 48 AND (i * 29) % 100 < 30
"""
OTHER_EVENTS_SQL = """
INSERT INTO events (kind, campaign_id, delivery_id, member_id, occurred_at, is_machine, detail)
SELECT CASE WHEN (i * 41) % 10000 < 3 THEN 'spamreport' ELSE 'unsubscribe' END,
       :cid, :base + i, :base + i, :started + (3600 + i % 86400) * interval '1 second', false,
       '{}'::jsonb
FROM generate_series(CAST(1 AS bigint), :n) AS i
WHERE i % 500 <> 0 AND (i * 37) % 100 >= 3
  AND (((i * 53) % 100 < 48 AND (i * 31) % 1000 < 5) OR (i * 41) % 10000 < 3)
"""
# The counts behind the problem list (bounced or dropped, then refused) and the rows in doubt,
# said as the app says them: each should walk a partial index, not the campaign.
COUNTED = {
    "bounced": sa.text(BOUNCED_SQL),
    "refused": with_error(DeliveryStatus.FAILED),
    "unknown": with_error(DeliveryStatus.UNKNOWN),
}


def _count_plan(session, campaign_id: int, rows: sa.ColumnElement[bool]) -> list[str]:
    count = (
        sa.select(sa.func.count())
        .select_from(Delivery)
        .where(Delivery.campaign_id == campaign_id, rows)
    )
    sql = count.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    return list(session.execute(sa.text(f"EXPLAIN {sql}")).scalars())


def _server_url() -> str:
    raw = (
        os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    return normalise_database_url(raw)


def _libpq(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _fill(session, name: str, n: int, base: int) -> int:
    """One campaign with n deliveries; returns its id."""
    campaign = Campaign(name=name, status="sent", started_at=STARTED, finished_at=STARTED)
    session.add(campaign)
    session.flush()
    links = [
        Link(campaign_id=campaign.id, url="https://example.org/rally", position=0),
        Link(campaign_id=campaign.id, url="https://example.org/petition", position=1),
        Link(campaign_id=campaign.id, url="https://example.org/carpool", position=2),
        Link(campaign_id=campaign.id, url="https://example.org/donate", position=3),
    ]
    links[1].is_petition = True
    session.add_all(links)
    session.flush()
    params = {
        "cid": campaign.id,
        "n": n,
        "base": base,
        "started": STARTED,
        "links": [link.id for link in links],
    }
    for sql in (
        MEMBERS_SQL,
        DELIVERIES_SQL,
        OUTCOME_EVENTS_SQL,
        OPEN_EVENTS_SQL,
        CLICK_EVENTS_SQL,
        OTHER_EVENTS_SQL,
    ):
        session.execute(sa.text(sql), params)
    return campaign.id


def _build_counters(session, campaign_id: int) -> None:
    """The counters and rollups from raw rows: the recomputation the tests compare against."""
    snapshot = stats.recompute_stats(session, campaign_id)

    def stored(model, counts: dict) -> dict:
        # The recomputation also counts signatures (signed, shared), kept in action_tallies.
        return {name: value for name, value in counts.items() if name in model.__table__.c}

    stats.add_counters(
        session,
        CampaignStats,
        ("campaign_id",),
        {(campaign_id,): stored(CampaignStats, snapshot.campaign)},
    )
    stats.add_counters(
        session,
        LinkStats,
        ("link_id",),
        {(link_id,): stored(LinkStats, counts) for link_id, counts in snapshot.links.items()},
        extra={(link_id,): {"campaign_id": campaign_id} for link_id in snapshot.links},
    )
    stats.add_counters(
        session,
        CampaignHourly,
        ("campaign_id", "hour"),
        {
            (campaign_id, hour): stored(CampaignHourly, counts)
            for hour, counts in snapshot.hourly.items()
        },
    )
    breakdown.rebuild_breakdown(session, campaign_id)


def _login(client) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    assert token, "no CSRF token on the login page"
    response = client.post(
        "/login",
        data={"email": "viewer@bench.example.org", "password": PASSWORD, "csrf_token": token[1]},
    )
    assert response.status_code == 302, response.status_code


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    """Build the data, time the pages, print the figures; the database is dropped after."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    server = make_url(_server_url())
    name = f"rallypoint_bench_report_{uuid.uuid4().hex[:10]}"
    admin = _libpq(server.set(database="postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.set(database=name).render_as_string(hide_password=False)
    print(f"database: {name}")
    try:
        figure = _run(url, args)
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(figure))


def _run(url: str, args: argparse.Namespace) -> dict[str, object]:
    from flask_migrate import upgrade

    app = create_app(
        TestingConfig(
            environ={
                "SECRET_KEY": "benchmark-secret-key-that-is-long-enough-0000",
                "DATABASE_URL": url,
                # Nothing here needs Redis: point it at a closed port, never at a shared one.
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "RATELIMIT_STORAGE_URI": "memory://",
                "LOG_LEVEL": "WARNING",
            }
        )
    )
    with app.app_context():
        upgrade(directory="migrations")
        session = db.session
        started = time.perf_counter()
        big = _fill(session, "Big campaign", args.big, 0)
        small = _fill(session, "Small campaign", args.small, 10_000_000)
        session.execute(sa.text("SELECT setval('members_id_seq', 20000000)"))
        session.execute(sa.text("SELECT setval('deliveries_id_seq', 20000000)"))
        users.create_user(
            session, email="viewer@bench.example.org", password=PASSWORD, role=Role.VIEWER.value
        )
        session.commit()
        print(f"loaded in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        for campaign_id in (big, small):
            _build_counters(session, campaign_id)
        session.commit()
        print(f"counters and rollups recomputed in {time.perf_counter() - started:.1f} s")
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        sizes = {
            cid: session.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM deliveries WHERE campaign_id = :c),"
                    " (SELECT count(*) FROM events WHERE campaign_id = :c)"
                ),
                {"c": cid},
            ).one()
            for cid in (big, small)
        }
        counts = stats.stored_stats(session, big).campaign
        for name, rows in COUNTED.items():
            plan = _count_plan(session, big, rows)
            print(f"{name} count plan: " + " | ".join(line.strip() for line in plan))
        session.remove()
    for cid, (deliveries, events) in sizes.items():
        print(f"campaign {cid}: {deliveries:,} deliveries, {events:,} events")
    print(
        "big funnel: "
        + ", ".join(f"{k}={counts[k]:,}" for k in ("targeted", "delivered", "opens_unique"))
    )

    client = app.test_client()
    _login(client)
    with app.app_context():
        token = users.create_token(
            db.session,
            db.session.scalar(sa.select(User).where(User.role == Role.VIEWER.value)),
        ).secret
        db.session.commit()
    headers = {"Authorization": f"Bearer {token}"}

    def page(cid: int) -> None:
        response = client.get(f"/stats/campaigns/{cid}")
        assert response.status_code == 200, response.status_code
        response.get_data()

    def api(cid: int) -> None:
        for path in ("", "/timeline", "/links", "/breakdown/local", "/breakdown/language"):
            response = client.get(f"/api/v1/stats/campaigns/{cid}{path}", headers=headers)
            assert response.status_code == 200, (path, response.status_code)
            response.get_data()

    def problems(cid: int) -> None:
        response = client.get(f"/stats/campaigns/{cid}/problems")
        assert response.status_code == 200, response.status_code
        response.get_data()

    for _ in range(3):  # warm-up: template compilation, connection pool, caches
        for cid in (big, small):
            page(cid)
            api(cid)
            problems(cid)
    times: dict[str, list[float]] = {
        f"{what}{size}": [] for what in ("", "api_", "problems_") for size in ("big", "small")
    }
    for round_no in range(args.rounds):
        order = (big, small) if round_no % 2 == 0 else (small, big)
        for cid in order:
            key = "big" if cid == big else "small"
            times[key].append(_timed(lambda cid=cid: page(cid)))
            times[f"api_{key}"].append(_timed(lambda cid=cid: api(cid)))
            times[f"problems_{key}"].append(_timed(lambda cid=cid: problems(cid)))
    # CPU a page view costs (the app and its test client are this process: "load"), apart.
    cpu_per_page = {}
    for key, cid in (("big", big), ("small", small)):
        meter = CpuMeter(_libpq(make_url(url)), {}).start()
        for _ in range(args.rounds):
            page(cid)
        meter.stop()
        cpu_per_page[key] = meter.per_unit(args.rounds)
    medians = {key: statistics.median(values) for key, values in times.items()}
    for key, values in times.items():
        print(f"{key}: median {medians[key]:.1f} ms, min {min(values):.1f}, max {max(values):.1f}")
    return {
        "big_ms": round(medians["big"], 2),
        "small_ms": round(medians["small"], 2),
        "ratio": round(medians["big"] / medians["small"], 3),
        "api_big_ms": round(medians["api_big"], 2),
        "api_small_ms": round(medians["api_small"], 2),
        "api_ratio": round(medians["api_big"] / medians["api_small"], 3),
        "problems_big_ms": round(medians["problems_big"], 2),
        "problems_small_ms": round(medians["problems_small"], 2),
        "big_deliveries": sizes[big][0],
        "big_events": sizes[big][1],
        "small_deliveries": sizes[small][0],
        "small_events": sizes[small][1],
        "cpu_us_per_page": cpu_per_page,
        "loadavg": load_average(),
    }


if __name__ == "__main__":
    main()
