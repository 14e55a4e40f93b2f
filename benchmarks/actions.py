"""Hosted petition under a spike: concurrent signers load the page and sign, then a bare route.

Run from the repository root::

    python -m benchmarks.actions [--seconds 10] [--connections 16] [--members 20000]

Sets up a throwaway PostgreSQL database (TEST_DATABASE_URL / DATABASE_URL's server, default
postgresql://postgres@127.0.0.1:5432) and a private redis-server, seeds one open petition and
one sent alert whose button links to it, then starts gunicorn as the Procfile runs it
(config/gunicorn.conf.py, 2 sync workers). Each simulated signer is one flow on loopback
(asyncio, one connection per request, as gunicorn's sync workers close each one; 2
processes): GET /a/<slug> (the page and its signed form token; no session cookie, and a
page that sets one is counted in `cookies_set`), then POST the form with the Origin and
Sec-Fetch-Site headers a browser sends from the page (the POST's cross-site check reads
them); the 303 to the thank-you page comes after the commit, so every counted signature is
stored.
One signer in ten is an alerted member: the flow starts with the alert's tracked click
(/t/c/..., 302 to the page with a signed reference), and the page is pre-filled, so they
sign with one press. Every signer uses an address of their own. Then the same clients GET
/bench/hello (RALLYPOINT_BENCH=1) on the same gunicorn for the same time.

After the load it waits for the cached count to expire and reads both figures:
`responses_recorded` (rows in action_responses) must equal the unique signers whose POST
got its 303, and `count_shown` (the page's /count.json) must equal it once quiet.

The last line printed is one JSON object: signatures, seconds, signatures_per_s, bare_rps,
ratio (requests/s of the signing flows over the bare route's), p50_ms, p99_ms (over every
request of the flows), responses_recorded, count_shown, plus details. Target
(docs/architecture.md): >= 1,000 signatures/s on 2 cores with p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

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
from benchmarks.tracking import USER_AGENT  # noqa: E402

SLUG = "free-amar"
_TOKEN = re.compile(rb'name="form_token" value="([^"]+)"')
_HIDDEN = re.compile(rb'<input type="hidden" name="(\w+)" value="([^"]*)"')


# -- load generator (runs in child processes) ------------------------------------------------


async def _http(port: int, request: bytes) -> tuple[int, bytes, bytes, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        data = await reader.read(-1)  # sync workers close the connection after the response
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(data[9:12]) if data.startswith(b"HTTP/1.") else 0
    return status, head, body, (time.perf_counter() - started) * 1000


def _header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""


def _get(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: text/html\r\nAccept-Language: en-CA,en;q=0.9\r\nConnection: close\r\n\r\n"
    ).encode()


def _post(port: int, path: str, fields: dict[str, str]) -> bytes:
    body = urllib.parse.urlencode(fields).encode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
        f"Origin: http://127.0.0.1:{port}\r\nSec-Fetch-Site: same-origin\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


async def _sign_once(port: int, start: str, email: str | None, out: dict) -> None:
    """One signer: (tracked click,) page, POST. `email` None: a member, pre-filled."""
    path = start
    if start.startswith("/t/c/"):
        status, head, _body, ms = await _http(port, _get(port, start))
        out["latencies"].append(ms)
        if status != 302:
            out["failed"] += 1
            return
        location = _header(head, b"location").decode()
        path = location[location.index("/a/") :]
    status, head, body, ms = await _http(port, _get(port, path))
    out["latencies"].append(ms)
    if _header(head, b"set-cookie"):
        out["cookies_set"] += 1
    if status != 200 or _TOKEN.search(body) is None:
        out["failed"] += 1
        return
    fields = {k.decode(): v.decode() for k, v in _HIDDEN.findall(body)}  # form_token included
    if email is None:
        if "email" not in fields:  # the reference did not pre-fill: a bug, not a signer
            out["failed"] += 1
            return
        out["members"] += 1
    else:
        fields.update(first_name="Sam", last_name="Signer", email=email)
    status, _head, _body, ms = await _http(port, _post(port, f"/a/{SLUG}", fields))
    out["latencies"].append(ms)
    if status == 303:
        out["signatures"] += 1
    else:
        out["failed"] += 1
        out["statuses"][status] = out["statuses"].get(status, 0) + 1


async def _drive_signers(
    port: int, clicks: list[str], prefix: str, connections: int, seconds: float
) -> dict:
    out: dict = {
        "latencies": [],
        "signatures": 0,
        "members": 0,
        "failed": 0,
        "cookies_set": 0,
        "statuses": {},
    }
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))
    members = iter(clicks)

    async def loop() -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            click = next(members, None) if n % 10 == 0 else None
            try:
                if click is not None:
                    await _sign_once(port, click, None, out)
                else:
                    await _sign_once(port, f"/a/{SLUG}", f"{prefix}-{n}@bench.example", out)
            except OSError:
                out["failed"] += 1

    await asyncio.gather(*(loop() for _ in range(connections)))
    return out


async def _drive_bare(port: int, connections: int, seconds: float) -> dict:
    out: dict = {"latencies": [], "failed": 0}
    deadline = time.perf_counter() + seconds
    request = _get(port, "/bench/hello")

    async def loop() -> None:
        while time.perf_counter() < deadline:
            try:
                status, _h, _b, ms = await _http(port, request)
            except OSError:
                out["failed"] += 1
                continue
            out["latencies"].append(ms)
            if status != 200:
                out["failed"] += 1

    await asyncio.gather(*(loop() for _ in range(connections)))
    return out


def _worker(args: tuple) -> dict:
    kind, port, clicks, prefix, connections, seconds = args
    if kind == "sign":
        return asyncio.run(_drive_signers(port, clicks, prefix, connections, seconds))
    return asyncio.run(_drive_bare(port, connections, seconds))


def run_load(
    kind: str, port: int, clicks: list[str], connections: int, seconds: float, run: str
) -> dict:
    processes = 2
    per = max(1, connections // processes)
    started = time.perf_counter()
    jobs = [
        (kind, port, clicks[i::processes], f"{run}-p{i}", per, seconds) for i in range(processes)
    ]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_worker, jobs)
    elapsed = time.perf_counter() - started
    latencies = sorted(ms for part in parts for ms in part["latencies"])
    done = len(latencies)

    def pct(q: float) -> float:
        return round(latencies[min(done - 1, int(q * done))], 2) if done else 0.0

    result = {
        "requests": done,
        "rps": round(done / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "failed": sum(p["failed"] for p in parts),
        "elapsed": round(elapsed, 2),
    }
    if kind == "sign":
        result["signatures"] = sum(p["signatures"] for p in parts)
        result["members"] = sum(p["members"] for p in parts)
        result["cookies_set"] = sum(p["cookies_set"] for p in parts)
        result["statuses"] = {
            k: sum(p["statuses"].get(k, 0) for p in parts)
            for k in {k for p in parts for k in p["statuses"]}
        }
    return result


# -- set-up ----------------------------------------------------------------------------------


def seed(env: dict[str, str], members: int) -> tuple[int, list[str]]:
    """Migrate; an open petition, a sent alert linking to it, `members` alerted members.
    Returns the petition id and one tracked-click path per member."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.infra.tokens import Scope, signer_from_config
    from app.models import (
        ActionStatus,
        Campaign,
        CampaignVariant,
        Delivery,
        Link,
        Member,
        OrgSettings,
    )
    from app.services import actions
    from app.services.actions.petitions import PetitionData
    from config.settings import config_from_env

    settings = config_from_env(env)
    app = create_app(settings)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        session = db.session
        session.add(OrgSettings(id=1, organization="Prairie Public Workers' Union"))
        petition = actions.create_petition(
            session,
            PetitionData(
                title="Free Amar Fayaz",
                slug=SLUG,
                goal=100_000,
                versions={
                    "en": {
                        "headline": "Bring Amar home",
                        "target": "His Excellency, the High Commissioner",
                        "description": "Amar is a **trade unionist** jailed for a peaceful "
                        "protest. Add your name.",
                        "petition_text": "We call on you to secure the release of Amar Fayaz.",
                    }
                },
            ),
            owner_id=None,
        )
        actions.transition(session, petition, ActionStatus.OPEN)
        campaign = Campaign(name="Free Amar: sign now", status="sent")
        campaign.variants.append(CampaignVariant(language="en", subject="Sign now", body="Hi"))
        session.add(campaign)
        session.flush()
        link = Link(
            campaign_id=campaign.id, url=f"{env['PUBLIC_BASE_URL']}/a/{SLUG}", is_petition=True
        )
        session.add(link)
        session.flush()
        member_ids = session.scalars(
            sa.insert(Member).returning(Member.id),
            [
                {"email": f"member{i}@bench.example", "first_name": "Amélie", "last_name": "Roy"}
                for i in range(members)
            ],
        ).all()
        sent_at = datetime.now(UTC) - timedelta(minutes=10)
        delivery_ids = session.scalars(
            sa.insert(Delivery).returning(Delivery.id),
            [
                {
                    "campaign_id": campaign.id,
                    "member_id": m,
                    "email": f"member{i}@bench.example",
                    "status": "sent",
                    "sent_at": sent_at,
                    "local": f"Local {i % 12}",
                }
                for i, m in enumerate(member_ids)
            ],
        ).all()
        session.commit()
        signer = signer_from_config(settings)
        clicks = [
            f"/t/c/{link.id}/{signer.sign(campaign.id, d, Scope.CLICK)}" for d in delivery_ids
        ]
        petition_id = petition.id
        db.engine.dispose()
    return petition_id, clicks


