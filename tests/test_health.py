"""/healthz reports database, Redis and a live worker; 503 names what is down."""

from __future__ import annotations

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from tests.support.servers import RedisServer, free_port


@pytest.fixture
def worker(app):
    celery = app.extensions["celery"]
    with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=10) as w:
        yield w


def test_all_parts_up_with_a_live_worker(client, worker):
    response = client.get("/healthz")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert {name: part["ok"] for name, part in body["parts"].items()} == {
        "database": True,
        "redis": True,
        "worker": True,
    }
    assert body["failing"] == []


def test_no_worker_is_503_naming_the_worker(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failing"] == ["worker"]
    assert body["parts"]["worker"]["detail"] == "no worker answered the ping"


def test_redis_down_is_503_naming_redis(other_app):
    server = RedisServer().start()
    app = other_app(REDIS_URL=server.url)
    server.cleanup()  # Redis stops
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert "redis" in body["failing"]
    assert body["parts"]["database"]["ok"] is True
    assert body["parts"]["redis"]["ok"] is False


def test_database_down_is_503_naming_the_database(other_app):
    app = other_app(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert "database" in response.get_json()["failing"]


def test_a_redis_that_evicts_keys_is_named(other_app):
    """Under memory pressure such a Redis drops Celery's queued batches and tracking entries."""
    server = RedisServer().start()
    try:
        app = other_app(REDIS_URL=server.url)
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory", "100mb")
        client.config_set("maxmemory-policy", "allkeys-lru")
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        detail = response.get_json()["parts"]["redis"]["detail"]
        assert "allkeys-lru" in detail
        assert "noeviction" in detail
        client.config_set("maxmemory-policy", "noeviction")
        assert app.test_client().get("/healthz").get_json()["parts"]["redis"]["ok"] is True
        client.close()
    finally:
        server.cleanup()
