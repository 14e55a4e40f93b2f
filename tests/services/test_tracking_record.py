"""record_hits: events, first-engagement times, counters and rollups; idempotent; flags machines."""

from __future__ import annotations

import random
import time

import pytest
import sqlalchemy as sa

from app.models import Delivery, Event
from app.services.stats import counters as stats
from app.services.tracking import machine_hits
from app.services.tracking.hits import CLICK, OPEN, Hit, decode_hits, encode_hits, record_hits
from tests.support.tracking import sent_campaign

HUMAN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0"
APPLE_IP = "172.224.224.5"  # in the bundled sample of Apple's egress ranges
_ids = iter(range(1, 10**9))


def hit(
    data, kind, index=0, *, link=None, at=None, ua=HUMAN, ip="198.51.100.7", head=False, hit_id=None
):
    d = data.deliveries[index]
    return Hit(
        hit_id or f"t.{next(_ids)}",
        kind,
        data.campaign.id,
        d.id,
        (link or data.petition).id if kind == CLICK else 0,
        at if at is not None else time.time(),
        ip,
        ua,
        head,
    )


@pytest.fixture
def apple():
    return machine_hits.read_ranges(machine_hits.BUNDLED_APPLE_RANGES)


@pytest.fixture
def data(db_session, app):
    return sent_campaign(db_session, app, members=4)


def assert_counters_match_events(session, campaign_id):
    stored = stats.stored_stats(session, campaign_id)
    computed = stats.recompute_stats(session, campaign_id)
    for name in stats.EVENT_COUNTERS:
        assert stored.campaign[name] == computed.campaign[name], name
    assert stored.links == computed.links
    assert stored.hourly == computed.hourly
    assert stats.delivery_firsts_mismatches(session, campaign_id) == []
    return stored


def test_hits_become_events_and_counters(db_session, data, apple):
    now = time.time()
    hits = [
        hit(data, OPEN, 0, at=now - 100),
        hit(data, OPEN, 0, at=now - 50),
        hit(data, OPEN, 1, at=now - 40, ip=APPLE_IP),
        hit(data, CLICK, 0, at=now - 30),
        hit(data, CLICK, 1, link=data.info, at=now - 20),
    ]
    assert record_hits(db_session, hits, apple=apple) == 5
    got = assert_counters_match_events(db_session, data.campaign.id).campaign
    assert got["opens_total"] == 3
    assert got["opens_unique"] == 2
    assert got["opens_human_unique"] == 1
    assert got["machine_opens"] == 1
    assert got["clicks_total"] == 2
    assert got["clicks_unique"] == 2
    assert got["petition_clicks_unique"] == 1
    assert got["petition_clicks_total"] == 1
    db_session.expire_all()
    delivery = db_session.get(Delivery, data.deliveries[0].id)
    assert delivery.opened_at.timestamp() == pytest.approx(now - 100, abs=0.01)
    assert delivery.petition_clicked_at is not None


def test_recording_the_same_hits_again_changes_nothing(db_session, data, apple):
    hits = [hit(data, OPEN, 0), hit(data, CLICK, 1), hit(data, OPEN, 2, ip=APPLE_IP)]
    assert record_hits(db_session, hits, apple=apple) == 3
    before = stats.stored_stats(db_session, data.campaign.id)
    assert record_hits(db_session, hits, apple=apple) == 0
    assert record_hits(db_session, [*hits, *hits], apple=apple) == 0
    assert stats.stored_stats(db_session, data.campaign.id) == before
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Event)) == 3


def test_hits_of_unknown_deliveries_or_foreign_links_are_skipped(db_session, data, app, apple):
    other = sent_campaign(db_session, app, members=1)
    good = hit(data, CLICK, 0)
    foreign_link = good._replace(hit_id="t.foreign", link_id=other.petition.id)
    foreign_delivery = good._replace(hit_id="t.foreign2", delivery_id=other.deliveries[0].id)
    missing = good._replace(hit_id="t.missing", delivery_id=10**12)
    assert (
        record_hits(db_session, [good, foreign_link, foreign_delivery, missing], apple=apple) == 1
    )


def test_machine_opens_are_flagged_not_dropped(db_session, data, apple):
    hits = [
        hit(data, OPEN, 0, ip=APPLE_IP),
        hit(data, OPEN, 1, ua="Mozilla/5.0 (via ggpht.com GoogleImageProxy)"),  # a person in Gmail
        hit(data, OPEN, 2, ua="Barracuda Sentinel (EE)"),
        hit(data, OPEN, 3, ua=""),
        hit(data, OPEN, 3, head=True),
    ]
    record_hits(db_session, hits, apple=apple)
    rows = dict(db_session.execute(sa.select(Event.hit_id, Event.is_machine)).all())
    assert [rows[h.hit_id] for h in hits] == [True, False, True, True, True]
    got = assert_counters_match_events(db_session, data.campaign.id).campaign
    assert got["opens_total"] == 5
    assert got["machine_opens"] == 4
    assert got["opens_unique"] == 4
    assert got["opens_human_unique"] == 1


