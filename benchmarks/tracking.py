"""Tracking under load: the open pixel and click redirect against a bare Flask route, same server.

Run from the repository root::

    python -m benchmarks.tracking [--seconds 10] [--connections 16] [--deliveries 20000]

Sets up a throwaway PostgreSQL database (on TEST_DATABASE_URL / DATABASE_URL's server, default
postgresql://postgres@127.0.0.1:5432) and a private redis-server, seeds one sent campaign,
then starts the Procfile's processes: gunicorn with config/gunicorn.conf.py (2 sync workers),
a Celery worker and beat (the flusher runs every second, during the load, as in production).
A load generator on loopback (asyncio, one connection per request as gunicorn's sync workers
close each one; 2 processes) sends opens and clicks for a fixed time, then the same against
/bench/hello (RALLYPOINT_BENCH=1) on the same gunicorn. It then waits for the flusher and
counts the events. Every response is counted by the generator, so hits_sent is exact.

The last line printed is one JSON object: rps, bare_rps, ratio, p50_ms, p99_ms, hits_sent,
hits_recorded (plus details). Targets (docs/benchmarks.md): ratio >= 0.8, p99 < 25 ms, every
hit counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.infra.tokens import Scope  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    BenchSite,
    CpuMeter,
    load_average,
    pid_of,
    wait_http,
)

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


# -- load generator (runs in child processes) ------------------------------------------------


async def _one(port: int, request: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        data = await reader.read(-1)  # sync workers close the connection after the response
    finally:
        writer.close()
    status = int(data[9:12]) if data.startswith(b"HTTP/1.") else 0
    return status, (time.perf_counter() - started) * 1000


async def _drive(port: int, requests: list[bytes], connections: int, seconds: float) -> dict:
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def loop(offset: int) -> None:
        nonlocal errors
        index = offset
        while time.perf_counter() < deadline:
            index = (index + connections) % len(requests)
            try:
                status, ms = await _one(port, requests[index])
            except OSError:
                errors += 1
                continue
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(ms)

    await asyncio.gather(*(loop(i) for i in range(connections)))
    return {"statuses": statuses, "latencies": latencies, "errors": errors}


def _worker(args: tuple[int, list[bytes], int, float]) -> dict:
    port, requests, connections, seconds = args
    return asyncio.run(_drive(port, requests, connections, seconds))


def load(port: int, paths: list[str], connections: int, seconds: float, processes: int = 2) -> dict:
    """Drive `paths` for `seconds`; every response is counted (in-flight ones finish)."""
    requests = [
        (
            f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {USER_AGENT}\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        ).encode()
        for p in paths
    ]
    if len(requests) < processes:
        requests = requests * processes
    per = max(1, connections // processes)
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(
            _worker, [(port, requests[i::processes], per, seconds) for i in range(processes)]
        )
    elapsed = time.perf_counter() - started
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    for part in parts:
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
        latencies.extend(part["latencies"])
    latencies.sort()
    done = len(latencies)

    def pct(q: float) -> float:
        return round(latencies[min(done - 1, int(q * done))], 2) if done else 0.0

    return {
        "requests": done,
        "rps": round(done / elapsed, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "statuses": statuses,
        "errors": sum(p["errors"] for p in parts),
    }


_WRK_SCRIPT = (
    r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  idx = math.random(1, #paths)
  ok = 0
  bad = 0
end
function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx], {["User-Agent"] = "__UA__"})
end
function response(status, headers, body)
  if status == 200 or status == 302 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local total_ok, total_bad = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
  end
  local e = summary.errors
  io.write("WRK {\"ok\": " .. total_ok .. ", \"bad\": " .. total_bad
    .. ", \"requests\": " .. summary.requests .. ", \"us\": " .. summary.duration
    .. ", \"p50\": " .. (latency:percentile(50) / 1000)
    .. ", \"p99\": " .. (latency:percentile(99) / 1000)
    .. ", \"errors\": " .. (e.connect + e.read + e.write + e.timeout) .. "}\n")
end
"""
).replace("__UA__", USER_AGENT)


