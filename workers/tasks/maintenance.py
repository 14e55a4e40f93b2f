"""Maintenance tasks: a ping used to prove a worker runs tasks (not just answers control)."""

from __future__ import annotations

from celery import shared_task

from app import jobs


@shared_task(name=jobs.HEALTH_PING)
def ping(token: str) -> str:
    """Echo `token` back; tests and the health check use it to see a task run end to end."""
    return token
