"""Send one campaign to N members through real workers to a local fake SendGrid; time it.

Run from the repository root (PostgreSQL on 127.0.0.1:5432 and redis-server installed)::

    PYTHONPATH=. python -m benchmarks.send [--members 100000] [--workers 1] [--concurrency 4]

Everything is real except SendGrid: a throwaway PostgreSQL database (dropped at the end),
a private redis-server, Celery worker process(es) started like the Procfile's, and the
fake SendGrid in its own process on loopback (`--validate-sample 0.01 --no-bodies`). The
clock runs from "send now" (the commit that queues the dispatch) until the campaign is
sent: the audience freeze, every batch and the finish. In the same run, the fake's own
accept rate for pre-built payloads from one client is measured: the ceiling.

The last line printed is one JSON object: recipients, seconds, recipients_per_s,
ceiling_recipients_per_s, ratio, direct_ceiling_recipients_per_s and direct_ratio (the ceiling
posted without python_http_client's per-request formatting of the body, as the transport posts:
the fake's own pace), first_send_ms (from "send now" to the first request reaching
the fake SendGrid: the first batch has left), first_accepted_ms (to its rows recorded sent:
includes the fake's JSON Schema check of the first request, always in its sample),
worker_peak_rss_mb (the sum of the worker pool processes' peak RSS, VmHWM)
and worker_peak_rss_mb_max (the largest one process), cpu_s and cpu_us_per_recipient (CPU
of each process group over the timed send: the worker, the fake SendGrid, redis, postgres:
this database's backends, postgres_shared: the server's own processes, load: this process;
benchmarks/harness.py), and loadavg (the host's load average at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa

from benchmarks.harness import CpuMeter, cpu_line, load_average, pid_of

ROOT = Path(__file__).resolve().parents[1]
SERVER = os.environ.get("BENCH_DATABASE_SERVER", "postgresql://postgres@127.0.0.1:5432")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _start_fake() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.sendgrid",
            "--port",
            "0",
            "--validate-sample",
            "0.01",
            "--no-bodies",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        raise RuntimeError("the fake SendGrid did not start")
    return process, url


def _fake_call(url: str, path: str, body: dict | None = None) -> dict:
    import urllib.request

    data = json.dumps(body or {}).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 - the fake on loopback
        url + path, data=data, method="POST" if data else "GET"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


CEILING_ROUNDS = 4


def _ceilings(transport, skeleton, requests: int) -> tuple[float, float]:
    """Recipients/s the fake accepts from one client posting pre-built 1,000-recipient bodies:
    through python_http_client's post (the ceiling the ratio is defined against), and as the
    transport posts (without that client's formatting of each body: the fake's own pace)."""
    from app.emails.content import Recipient
    from app.services.transports import OutgoingBatch, OutgoingRecipient
    from app.services.transports.sendgrid import encode_body

    payloads = []
    for r in range(requests):
        recipients = [
            OutgoingRecipient(
                email=f"ceiling-{r}-{i}@example.org",
                recipient=Recipient(
                    first_name=f"First{i}",
                    open_token=f"tok{r}.{i}.abcdefghijklmnop",
                    click_token=f"tok{r}.{i}.bcdefghijklmnopq",
                    unsubscribe_url=f"https://rally.example.org/u/tok{r}.{i}.abcdefghijklmnop",
                ),
                delivery_id=r * 1000 + i + 1,
                message_id=f"<d{r * 1000 + i + 1}.c1@prairieworkers.example>",
                headers={
                    "List-Unsubscribe": f"<https://rally.example.org/u/tok{r}.{i}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                custom_args={"rp_delivery": str(r * 1000 + i + 1)},
            )
            for i in range(1000)
        ]
        batch = OutgoingBatch(
            from_email="alerts@prairieworkers.example",
            from_name="Prairie Public Workers' Union",
            reply_to="",
            skeleton=skeleton,
            recipients=recipients,
            custom_args={"rp_campaign": "1"},
        )
        payloads.append(encode_body(transport.build_body(batch)))
    client = transport.api.client

    def official(payload: bytes) -> None:
        response = client.mail.send.post(request_body=payload.decode())
        assert response.status_code == 202

    # Each body is posted CEILING_ROUNDS times: 20 requests took about half a second, and a
    # ceiling measured over so short a moment moved by a third from run to run. The two ways
    # alternate round by round, so a change in the host's pace shows in both.
    seconds = {official: 0.0, transport.post: 0.0}
    for _ in range(CEILING_ROUNDS):
        for post in seconds:
            started = time.perf_counter()
            for payload in payloads:
                post(payload)
            seconds[post] += time.perf_counter() - started
    sent = CEILING_ROUNDS * requests * 1000
    return sent / seconds[official], sent / seconds[transport.post]


def _print_batch_times(workers) -> None:
    """Median milliseconds per batch step, from the workers' INFO log lines."""
    import re
    import statistics

    steps: dict[str, list[float]] = {}
    for worker in workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            match = re.search(r"\(ms: (.*)\)$", line)
            if match and " sent," in line:
                for part in match.group(1).split(", "):
                    name, _, value = part.partition(" ")
                    steps.setdefault(name, []).append(float(value))
    if steps:
        summary = ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in steps.items())
        print(f"per batch (median ms, in each worker process): {summary}")


