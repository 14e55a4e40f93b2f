"""What the stats pages and the stats API read: funnels, timelines, links, breakdowns, health.

Every figure comes from the counters and rollups (campaign_stats, link_stats, campaign_hourly,
campaign_breakdown) or from an index range sized by what is shown (one page of problem
deliveries, one member's deliveries, a few weeks of subscriptions), never from a scan of a
campaign's events, so a report costs the same for 1k and for 1M recipients.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from app.infra import spreadsheets
from app.models import (
    LANGUAGE_NAMES,
    ActionTally,
    BreakdownDimension,
    Campaign,
    CampaignBreakdown,
    CampaignHourly,
    CampaignStats,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    Link,
    LinkStats,
    Member,
    Subscription,
    TallyDimension,
)
from app.models.base import utcnow
from app.models.deliveries import BOUNCED_OUTCOMES, BOUNCED_SQL, with_error
from app.services import DbSession
from app.services.organization.settings import org_timezone
from app.services.stats.breakdown import BREAKDOWN_COUNTERS
from app.services.stats.counters import hour_of

FUNNEL_COUNTERS: tuple[str, ...] = tuple(
    c.name for c in CampaignStats.__table__.columns if c.name not in ("campaign_id", "updated_at")
)
# Signatures on hosted actions the campaign brought (action_tallies, kept by the actions
# domain in each signature's transaction): `signed` through the alert's own tracked click,
# `shared` through a share by someone it brought (second-order reach).
ACTION_COUNTERS: tuple[str, ...] = ("signed", "shared")
FUNNEL_COUNTERS = (*FUNNEL_COUNTERS, *ACTION_COUNTERS)
HOURLY_COUNTERS: tuple[str, ...] = (
    *(c.name for c in CampaignHourly.__table__.columns if c.name not in ("campaign_id", "hour")),
    "signed",
)
LINK_COUNTERS: tuple[str, ...] = (
    "clicks_total",
    "clicks_unique",
    "clicks_human",
    "clicks_human_unique",
    "signed",
)
# The breakdown's figures: the counters its rollup keeps, and the signatures per group.
BREAKDOWN_FIGURES: tuple[str, ...] = (*BREAKDOWN_COUNTERS, "signed")
# Campaigns that have begun sending: the ones with figures to report.
REPORTED_STATUSES = (
    CampaignStatus.SENDING.value,
    CampaignStatus.PAUSED.value,
    CampaignStatus.SENT.value,
    CampaignStatus.CANCELLED.value,
    CampaignStatus.FAILED.value,
)
HOURLY_WINDOW = timedelta(hours=72)
MAX_DAYS = 90  # the timeline's daily part stops here; later activity joins the last day
PROBLEM_KINDS = ("failed", "bounced", "dropped")

# Gmail's and Yahoo's bulk-sender rules: keep the spam-complaint rate below 0.1% and never
# reach 0.3% (reference/sendgrid-deliverability-casl.md §4.2).
SPAM_WARNING = 0.001
SPAM_ALARM = 0.003
# Bounces: no published rule from the mailbox providers; 2% and 5% are the usual ESP advice.
BOUNCE_WARNING = 0.02
BOUNCE_ALARM = 0.05


class ReportError(LookupError):
    """The campaign or member asked for does not exist, or an argument is out of range."""


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


# --- the funnel -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Funnel:
    """A campaign's counters and its rates.

    Engagement rates are over `denominator_count`: delivered emails when the transport reports
    deliveries (SendGrid's webhook), else emails sent (the outbox and SMTP transports never
    confirm delivery). `denominator` says which. Until a delivery report comes back, the
    delivered and bounced rates are None: not known, rather than zero.
    """

    counts: dict[str, int]
    denominator: str
    denominator_count: int
    rates: dict[str, float | None]

    @property
    def delivery_reported(self) -> bool:
        """Whether delivery reports (delivered, bounced, dropped, deferred) came back."""
        return self.denominator == "delivered"

    @property
    def problems(self) -> int:
        return self.counts["failed"] + self.counts["bounced"] + self.counts["dropped"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "denominator": self.denominator,
            "denominator_count": self.denominator_count,
            "rates": self.rates,
        }


def funnel_from_counts(counts: Mapping[str, int]) -> Funnel:
    """Rates from a row of counters (pure; the pages and the API share it)."""
    c = {name: int(counts.get(name, 0) or 0) for name in FUNNEL_COUNTERS}
    confirmed = c["delivered"] + c["bounced"] + c["dropped"] + c["deferred"]
    if c["delivered"] or confirmed:
        denominator, base = "delivered", c["delivered"]
    else:
        denominator, base = "sent", c["sent"]
    reported = denominator == "delivered"
    rates = {
        "sent": _rate(c["sent"], c["targeted"]),
        "delivered": _rate(c["delivered"], c["sent"]) if reported else None,
        "bounced": _rate(c["bounced"], c["sent"]) if reported else None,
        "opened": _rate(c["opens_unique"], base),
        "opened_human": _rate(c["opens_human_unique"], base),
        "clicked": _rate(c["clicks_unique"], base),
        "clicked_human": _rate(c["clicks_human_unique"], base),
        "petition_clicked": _rate(c["petition_clicks_unique"], base),
        "petition_clicked_human": _rate(c["petition_clicks_human_unique"], base),
        "unsubscribed": _rate(c["unsubscribes"], base),
        "spam_reported": _rate(c["spam_reports"], base),
        "click_to_open": _rate(c["clicks_human_unique"], c["opens_human_unique"]),
        "signed": _rate(c["signed"], base),
    }
    return Funnel(c, denominator, base, rates)


def _stats_counts(row: CampaignStats | None) -> dict[str, int]:
    return {name: int(getattr(row, name, 0)) if row else 0 for name in FUNNEL_COUNTERS}


def action_tallies(
    session: DbSession, campaign_id: int, dimension: str
) -> dict[str, tuple[int, int]]:
    """value -> (signed, shared) from action_tallies: a few rows per campaign, by primary key."""
    rows = session.execute(
        sa.select(ActionTally.value, ActionTally.signed, ActionTally.shared).where(
            ActionTally.campaign_id == campaign_id, ActionTally.dimension == dimension
        )
    )
    return {value: (int(signed), int(shared)) for value, signed, shared in rows}


@dataclass(frozen=True)
class CampaignHeader:
    id: int
    name: str
    status: str
    subject: str
    started_at: datetime | None
    finished_at: datetime | None
    send_at: datetime | None

    @property
    def has_report(self) -> bool:
        return self.status in REPORTED_STATUSES or self.started_at is not None

    @property
    def is_live(self) -> bool:
        return self.status in (CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "subject": self.subject,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "send_at": self.send_at,
        }


def _header(campaign: Campaign) -> CampaignHeader:
    subject = ""
    for variant in campaign.variants:
        if variant.language == campaign.default_language or not subject:
            subject = variant.subject
    return CampaignHeader(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status,
        subject=subject,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
        send_at=campaign.send_at,
    )


def campaign_header(session: DbSession, campaign_id: int) -> CampaignHeader:
    """The campaign's name, status and times. Raises ReportError when it does not exist."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise ReportError(f"There is no campaign {campaign_id}.")
    return _header(campaign)


