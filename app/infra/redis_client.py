"""One Redis connection pool per process, configured from REDIS_URL."""

from __future__ import annotations

import redis
from flask import Flask, current_app

_EXT = "rallypoint.redis"


def init_app(app: Flask) -> None:
    # Short timeouts: a Redis outage must turn into a quick fallback, never a hung request.
    app.extensions[_EXT] = redis.Redis.from_url(
        app.config["REDIS_URL"], socket_connect_timeout=1, socket_timeout=2
    )


def get_redis() -> redis.Redis:
    client: redis.Redis = current_app.extensions[_EXT]
    return client