def test_automated_clicks_are_flagged(db_session, app, apple):
    data = sent_campaign(db_session, app, members=3, sent_seconds_ago=3)
    now = time.time()
    hits = [
        hit(data, CLICK, 0, at=now),  # three seconds after sending
        hit(data, CLICK, 1, at=now + 600, ua="python-requests/2.32"),
        hit(data, CLICK, 2, at=now + 600, ua="Mozilla/5.0 HeadlessChrome/120"),
    ]
    record_hits(db_session, hits, apple=apple)
    assert all(db_session.scalars(sa.select(Event.is_machine)))
    got = assert_counters_match_events(db_session, data.campaign.id).campaign
    assert got["clicks_unique"] == 3
    assert got["clicks_human_unique"] == 0
    assert got["machine_clicks"] == 3


def test_a_burst_of_links_reflags_the_earlier_click(db_session, data, apple):
    now = time.time() - 500
    first = hit(data, CLICK, 0, link=data.petition, at=now)
    record_hits(db_session, [first], apple=apple)
    assert (
        assert_counters_match_events(db_session, data.campaign.id).campaign["clicks_human_unique"]
        == 1
    )

    # A scanner then follows the other link 0.8 s later, in another flush.
    record_hits(db_session, [hit(data, CLICK, 0, link=data.info, at=now + 0.8)], apple=apple)
    got = assert_counters_match_events(db_session, data.campaign.id)
    assert got.campaign["clicks_human_unique"] == 0
    assert got.campaign["machine_clicks"] == 2
    assert got.campaign["petition_clicks_unique"] == 1
    assert got.campaign["petition_clicks_human_unique"] == 0
    reasons = db_session.scalar(sa.select(Event.detail).where(Event.hit_id == first.hit_id))[
        "reasons"
    ]
    assert reasons == [machine_hits.REASON_BURST]


def test_the_same_link_twice_is_not_a_burst(db_session, data, apple):
    now = time.time() - 500
    record_hits(
        db_session, [hit(data, CLICK, 0, at=now), hit(data, CLICK, 0, at=now + 0.5)], apple=apple
    )
    got = assert_counters_match_events(db_session, data.campaign.id).campaign
    assert got["clicks_total"] == 2
    assert got["clicks_unique"] == 1
    assert got["clicks_human_unique"] == 1


def test_an_earlier_hit_arriving_late_moves_the_unique_to_its_hour(db_session, data, apple):
    now = time.time()
    record_hits(db_session, [hit(data, OPEN, 0, at=now)], apple=apple)
    record_hits(db_session, [hit(data, OPEN, 0, at=now - 7200)], apple=apple)  # replayed, older
    got = assert_counters_match_events(db_session, data.campaign.id)
    assert got.campaign["opens_unique"] == 1
    assert sum(h["opens_unique"] for h in got.hourly.values()) == 1
    assert sum(h["opens_total"] for h in got.hourly.values()) == 2


def test_random_traffic_keeps_every_counter_equal_to_its_recomputation(db_session, app, apple):
    rng = random.Random(6)
    data = sent_campaign(db_session, app, members=12, sent_seconds_ago=7200)
    start = time.time() - 7000
    agents = [HUMAN, HUMAN, HUMAN, "Mimecast Link Scanner", "curl/8.1", ""]
    hits = []
    for _ in range(400):
        kind = rng.choice([OPEN, OPEN, CLICK])
        hits.append(
            hit(
                data,
                kind,
                rng.randrange(12),
                link=rng.choice([data.petition, data.info]),
                at=start + rng.uniform(0, 6000),
                ua=rng.choice(agents),
                ip=rng.choice([APPLE_IP, "203.0.113.9"]),
                head=rng.random() < 0.05,
            )
        )
    # In random batches, in random order, some twice.
    rng.shuffle(hits)
    position = 0
    while position < len(hits):
        size = rng.randint(1, 60)
        batch = hits[position : position + size]
        record_hits(db_session, batch + rng.sample(batch, k=min(3, len(batch))), apple=apple)
        position += size
    got = assert_counters_match_events(db_session, data.campaign.id).campaign
    assert got["opens_total"] + got["clicks_total"] == len(hits)


def test_hits_survive_their_json_form():
    original = [
        Hit("p.1", OPEN, 1, 2, 0, 1.5, "::1", "UA", False),
        Hit("p.2", CLICK, 1, 2, 3, 2.0, "", "", True),
    ]
    assert decode_hits(encode_hits(original)) == original
    for bad in ('{"a": 1}', "[[1,2]]", '[["", "o", 1, 2, 0, 1, "", "", false]]', "nope"):
        with pytest.raises(ValueError):  # noqa: PT011 - json's and ours, both ValueError
            decode_hits(bad)


def test_bump_campaign_stats_for_the_sender(db_session, data):
    stats.bump_campaign_stats(db_session, data.campaign.id, targeted=4, sent=3)
    stats.bump_campaign_stats(db_session, data.campaign.id, sent=1, failed=0)
    stored = stats.stored_stats(db_session, data.campaign.id).campaign
    assert (stored["targeted"], stored["sent"]) == (4, 4)
    with pytest.raises(stats.StatsError):
        stats.bump_campaign_stats(db_session, data.campaign.id, opened=1)
    with pytest.raises(stats.StatsError):
        stats.bump_campaign_stats(db_session, data.campaign.id, sent=1.5)  # type: ignore[arg-type]


def test_the_spelled_out_update_writes_every_first_engagement_column():
    from app.services.tracking import hits as tracking

    for name in tracking._FIRSTS:
        assert f"{name} = v.{name}" in tracking._UPDATE_FIRSTS_PG
        assert f"%({name})b::timestamptz[]" in tracking._UPDATE_FIRSTS_PG
