"""Health of the three parts the service needs: database, Redis and a live Celery worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from celery import Celery
from redis import Redis

if TYPE_CHECKING:  # the session type only: infra sits below the services
    from app.services import DbSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartHealth:
    name: str
    ok: bool
    detail: str
    # The check itself failed (a connection error), which a stale pooled connection after a
    # Redis restart also causes: worth one more try. "No worker answered" is an answer.
    transient: bool = False


def check_database(session: DbSession) -> PartHealth:
    try:
        session.execute(sa.text("SELECT 1"))
        return PartHealth("database", True, "ok")
    except Exception as exc:  # any driver error means "down"
        session.rollback()
        log.warning("health: database check failed: %s", exc)
        return PartHealth("database", False, f"unreachable: {type(exc).__name__}")


def check_redis(client: Redis) -> PartHealth:
    try:
        client.ping()
    except Exception as exc:
        log.warning("health: redis check failed: %s", exc)
        return PartHealth("redis", False, f"unreachable: {type(exc).__name__}", transient=True)
    policy = eviction_policy(client)
    if policy is not None:
        return PartHealth(
            "redis",
            False,
            f"evicts keys when full (maxmemory-policy {policy}): queued sends and tracking "
            "hits could vanish; set maxmemory-policy noeviction",
        )
    return PartHealth("redis", True, "ok")


def eviction_policy(client: Redis) -> str | None:
    """The policy under which this Redis may drop keys (Celery's queues, the tracking
    stream), or None when it never does: no memory limit, or `noeviction`.

    Managed services that hide CONFIG are given the benefit of the doubt.
    """
    try:
        settings = client.config_get("maxmemory*")
    except Exception:
        return None
    policy = str(settings.get("maxmemory-policy", "noeviction"))
    if int(settings.get("maxmemory", 0) or 0) == 0 or policy == "noeviction":
        return None
    return policy


def check_worker(celery: Celery, timeout: float = 1.0) -> PartHealth:
    """Ping the workers through the broker; at least one must answer within `timeout`."""
    try:
        replies = celery.control.ping(timeout=timeout)
    except Exception as exc:
        log.warning("health: worker ping failed: %s", exc)
        return PartHealth("worker", False, f"cannot ping: {type(exc).__name__}", transient=True)
    if not replies:
        return PartHealth("worker", False, "no worker answered the ping")
    names = sorted(name for reply in replies for name in reply)
    return PartHealth("worker", True, f"{len(names)} worker(s): {', '.join(names)}")


def check_all(session: DbSession, client: Redis, celery: Celery) -> list[PartHealth]:
    """Each part's health. A Redis check or worker ping that fails on a connection error is
    tried once more before counting as down: after a Redis restart the first use of each
    pooled connection fails (and drops it), and a load balancer must not take a healthy web
    process out for that."""
    redis_part = check_redis(client)
    if redis_part.transient:
        redis_part = check_redis(client)
    parts = [check_database(session), redis_part]
    if redis_part.ok:
        worker = check_worker(celery)
        parts.append(check_worker(celery) if worker.transient else worker)
    else:
        parts.append(PartHealth("worker", False, "not checked: Redis, the broker, is down"))
    return parts
