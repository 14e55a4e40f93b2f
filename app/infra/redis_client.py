"""Every Redis client of a process is built here, from REDIS_URL or through Sentinel.

One host: REDIS_URL. Several hosts: REDIS_SENTINELS (host:port of each Sentinel),
REDIS_SENTINEL_MASTER (the name they watch the master under), REDIS_PASSWORD (the
master's and replicas' `requirepass`), REDIS_SENTINEL_PASSWORD (the Sentinels' own) and
REDIS_DB. Then each client is redis-py's Sentinel-managed one: every new connection asks a
Sentinel where the master is, and a connection to a master that was demoted (READONLY) or
died is dropped, so the next command goes to the promoted replica. The broker follows the
same settings through Celery's `sentinel://` transport (`broker_url`, `broker_options`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import redis
from flask import Flask, current_app
from redis.sentinel import Sentinel

from config.settings import url_host

_EXT = "rallypoint.redis"


def make_client(config: Any, **options: Any) -> redis.Redis:
    """A client for the Redis that config names (a settings object or a Flask config).

    Args:
        config: anything with REDIS_* items (BaseConfig attributes or app.config keys).
        options: redis-py connection options (timeouts, retry).
    """
    sentinels = _get(config, "REDIS_SENTINELS")
    if not sentinels:
        return redis.Redis.from_url(_get(config, "REDIS_URL"), **options)
    sentinel = Sentinel(
        [tuple(pair) for pair in sentinels],
        # The Sentinels answer fast or not at all: the next one in the list is asked.
        sentinel_kwargs={
            "password": _get(config, "REDIS_SENTINEL_PASSWORD"),
            "socket_connect_timeout": 0.5,
            "socket_timeout": 0.5,
        },
        password=_get(config, "REDIS_PASSWORD"),
        db=_get(config, "REDIS_DB") or 0,
        **options,
    )
    return sentinel.master_for(_get(config, "REDIS_SENTINEL_MASTER"), redis_class=redis.Redis)


def broker_url(config: Any) -> str:
    """Celery's broker URL: REDIS_URL, or one `sentinel://` entry per Sentinel."""
    sentinels = _get(config, "REDIS_SENTINELS")
    if not sentinels:
        return str(_get(config, "REDIS_URL"))
    password = _get(config, "REDIS_PASSWORD")
    auth = f":{quote(password, safe='')}@" if password else ""
    db = _get(config, "REDIS_DB") or 0
    return ";".join(f"sentinel://{auth}{url_host(host)}:{port}/{db}" for host, port in sentinels)


def broker_options(config: Any) -> dict[str, Any]:
    """Transport options the Sentinel broker needs besides the visibility timeout."""
    if not _get(config, "REDIS_SENTINELS"):
        return {}
    return {
        "master_name": _get(config, "REDIS_SENTINEL_MASTER"),
        "sentinel_kwargs": {"password": _get(config, "REDIS_SENTINEL_PASSWORD")},
    }


def _get(config: Any, name: str) -> Any:
    if isinstance(config, dict):
        return config.get(name)
    return getattr(config, name, None)


def init_app(app: Flask) -> None:
    # Short timeouts: a Redis outage must turn into a quick fallback, never a hung request.
    app.extensions[_EXT] = make_client(app.config, socket_connect_timeout=1, socket_timeout=2)


def get_redis() -> redis.Redis:
    client: redis.Redis = current_app.extensions[_EXT]
    return client
