"""Report figures equal what the raw events say; timeline buckets; breakdown upkeep; CSV safety."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app.models import CampaignStats, Delivery, Subscription
from app.services.stats import breakdown, reports
from app.services.stats import counters as stats
from tests import factories
from tests.support import stats_scenario
from tests.support.statements import captured, explain

T0 = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def scenario(db_session):
    return stats_scenario.build(db_session)


def test_the_scenario_has_every_kind_of_figure(db_session, scenario):
    """Guard: the equality tests below would prove little on a campaign without these."""
    counts = stats.stored_stats(db_session, scenario.campaign.id).campaign
    for name in (
        "delivered",
        "bounced",
        "dropped",
        "failed",
        "machine_opens",
        "machine_clicks",
        "opens_human_unique",
        "petition_clicks_human_unique",
        "unsubscribes",
        "spam_reports",
    ):
        assert counts[name] > 0, name
    assert counts["opens_unique"] > counts["opens_human_unique"]


def test_funnel_equals_the_recomputation_from_raw_events(db_session, scenario):
    cid = scenario.campaign.id
    expected = stats.recompute_stats(db_session, cid)
    funnel = reports.campaign_funnel(db_session, cid)
    assert funnel.counts == expected.campaign
    c = expected.campaign
    assert funnel.denominator == "delivered"
    assert funnel.denominator_count == c["delivered"]
    assert funnel.rates["opened_human"] == c["opens_human_unique"] / c["delivered"]
    assert funnel.rates["bounced"] == c["bounced"] / c["sent"]
    assert funnel.rates["petition_clicked_human"] == (
        c["petition_clicks_human_unique"] / c["delivered"]
    )


def test_timeline_and_links_equal_the_recomputation(db_session, scenario):
    cid = scenario.campaign.id
    expected = stats.recompute_stats(db_session, cid)
    buckets = reports.campaign_timeline(db_session, cid, now=T0 + timedelta(days=30))
    assert {b.kind for b in buckets} == {"hour", "day"}
    for name in reports.HOURLY_COUNTERS:
        assert sum(b.counts[name] for b in buckets) == sum(
            h.get(name, 0) for h in expected.hourly.values()
        ), name
    # Uniques add up to the funnel's figure: each delivery sits in its first hour only.
    assert (
        sum(b.counts["opens_human_unique"] for b in buckets)
        == (expected.campaign["opens_human_unique"])
    )
    links = reports.campaign_links(db_session, cid)
    assert [link.is_petition for link in links] == [False, True, False]
    for link in links:
        assert link.counts == expected.links.get(link.link_id, dict.fromkeys(link.counts, 0))


def test_breakdown_kept_incrementally_equals_the_recomputation(db_session, scenario):
    cid = scenario.campaign.id
    stored = breakdown.stored_breakdown(db_session, cid)
    assert stored == breakdown.recompute_breakdown(db_session, cid)
    assert stored[("local", "Local 101")]["targeted"] == 8
    assert stored[("language", "fr")]["targeted"] == 6
    by_local = reports.campaign_breakdown(db_session, cid, "local")
    assert (
        sum(r.counts["opens_human_unique"] for r in by_local)
        == (stats.recompute_stats(db_session, cid).campaign["opens_human_unique"])
    )
    assert {r.label for r in by_local} == {"Local 101", "Local 202", "No local recorded"}
    assert {r.label for r in reports.campaign_breakdown(db_session, cid, "language")} == {
        "English",
        "French",
    }


def test_rebuild_breakdown_restores_a_damaged_rollup(db_session, scenario):
    cid = scenario.campaign.id
    expected = breakdown.recompute_breakdown(db_session, cid)
    breakdown.add_breakdown_counters(db_session, {(cid, "local", "Local 101"): {"targeted": 99}})
    assert breakdown.stored_breakdown(db_session, cid) != expected
    breakdown.rebuild_breakdown(db_session, cid)
    assert breakdown.stored_breakdown(db_session, cid) == expected


def test_frozen_audience_is_counted_once_and_copies_the_local(db_session):
    c = factories.campaign(db_session)
    for local in ("Local 7", "Local 7", ""):
        m = factories.member(db_session, local=local)
        factories.delivery(db_session, c, m)  # frozen without the local, as an old sender would
    breakdown.record_audience_frozen(db_session, c.id)
    breakdown.record_audience_frozen(db_session, c.id)  # a redelivered dispatch task
    stored = breakdown.stored_breakdown(db_session, c.id)
    assert stored[("local", "Local 7")]["targeted"] == 2
    assert stored[("local", "")]["targeted"] == 1
    assert stored[("language", "en")]["targeted"] == 3
    assert {d.local for d in db_session.query(Delivery).filter_by(campaign_id=c.id)} == {
        "Local 7",
        "",
    }


def test_engagement_changes_move_counts_both_ways(db_session):
    c = factories.campaign(db_session)
    d = factories.delivery(db_session, c, factories.member(db_session), local="Local 9")
    key = ("local", "Local 9")
    breakdown.record_engagement_changes(db_session, [(d.id, "human_clicked_at", None, T0)])
    breakdown.record_engagement_changes(  # an earlier first click: no change in the count
        db_session, [(d.id, "human_clicked_at", T0, T0 - timedelta(hours=1))]
    )
    assert breakdown.stored_breakdown(db_session, c.id)[key]["clicks_human_unique"] == 1
    # The click turned out to be part of a scanner's burst: no longer a person's click.
    breakdown.record_engagement_changes(db_session, [(d.id, "human_clicked_at", T0, None)])
    assert key not in breakdown.stored_breakdown(db_session, c.id)
    breakdown.record_outcome_changes(db_session, [(d.id, None, "deferred")])
    breakdown.record_outcome_changes(db_session, [(d.id, "deferred", "delivered")])
    breakdown.record_outcome_changes(db_session, [(d.id, "delivered", "bounced")])
    counts = breakdown.stored_breakdown(db_session, c.id)[key]
    assert (counts["delivered"], counts["bounced"]) == (0, 1)


def test_unknown_names_are_refused_and_change_nothing(db_session):
    c = factories.campaign(db_session)
    d = factories.delivery(db_session, c, factories.member(db_session))
    with pytest.raises(breakdown.BreakdownError):
        breakdown.record_engagement_changes(db_session, [(d.id, "email", None, T0)])
    with pytest.raises(breakdown.BreakdownError):
        breakdown.record_outcome_changes(db_session, [(d.id, None, "exploded")])
    assert breakdown.stored_breakdown(db_session, c.id) == {}


# --- the timeline's buckets -------------------------------------------------------------------


def _hours(*offsets: float, opens: int = 1) -> dict[datetime, dict[str, int]]:
    start = T0.replace(minute=0)
    return {start + timedelta(hours=o): {"opens_total": opens} for o in offsets}


def test_timeline_is_hourly_for_72_hours_then_daily():
    now = T0 + timedelta(days=10)
    buckets = reports.timeline_buckets(_hours(0, 5, 71, 72, 95, 96, 24 * 8), T0, now)
    hours = [b for b in buckets if b.kind == "hour"]
    days = [b for b in buckets if b.kind == "day"]
    assert len(hours) == 72
    assert hours[0].start == T0.replace(minute=0)
    assert all(b.end - b.start == timedelta(hours=1) for b in hours)
    assert days[0].start == hours[-1].end
    assert all(b.end - b.start == timedelta(days=1) for b in days)
    assert [b.counts["opens_total"] for b in hours if b.counts["opens_total"]] == [1, 1, 1]
    # Hours 72..95 make the first day, 96 starts the second; hour 192 falls in the sixth.
    assert [b.counts["opens_total"] for b in days] == [2, 1, 0, 0, 0, 1]
    assert sum(b.counts["opens_total"] for b in buckets) == 7


def test_timeline_of_a_campaign_still_sending_runs_to_the_current_hour():
    buckets = reports.timeline_buckets(_hours(1), T0, T0 + timedelta(hours=5, minutes=10))
    assert [b.kind for b in buckets] == ["hour"] * 6
    assert buckets[-1].start == T0.replace(minute=0) + timedelta(hours=5)


def test_timeline_edge_cases():
    assert reports.timeline_buckets({}, None, T0) == []
    # No start recorded: the first activity starts the timeline.
    buckets = reports.timeline_buckets(_hours(3), None, T0 + timedelta(hours=3))
    assert buckets[0].start == T0.replace(minute=0) + timedelta(hours=3)
    # Activity before the start (clock skew) joins the first hour; very late activity joins
    # the last day instead of stretching the chart for ever.
    late = 72 + 24 * (reports.MAX_DAYS + 30)
    buckets = reports.timeline_buckets(_hours(-2, late), T0, T0 + timedelta(days=400))
    assert buckets[0].counts["opens_total"] == 1
    assert len([b for b in buckets if b.kind == "day"]) == reports.MAX_DAYS
    assert buckets[-1].counts["opens_total"] == 1


# --- problems, CSV, growth, health, member ----------------------------------------------------


def test_problem_addresses_with_reasons_paginated(db_session, scenario):
    cid = scenario.campaign.id
    page = reports.campaign_problems(db_session, cid, per_page=2)
    assert page.total == 4  # 2 refused by the transport, 1 bounce, 1 drop
    assert page.pages == 2
    everything = page.items + reports.campaign_problems(db_session, cid, page=2, per_page=2).items
    by_kind = {p.kind: p for p in everything}
    assert set(by_kind) == {"failed", "bounced", "dropped"}
    assert "user unknown" in by_kind["bounced"].reason
    assert "5.1.1" in by_kind["bounced"].reason
    assert by_kind["dropped"].reason == "Bounced Address"
    assert by_kind["failed"].reason == "550 5.1.1 mailbox unavailable"
    assert reports.campaign_problems(db_session, cid, kind="bounced").total == 1
    with pytest.raises(reports.ReportError):
        reports.campaign_problems(db_session, cid, kind="exploded")


def test_the_problem_list_reads_two_small_indexes_and_no_status(db_session, scenario):
    """No index of deliveries names `status` (a send's outcome is a heap-only update), so a
    problem list asking for "refused or bounced" in one predicate read every bounced row's
    heap to check its status: 30,000 rows, 24 -> 122 ms at 1M deliveries. The bounced and
    dropped rows are counted from their partial index alone, the refused from theirs."""
    cid = scenario.campaign.id
    db_session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    with captured(db_session, lambda s: "count(*)" in s) as counts:
        assert reports.campaign_problems(db_session, cid).total == 4
    bounced, refused = ("\n".join(explain(db_session, sql, params)) for sql, params, _ in counts)
    assert "ix_deliveries_campaign_problems" in bounced, bounced
    assert "status" not in bounced, bounced
    assert "Filter" not in bounced, bounced
    assert "ix_deliveries_campaign_errors" in refused, refused


def test_csv_export_neutralises_formulas(db_session):
    c = factories.campaign(db_session)
    evil = factories.member(
        db_session,
        email="-2+3@example.org",
        first_name='=HYPERLINK("http://evil.example","click")',
        last_name="+SUM(A1:A9)",
        local="@cmd|' /C calc'!A0",
    )
    tabbed = factories.member(db_session, first_name="\tTab", last_name="\rCR")
    newline = factories.member(db_session, first_name="\nLF", last_name="Plain - name")
    for m in (evil, tabbed, newline):
        factories.delivery(db_session, c, m, local=m.local, status="sent", sent_at=T0)
    text = "".join(reports.outcome_csv(db_session, c.id))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(reports.OUTCOME_CSV_HEADER)
    cells = [cell for row in rows[1:] for cell in row]
    assert "'-2+3@example.org" in cells
    assert '\'=HYPERLINK("http://evil.example","click")' in cells
    assert "'+SUM(A1:A9)" in cells
    assert "'@cmd|' /C calc'!A0" in cells
    assert "'\tTab" in cells
    assert "'\rCR" in cells
    assert "'\nLF" in cells
    assert "Plain - name" in cells  # only a leading character is dangerous
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") for cell in cells)


def test_csv_export_lists_every_member_once(db_session, scenario):
    text = "".join(reports.outcome_csv(db_session, scenario.campaign.id))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(scenario.deliveries)
    assert sum(1 for r in rows if r["outcome"] == "bounced") == 1
    assert sum(1 for r in rows if r["unsubscribed_at"]) == 2


def test_list_growth_counts_joins_and_departures_per_week(db_session):
    lst = factories.mailing_list(db_session)
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
    for days_ago, left_days_ago in ((1, None), (2, 1), (8, None), (9, 3), (200, 100)):
        sub = factories.subscribe(db_session, factories.member(db_session), lst)
        sub.subscribed_at = now - timedelta(days=days_ago)
        if left_days_ago is not None:
            sub.status = "unsubscribed"
            sub.unsubscribed_at = now - timedelta(days=left_days_ago)
    db_session.flush()
    assert db_session.query(Subscription).count() == 5
    weeks = reports.list_growth(db_session, weeks=3, now=now, tz=reports.ZoneInfo("UTC"))
    assert [w.start.date().isoformat() for w in weeks] == ["2026-11-09", "2026-11-16", "2026-11-23"]
    assert [(w.joined, w.left) for w in weeks] == [(0, 0), (2, 1), (2, 1)]


def test_deliverability_levels(db_session):
    now = datetime(2026, 11, 25, tzinfo=UTC)

    def campaign(days_ago: int, **counts: int) -> None:
        c = factories.campaign(db_session, status="sent", started_at=now - timedelta(days=days_ago))
        db_session.add(CampaignStats(campaign_id=c.id, **counts))
        db_session.flush()

    assert reports.deliverability(db_session, now=now).spam_level == "none"
    campaign(3, sent=10_000, delivered=9_900, bounced=100, spam_reports=5)
    campaign(45, sent=10_000, delivered=5_000, bounced=5_000, spam_reports=500)  # too old
    health = reports.deliverability(db_session, now=now)
    assert (health.campaigns, health.sent, health.bounced) == (1, 10_000, 100)
    assert health.bounce_rate == 0.01
    assert health.bounce_level == "healthy"
    assert health.spam_rate == 5 / 9_900
    assert health.spam_level == "healthy"
    campaign(1, sent=10_000, delivered=10_000, bounced=400, spam_reports=25)
    health = reports.deliverability(db_session, now=now)
    assert health.spam_level == "warning"  # 30 / 19,900 = 0.15%
    assert health.bounce_level == "warning"  # 500 / 20,000 = 2.5%
    campaign(2, sent=1_000, delivered=1_000, bounced=800, spam_reports=60)
    health = reports.deliverability(db_session, now=now)
    assert (health.spam_level, health.bounce_level) == ("alarm", "alarm")
    assert reports.level(0.003, reports.SPAM_WARNING, reports.SPAM_ALARM) == "alarm"
    assert reports.level(0.000999, reports.SPAM_WARNING, reports.SPAM_ALARM) == "healthy"


def test_member_activity_lists_deliveries_opens_and_clicks(db_session, scenario):
    d = scenario.deliveries[0]
    activity = reports.member_activity(db_session, d.member_id)
    assert [x.campaign_id for x in activity.deliveries] == [scenario.campaign.id]
    assert activity.deliveries[0].outcome == "delivered"
    kinds = [e.kind for e in activity.events]
    assert "open" in kinds
    assert "click" in kinds
    assert activity.opens == kinds.count("open")
    assert any(e.is_petition for e in activity.events if e.kind == "click")
    with pytest.raises(reports.ReportError):
        reports.member_activity(db_session, 10**9)


def test_rates_use_sent_when_no_delivery_reports_come_back():
    funnel = reports.funnel_from_counts({"targeted": 10, "sent": 8, "opens_human_unique": 2})
    assert (funnel.denominator, funnel.denominator_count) == ("sent", 8)
    assert funnel.rates["opened_human"] == 0.25
    assert reports.funnel_from_counts({}).rates["opened"] is None


def test_the_rollup_and_the_timeline_cut_hours_in_utc():
    """campaign_hourly and the report's timeline share one hour_of, which works in UTC: a
    moment given in St. John's time (UTC-3:30) lands on a UTC hour, not 30 minutes off it."""
    moment = datetime(2026, 1, 15, 14, 45, tzinfo=ZoneInfo("America/St_Johns"))  # 18:15 UTC
    assert stats.hour_of(moment) == datetime(2026, 1, 15, 18, 0, tzinfo=UTC)
    assert stats.hour_of(datetime(2026, 1, 15, 18, 59, 59, tzinfo=UTC)) == datetime(
        2026, 1, 15, 18, 0, tzinfo=UTC
    )
