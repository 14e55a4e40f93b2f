"""What the stats pages show, prepared from the report services: labels, charts and wording."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from app.models import BreakdownDimension
from app.models.base import utcnow
from app.services import DbSession, sending
from app.services.organization import settings as org_settings
from app.services.stats import reports
from app.services.stats.reports import (
    BreakdownRow,
    CampaignHeader,
    Funnel,
    GrowthWeek,
    Health,
    LinkRow,
    TimelineBucket,
)
from app.web.charts import Series, threshold_meter, time_chart
from app.web.numbers import num, pct

__all__ = ["num", "pct"]  # the stats pages' template filters use these

LIVE_POLL_SECONDS = 5  # while a campaign sends
RECENT_POLL_SECONDS = 60  # for three days after it started: opens keep coming
RECENT_WINDOW = timedelta(days=3)


def _hour_label(moment: datetime, tz: ZoneInfo, short: bool = False) -> str:
    local = moment.astimezone(tz)
    hour = local.strftime("%I").lstrip("0") or "12"
    minutes = "" if local.minute == 0 else local.strftime(":%M")
    suffix = "am" if local.hour < 12 else "pm"
    return f"{local:%a} {hour}{minutes}{'' if short else ' '}{suffix}"


def _axis_hour(moment: datetime, tz: ZoneInfo, short: bool) -> str:
    local = moment.astimezone(tz)
    if local.hour == 0 and local.minute == 0:
        return f"{local:%a}"
    if local.hour == 12 and local.minute == 0:
        return "noon"
    hour = local.strftime("%I").lstrip("0") or "12"
    minutes = "" if local.minute == 0 else local.strftime(":%M")
    return f"{hour}{minutes}{'' if short else ' '}{'am' if local.hour < 12 else 'pm'}"


def _local_hours(moment: datetime, tz: ZoneInfo) -> int:
    """Hours since 1970 on the local wall clock: multiples of 6 fall on 6 am, noon, 6 pm..."""
    local = moment.astimezone(tz).replace(tzinfo=None)
    return int((local - datetime(1970, 1, 1)).total_seconds() // 3600)


def _day_label(moment: datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local:%b} {local.day}"


@dataclass(frozen=True)
class TimelinePart:
    """One chart of the timeline (hourly or daily) with its data table."""

    kind: str
    heading: str
    chart: Markup
    rows: list[dict[str, Any]]


def timeline_parts(
    buckets: list[TimelineBucket], tz: ZoneInfo, chart_prefix: str = "timeline"
) -> list[TimelinePart]:
    """Charts for the timeline: the first 72 hours per hour, then (if any) per day."""
    parts = []
    for kind, heading, chart_kind in (
        ("hour", "First 72 hours, per hour", "line"),
        ("day", "After that, per day", "bar"),
    ):
        chosen = [b for b in buckets if b.kind == kind]
        if not chosen:
            continue
        anchors: list[int] | None = None
        if kind == "hour":
            labels = [_hour_label(b.start, tz) for b in chosen]
            # Axis labels: the day's name at local midnight, the time of day elsewhere; the
            # chart prints them on round hours (anchors count local hours) as space allows.
            axis = [_axis_hour(b.start, tz, short=False) for b in chosen]
            narrow = [_axis_hour(b.start, tz, short=True) for b in chosen]
            anchors = [_local_hours(b.start, tz) for b in chosen]
        else:
            labels = axis = narrow = [_day_label(b.start, tz) for b in chosen]
        if kind == "hour" and len(chosen) == 1:
            # A line through one point is a dot: draw one bar, and say what the chart shows.
            heading, chart_kind = f"All activity in one hour ({labels[0]})", "bar"
        opened = [b.counts["opens_human_unique"] for b in chosen]
        clicked = [b.counts["clicks_human_unique"] for b in chosen]
        titles = [
            f"{label}: {o:,} opened, {c:,} clicked (first time)"
            for label, o, c in zip(labels, opened, clicked, strict=True)
        ]
        busiest = max(range(len(chosen)), key=lambda i: opened[i]) if any(opened) else None
        period = "hour" if kind == "hour" else "day"
        desc = (
            f"{heading}: {sum(opened):,} people opened for the first time and "
            f"{sum(clicked):,} clicked for the first time"
            + (f"; the busiest {period} was {labels[busiest]}." if busiest is not None else ".")
        )
        chart = time_chart(
            f"{chart_prefix}-{kind}",
            title=f"Opens and clicks, {heading.lower()}",
            desc=desc,
            labels=axis,
            narrow_labels=narrow,
            anchors=anchors,
            series=[Series("Opened", opened, "s1"), Series("Clicked", clicked, "s2")],
            kind=chart_kind,
            point_titles=titles,
        )
        rows = [
            {
                "label": label,
                "opened": b.counts["opens_human_unique"],
                "opened_all": b.counts["opens_unique"],
                "opens_total": b.counts["opens_total"],
                "clicked": b.counts["clicks_human_unique"],
                "clicks_total": b.counts["clicks_total"],
                "petition": b.counts["petition_clicks_human_unique"],
                "signed": b.counts.get("signed", 0),
            }
            for label, b in zip(labels, chosen, strict=True)
        ]
        parts.append(TimelinePart(kind, heading, chart, rows))
    return parts


@dataclass(frozen=True)
class CampaignReportView:
    campaign: CampaignHeader
    funnel: Funnel
    timeline: list[TimelinePart]
    links: list[LinkRow]
    link_max: int
    by_local: list[BreakdownRow]
    by_language: list[BreakdownRow]
    tz: ZoneInfo
    poll_seconds: int
    generated_at: datetime
    unknown: int = 0  # members who may have missed it (a crash; see the send panel)

    @property
    def use_sent(self) -> bool:
        return self.funnel.denominator == "sent"


def poll_seconds(campaign: CampaignHeader, now: datetime) -> int:
    """How often the open page asks for fresh figures (0: it stops asking)."""
    if campaign.is_live:
        return LIVE_POLL_SECONDS
    if campaign.started_at is not None and now - campaign.started_at < RECENT_WINDOW:
        return RECENT_POLL_SECONDS
    return 0


def campaign_report(session: DbSession, campaign_id: int) -> CampaignReportView:
    """Everything the report page shows. Raises reports.ReportError for an unknown campaign.

    A fixed number of reads, each from a counter or rollup table (see app.services.stats.reports).
    """
    header = reports.campaign_header(session, campaign_id)
    funnel = reports.campaign_funnel(session, campaign_id)
    now = utcnow()
    tz = org_settings.org_timezone(session)
    buckets = reports.campaign_timeline(session, campaign_id, now=now)
    links = reports.campaign_links(session, campaign_id)
    use_sent = funnel.denominator == "sent"
    return CampaignReportView(
        campaign=header,
        funnel=funnel,
        timeline=timeline_parts(buckets, tz),
        links=links,
        link_max=max((link.counts["clicks_human_unique"] for link in links), default=0),
        by_local=reports.campaign_breakdown(
            session, campaign_id, BreakdownDimension.LOCAL.value, use_sent=use_sent
        ),
        by_language=reports.campaign_breakdown(
            session, campaign_id, BreakdownDimension.LANGUAGE.value, use_sent=use_sent
        ),
        tz=tz,
        poll_seconds=poll_seconds(header, now),
        generated_at=now,
        unknown=sending.unknown_counts(session, [campaign_id]).get(campaign_id, 0),
    )


# --- dashboard --------------------------------------------------------------------------------

SPAM_WORDS = {
    "none": (
        "No data yet",
        "No emails went out in the last 30 days, so there is nothing to judge.",
    ),
    "healthy": (
        "Healthy",
        "Fewer than 1 in 1,000 people who got your emails marked them as spam. Gmail and "
        "Yahoo ask bulk senders to stay below 0.1%.",
    ),
    "warning": (
        "Watch this",
        "Between 1 and 3 in 1,000 people marked your emails as spam. Gmail and Yahoo filter "
        "senders who reach 0.3%: send only to people who asked to hear from you, and keep "
        "the unsubscribe link easy to find.",
    ),
    "alarm": (
        "Act now",
        "3 or more in 1,000 people marked your emails as spam. At this level Gmail and Yahoo "
        "send your mail to spam or refuse it. Hold large sends, check where your lists came "
        "from, and remove people who have not opened in a long time.",
    ),
}
BOUNCE_WORDS = {
    "none": ("No data yet", "No emails went out in the last 30 days."),
    "healthy": ("Healthy", "Fewer than 2 in 100 emails bounced. Bounced addresses are removed."),
    "warning": (
        "Watch this",
        "Between 2 and 5 in 100 emails bounced. Old or mistyped addresses cause this; "
        "addresses that bounce are removed automatically, so check the import they came from.",
    ),
    "alarm": (
        "Act now",
        "More than 5 in 100 emails bounced. Mail providers read this as an old or bought "
        "list and start filtering: check where these addresses came from before the next send.",
    ),
}
LEVEL_BADGE = {"none": "", "healthy": "ok", "warning": "warn", "alarm": "alert"}


@dataclass(frozen=True)
class HealthView:
    health: Health
    spam_meter: Markup
    bounce_meter: Markup
    spam_words: tuple[str, str]
    bounce_words: tuple[str, str]
    badges: dict[str, str]


def health_view(health: Health) -> HealthView:
    spam = SPAM_WORDS[health.spam_level]
    bounce = BOUNCE_WORDS[health.bounce_level]
    return HealthView(
        health=health,
        spam_meter=threshold_meter(
            "spam",
            title="Spam-complaint rate, last 30 days",
            desc=f"{pct(health.spam_rate)} against Gmail and Yahoo's limits: healthy below "
            f"{pct(reports.SPAM_WARNING)}, alarm at {pct(reports.SPAM_ALARM)}. {spam[0]}.",
            value=health.spam_rate,
            warning=reports.SPAM_WARNING,
            alarm=reports.SPAM_ALARM,
        ),
        bounce_meter=threshold_meter(
            "bounce",
            title="Bounce rate, last 30 days",
            desc=f"{pct(health.bounce_rate)}: healthy below {pct(reports.BOUNCE_WARNING)}, "
            f"alarm at {pct(reports.BOUNCE_ALARM)}. {bounce[0]}.",
            value=health.bounce_rate,
            warning=reports.BOUNCE_WARNING,
            alarm=reports.BOUNCE_ALARM,
        ),
        spam_words=spam,
        bounce_words=bounce,
        badges={
            "spam": LEVEL_BADGE[health.spam_level],
            "bounce": LEVEL_BADGE[health.bounce_level],
        },
    )


@dataclass(frozen=True)
class GrowthView:
    weeks: list[GrowthWeek]
    chart: Markup
    joined: int
    left: int
    rows: list[dict[str, Any]]


def growth_view(weeks: list[GrowthWeek], tz: ZoneInfo) -> GrowthView:
    labels = [_day_label(w.start, tz) for w in weeks]
    joined = [w.joined for w in weeks]
    left = [w.left for w in weeks]
    chart = time_chart(
        "growth",
        title=f"List growth over the last {len(weeks)} weeks",
        desc=f"Weeks starting {labels[0]} to {labels[-1]}: {sum(joined):,} subscriptions "
        f"started and {sum(left):,} ended.",
        labels=labels,
        series=[Series("Joined", joined, "s2"), Series("Left", left, "s1")],
        kind="bar",
        point_titles=[
            f"Week of {label}: {j:,} joined, {lv:,} left"
            for label, j, lv in zip(labels, joined, left, strict=True)
        ],
    )
    rows = [
        {"label": label, "joined": w.joined, "left": w.left}
        for label, w in zip(labels, weeks, strict=True)
    ]
    return GrowthView(weeks, chart, sum(joined), sum(left), rows)
