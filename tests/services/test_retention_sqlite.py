"""`make run` uses SQLite: the retention run cleans the same JSON there (json_remove)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from app.extensions import db
from app.models import Event, WebhookBatch
from app.services.stats import breakdown, retention
from app.services.stats import counters as stats
from tests.support import stats_scenario
from tests.support.tracking import MIGRATIONS

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _details(session, campaign_id):
    session.expire_all()
    rows = session.execute(
        sa.select(Event.id, Event.kind, Event.is_machine, Event.detail).where(
            Event.campaign_id == campaign_id
        )
    )
    return {row.id: (row.kind, row.is_machine, dict(row.detail)) for row in rows}


def _figures(session, campaign_id):
    return (
        stats.stored_stats(session, campaign_id),
        stats.recompute_stats(session, campaign_id),
        breakdown.stored_breakdown(session, campaign_id),
        breakdown.recompute_breakdown(session, campaign_id),
    )


def test_retention_on_sqlite(other_app, tmp_path, test_environ):
    app = other_app(DATABASE_URL=f"sqlite:///{tmp_path / 'rp.db'}")
    client = redis.Redis.from_url(test_environ["REDIS_URL"])
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        session = db.session
        old = stats_scenario.build(session, started=NOW - timedelta(days=200)).campaign.id
        recent = stats_scenario.build(session, started=NOW - timedelta(days=20)).campaign.id
        for days, error in ((45, None), (45, "event 2: bad"), (10, None)):
            at = NOW - timedelta(days=days)
            session.add(WebhookBatch(body="[]", received_at=at, processed_at=at, error=error))
        session.commit()
        old_before, recent_before = _details(session, old), _details(session, recent)
        figures = _figures(session, old)

        def purge():
            return retention.purge(
                session,
                client,
                tracking_days=90,
                webhook_days=30,
                commit=session.commit,
                now=NOW,
                event_batch=10,
            )

        report = purge()

        tracked = [i for i, (kind, _, _) in old_before.items() if kind in ("open", "click")]
        assert report is not None
        assert report.finished
        assert report.events_cleaned == len(tracked)
        assert (report.batches_deleted, report.kept_failed) == (1, 1)
        after = _details(session, old)
        for event_id, (kind, machine, detail) in old_before.items():
            kept = {k: v for k, v in detail.items() if k not in ("ip", "ua")}
            assert after[event_id] == (kind, machine, kept)
        assert any(detail.get("reasons") for _, _, detail in after.values())
        assert _details(session, recent) == recent_before
        assert _figures(session, old) == figures
        assert session.scalar(sa.select(sa.func.count()).select_from(WebhookBatch)) == 2

        again = purge()
        assert again is not None
        assert (again.events_cleaned, again.batches_deleted) == (0, 0)
        assert _details(session, old) == after
        session.remove()
        db.engine.dispose()
