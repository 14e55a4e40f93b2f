"""After-commit job dispatch: a message leaves on commit and is dropped on rollback."""

from __future__ import annotations

import json

import redis

from app import jobs
from app.models import Role, User


def _queued_task_names(redis_url: str, queue: str = "default") -> list[str]:
    client = redis.Redis.from_url(redis_url)
    return [json.loads(raw)["headers"]["task"] for raw in client.lrange(queue, 0, -1)]


def _clear(redis_url: str, queue: str = "default") -> None:
    redis.Redis.from_url(redis_url).delete(queue)


def test_job_is_published_only_when_the_transaction_commits(db_session, test_environ):
    url = test_environ["REDIS_URL"]
    _clear(url)
    db_session.add(User(email="jobs@example.org", password_hash="x", role=Role.ADMIN.value))
    jobs.enqueue(db_session, jobs.HEALTH_PING, "after-commit")

    assert _queued_task_names(url) == []  # nothing leaves before the commit
    assert [j.name for j in jobs.pending_jobs(db_session)] == [jobs.HEALTH_PING]

    db_session.commit()

    assert _queued_task_names(url) == [jobs.HEALTH_PING]
    assert jobs.pending_jobs(db_session) == []
    _clear(url)


def test_job_is_dropped_when_the_transaction_rolls_back(db_session, test_environ):
    url = test_environ["REDIS_URL"]
    _clear(url)
    db_session.add(User(email="rolled@example.org", password_hash="x", role=Role.ADMIN.value))
    jobs.enqueue(db_session, jobs.HEALTH_PING, "never")

    db_session.rollback()
    db_session.commit()  # a later commit must not resurrect the dropped job

    assert _queued_task_names(url) == []
    assert jobs.pending_jobs(db_session) == []


def test_jobs_route_by_name_to_their_queue(db_session, test_environ):
    url = test_environ["REDIS_URL"]
    _clear(url, "bulk")
    jobs.enqueue(db_session, jobs.SEND_BATCH, 1, 2)
    db_session.commit()
    assert _queued_task_names(url, "bulk") == [jobs.SEND_BATCH]
    _clear(url, "bulk")
