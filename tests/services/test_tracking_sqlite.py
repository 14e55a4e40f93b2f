"""`make run` uses SQLite: hits, counters, webhooks and unsubscribes work there too."""

from __future__ import annotations

import json
import time

from flask_migrate import upgrade

from app.extensions import db
from app.models import CampaignStats, Delivery, UnsubscribeSource, WebhookBatch
from app.services.stats import counters as stats
from app.services.tracking import hits as tracking
from app.services.tracking import webhook_events
from app.services.tracking.hits import CLICK, OPEN, Hit
from tests.support.tracking import MIGRATIONS, sent_campaign


def test_the_whole_recording_path_on_sqlite(other_app, tmp_path):
    app = other_app(DATABASE_URL=f"sqlite:///{tmp_path / 'rp.db'}")
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        session = db.session
        data = sent_campaign(session, app, members=3)
        session.commit()
        now = time.time() - 100
        c, d0, d1 = data.campaign.id, data.deliveries[0].id, data.deliveries[1].id
        hits = [
            Hit("s.1", OPEN, c, d0, 0, now, "203.0.113.1", "Firefox", False),
            Hit("s.2", CLICK, c, d0, data.petition.id, now + 1, "", "Firefox", False),
            Hit("s.3", CLICK, c, d0, data.info.id, now + 1.5, "", "Firefox", False),
            Hit("s.4", OPEN, c, d1, 0, now, "172.224.224.1", "Mail", False),
        ]
        assert tracking.record_hits(session, hits) == 4
        session.commit()
        assert tracking.record_hits(session, hits) == 0
        tracking.record_unsubscribe(
            session, data.deliveries[2].id, list_ids=None, source=UnsubscribeSource.LINK
        )
        d = data.deliveries[1]
        batch = WebhookBatch(
            body=json.dumps(
                [{"event": "delivered", "sg_event_id": "q1", "email": d.email,
                  "timestamp": int(time.time()), "rp_delivery": str(d.id),
                  "rp_campaign": str(data.campaign.id)}]
            )
        )  # fmt: skip
        session.add(batch)
        session.flush()
        webhook_events.process_batch(session, batch.id)
        session.commit()

        stored = stats.stored_stats(session, data.campaign.id)
        computed = stats.recompute_stats(session, data.campaign.id)
        for name in stats.EVENT_COUNTERS:
            assert stored.campaign[name] == computed.campaign[name], name
        assert stored.links == computed.links
        assert stored.hourly == computed.hourly
        row = session.get(CampaignStats, data.campaign.id)
        assert (row.clicks_total, row.clicks_human_unique, row.unsubscribes, row.delivered) == (
            2,
            0,
            1,
            1,
        )
        assert session.get(Delivery, d.id).outcome == "delivered"
        session.remove()