def load_wrk(port: int, paths: list[str], connections: int, seconds: float, workdir: Path) -> dict:
    """wrk (C, far lighter than the Python generator). Requests still in flight when wrk
    stops are dropped by the client but may have been served: hits_sent can then fall short
    of what the server recorded by up to `connections`."""
    script = workdir / "tracking.lua"
    script.write_text(_WRK_SCRIPT)
    path_file = workdir / f"paths-{len(paths)}.txt"
    path_file.write_text("\n".join(paths) + "\n")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, int(seconds))}s", "-s", str(script),
         f"http://127.0.0.1:{port}", "--", str(path_file)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("WRK "))
    data = json.loads(line[4:])
    return {
        "requests": data["requests"],
        "rps": round(data["requests"] / (data["us"] / 1e6), 1),
        "p50_ms": round(data["p50"], 2),
        "p99_ms": round(data["p99"], 2),
        "statuses": {200: data["ok"], 599: data["bad"]},
        "errors": data["errors"],
    }


# -- set-up ----------------------------------------------------------------------------------


def seed(env: dict[str, str], deliveries: int) -> tuple[int, list[dict[Scope, str]], list[int]]:
    """Migrate, then one sent campaign with `deliveries` recipients and three links."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db
    from app.infra.tokens import signer_from_config
    from app.models import Campaign, CampaignVariant, Delivery, Link, Member
    from config.settings import config_from_env

    settings = config_from_env(env)
    app = create_app(settings)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        session = db.session
        campaign = Campaign(name="Day of action: free Amar", status="sent")
        campaign.variants.append(CampaignVariant(language="en", subject="Rally Dec. 17", body="Hi"))
        session.add(campaign)
        session.flush()
        links = [
            Link(
                campaign_id=campaign.id,
                url="https://action.example.org/petition",
                position=0,
                is_petition=True,
            ),
            Link(campaign_id=campaign.id, url="https://union.example.org/rally", position=1),
            Link(campaign_id=campaign.id, url="https://union.example.org/donate", position=2),
        ]
        session.add_all(links)
        session.flush()
        member_ids = session.scalars(
            sa.insert(Member).returning(Member.id),
            [{"email": f"bench{i}@example.org"} for i in range(deliveries)],
        ).all()
        sent_at = datetime.now(UTC) - timedelta(hours=1)
        delivery_ids = session.scalars(
            sa.insert(Delivery).returning(Delivery.id),
            [
                {
                    "campaign_id": campaign.id,
                    "member_id": m,
                    "email": f"bench{i}@example.org",
                    "status": "sent",
                    "sent_at": sent_at,
                }
                for i, m in enumerate(member_ids)
            ],
        ).all()
        session.commit()
        signer = signer_from_config(settings)
        tokens = [signer.sign_all(campaign.id, d) for d in delivery_ids]
        link_ids = [link.id for link in links]
        campaign_id = campaign.id
        db.engine.dispose()
    return campaign_id, tokens, link_ids


def _count(db_url: str, campaign_id: int) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE campaign_id = %s AND kind IN ('open', 'click')",
            (campaign_id,),
        ).fetchone()
        return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--click-share", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating tracked/bare rounds")
    parser.add_argument(
        "--tool",
        choices=("auto", "python", "wrk"),
        default="python",
        help="load generator: python (exact hit accounting, the default), wrk, or auto",
    )
    parser.add_argument(
        "--flusher",
        choices=("during", "after"),
        default="during",
        help="run the Celery worker and beat during the load (as the Procfile does) or after",
    )
    parser.add_argument(
        "--flush-nice",
        type=int,
        default=None,
        help="TRACKING_FLUSH_NICE for the worker (0: the flusher at the worker's priority)",
    )
    parser.add_argument(
        "--install-wrk", action="store_true", help="apt-get install wrk when it is missing"
    )
    args = parser.parse_args()
    if args.install_wrk and shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
    use_wrk = args.tool == "wrk" or (args.tool == "auto" and shutil.which("wrk") is not None)
    if use_wrk and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: use --tool python or --install-wrk")

    site = BenchSite.open(RALLYPOINT_BENCH="1")
    db_url, redis_server, workdir, port, env = (
        site.db_url,
        site.redis_server,
        site.workdir,
        site.port,
        site.env,
    )
    if args.flush_nice is not None:
        env["TRACKING_FLUSH_NICE"] = str(args.flush_nice)
    procs: list[subprocess.Popen[bytes]] = []
    bindir = Path(sys.executable).parent
    try:
        print(f"seeding {args.deliveries} deliveries ...", flush=True)
        campaign_id, tokens, link_ids = seed(env, args.deliveries)
        log = (workdir / "processes.log").open("wb")
        celery = str(bindir / "celery")
        commands = [
            [str(bindir / "gunicorn"), "-c", "config/gunicorn.conf.py", "app:create_app()"],
            [celery, "-A", "workers.celery_app", "worker", "--loglevel", "WARNING", "--queues",
             "transactional,bulk,default,webhooks", "--concurrency", "1",
             "--prefetch-multiplier", "1"],
            [celery, "-A", "workers.celery_app", "beat", "--loglevel", "WARNING",
             "--schedule", str(workdir / "beat-schedule")],
        ]  # fmt: skip

        def start(command: list[str]) -> None:
            procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log))

        start(commands[0])  # the Procfile's web line; worker and beat below
        if args.flusher == "during":
            start(commands[1])
            start(commands[2])
        wait_http(port, "/bench/hello")

        rng = random.Random(8058)
        paths = []
        for _ in range(50_000):
            token = rng.choice(tokens)
            if rng.random() < args.click_share:
                paths.append(f"/t/c/{rng.choice(link_ids)}/{token[Scope.CLICK]}")
            else:
                paths.append(f"/t/o/{token[Scope.OPEN]}.gif")
        # Warm-up (imports, link cache, connection pools), counted like the real run.
        warm_up = load(port, paths[:2000], args.connections, 1.0)
        warm = warm_up["statuses"].get(200, 0) + warm_up["statuses"].get(302, 0)
        if args.flusher == "during" and _count_until_stable(db_url, campaign_id, warm, 60) != warm:
            raise RuntimeError("the warm-up hits were not all recorded")

        tool = "wrk" if use_wrk else "python"
        # Alternate tracked and bare rounds: the machine's other load then weighs on both alike.
        per_round = args.seconds / args.rounds
        tracked_parts, bare_parts = [], []
        for number in range(args.rounds):
            for label, target, parts in (
                ("tracking", paths, tracked_parts),
                ("bare /bench/hello", ["/bench/hello"], bare_parts),
            ):
                groups = {"web": procs[0].pid, "redis": pid_of(redis_server)}
                if len(procs) > 1:
                    groups.update(worker=procs[1].pid, beat=procs[2].pid)
                meter = CpuMeter(db_url, groups).start()
                if use_wrk:
                    part = load_wrk(port, target, args.connections, per_round, workdir)
                else:
                    part = load(port, target, args.connections, per_round)
                # CPU per request of each group: immune to what else the machine runs.
                part["cpu_s"] = meter.stop()
                part["web_cpu_s"] = part["cpu_s"]["web"]
                # The rest: Celery worker and beat (the flusher), PostgreSQL and Redis.
                part["other_cpu_s"] = round(
                    sum(v for k, v in part["cpu_s"].items() if k in _OTHER), 3
                )
                part["loadavg"] = load_average()
                print(f"round {number + 1} {label} ({tool}): {part}", flush=True)
                parts.append(part)
        tracked = _combine(tracked_parts)
        bare = _combine(bare_parts)

        if args.flusher == "after":
            start(commands[1])
            start(commands[2])
        ok = tracked["statuses"].get(200, 0) + tracked["statuses"].get(302, 0)
        hits_sent = ok
        hits_recorded = (
            _count_until_stable(db_url, campaign_id, warm + hits_sent, timeout=120) - warm
        )
    finally:
        site.close(procs)

    result = {
        "rps": tracked["rps"],
        "bare_rps": bare["rps"],
        "ratio": round(tracked["rps"] / bare["rps"], 3) if bare["rps"] else 0.0,
        "p50_ms": tracked["p50_ms"],
        "p99_ms": tracked["p99_ms"],
        "hits_sent": hits_sent,
        "hits_recorded": hits_recorded,
        "bare_p99_ms": bare["p99_ms"],
        # gunicorn CPU per request (master + workers, incl. the hit buffer thread) and their
        # ratio: the throughput ratio a quiet machine would show, whatever else runs here.
        "web_cpu_us": tracked["web_cpu_us"],
        "bare_web_cpu_us": bare["web_cpu_us"],
        "cpu_ratio": round(bare["web_cpu_us"] / tracked["web_cpu_us"], 3)
        if tracked["web_cpu_us"]
        else 0.0,
        # Flusher (worker, beat), PostgreSQL and Redis CPU per request, tracked and bare.
        "other_cpu_us": tracked["other_cpu_us"],
        "bare_other_cpu_us": bare["other_cpu_us"],
        # Microseconds of CPU per request of every process group: web (gunicorn), worker and
        # beat (the flusher), postgres (this database's backends), postgres_shared (the
        # server's WAL writer, checkpointer: others' work too on a shared host), redis, load.
        "cpu_us_per_request": tracked["cpu_us"],
        "bare_cpu_us_per_request": bare["cpu_us"],
        "errors": tracked["errors"] + bare["errors"],
        "loadavg": load_average(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "cpus": os.cpu_count(),
        "load_generator": tool,
        "flusher": args.flusher,
        "flush_nice": env.get("TRACKING_FLUSH_NICE", "default"),
    }
    print(json.dumps(result))


_OTHER = ("worker", "beat", "postgres", "redis")


def _combine(parts: list[dict]) -> dict:
    """Rounds added up: rps over the whole time; latency percentiles as the worst round's."""
    statuses: dict[int, int] = {}
    for part in parts:
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    seconds = sum(p["requests"] / p["rps"] for p in parts if p["rps"])
    requests = sum(p["requests"] for p in parts)
    return {
        "requests": requests,
        "web_cpu_us": round(sum(p["web_cpu_s"] for p in parts) / max(requests, 1) * 1e6, 1),
        "other_cpu_us": round(sum(p["other_cpu_s"] for p in parts) / max(requests, 1) * 1e6, 1),
        "cpu_us": {
            group: round(sum(p["cpu_s"].get(group, 0.0) for p in parts) / max(requests, 1) * 1e6, 1)
            for group in parts[0]["cpu_s"]
        },
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "p50_ms": round(sorted(p["p50_ms"] for p in parts)[len(parts) // 2], 2),
        "p99_ms": max(p["p99_ms"] for p in parts),
        "statuses": statuses,
        "errors": sum(p["errors"] for p in parts),
    }


def _count_until_stable(db_url: str, campaign_id: int, expected: int, timeout: float) -> int:
    """Wait for the flusher: until `expected` events exist, or the count stops growing."""
    deadline = time.monotonic() + timeout
    last, still = -1, 0
    while time.monotonic() < deadline:
        count = _count(db_url, campaign_id)
        if expected and count >= expected:
            time.sleep(2)  # a flusher that over-counts would show here
            return _count(db_url, campaign_id)
        still = still + 1 if count == last and count > 0 else 0
        if still >= (20 if expected else 3):  # nothing new for 10 s: the flusher is done
            return count
        last = count
        time.sleep(0.5)
    return _count(db_url, campaign_id)


if __name__ == "__main__":
    main()
