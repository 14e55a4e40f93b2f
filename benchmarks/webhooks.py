"""SendGrid's events for a whole send, posted as SendGrid does, timed until every outcome counts.

Run from the repository root::

    python -m benchmarks.webhooks [--recipients 100000] [--connections 4] [--batch 1000]

Sets up a throwaway PostgreSQL database (on TEST_DATABASE_URL / DATABASE_URL's server,
default postgresql://postgres@127.0.0.1:5432) and a private redis-server, seeds a campaign
already sent to `--recipients` members (its ledger as the sender leaves it), then starts the
Procfile's processes: gunicorn (config/gunicorn.conf.py), a Celery worker on every queue
and beat ticking every second. The events of the send — `processed` then `delivered` for
each recipient, as the fake SendGrid's Event Webhook sends them — are posted signed
(ECDSA, like SendGrid), `--batch` events a request, over `--connections` connections. The
clock runs from the first post until every batch is applied and the campaign's delivered
counter equals the recipients.

Meanwhile the scheduling tick's lateness is watched: beat asks for a tick every second, and
each tick records when it ran; a tick waiting behind event batches shows as a longer gap.

The last line printed is one JSON object: events, seconds, events_per_s, first_batch_ms and
last_batch_ms (median processing time of the first and last ten batches in the worker: flat
as the events table grows), tick_delay_max_ms (the longest gap between ticks beyond their
one-second period), CPU seconds of each process group (web, worker, beat, postgres: this
database's backends, postgres_shared, redis, load: the poster) and µs of each per event,
and the host's load average.
Targets (issue 11): >= 10,000 events/s, last <= 1.5 x first, tick delay <= 2,000 ms.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import redis
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import (  # noqa: E402
    BenchSite,
    CpuMeter,
    cpu_line,
    load_average,
    pid_of,
    wait_http,
)

TICK_SECONDS = 1.0
_BATCH_LINE = re.compile(r"webhook batch (\d+): (\d+) events recorded, \d+ duplicates in (\d+) ms")


class Signer:
    """SendGrid's side of the Event Webhook's signature: ECDSA P-256 over timestamp + body."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }


def seed(env: dict[str, str], recipients: int) -> tuple[int, list[tuple[int, str]]]:
    """Migrate, then a campaign sent to `recipients` members: its ledger, batches and counters."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import Campaign, Delivery
    from app.services import sending
    from config.settings import config_from_env
    from tests.support.sending import add_members, make_campaign, make_list, setup_org

    app = create_app(config_from_env(env))
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        session = db.session
        setup_org(session)
        lst = make_list(session)
        add_members(session, recipients, lst.id)
        campaign = make_campaign(session, [lst])
        sending.send_now(session, campaign)
        session.commit()
        sending.freeze_audience(session, campaign.id)
        session.execute(
            sa.text(
                "UPDATE deliveries SET status = 'sent', sent_at = now() WHERE campaign_id = :c"
            ),
            {"c": campaign.id},
        )
        session.execute(
            sa.text(
                "UPDATE send_batches SET status = 'sent', claimed_at = now(), attempts = 1 "
                "WHERE campaign_id = :c"
            ),
            {"c": campaign.id},
        )
        session.execute(
            sa.text("UPDATE campaign_stats SET sent = targeted WHERE campaign_id = :c"),
            {"c": campaign.id},
        )
        session.execute(
            sa.text("UPDATE campaigns SET status = 'sent', finished_at = now() WHERE id = :c"),
            {"c": campaign.id},
        )
        session.commit()
        rows = [
            (int(i), str(e))
            for i, e in session.execute(
                sa.select(Delivery.id, Delivery.email)
                .where(Delivery.campaign_id == campaign.id)
                .order_by(Delivery.id)
            )
        ]
        campaign_id = int(campaign.id)
        assert session.get(Campaign, campaign_id) is not None
        db.engine.dispose()
    return campaign_id, rows


def events_of(campaign_id: int, rows: list[tuple[int, str]], batch: int) -> list[list[dict]]:
    """`processed` for every recipient, then `delivered`, cut into request-sized lists."""
    now = int(time.time())
    message = secrets.token_urlsafe(16)
    events = []
    for kind in ("processed", "delivered"):
        for index, (delivery_id, email) in enumerate(rows):
            events.append(
                {
                    "email": email,
                    "timestamp": now,
                    "event": kind,
                    "sg_event_id": secrets.token_urlsafe(16),
                    "sg_message_id": f"{message}.filterdrecv-{index}",
                    "smtp-id": f"<{message}.{index}@ismtpd0001p1iad2.sendgrid.net>",
                    "rp_delivery": str(delivery_id),
                    "rp_campaign": str(campaign_id),
                    **({"response": "250 OK"} if kind == "delivered" else {}),
                }
            )
    return [events[i : i + batch] for i in range(0, len(events), batch)]


def post_all(port: int, bodies: list[bytes], signer: Signer, connections: int) -> list[int]:
    """POST every body over `connections` keep-alive connections; their HTTP statuses."""
    statuses: list[int] = []
    lock = threading.Lock()
    queue = list(enumerate(bodies))

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                _, body = queue.pop(0)
            for _ in range(3):
                try:
                    conn.request("POST", "/webhooks/sendgrid", body, signer.headers(body))
                    response = conn.getresponse()
                    response.read()
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                statuses.append(response.status)
        conn.close()

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


class TickWatch(threading.Thread):
    """Reads the tick's mark every 20 ms; the longest gap beyond the period is the delay."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.stop = threading.Event()
        self.marks: list[float] = []

    def run(self) -> None:
        from app.services.sending.coordination import TICK_KEY

        last = None
        while not self.stop.wait(0.02):
            try:
                value = self.client.get(TICK_KEY)
            except redis.RedisError:
                continue
            if value is not None and value != last:
                last = value
                self.marks.append(float(value))

    def max_delay_ms(self) -> float:
        gaps = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return round(max((g - TICK_SECONDS for g in gaps), default=0.0) * 1000, 1)


