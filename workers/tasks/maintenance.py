"""Maintenance tasks: a ping that proves a worker runs tasks, and the hourly retention run."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from app import jobs
from app.extensions import db
from app.infra.redis_client import get_redis
from app.services.actions import retention as action_retention
from app.services.stats import retention


@shared_task(name=jobs.HEALTH_PING)
def ping(token: str) -> str:
    """Echo `token` back; tests and the health check use it to see a task run end to end."""
    return token


@shared_task(name=jobs.PURGE_PERSONAL_DATA)
def purge_personal_data(run_seconds: float = retention.RUN_SECONDS) -> int:
    """Apply the retention periods (beat, hourly); returns how many rows changed or went.

    Commits after every batch and stops after `run_seconds`; the next run goes on.
    """
    config = current_app.config
    report = retention.purge(
        db.session,
        get_redis(),
        tracking_days=int(config["TRACKING_DETAIL_DAYS"]),
        webhook_days=int(config["WEBHOOK_BATCH_DAYS"]),
        commit=db.session.commit,
        run_seconds=run_seconds,
    )
    if report is None:
        return 0  # another run holds the lock
    signers = action_retention.forget_signer_details(
        db.session,
        tracking_days=int(config["TRACKING_DETAIL_DAYS"]),
        commit=db.session.commit,
    )
    return report.events_cleaned + report.batches_deleted + signers
