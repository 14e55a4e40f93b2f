"""`make cluster-test`: the six multi-host scenarios of issue 16 against scripts/cluster.sh.

Run as root with the cluster up (`scripts/cluster.sh up`; `make cluster-test` brings it up and
down). Each scenario sends a fresh campaign to the same list of CLUSTER_AUDIENCE members
(100,000 by default) and counts every recipient at the SendGrid stand-in on `mail`:

    expected    the campaign's frozen audience (its deliveries)
    received    recipients the stand-in accepted
    duplicates  recipients past the first per address
    unknown     deliveries the ledger left 'unknown' (maybe sent, maybe not)
    missing     expected addresses neither received nor reported unknown
    unexpected  received addresses not in the audience

Scenario 5 counts tracking hits instead: expected = hits that got a 2xx through the balancer,
received = those recorded as events. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.infra.tokens import Scope, TokenSigner
from app.models import Campaign, Delivery, Event, Link, MailingList
from app.models.base import utcnow
from app.services.tracking.hits import click_url, open_url
from tests.support.sending import add_members, make_campaign, make_list, setup_org

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = str(ROOT / "scripts" / "cluster.sh")
MAIL = "http://10.77.0.40:8025"
LB = "http://10.77.0.20"
LIST_NAME = "Cluster test members"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cluster(*args: str) -> None:
    subprocess.run([CLUSTER, *args], check=True)


def cluster_env() -> dict[str, str]:
    text = subprocess.run([CLUSTER, "env"], check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def http_json(url: str, data: bytes | None = None, timeout: float = 30) -> Any:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


class Driver:
    def __init__(self, audience: int, tick: float) -> None:
        self.env = cluster_env()
        url = self.env["DATABASE_DIRECT_URL"].replace("postgresql://", "postgresql+psycopg://")
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        self.audience = audience
        self.tick = tick
        self.signer = TokenSigner([self.env["SECRET_KEY"]])
        self.list_id = 0

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        with Session(self.engine) as session:
            setup_org(session, timezone="America/Edmonton")
            lst = session.scalar(sa.select(MailingList).where(MailingList.name == LIST_NAME))
            if lst is None:
                lst = make_list(session, LIST_NAME)
            add_members(session, self.audience, lst.id, prefix="c")
            session.commit()
            self.list_id = lst.id
        self.wait_workers(2)

    def wait_workers(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = http_json(f"{LB}/healthz", timeout=10)
                detail = body["parts"]["worker"]["detail"]
                if body["parts"]["worker"]["ok"] and detail.startswith(f"{count} worker"):
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(1)
        raise RuntimeError(f"{count} workers did not answer through the balancer in {timeout} s")

    # -- one campaign ------------------------------------------------------------------------

    def send(
        self,
        name: str,
        during: Callable[[int, float], None] | None = None,
        send_at_delay: float = 0.0,
        timeout: float = 900,
    ) -> dict[str, Any]:
        """Send a fresh campaign to the list; `during(received, seconds)` is called as it goes."""
        http_json(f"{MAIL}/__fake__/reset", data=b"{}")
        with Session(self.engine) as session:
            lst = session.get_one(MailingList, self.list_id)
            send_at = utcnow() + timedelta(seconds=send_at_delay)
            campaign = make_campaign(
                session, [lst], status="scheduled", send_at=send_at, name=f"Cluster: {name}"
            )
            session.commit()
            campaign_id = campaign.id
        started = time.monotonic()
        cpu_before = cpu()
        first = last = None
        received = 0
        gaps: list[tuple[float, float]] = []  # (at, seconds without a new recipient)
        last_change = started
        status: str | None = "scheduled"
        while time.monotonic() - started < timeout:
            time.sleep(0.25)
            now = time.monotonic()
            count = http_json(f"{MAIL}/__fake__/stats")["accepted_recipients"]
            if count != received:
                if first is None:
                    first = now
                gaps.append((last_change - started, now - last_change))
                received, last, last_change = count, now, now
            if during is not None:
                during(received, now - started)
            with Session(self.engine) as session:
                status = session.scalar(
                    sa.select(Campaign.status).where(Campaign.id == campaign_id)
                )
            if status in ("sent", "failed", "cancelled", "paused"):
                break
        result = self.count(campaign_id)
        result["status"] = status
        # CPU seconds each host spent from the campaign's creation to its end (capacity.md).
        result["cpu_s"] = cpu_delta(cpu_before)
        result["seconds"] = round((last or started) - (first or started), 1)
        result["recipients_per_s"] = round(received / result["seconds"]) if result["seconds"] else 0
        result["longest_pause_s"] = round(max((g for _, g in gaps[1:]), default=0.0), 1)
        result["campaign_id"] = campaign_id
        with Session(self.engine) as session:
            row = session.execute(
                sa.select(Campaign.send_at, Campaign.started_at).where(Campaign.id == campaign_id)
            ).one()
        if row.started_at is not None:
            result["started_after_send_at_s"] = round(
                (row.started_at - row.send_at).total_seconds(), 1
            )
        return result

    def count(self, campaign_id: int) -> dict[str, Any]:
        emails: dict[str, int] = http_json(f"{MAIL}/__fake__/emails", timeout=60)
        with Session(self.engine) as session:
            rows = session.execute(
                sa.select(Delivery.email, Delivery.status).where(
                    Delivery.campaign_id == campaign_id
                )
            ).all()
        expected = {email.lower(): status for email, status in rows}
        unknown = {email for email, status in expected.items() if status == "unknown"}
        statuses = Counter(expected.values())
        return {
            "expected": len(expected),
            "received": sum(emails.values()),
            "duplicates": sum(count - 1 for count in emails.values() if count > 1),
            "unknown": len(unknown),
            "missing": len(set(expected) - set(emails) - unknown),
            "unexpected": len(set(emails) - set(expected)),
            "ledger": dict(statuses),
        }

    # -- tracking load through the balancer ---------------------------------------------------

    def tracking_load(self, campaign_id: int, seconds: float, threads: int = 6) -> TrackingLoad:
        with Session(self.engine) as session:
            deliveries = list(
                session.scalars(
                    sa.select(Delivery.id)
                    .where(Delivery.campaign_id == campaign_id)
                    .order_by(Delivery.id)
                )
            )
            link = session.execute(
                sa.select(Link.id, Link.url).where(Link.campaign_id == campaign_id).limit(1)
            ).first()
        return TrackingLoad(self, campaign_id, deliveries, link, seconds, threads)

    def recorded(self, load: TrackingLoad, timeout: float = 90) -> dict[str, Any]:
        """Wait for the flusher, then compare the 2xx hits with the events recorded."""
        deadline = time.monotonic() + timeout
        acknowledged = {(kind, d) for kind, d in load.acknowledged}
        found: set[tuple[str, int]] = set()
        while time.monotonic() < deadline:
            with Session(self.engine) as session:
                found = {
                    (kind, delivery_id)
                    for kind, delivery_id in session.execute(
                        sa.select(Event.kind, Event.delivery_id).where(
                            Event.campaign_id == load.campaign_id,
                            Event.kind.in_(("open", "click")),
                        )
                    )
                }
            if acknowledged <= found:
                break
            time.sleep(2)
        return {
            "expected": len(acknowledged),
            "received": len(acknowledged & found),
            "missing": len(acknowledged - found),
            "duplicates": 0,
            "unknown": 0,
            "not_2xx": load.failed,
            "bad_redirects": load.bad_redirects,
            "requests": load.requests,
            "hits_per_s": round(load.requests / max(load.elapsed, 0.001)),
            "cpu_s": load.cpu_s,
        }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class TrackingLoad:
    """Threads opening pixels (4 in 5) and clicking links (1 in 5), one delivery a hit, through
    the balancer; remembers which hits were answered 2xx (or 302 to the right address)."""

    def __init__(
        self,
        driver: Driver,
        campaign_id: int,
        deliveries: list[int],
        link: Any,
        seconds: float,
        threads: int,
    ) -> None:
        self.campaign_id = campaign_id
        self.signer = driver.signer
        self.link = link
        self.queue = list(deliveries)
        random.Random(16).shuffle(self.queue)
        self.lock = threading.Lock()
        self.seconds = seconds
        self.acknowledged: list[tuple[str, int]] = []
        self.failed = 0
        self.bad_redirects = 0
        self.requests = 0
        self.elapsed = 0.0
        self.opener = urllib.request.build_opener(_NoRedirect)
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> TrackingLoad:
        self.started = time.monotonic()
        self.cpu_before = cpu()
        for thread in self.threads:
            thread.start()
        return self

    def join(self) -> TrackingLoad:
        for thread in self.threads:
            thread.join()
        self.elapsed = time.monotonic() - self.started
        self.cpu_s = cpu_delta(self.cpu_before)
        return self

    def _run(self) -> None:
        while time.monotonic() - self.started < self.seconds:
            with self.lock:
                if not self.queue:
                    return
                delivery_id = self.queue.pop()
                self.requests += 1
            click = self.link is not None and delivery_id % 5 == 0
            if click:
                token = self.signer.sign(self.campaign_id, delivery_id, Scope.CLICK)
                url = click_url(LB, self.link.id, token)
            else:
                url = open_url(LB, self.signer.sign(self.campaign_id, delivery_id, Scope.OPEN))
            status, location = 0, ""
            try:
                with self.opener.open(url, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status, location = exc.code, exc.headers.get("Location", "")
            except OSError:
                status = 0
            with self.lock:
                if click and status in (301, 302, 303, 307):
                    if location != self.link.url:
                        self.bad_redirects += 1
                    self.acknowledged.append(("click", delivery_id))
                elif not click and 200 <= status < 300:
                    self.acknowledged.append(("open", delivery_id))
                else:
                    self.failed += 1


# -- the scenarios --------------------------------------------------------------------------------


def at_share(
    driver: Driver, share: float, action: Callable[[], None]
) -> Callable[[int, float], None]:
    """A `during` hook that runs `action` once, when `share` of the audience was received."""
    done = threading.Event()

    def hook(received: int, seconds: float) -> None:
        if not done.is_set() and received >= share * driver.audience:
            done.set()
            action()

    return hook


def scenario_1(driver: Driver) -> dict[str, Any]:
    log("1: both worker hosts sending")
    both = driver.send("both worker hosts")
    log(f"1: {both}")
    cluster("kill", "worker2")
    driver.wait_workers(1)
    one = driver.send("one worker host")
    log(f"1 (one host): {one}")
    cluster("start", "worker2")
    driver.wait_workers(2)
    both["one_host"] = {
        k: one[k]
        for k in (
            "expected",
            "received",
            "duplicates",
            "missing",
            "unknown",
            "seconds",
            "recipients_per_s",
        )
    }
    both["speed_up"] = round(both["recipients_per_s"] / max(one["recipients_per_s"], 1), 2)
    return both


def scenario_2(driver: Driver) -> dict[str, Any]:
    log("2: every process on worker1 SIGKILLed mid-send")
    killed: dict[str, float] = {}

    def kill() -> None:
        killed["at"] = time.monotonic()
        cluster("kill", "worker1")
        log("2: worker1 killed")

    result = driver.send("worker1 killed", during=at_share(driver, 0.3, kill))
    cluster("start", "worker1")
    driver.wait_workers(2)
    log(f"2: {result}")
    return result


def scenario_3(driver: Driver, cut_seconds: float) -> dict[str, Any]:
    log(f"3: worker2 cut off the network for {cut_seconds:.0f} s mid-send")

    def cut() -> None:
        cluster("cut", "worker2")
        log("3: worker2 cut off")

        def restore() -> None:
            time.sleep(cut_seconds)
            cluster("restore", "worker2")
            log("3: worker2 back")

        threading.Thread(target=restore, daemon=True).start()

    result = driver.send("worker2 cut off", during=at_share(driver, 0.3, cut))
    driver.wait_workers(2)
    log(f"3: {result}")
    return result


def scenario_4(driver: Driver, tracking_campaign: int) -> dict[str, Any]:
    log("4: the Redis master killed mid-send (with tracking load)")
    loads: list[TrackingLoad] = []
    killed: dict[str, Any] = {}

    def kill() -> None:
        loads.append(driver.tracking_load(tracking_campaign, seconds=25, threads=4).start())
        time.sleep(3)
        master = (
            subprocess.run([CLUSTER, "status"], check=True, capture_output=True, text=True)
            .stdout.strip()
            .splitlines()[-1]
            .split(":")[-1]
            .strip()
        )
        host = {"10.77.0.11": "redis1", "10.77.0.12": "redis2"}[master]
        killed.update(at=time.monotonic(), host=host)
        cluster("kill", host)
        log(f"4: Redis master {host} killed")

    result = driver.send("Redis master killed", during=at_share(driver, 0.3, kill))
    if loads:
        tracking = driver.recorded(loads[0].join())
        result["tracking"] = tracking
        result["tracking_missing"] = tracking["missing"]
    cluster("start", str(killed.get("host", "redis1")))
    driver.wait_workers(2)
    log(f"4: {result}")
    return result


def scenario_5(driver: Driver, load_seconds: float) -> dict[str, Any]:
    log("5: tracking through the balancer while web1 is killed")
    campaign = driver.send("tracking while web1 is killed")
    load = driver.tracking_load(campaign["campaign_id"], seconds=load_seconds).start()
    time.sleep(load_seconds / 3)
    cluster("kill", "web1")
    log("5: web1 killed")
    load.join()
    result = driver.recorded(load)
    result["campaign"] = {
        k: campaign[k] for k in ("expected", "received", "duplicates", "missing", "unknown")
    }
    cluster("start", "web1")
    log(f"5: {result}")
    return result


def scenario_6(driver: Driver) -> dict[str, Any]:
    log("6: the host of a beat killed; the other beat starts a scheduled campaign once")
    cluster("kill", "worker1")
    driver.wait_workers(1)
    result = driver.send("scheduled, a beat host down", send_at_delay=2 * driver.tick)
    result["tick_seconds"] = driver.tick
    result["started_within_a_tick"] = result.get("started_after_send_at_s", 1e9) <= driver.tick + 1
    cluster("start", "worker1")
    driver.wait_workers(2)
    log(f"6: {result}")
    return result


def passed(name: str, result: dict[str, Any]) -> bool:
    ok = result.get("duplicates") == 0 and result.get("missing") == 0
    ok = ok and result.get("unexpected", 0) == 0
    if name in ("1", "3", "4", "6"):
        ok = ok and result.get("unknown") == 0
    if name != "5":
        ok = ok and result.get("status") == "sent"
    if name == "4":
        ok = (
            ok
            and result.get("tracking_missing", 1) == 0
            and result.get("longest_pause_s", 99) <= 60
        )
    if name == "5":
        ok = ok and result.get("bad_redirects") == 0 and result.get("expected", 0) > 0
    if name == "6":
        ok = ok and bool(result.get("started_within_a_tick"))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--audience", type=int, default=int(os.environ.get("CLUSTER_AUDIENCE", 100_000))
    )
    parser.add_argument("--only", help="comma-separated scenario numbers (default: all six)")
    parser.add_argument("--cut-seconds", type=float, default=30.0)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    wanted = set((args.only or "1,2,3,4,5,6").split(","))
    driver = Driver(args.audience, tick=5.0)
    driver.prepare()
    log(f"{args.audience} members on the list; cluster CPU before: {cpu()}")
    began = time.monotonic()
    cpu_before = cpu()
    results: dict[str, Any] = {}
    tracking_campaign = 0
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("1", lambda: scenario_1(driver)),
        ("2", lambda: scenario_2(driver)),
        ("3", lambda: scenario_3(driver, args.cut_seconds)),
        ("4", lambda: scenario_4(driver, tracking_campaign)),
        ("5", lambda: scenario_5(driver, args.load_seconds)),
        ("6", lambda: scenario_6(driver)),
    ]
    for name, step in steps:
        if name not in wanted:
            continue
        if name == "4" and not tracking_campaign:
            tracking_campaign = driver.send("sent for scenario 4's tracking load")["campaign_id"]
        try:
            results[name] = step()
        except Exception as exc:  # one scenario's failure is reported, the others still run
            log(f"{name}: failed: {exc!r}")
            results[name] = {"error": repr(exc)}
        results[name]["passed"] = passed(name, results[name])
        if name == "1":
            tracking_campaign = results[name].get("campaign_id", 0)
    cpu_after = cpu()
    summary = {
        "audience": args.audience,
        "passed": all(r["passed"] for r in results.values()),
        "seconds": round(time.monotonic() - began),
        "cpu_seconds_by_host": {
            h: round(cpu_after[h] - cpu_before.get(h, 0), 1) for h in cpu_after
        },
        "scenarios": results,
    }
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0 if summary["passed"] else 1


def cpu_delta(before: dict[str, float]) -> dict[str, float]:
    after = cpu()
    return {host: round(after[host] - before.get(host, 0.0), 1) for host in after}


def cpu() -> dict[str, float]:
    text = subprocess.run([CLUSTER, "cpu"], check=True, capture_output=True, text=True).stdout
    return {host: int(ns) / 1e9 for host, ns in (line.split() for line in text.splitlines())}


if __name__ == "__main__":
    sys.exit(main())