def campaign_funnel(session: DbSession, campaign_id: int) -> Funnel:
    """The campaign's funnel: primary-key reads of campaign_stats and its action tallies."""
    counts = _stats_counts(session.get(CampaignStats, campaign_id))
    counts["signed"], counts["shared"] = action_tallies(
        session, campaign_id, TallyDimension.TOTAL.value
    ).get("", (0, 0))
    return funnel_from_counts(counts)


# --- the timeline -----------------------------------------------------------------------------


@dataclass
class TimelineBucket:
    start: datetime
    end: datetime
    kind: str  # "hour" or "day"
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "kind": self.kind, "counts": self.counts}


def timeline_buckets(
    hourly: Mapping[datetime, Mapping[str, int]], start: datetime | None, now: datetime
) -> list[TimelineBucket]:
    """Bucket hourly rollup rows: one bucket per hour for the first 72 hours, then per day.

    Args:
        hourly: UTC hour -> counters (the campaign_hourly rows).
        start: when sending started (the first row's hour when unknown).
        now: the hourly part runs up to the current hour, so a campaign that is sending shows
            its quiet hours too; the daily part runs to the last day with activity (at most
            MAX_DAYS days; later activity is added to the last day).

    Daily buckets are 24-hour periods counted from the end of the hourly part, so no hour is
    counted twice or split between two buckets.
    """
    if start is None:
        if not hourly:
            return []
        start = min(hourly)
    first = hour_of(start)
    boundary = first + HOURLY_WINDOW
    last_hour = max((hour_of(h) for h in hourly), default=first)
    hourly_end = min(boundary, max(hour_of(now), last_hour, first) + timedelta(hours=1))
    buckets = [
        TimelineBucket(
            first + timedelta(hours=i),
            first + timedelta(hours=i + 1),
            "hour",
            dict.fromkeys(HOURLY_COUNTERS, 0),
        )
        for i in range(int((hourly_end - first) / timedelta(hours=1)))
    ]
    days = 0
    if last_hour >= boundary:
        days = min(MAX_DAYS, (last_hour - boundary) // timedelta(days=1) + 1)
    buckets.extend(
        TimelineBucket(
            boundary + timedelta(days=i),
            boundary + timedelta(days=i + 1),
            "day",
            dict.fromkeys(HOURLY_COUNTERS, 0),
        )
        for i in range(days)
    )
    hours_count = len(buckets) - days
    for moment, counts in hourly.items():
        hour = hour_of(moment)
        if hour < boundary:
            index = max(0, int((hour - first) / timedelta(hours=1)))
            index = min(index, hours_count - 1)
        else:
            index = hours_count + min(days - 1, (hour - boundary) // timedelta(days=1))
        target = buckets[index].counts
        for name in HOURLY_COUNTERS:
            target[name] += int(counts.get(name, 0) or 0)
    return buckets


def campaign_timeline(
    session: DbSession, campaign_id: int, now: datetime | None = None
) -> list[TimelineBucket]:
    """The campaign's opens and clicks over time, from the hourly rollup (one row per hour)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise ReportError(f"There is no campaign {campaign_id}.")
    rows = session.scalars(
        sa.select(CampaignHourly).where(CampaignHourly.campaign_id == campaign_id)
    )
    hourly = {r.hour: {name: int(getattr(r, name, 0)) for name in HOURLY_COUNTERS} for r in rows}
    for text, (signed, _shared) in action_tallies(
        session, campaign_id, TallyDimension.HOUR.value
    ).items():
        hour = hour_of(datetime.fromisoformat(text))
        hourly.setdefault(hour, dict.fromkeys(HOURLY_COUNTERS, 0))["signed"] += signed
    return timeline_buckets(hourly, campaign.started_at, now or utcnow())


# --- links and breakdown ----------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRow:
    link_id: int
    url: str
    position: int
    is_petition: bool
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "link_id": self.link_id,
            "url": self.url,
            "position": self.position,
            "is_petition": self.is_petition,
            "counts": self.counts,
        }


def campaign_links(session: DbSession, campaign_id: int) -> list[LinkRow]:
    """Clicks per link (petition links flagged), in the order the links appear in the email."""
    signed = action_tallies(session, campaign_id, TallyDimension.LINK.value)
    rows = session.execute(
        sa.select(Link, LinkStats)
        .outerjoin(LinkStats, LinkStats.link_id == Link.id)
        .where(Link.campaign_id == campaign_id)
        .order_by(Link.position, Link.id)
    )
    return [
        LinkRow(
            link.id,
            link.url,
            link.position,
            link.is_petition,
            {name: int(getattr(stats, name, 0)) if stats else 0 for name in LINK_COUNTERS}
            | {"signed": signed.get(str(link.id), (0, 0))[0]},
        )
        for link, stats in rows
    ]


@dataclass(frozen=True)
class BreakdownRow:
    dimension: str
    value: str
    label: str
    counts: dict[str, int]
    rates: dict[str, float | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "value": self.value,
            "label": self.label,
            "counts": self.counts,
            "rates": self.rates,
        }


def breakdown_label(dimension: str, value: str) -> str:
    if dimension == BreakdownDimension.LANGUAGE.value:
        return LANGUAGE_NAMES.get(value, value or "Not recorded")
    return value or "No local recorded"


def campaign_breakdown(
    session: DbSession, campaign_id: int, dimension: str, *, use_sent: bool = False
) -> list[BreakdownRow]:
    """Figures per local (or per language) from the breakdown rollup, largest group first.

    Rates are over each group's delivered emails, or over its targeted members when
    `use_sent` (the campaign's transport confirms no deliveries; see Funnel).
    """
    if dimension not in {d.value for d in BreakdownDimension}:
        raise ReportError(f"Unknown breakdown {dimension!r}: use 'local' or 'language'.")
    rows = session.scalars(
        sa.select(CampaignBreakdown)
        .where(
            CampaignBreakdown.campaign_id == campaign_id, CampaignBreakdown.dimension == dimension
        )
        .order_by(CampaignBreakdown.targeted.desc(), CampaignBreakdown.value)
    )
    signed = action_tallies(session, campaign_id, dimension)
    result = []
    for row in rows:
        counts = {name: int(getattr(row, name, 0)) for name in BREAKDOWN_FIGURES}
        counts["signed"] = signed.get(row.value, (0, 0))[0]
        base = counts["targeted"] if use_sent else counts["delivered"]
        rates = {
            "opened": _rate(counts["opens_unique"], base),
            "opened_human": _rate(counts["opens_human_unique"], base),
            "clicked_human": _rate(counts["clicks_human_unique"], base),
            "petition_clicked_human": _rate(counts["petition_clicks_human_unique"], base),
            "unsubscribed": _rate(counts["unsubscribes"], base),
            "signed": _rate(counts["signed"], base),
        }
        result.append(
            BreakdownRow(dimension, row.value, breakdown_label(dimension, row.value), counts, rates)
        )
    return result


# --- problem deliveries -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemRow:
    delivery_id: int
    email: str
    kind: str  # failed / bounced / dropped
    reason: str
    at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "email": self.email,
            "kind": self.kind,
            "reason": self.reason,
            "at": self.at,
        }


@dataclass(frozen=True)
class ProblemPage:
    items: list[ProblemRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": [i.as_dict() for i in self.items],
            "total": self.total,
            "page": self.page,
            "per_page": self.per_page,
            "pages": self.pages,
        }


def _event_reason(detail: Mapping[str, Any] | None) -> str:
    if not detail:
        return ""
    parts = []
    for key in ("reason", "response", "bounce_classification"):
        value = detail.get(key)
        if value and str(value) not in parts:
            parts.append(str(value))
    status = detail.get("status")
    if status and not any(str(status) in p for p in parts):
        parts.insert(0, str(status))
    return " — ".join(parts)[:500]


def campaign_problems(
    session: DbSession, campaign_id: int, *, page: int = 1, per_page: int = 50, kind: str = ""
) -> ProblemPage:
    """One page of the campaign's failed, bounced and dropped addresses with their reasons.

    The bounced and dropped rows are read from the partial ix_deliveries_campaign_problems
    (campaign, id), the refused ones from ix_deliveries_campaign_errors (a few; no index
    names `status`, see the model); the page is the two merged in id order. The reasons come
    from those rows and from the page's own bounce or drop events (ix_events_delivery),
    never from a scan of the campaign's events.
    """
    if kind and kind not in PROBLEM_KINDS:
        raise ReportError(f"Unknown problem kind {kind!r}: use failed, bounced or dropped.")
    if page < 1 or not 1 <= per_page <= 500:
        raise ReportError("page starts at 1 and per_page is between 1 and 500.")
    bounced: list[sa.ColumnElement[bool]] = [
        Delivery.campaign_id == campaign_id,
        sa.text(BOUNCED_SQL),  # type: ignore[list-item]
    ]
    if kind in BOUNCED_OUTCOMES:
        bounced.append(Delivery.outcome == kind)
    refused = [
        Delivery.campaign_id == campaign_id,
        with_error(DeliveryStatus.FAILED),
        # Listed once: SendGrid reports nothing on an address it refused, but should it.
        sa.or_(Delivery.outcome.is_(None), Delivery.outcome.not_in(BOUNCED_OUTCOMES)),
    ]
    parts = [refused] if kind == "failed" else [bounced] if kind else [bounced, refused]
    total = sum(
        int(session.scalar(sa.select(sa.func.count()).select_from(Delivery).where(*where)) or 0)
        for where in parts
    )
    columns = (
        Delivery.id,
        Delivery.email,
        Delivery.status,
        Delivery.outcome,
        Delivery.error,
        Delivery.updated_at,
    )
    # Each part's first rows in id order, merged: PostgreSQL planned the UNION ALL of the two
    # as a read and sort of every bounced row.
    upto = page * per_page
    merged = heapq.merge(
        *(
            session.execute(sa.select(*columns).where(*where).order_by(Delivery.id).limit(upto))
            for where in parts
        ),
        key=lambda row: row.id,
    )
    rows = list(itertools.islice(merged, upto - per_page, upto))
    ids = [r.id for r in rows if r.outcome in BOUNCED_OUTCOMES]
    reasons: dict[int, tuple[str, datetime]] = {}
    if ids:
        events = session.execute(
            sa.select(Event.delivery_id, Event.detail, Event.occurred_at)
            .where(
                Event.delivery_id.in_(ids),
                Event.kind.in_([EventKind.BOUNCE.value, EventKind.DROPPED.value]),
            )
            .order_by(Event.id)
        )
        for delivery_id, detail, at in events:
            reasons.setdefault(delivery_id, (_event_reason(detail), at))
    items = []
    for r in rows:
        problem = "failed" if r.status == DeliveryStatus.FAILED.value else (r.outcome or "failed")
        reason, at = reasons.get(r.id, ("", r.updated_at))
        items.append(ProblemRow(r.id, r.email, problem, r.error or reason, at))
    return ProblemPage(items, total, page, per_page)


# --- the CSV export ---------------------------------------------------------------------------

OUTCOME_CSV_HEADER = (
    "email",
    "first_name",
    "last_name",
    "local",
    "language",
    "status",
    "outcome",
    "sent_at",
    "opened_at",
    "opened_by_person_at",
    "clicked_at",
    "clicked_by_person_at",
    "petition_clicked_at",
    "unsubscribed_at",
    "error",
)


def outcome_csv(session: DbSession, campaign_id: int) -> Iterator[str]:
    """Each member's outcome for a campaign as CSV text, streamed in chunks.

    One pass over the campaign's deliveries through a server-side cursor, on a connection
    the generator owns (`spreadsheets.stream_rows`), so memory stays flat at 1M rows and the
    download outlives the request's transaction. Every cell is formula-safe
    (`spreadsheets.csv_chunks`): names and addresses are member-supplied.
    """
    query = (
        sa.select(
            Delivery.email,
            Member.first_name,
            Member.last_name,
            Delivery.local,
            Delivery.language,
            Delivery.status,
            Delivery.outcome,
            Delivery.sent_at,
            Delivery.opened_at,
            Delivery.human_opened_at,
            Delivery.clicked_at,
            Delivery.human_clicked_at,
            Delivery.petition_clicked_at,
            Delivery.unsubscribed_at,
            Delivery.error,
        )
        .outerjoin(Member, Member.id == Delivery.member_id)
        .where(Delivery.campaign_id == campaign_id)
        .order_by(Delivery.id)
    )

    def build(connection: sa.Connection) -> Iterator[str]:
        rows = connection.execute(query.execution_options(yield_per=2000))
        yield from spreadsheets.csv_chunks(OUTCOME_CSV_HEADER, rows)

    return spreadsheets.stream_rows(session, build)


# --- campaign lists, dashboard ----------------------------------------------------------------


@dataclass(frozen=True)
class CampaignSummary:
    campaign: CampaignHeader
    funnel: Funnel

    def as_dict(self) -> dict[str, Any]:
        return {**self.campaign.as_dict(), **self.funnel.as_dict()}


def _reported_filter() -> sa.ColumnElement[bool]:
    return sa.or_(Campaign.status.in_(REPORTED_STATUSES), Campaign.started_at.is_not(None))


def reported_campaigns(
    session: DbSession, *, page: int = 1, per_page: int = 25
) -> tuple[list[CampaignSummary], int]:
    """Campaigns that have begun sending, newest first, with their funnels; and their count."""
    if page < 1 or not 1 <= per_page <= 200:
        raise ReportError("page starts at 1 and per_page is between 1 and 200.")
    total = int(
        session.scalar(sa.select(sa.func.count()).select_from(Campaign).where(_reported_filter()))
        or 0
    )
    rows = session.execute(
        sa.select(Campaign, CampaignStats)
        .outerjoin(CampaignStats, CampaignStats.campaign_id == Campaign.id)
        .options(selectinload(Campaign.variants))  # the subject line, without N+1 queries
        .where(_reported_filter())
        .order_by(
            sa.func.coalesce(Campaign.started_at, Campaign.created_at).desc(), Campaign.id.desc()
        )
        .limit(per_page)
        .offset((page - 1) * per_page)
    )
    summaries = [CampaignSummary(_header(c), funnel_from_counts(_stats_counts(s))) for c, s in rows]
    return summaries, total


@dataclass(frozen=True)
class GrowthWeek:
    start: datetime  # Monday 00:00 in the organization's time zone
    joined: int
    left: int

    def as_dict(self) -> dict[str, Any]:
        return {"week_start": self.start, "joined": self.joined, "left": self.left}


def list_growth(
    session: DbSession, *, weeks: int = 12, now: datetime | None = None, tz: ZoneInfo | None = None
) -> list[GrowthWeek]:
    """Subscriptions started and ended per week (Monday to Sunday), oldest week first.

    Counts subscription rows (a member on two lists counts twice) by `subscribed_at` and
    `unsubscribed_at`. Each count is one range scan of its index over the window only.
    """
    if not 1 <= weeks <= 104:
        raise ReportError("weeks is between 1 and 104.")
    tz = tz or org_timezone(session)
    local_now = (now or utcnow()).astimezone(tz)
    monday = (local_now - timedelta(days=local_now.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    # Boundaries are local midnights (so DST weeks are 167 or 169 hours), stored as UTC.
    starts = [
        (monday - timedelta(weeks=weeks - 1 - i)).replace(tzinfo=None).replace(tzinfo=tz)
        for i in range(weeks)
    ]
    bounds = [s.astimezone(UTC) for s in starts] + [
        (monday + timedelta(weeks=1)).replace(tzinfo=None).replace(tzinfo=tz).astimezone(UTC)
    ]

    def counts(column: Any) -> list[int]:
        row = session.execute(
            sa.select(
                *(
                    sa.func.count().filter(column >= bounds[i], column < bounds[i + 1])
                    for i in range(weeks)
                )
            ).where(column >= bounds[0], column < bounds[-1])
        ).one()
        return [int(v or 0) for v in row]

    joined = counts(Subscription.subscribed_at)
    left = counts(Subscription.unsubscribed_at)
    return [GrowthWeek(starts[i], joined[i], left[i]) for i in range(weeks)]


@dataclass(frozen=True)
class Health:
    """Bounce and spam-complaint rates of recent campaigns, judged against the thresholds."""

    days: int
    campaigns: int
    sent: int
    delivered: int
    bounced: int
    spam_reports: int
    bounce_rate: float | None
    spam_rate: float | None
    bounce_level: str  # none / healthy / warning / alarm
    spam_level: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "campaigns": self.campaigns,
            "sent": self.sent,
            "delivered": self.delivered,
            "bounced": self.bounced,
            "spam_reports": self.spam_reports,
            "bounce_rate": self.bounce_rate,
            "spam_rate": self.spam_rate,
            "bounce_level": self.bounce_level,
            "spam_level": self.spam_level,
            "thresholds": {
                "spam_warning": SPAM_WARNING,
                "spam_alarm": SPAM_ALARM,
                "bounce_warning": BOUNCE_WARNING,
                "bounce_alarm": BOUNCE_ALARM,
            },
        }


def level(rate: float | None, warning: float, alarm: float) -> str:
    if rate is None:
        return "none"
    if rate >= alarm:
        return "alarm"
    return "warning" if rate >= warning else "healthy"


def deliverability(session: DbSession, *, days: int = 30, now: datetime | None = None) -> Health:
    """Bounce rate (over sent) and spam-complaint rate (over delivered) for the campaigns that
    started sending in the last `days` days, summed from their counters."""
    if not 1 <= days <= 365:
        raise ReportError("days is between 1 and 365.")
    since = (now or utcnow()) - timedelta(days=days)
    row = session.execute(
        sa.select(
            sa.func.count(CampaignStats.campaign_id),
            sa.func.coalesce(sa.func.sum(CampaignStats.sent), 0),
            sa.func.coalesce(sa.func.sum(CampaignStats.delivered), 0),
            sa.func.coalesce(sa.func.sum(CampaignStats.bounced), 0),
            sa.func.coalesce(sa.func.sum(CampaignStats.spam_reports), 0),
        )
        .join(Campaign, Campaign.id == CampaignStats.campaign_id)
        .where(Campaign.started_at >= since)
    ).one()
    campaigns, sent, delivered, bounced, spam = (int(v) for v in row)
    bounce_rate = _rate(bounced, sent)
    spam_rate = _rate(spam, delivered or sent)
    return Health(
        days,
        campaigns,
        sent,
        delivered,
        bounced,
        spam,
        bounce_rate,
        spam_rate,
        level(bounce_rate, BOUNCE_WARNING, BOUNCE_ALARM),
        level(spam_rate, SPAM_WARNING, SPAM_ALARM),
    )


# --- one member -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberDelivery:
    delivery_id: int
    campaign_id: int
    campaign_name: str
    status: str
    outcome: str | None
    sent_at: datetime | None
    opened_at: datetime | None
    human_opened_at: datetime | None
    clicked_at: datetime | None
    petition_clicked_at: datetime | None
    unsubscribed_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MemberEvent:
    kind: str
    occurred_at: datetime
    campaign_id: int | None
    campaign_name: str
    url: str | None
    is_petition: bool
    is_machine: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class MemberActivity:
    member_id: int
    email: str
    deliveries: list[MemberDelivery]
    events: list[MemberEvent]
    opens: int
    clicks: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "email": self.email,
            "deliveries": [d.as_dict() for d in self.deliveries],
            "events": [e.as_dict() for e in self.events],
            "opens": self.opens,
            "clicks": self.clicks,
        }


MEMBER_EVENT_KINDS = (
    EventKind.OPEN.value,
    EventKind.CLICK.value,
    EventKind.UNSUBSCRIBE.value,
    EventKind.BOUNCE.value,
    EventKind.DROPPED.value,
    EventKind.SPAMREPORT.value,
)


def member_activity(
    session: DbSession, member_id: int, *, deliveries: int = 50, events: int = 100
) -> MemberActivity:
    """A member's most recent campaigns (deliveries) and their opens, clicks and unsubscribes.

    Reads the member's deliveries through ix_deliveries_member and their events through
    ix_events_delivery: the cost follows this member's history, not the size of the tables.

    Raises:
        ReportError: no such member.
    """
    member = session.get(Member, member_id)
    if member is None:
        raise ReportError(f"There is no member {member_id}.")
    rows = list(
        session.execute(
            sa.select(Delivery, Campaign.name)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(Delivery.member_id == member_id)
            .order_by(Delivery.queued_at.desc(), Delivery.id.desc())
            .limit(deliveries)
        )
    )
    listed = [
        MemberDelivery(
            d.id,
            d.campaign_id,
            name,
            d.status,
            d.outcome,
            d.sent_at,
            d.opened_at,
            d.human_opened_at,
            d.clicked_at,
            d.petition_clicked_at,
            d.unsubscribed_at,
        )
        for d, name in rows
    ]
    names = {d.campaign_id: d.campaign_name for d in listed}
    ids = [d.delivery_id for d in listed]
    history: list[MemberEvent] = []
    opens = clicks = 0
    if ids:
        base = sa.select(Event).where(Event.delivery_id.in_(ids))
        opens, clicks = (
            int(v or 0)
            for v in session.execute(
                sa.select(
                    sa.func.count().filter(Event.kind == EventKind.OPEN.value),
                    sa.func.count().filter(Event.kind == EventKind.CLICK.value),
                ).where(Event.delivery_id.in_(ids))
            ).one()
        )
        found = session.execute(
            base.add_columns(Link.url, Link.is_petition)
            .outerjoin(Link, Link.id == Event.link_id)
            .where(Event.kind.in_(MEMBER_EVENT_KINDS))
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(events)
        )
        history = [
            MemberEvent(
                e.kind,
                e.occurred_at,
                e.campaign_id,
                names.get(e.campaign_id or 0, ""),
                url,
                bool(petition),
                e.is_machine,
            )
            for e, url, petition in found
        ]
    return MemberActivity(member.id, member.email, listed, history, opens, clicks)