def wait_applied(db_url: str, campaign_id: int, posts: int, recipients: int, timeout: float):
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            done, delivered = conn.execute(
                "SELECT (SELECT count(*) FROM webhook_batches WHERE processed_at IS NOT NULL), "
                "(SELECT delivered FROM campaign_stats WHERE campaign_id = %s)",
                (campaign_id,),
            ).fetchone()
            if done >= posts and delivered == recipients:
                return
            time.sleep(0.05)
    raise RuntimeError(f"not applied within {timeout}s: {done}/{posts} batches, {delivered}")


def batch_times(log_path: Path) -> list[tuple[int, int]]:
    """(batch id, milliseconds) of every batch the worker applied, in id order."""
    found = [
        (int(m.group(1)), int(m.group(3)))
        for m in _BATCH_LINE.finditer(log_path.read_text(errors="replace"))
    ]
    return sorted(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    args = parser.parse_args()

    signer = Signer()
    site = BenchSite.open(
        log_level="INFO",
        SENDGRID_WEBHOOK_PUBLIC_KEY=signer.public_key,
        SCHEDULER_TICK_SECONDS=str(TICK_SECONDS),
    )
    db_url, redis_server, workdir, port, env = (
        site.db_url,
        site.redis_server,
        site.workdir,
        site.port,
        site.env,
    )
    procs: list[subprocess.Popen[bytes]] = []
    bindir = Path(sys.executable).parent
    worker_log = workdir / "worker.log"
    try:
        print(f"seeding a campaign sent to {args.recipients:,} members ...", flush=True)
        campaign_id, rows = seed(env, args.recipients)
        chunks = events_of(campaign_id, rows, args.batch)
        bodies = [json.dumps(chunk).encode() for chunk in chunks]
        total = sum(len(chunk) for chunk in chunks)
        other = (workdir / "processes.log").open("wb")
        celery = str(bindir / "celery")
        procs.append(
            subprocess.Popen(
                [str(bindir / "gunicorn"), "-c", "config/gunicorn.conf.py", "app:create_app()"],
                cwd=ROOT, env={**env, "LOG_LEVEL": "WARNING"}, stdout=other, stderr=other,
            )
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                [celery, "-A", "workers.celery_app", "worker", "--loglevel", "INFO", "--queues",
                 "transactional,bulk,default,webhooks", "--concurrency", "2",
                 "--prefetch-multiplier", "1"],
                cwd=ROOT, env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        procs.append(
            subprocess.Popen(
                [celery, "-A", "workers.celery_app", "beat", "--loglevel", "WARNING",
                 "--schedule", str(workdir / "beat-schedule")],
                cwd=ROOT, env=env, stdout=other, stderr=other,
            )
        )  # fmt: skip
        wait_http(port, "/healthz")
        watch = TickWatch(redis_server.url)
        watch.start()
        time.sleep(3 * TICK_SECONDS)  # ticks running before the load

        groups = {
            "web": procs[0].pid,
            "worker": procs[1].pid,
            "beat": procs[2].pid,
            "redis": pid_of(redis_server),
        }
        meter = CpuMeter(db_url, groups).start()
        started = time.perf_counter()
        statuses = post_all(port, bodies, signer, args.connections)
        posted = time.perf_counter() - started
        refused = [s for s in statuses if s != 202]
        if refused:
            raise RuntimeError(f"{len(refused)} posts refused: {sorted(set(refused))}")
        wait_applied(db_url, campaign_id, len(bodies), args.recipients, timeout=1800)
        seconds = time.perf_counter() - started
        cpu = meter.stop()
        per_event = meter.per_unit(total)
        time.sleep(2 * TICK_SECONDS)
        watch.stop.set()
        watch.join()

        with psycopg.connect(db_url) as conn:
            recorded = conn.execute(
                "SELECT count(*) FROM events WHERE campaign_id = %s AND kind = 'delivered'",
                (campaign_id,),
            ).fetchone()[0]
        if recorded != args.recipients:  # `processed` settles the ledger and is not stored
            raise RuntimeError(f"{recorded} delivered events recorded of {args.recipients}")
        times = batch_times(worker_log)
        first = statistics.median(ms for _, ms in times[:10])
        last = statistics.median(ms for _, ms in times[-10:])
        print(
            f"{total:,} events in {len(bodies)} posts: posted in {posted:.1f} s, all applied "
            f"in {seconds:.1f} s; per batch (ms) first ten {[ms for _, ms in times[:10]]}, "
            f"last ten {[ms for _, ms in times[-10:]]}"
        )
        print(cpu_line("webhooks", cpu, per_event, "event"))
        print(
            json.dumps(
                {
                    "events": total,
                    "seconds": round(seconds, 2),
                    "events_per_s": round(total / seconds),
                    "first_batch_ms": first,
                    "last_batch_ms": last,
                    "tick_delay_max_ms": watch.max_delay_ms(),
                    "cpu_s": cpu,
                    "cpu_us_per_event": per_event,
                    "loadavg": load_average(),
                }
            )
        )
    finally:
        site.close(procs)


if __name__ == "__main__":
    main()