def _figures(db_url: str, petition_id: int) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        total = conn.execute(
            "SELECT count(*) FROM action_responses WHERE action_id = %s", (petition_id,)
        ).fetchone()
        members = conn.execute(
            "SELECT count(*) FROM action_responses WHERE action_id = %s AND source = 'alert'",
            (petition_id,),
        ).fetchone()
    return int(total[0]) if total else 0, int(members[0]) if members else 0


def _count_shown(port: int) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", f"/a/{SLUG}/count.json")
    value = json.loads(conn.getresponse().read())["count"]
    conn.close()
    return int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--members", type=int, default=20_000)
    args = parser.parse_args()

    # Every signer comes from 127.0.0.1 here: no flagging in the way of the figures.
    site = BenchSite.open(RALLYPOINT_BENCH="1", ACTION_IP_FLAG_THRESHOLD="0")
    db_url, redis_server, workdir, port, env = (
        site.db_url,
        site.redis_server,
        site.workdir,
        site.port,
        site.env,
    )
    procs: list[subprocess.Popen[bytes]] = []
    bindir = Path(sys.executable).parent
    try:
        print(f"seeding a petition and {args.members} alerted members ...", flush=True)
        petition_id, clicks = seed(env, args.members)
        log = (workdir / "processes.log").open("wb")
        web = [str(bindir / "gunicorn"), "-c", "config/gunicorn.conf.py", "app:create_app()"]
        procs.append(subprocess.Popen(web, cwd=ROOT, env=env, stdout=log, stderr=log))
        wait_http(port, "/bench/hello")
        warm = run_load("sign", port, clicks[-200:], args.connections, 1.0, "warm")
        print(f"warm-up: {warm}", flush=True)
        groups = {"web": procs[0].pid, "redis": pid_of(redis_server)}
        meter = CpuMeter(db_url, groups).start()
        signing = run_load("sign", port, clicks[:-200], args.connections, args.seconds, "run")
        signing_cpu = meter.stop()
        signing_per = meter.per_unit(signing["signatures"])
        print(f"signing: {signing}", flush=True)
        print(cpu_line("signing", signing_cpu, signing_per, "signature"), flush=True)
        bare_meter = CpuMeter(None, {"web": procs[0].pid}).start()
        bare = run_load("bare", port, [], args.connections, args.seconds, "bare")
        bare_cpu = bare_meter.stop()
        print(f"bare /bench/hello: {bare}", flush=True)
        time.sleep(2.0)  # the cached count expires: what the page shows once quiet
        unique_signers = warm["signatures"] + signing["signatures"]
        responses_recorded, from_alert = _figures(db_url, petition_id)
        count_shown = _count_shown(port)
    finally:
        site.close(procs)

    signatures = signing["signatures"]
    seconds = signing["elapsed"]
    result = {
        "signatures": signatures,
        "seconds": seconds,
        "signatures_per_s": round(signatures / seconds, 1) if seconds else 0.0,
        "bare_rps": bare["rps"],
        "ratio": round(signing["rps"] / bare["rps"], 3) if bare["rps"] else 0.0,
        "p50_ms": signing["p50_ms"],
        "p99_ms": signing["p99_ms"],
        "responses_recorded": responses_recorded,
        "count_shown": count_shown,
        "unique_signers": unique_signers,
        "members_signed": warm["members"] + signing["members"],
        "alert_responses": from_alert,
        "flow_rps": signing["rps"],
        "failed": signing["failed"] + bare["failed"],
        "cookies_set": warm["cookies_set"] + signing["cookies_set"],
        "cpu_us_per_signature": signing_per,
        "bare_web_cpu_us": round(bare_cpu["web"] * 1e6 / max(bare["requests"], 1), 1),
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "loadavg": load_average(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