def _profile_one_batch(session, campaign_id: int, batch_size: int) -> None:
    """Freeze the audience, then run batch 0 in this process under cProfile."""
    import cProfile
    import pstats

    from app.models import Campaign
    from app.services import sending

    sending.send_now(session, session.get(Campaign, campaign_id))
    session.commit()
    sending.freeze_audience(session, campaign_id, batch_size=batch_size)
    session.commit()
    if os.environ.get("BENCH_PROFILE_COLD") != "1":
        # A first batch warms the skeleton cache and the connections, as in a running worker.
        sending.send_batch(session, campaign_id, 0)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    outcome = sending.send_batch(session, campaign_id, 1)
    profiler.disable()
    print(f"one batch of {outcome.sent}: {(time.perf_counter() - started) * 1000:.1f} ms")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (celery -c each)")
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes each")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--ceiling-requests", type=int, default=20)
    parser.add_argument(
        "--profile", action="store_true", help="run one batch in-process under cProfile instead"
    )
    args = parser.parse_args()

    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.models import Campaign
    from app.services import sending
    from config.settings import TestingConfig
    from tests.support.sending import add_members, make_campaign, make_list, setup_org
    from tests.support.servers import RedisServer
    from tests.support.workers import CeleryProcess, worker_environ

    name = f"rallypoint_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_server = RedisServer().start()
    fake, fake_url = _start_fake()
    workers: list[CeleryProcess] = []
    log_dir = ROOT / "var" / "benchmarks"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        environ = {
            "RALLYPOINT_ENV": "testing",
            "SECRET_KEY": "benchmark-secret-key-that-is-long-enough",
            "DATABASE_URL": f"{SERVER}/{name}",
            "REDIS_URL": redis_server.url,
            "PUBLIC_BASE_URL": "https://rally.example.org",
            "MAIL_TRANSPORT": "sendgrid",
            "SENDGRID_API_KEY": "SG.benchmark",
            "SENDGRID_API_HOST": fake_url,
            "SEND_BATCH_SIZE": str(args.batch_size),
            "LOG_LEVEL": "WARNING",
            "RATELIMIT_ENABLED": "false",
        }
        app = create_app(TestingConfig(environ=environ))
        with app.app_context():
            upgrade(directory=str(ROOT / "migrations"))
            started = time.perf_counter()
            setup_org(db.session)
            lst = make_list(db.session)
            add_members(db.session, args.members, lst.id)
            campaign = make_campaign(db.session, [lst])
            db.session.commit()
            # No ANALYZE here: a user's first send runs before autovacuum gets to it, and so
            # does this one (the freeze analyzes what it writes; the claim's plan holds
            # without statistics).
            campaign_id = campaign.id
            print(f"data: {args.members} members in {time.perf_counter() - started:.1f} s")

            from app.services.sending.rendering import skeleton as campaign_skeleton
            from app.services.transports.sendgrid import SendGridTransport

            transport = SendGridTransport("SG.benchmark", fake_url)
            skeleton = campaign_skeleton(db.session, campaign, "en")
            ceiling, direct = _ceilings(transport, skeleton, args.ceiling_requests)
            print(
                f"ceiling: {ceiling:,.0f} recipients/s (one client, pre-built payloads; "
                f"{direct:,.0f} posted without python_http_client's formatting)"
            )
            _fake_call(fake_url, "/__fake__/reset", {})

            if args.profile:
                _profile_one_batch(db.session, campaign_id, args.batch_size)
                return

            # INFO: each batch logs where its time went (claim, render, transport, record).
            env = worker_environ(environ, LOG_LEVEL="INFO")
            for _ in range(args.workers):
                worker = CeleryProcess("worker", env, log_dir, concurrency=args.concurrency)
                workers.append(worker.start())
            for worker in workers:
                worker.wait_ready(redis_server.url, timeout=60)

            groups = {f"worker{i or ''}": w.pid for i, w in enumerate(workers)}
            groups.update(fake_sendgrid=fake.pid, redis=pid_of(redis_server))
            meter = CpuMeter(f"{SERVER}/{name}", groups).start()
            started = time.perf_counter()
            sending.send_now(db.session, db.session.get(Campaign, campaign_id))
            db.session.commit()
            status = "sending"
            while status != "sent":
                time.sleep(0.05)
                status = db.session.scalar(
                    sa.select(Campaign.status).where(Campaign.id == campaign_id)
                )
                db.session.rollback()
                if status not in ("sending", "sent"):
                    raise RuntimeError(f"the campaign is {status}")
                if time.perf_counter() - started > 1800:
                    raise RuntimeError("timed out")
            seconds = time.perf_counter() - started
            cpu = meter.stop()
            progress = sending.progress(db.session, db.session.get(Campaign, campaign_id))
            timeline = db.session.execute(
                sa.text(
                    "SELECT c.started_at, min(d.queued_at), min(d.sent_at), max(d.sent_at), "
                    "c.finished_at FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id "
                    "WHERE c.id = :id GROUP BY c.id"
                ),
                {"id": campaign_id},
            ).one()
            start = timeline[0]
            first_accepted_ms = (timeline[2] - start).total_seconds() * 1000
            print(
                "timeline (s after send now): audience frozen by "
                f"{(timeline[1] - start).total_seconds():.2f} (freeze began), first batch sent "
                f"{(timeline[2] - start).total_seconds():.2f}, last "
                f"{(timeline[3] - start).total_seconds():.2f}, finished "
                f"{(timeline[4] - start).total_seconds():.2f}"
            )
            db.engine.dispose()

        _print_batch_times(workers)
        pool = [child for worker in workers for child in _children(worker.pid)]
        peaks = [_vm_hwm_mb(pid) for pid in pool]
        peak, peak_one = sum(peaks), max(peaks, default=0.0)
        stats = _fake_call(fake_url, "/__fake__/stats")
        # When the first request reached SendGrid (the fake, on this host's clock), from the
        # commit of "send now" (campaigns.started_at).
        first_send_ms = (stats["first_request_at"] - start.timestamp()) * 1000
        if stats["accepted_recipients"] != args.members or stats["duplicates"]:
            raise RuntimeError(f"the fake did not get every member exactly once: {stats}")
        if progress.sent != args.members:
            raise RuntimeError(f"the ledger says {progress}")
        rate = args.members / seconds
        print(
            f"send: {args.members} recipients in {seconds:.2f} s = {rate:,.0f}/s "
            f"({stats['accepted_requests']} requests, {stats['validated']} validated); "
            f"worker pool peak RSS {peak:.0f} MB over {len(pool)} processes"
        )
        per_recipient = meter.per_unit(args.members)
        print(cpu_line("send", cpu, per_recipient, "recipient"))
        print(
            json.dumps(
                {
                    "recipients": args.members,
                    "seconds": round(seconds, 3),
                    "recipients_per_s": round(rate),
                    "ceiling_recipients_per_s": round(ceiling),
                    "ratio": round(rate / ceiling, 3),
                    "direct_ceiling_recipients_per_s": round(direct),
                    "direct_ratio": round(rate / direct, 3),
                    "first_send_ms": round(first_send_ms),
                    "first_accepted_ms": round(first_accepted_ms),
                    "worker_peak_rss_mb": round(peak, 1),
                    "worker_peak_rss_mb_max": round(peak_one, 1),
                    "pool_processes": len(pool),
                    "cpu_s": cpu,
                    "cpu_us_per_recipient": per_recipient,
                    "loadavg": load_average(),
                }
            )
        )
    finally:
        for worker in workers:
            worker.stop()
        fake.terminate()
        fake.wait(timeout=10)
        redis_server.cleanup()
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
