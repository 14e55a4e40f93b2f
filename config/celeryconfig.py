"""Celery settings: at-least-once delivery made harmless by the ledger (docs/architecture.md)."""

from __future__ import annotations

from typing import Any

from kombu import Queue

QUEUE_BULK = "bulk"
QUEUE_TRANSACTIONAL = "transactional"
QUEUE_DEFAULT = "default"
QUEUE_WEBHOOKS = "webhooks"
# Every queue a worker should consume (the Procfile and deploy/ list the same).
ALL_QUEUES = (QUEUE_TRANSACTIONAL, QUEUE_BULK, QUEUE_DEFAULT, QUEUE_WEBHOOKS)

# Every batch task finishes in seconds; an hour leaves a wide margin before Redis redelivers
# a task that is still running (kombu's visibility timeout counts from delivery, not start).
VISIBILITY_TIMEOUT = 3600


# Task names of the periodic work (the same strings as app.jobs, which config may not import).
TICK_TASK = "scheduling.tick"
SWEEP_TASK = "scheduling.sweep"
RETENTION_TASK = "retention.purge"
# Hourly, so each run has an hour of events to clean (seconds of work) and a backlog (the
# first run on an old database) is worked off in slices that never hold a worker for long.
RETENTION_SECONDS = 3600.0


def celery_settings(
    broker_url: str,
    *,
    tick_seconds: float = 5.0,
    sweep_seconds: float = 15.0,
    transport_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the Celery configuration for a broker URL.

    The choices follow reference/celery-tracking-security.md §1.9: late acks with rejection on
    worker loss (a SIGKILLed worker's task comes back), prefetch of one (nothing waits in a
    worker's memory past the visibility timeout), JSON only, results ignored, no long ETAs.
    """
    # transport_options: Sentinel's master name and password (app/infra/redis_client.py).
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT, **(transport_options or {})}
    return {
        "broker_url": broker_url,
        "result_backend": None,
        "broker_transport_options": transport,
        "result_backend_transport_options": transport,
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # A batch running when the broker connection drops is allowed to finish: its outcome
        # goes to PostgreSQL, which is still there, and the ledger makes a redelivered copy
        # claim nothing. Cancelling it would strand its claimed rows as 'unknown' (measured
        # in tests/workers/test_sending_chaos.py: two batches lost per Redis restart).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_soft_shutdown_timeout": 10,
        "worker_hijack_root_logger": False,
        "task_default_queue": QUEUE_DEFAULT,
        "task_queues": tuple(Queue(name) for name in ALL_QUEUES),
        # Batches wait on `bulk`. A campaign's dispatch (its freeze) goes to `default` beside
        # the beat's short ticks, so a second campaign does not wait behind the first one's
        # batches. SendGrid's event batches have a queue of their own: a 90,000-member alert
        # brings 180,000 events, and the tick, the sweep and the tracking flush must not
        # queue behind them (kombu's Redis transport takes from each queue in turn).
        "task_routes": {
            "campaigns.dispatch": {"queue": QUEUE_DEFAULT},
            "campaigns.*": {"queue": QUEUE_BULK},
            "transactional.*": {"queue": QUEUE_TRANSACTIONAL},
            "webhooks.process_batch": {"queue": QUEUE_WEBHOOKS},
        },
        # Periodic work. Each run decides from PostgreSQL rows what is due (and the sending
        # ones hold a Redis lock), so a second beat or an overlapping run changes nothing.
        # Names are spelled out: config/ does not import app.jobs. `expires` drops ticks that
        # waited behind a stopped worker instead of running a pile of them at once.
        "beat_schedule": {
            "scheduling-tick": {
                "task": TICK_TASK,
                "schedule": tick_seconds,
                "options": {"expires": tick_seconds},
            },
            "sending-sweep": {
                "task": SWEEP_TASK,
                "schedule": sweep_seconds,
                "options": {"expires": sweep_seconds},
            },
            "tracking-flush": {
                "task": "tracking.flush",
                "schedule": 1.0,
                "options": {"expires": 5},
            },
            "webhook-sweep": {
                "task": "webhooks.sweep",
                "schedule": 60.0,
                "options": {"expires": 50},
            },
            "retention-purge": {
                "task": RETENTION_TASK,
                "schedule": RETENTION_SECONDS,
                "options": {"expires": RETENTION_SECONDS / 2},
            },
        },
        "timezone": "UTC",
        "enable_utc": True,
    }
