"""What `make run` prints: beat's periodic ticks stay quiet, other tasks and real work do not."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import jobs
from app.extensions import db
from app.services.tracking.runtime import runtime
from config.log import BEAT_SENDING
from tests.support.tracking import reset_tracking, sent_campaign
from tests.support.workers import CeleryProcess, purge_queues, worker_environ
from workers.tasks.tracking import flush_tracking


@pytest.fixture
def info_worker(app, test_environ, tmp_path: Path) -> Iterator[CeleryProcess]:
    """A worker as the Procfile runs it (INFO), logging to a file."""
    purge_queues(test_environ["REDIS_URL"])
    env = worker_environ(test_environ, LOG_LEVEL="INFO")
    worker = CeleryProcess("worker", env, tmp_path, concurrency=1).start()
    try:
        yield worker.wait_ready(test_environ["REDIS_URL"])
    finally:
        worker.stop()


def _wait_for_line(worker: CeleryProcess, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = worker.log_path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never logged:\n{worker.log()}")


def test_the_worker_logs_no_line_per_periodic_tick_but_does_for_other_tasks(
    app, info_worker: CeleryProcess
) -> None:
    celery = app.extensions["celery"]
    for name in (jobs.FLUSH_TRACKING, jobs.SCHEDULING_TICK, jobs.SWEEP_SENDING):
        celery.send_task(name)
    time.sleep(1)  # the periodic ones go first, so they are done before the ping's line
    celery.send_task(jobs.HEALTH_PING, args=["log-test"])
    log = _wait_for_line(info_worker, "succeeded")
    assert re.search(rf"Task {re.escape(jobs.HEALTH_PING)}\[[-0-9a-f]+\] received", log)
    assert re.search(rf"Task {re.escape(jobs.HEALTH_PING)}\[[-0-9a-f]+\] succeeded", log)
    for name in (jobs.FLUSH_TRACKING, jobs.SCHEDULING_TICK, jobs.SWEEP_SENDING):
        assert f"Task {name}[" not in log


def test_beat_says_nothing_when_it_sends_a_periodic_tick(app, caplog) -> None:
    beat = logging.getLogger("celery.beat")  # Celery's beat logs through this logger
    with caplog.at_level(logging.INFO, logger="celery.beat"):
        beat.info(BEAT_SENDING, "tracking-flush", "tracking.flush")
        beat.info(BEAT_SENDING, "scheduling-tick", "scheduling.tick")
        beat.info(BEAT_SENDING, "retention-purge", "retention.purge")
    assert [record.getMessage() for record in caplog.records] == [
        "Scheduler: Sending due task retention-purge (retention.purge)"
    ]


@pytest.fixture
def clean_tracking(app, committed_db) -> Iterator[None]:
    reset_tracking(app)
    yield
    reset_tracking(app)


def test_a_flush_logs_only_when_it_recorded_hits(app, client, clean_tracking, caplog) -> None:
    with app.app_context():
        data = sent_campaign(db.session, app, members=2)
        db.session.commit()
        tokens = [data.token(0), data.token(1)]
        db.session.remove()
    logger = "workers.tasks.tracking"
    with caplog.at_level(logging.INFO, logger=logger), app.app_context():
        assert flush_tracking.run(run_seconds=5) == 0
        assert [r for r in caplog.records if r.name == logger] == []
        for token in tokens:
            assert client.get(f"/t/o/{token}.gif").status_code == 200
        runtime(app).buffer.flush()
        assert flush_tracking.run(run_seconds=5) == 2
        db.session.remove()
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == logger]
    assert messages == [("INFO", "tracking.flush recorded 2 hits")]
