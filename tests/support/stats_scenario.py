"""A sent campaign whose figures arrive through the real recording paths, for the stats tests.

Opens and clicks go through `tracking.record_hits` (the flusher's path: machine opens, scanner
clicks, petition clicks, duplicate hits, out-of-order arrival), SendGrid events through
`webhook_events.process_event` (delivered, deferred, bounce, dropped, spam report, unsubscribe),
an unsubscribe page click through `tracking.record_unsubscribe`; the sender's part (targeted,
sent, failed, the frozen audience) is played by `bump_campaign_stats` and
`breakdown.record_audience_frozen`, as the sending code will do.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.models import Campaign, Delivery, Link, UnsubscribeSource
from app.services.stats import breakdown
from app.services.stats.counters import bump_campaign_stats
from app.services.tracking import hits as tracking
from app.services.tracking import webhook_events
from tests import factories

STARTED = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
HUMAN_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
SCANNER_UA = "Mozilla/5.0 (compatible; Barracuda Sentinel)"
PROXY_UA = "python-requests/2.32"

_hit_ids = itertools.count(1)
_sg_ids = itertools.count(1)


@dataclass
class Scenario:
    campaign: Campaign
    deliveries: list[Delivery]
    petition: Link
    links: list[Link]
    failed: list[Delivery] = field(default_factory=list)


def _hit(kind: str, d: Delivery, at: datetime, *, link: Link | None = None, ua: str = HUMAN_UA):
    return tracking.Hit(
        f"h{next(_hit_ids)}",
        kind,
        d.campaign_id,
        d.id,
        link.id if link else 0,
        at.timestamp(),
        "203.0.113.7",
        ua,
        False,
    )


def _event(session, name: str, d: Delivery, at: datetime, **extra) -> None:
    event = {
        "event": name,
        "email": d.email,
        "timestamp": int(at.timestamp()),
        "sg_event_id": f"sg{next(_sg_ids)}",
        webhook_events.CUSTOM_ARG_DELIVERY: str(d.id),
        webhook_events.CUSTOM_ARG_CAMPAIGN: str(d.campaign_id),
        **extra,
    }
    webhook_events.process_event(session, event, webhook_events.BatchResult())


def build(session, *, members: int = 24, started: datetime = STARTED) -> Scenario:
    """24 members over three locals and two languages; see the module docstring."""
    lst = factories.mailing_list(session)
    campaign = factories.campaign(session, lists=[lst], status="sent", started_at=started)
    links = [
        Link(campaign_id=campaign.id, url="https://example.org/day-of-action", position=0),
        Link(
            campaign_id=campaign.id,
            url="https://example.org/petition/free-amar",
            position=1,
            is_petition=True,
        ),
        Link(campaign_id=campaign.id, url="https://example.org/donate?src=alert", position=2),
    ]
    session.add_all(links)
    session.flush()
    petition = links[1]
    locals_ = ["Local 101", "Local 202", ""]
    deliveries = []
    for i in range(members):
        m = factories.member(
            session,
            local=locals_[i % 3],
            language="fr" if i % 4 == 0 else "en",
            first_name=f"Member{i}",
        )
        factories.subscribe(session, m, lst)
        status = "failed" if i in (22, 23) else "sent"
        deliveries.append(
            factories.delivery(
                session,
                campaign,
                m,
                language=m.language,
                status=status,
                sent_at=started + timedelta(minutes=1) if status == "sent" else None,
                error="550 5.1.1 mailbox unavailable" if status == "failed" else None,
            )
        )
    sent = [d for d in deliveries if d.status == "sent"]
    # The sender's part: the frozen audience, then what the transport accepted or refused.
    breakdown.record_audience_frozen(session, campaign.id)
    bump_campaign_stats(
        session, campaign.id, targeted=len(deliveries), sent=len(sent), failed=members - len(sent)
    )

    t = started + timedelta(minutes=2)
    for i, d in enumerate(sent):
        if i == 3:
            _event(session, "bounce", d, t, reason="550 5.1.1 user unknown", status="5.1.1")
        elif i == 4:
            _event(session, "dropped", d, t, reason="Bounced Address")
        elif i == 5:
            _event(session, "deferred", d, t, response="421 try later")
            _event(session, "delivered", d, t + timedelta(hours=1))
        else:
            _event(session, "delivered", d, t)
    # A retry of an already delivered event and a late 'deferred' change nothing.
    _event(session, "deferred", sent[0], t + timedelta(hours=2))

    hits = []
    for i, d in enumerate(sent[:16]):
        at = started + timedelta(hours=i * 7 % 90, minutes=5 + i)
        hits.append(_hit(tracking.OPEN, d, at))
        if i % 3 == 0:  # a second open later: counts in totals, not uniques
            hits.append(_hit(tracking.OPEN, d, at + timedelta(days=4)))
        if i % 4 == 1:  # a proxy fetched the image before the person opened
            hits.append(_hit(tracking.OPEN, d, at - timedelta(minutes=30), ua=PROXY_UA))
    for d in sent[16:19]:  # machine opens only
        hits.append(_hit(tracking.OPEN, d, started + timedelta(minutes=9), ua=PROXY_UA))
    for i, d in enumerate(sent[:10]):
        at = started + timedelta(hours=i * 11 % 100, minutes=20)
        hits.append(_hit(tracking.CLICK, d, at, link=petition if i % 2 == 0 else links[0]))
        if i == 2:
            hits.append(_hit(tracking.CLICK, d, at + timedelta(hours=1), link=links[2]))
    # A scanner following every link of one message within a second: automated clicks.
    for j, link in enumerate(links):
        at = started + timedelta(minutes=3, seconds=j * 0.3)
        hits.append(_hit(tracking.CLICK, sent[12], at, link=link, ua=SCANNER_UA))
    # The flusher sees batches out of order and a redelivered entry twice.
    tracking.record_hits(session, hits[len(hits) // 2 :])
    tracking.record_hits(session, hits[: len(hits) // 2])
    tracking.record_hits(session, hits[:3])

    # Unsubscribes: the page (one-click) and SendGrid's own link; a spam report.
    tracking.record_unsubscribe(
        session, sent[1].id, list_ids=None, source=UnsubscribeSource.ONE_CLICK
    )
    tracking.record_unsubscribe(session, sent[1].id, list_ids=None, source=UnsubscribeSource.LINK)
    _event(session, "unsubscribe", sent[7], started + timedelta(days=1))
    _event(session, "spamreport", sent[8], started + timedelta(days=2))
    session.flush()
    return Scenario(campaign, deliveries, petition, links, [d for d in deliveries if d.error])


def build_demo(
    session, *, members: int = 400, started: datetime = STARTED, seed: int = 7, name: str = ""
) -> Scenario:
    """A livelier campaign for screenshots: opens and clicks decaying over a week, five locals.

    Same recording paths as `build`; numbers drawn from a seeded random generator.
    """
    import random

    rng = random.Random(seed)
    lst = factories.mailing_list(session)
    campaign = factories.campaign(
        session,
        lists=[lst],
        status="sent",
        started_at=started,
        name=name or "Day of action Dec. 17: rally for Amar's release",
    )
    campaign.variants[0].subject = "Dec. 17: stand with Amar — rally at noon"
    links = [
        Link(campaign_id=campaign.id, url="https://example.org/rally/dec-17", position=0),
        Link(
            campaign_id=campaign.id,
            url="https://example.org/petition/free-amar-fayaz-now",
            position=1,
            is_petition=True,
        ),
        Link(campaign_id=campaign.id, url="https://example.org/carpool", position=2),
        Link(campaign_id=campaign.id, url="https://example.org/donate", position=3),
    ]
    session.add_all(links)
    session.flush()
    locals_ = ["Local 1004", "Local 2021", "Local 118", "Chapter Montréal-Nord", ""]
    deliveries = []
    for i in range(members):
        m = factories.member(
            session,
            local=locals_[min(int(rng.expovariate(0.7)), 4)],
            language="fr" if rng.random() < 0.3 else "en",
        )
        factories.subscribe(session, m, lst)
        ok = rng.random() > 0.01
        deliveries.append(
            factories.delivery(
                session,
                campaign,
                m,
                language=m.language,
                status="sent" if ok else "failed",
                sent_at=started + timedelta(seconds=i) if ok else None,
                error=None if ok else "550 5.1.1 The email account does not exist",
            )
        )
    sent = [d for d in deliveries if d.status == "sent"]
    breakdown.record_audience_frozen(session, campaign.id)
    bump_campaign_stats(
        session,
        campaign.id,
        targeted=len(deliveries),
        sent=len(sent),
        failed=len(deliveries) - len(sent),
    )
    hits = []
    for d in sent:
        roll = rng.random()
        t = started + timedelta(minutes=2)
        if roll < 0.02:
            _event(session, "bounce", d, t, reason="550 5.1.1 user unknown", status="5.1.1")
            continue
        _event(session, "delivered", d, t)
        if rng.random() < 0.15:  # Apple Mail prefetch
            hits.append(_hit(tracking.OPEN, d, t + timedelta(minutes=3), ua=PROXY_UA))
        if rng.random() < 0.5:
            first = t + timedelta(hours=min(rng.expovariate(1 / 9), 24 * 9))
            hits.append(_hit(tracking.OPEN, d, first))
            if rng.random() < 0.3:
                hits.append(_hit(tracking.OPEN, d, first + timedelta(hours=rng.uniform(1, 60))))
            if rng.random() < 0.35:
                link = links[1] if rng.random() < 0.6 else rng.choice(links)
                hits.append(
                    _hit(tracking.CLICK, d, first + timedelta(minutes=rng.uniform(1, 9)), link=link)
                )
            if rng.random() < 0.01:
                _event(session, "unsubscribe", d, first + timedelta(minutes=5))
    tracking.record_hits(session, hits)
    _event(session, "spamreport", sent[-1], started + timedelta(days=1))
    session.flush()
    return Scenario(campaign, deliveries, links[1], links, [d for d in deliveries if d.error])
