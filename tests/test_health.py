"""/healthz reports database, Redis and a live worker; 503 names what is down."""

from __future__ import annotations

import time
import warnings

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.exceptions import CPendingDeprecationWarning

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


def _wait_for_a_worker(broker: str, timeout: float = 30.0) -> None:
    probe = Celery(broker=broker)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if probe.control.ping(timeout=0.5):
                return
        raise AssertionError("the worker did not come back")
    finally:
        probe.close()


def test_a_redis_restart_does_not_fail_the_next_check(other_app):
    """Each web process's pooled connections die with the restart; the check must not 503."""
    server = RedisServer().start()
    app = other_app(REDIS_URL=server.url)
    celery = app.extensions["celery"]
    try:
        with start_worker(celery, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            client = app.test_client()
            assert client.get("/healthz").status_code == 200
            # The worker's consumer warns, from its own thread, that a later Celery may cancel
            # running tasks on a connection loss; config/celeryconfig.py keeps them on purpose.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CPendingDeprecationWarning)
                server.restart(down_seconds=0.2)
                _wait_for_a_worker(server.url)  # the worker's own reconnection, from outside
            response = client.get("/healthz")  # the web process's first check since
            assert response.status_code == 200, response.get_json()
    finally:
        server.cleanup()
