"""The petition's own report: over time, by source and local, goal, flagged, CSV and print list.

A petition's responses are a few thousand to a few hundred thousand rows, grouped once per
page view on (action_id, ...) with ix_action_responses_action_created; the campaign report,
which must cost the same for any audience, reads action_tallies instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.infra import spreadsheets
from app.models import Action, ActionResponse, ActionTally, Campaign, ResponseSource
from app.services import DbSession

CSV_HEADER = (
    "signed_at",
    "first_name",
    "last_name",
    "email",
    "postal_code",
    "city",
    "local",
    "phone",
    "comment",
    "language",
    "source",
    "campaign",
    "referred_by",
    "consent",
    "flagged",
)
SOURCE_LABELS = {
    ResponseSource.ALERT.value: "Alert",
    ResponseSource.SHARE.value: "Shares",
    ResponseSource.EMBED.value: "Embedded form",
    ResponseSource.DIRECT.value: "Direct",
}


@dataclass(frozen=True)
class SourceRow:
    source: str
    label: str
    campaign_id: int | None
    count: int


@dataclass(frozen=True)
class PetitionReport:
    total: int
    goal: int | None
    by_source: list[SourceRow]
    by_local: list[tuple[str, int]]
    over_time: list[tuple[datetime, int]]  # (day or hour start, signatures)
    bucket: str  # "hour" or "day"
    referrers: list[tuple[str, int]]  # (signer's name, people they brought)
    flagged: list[ActionResponse]

    @property
    def goal_ratio(self) -> float | None:
        return min(1.0, self.total / self.goal) if self.goal else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "goal": self.goal,
            "by_source": [r.__dict__ for r in self.by_source],
            "by_local": [{"local": k, "count": v} for k, v in self.by_local],
            "over_time": [{"start": t, "count": n} for t, n in self.over_time],
        }


def _counted(action_id: int) -> sa.ColumnElement[bool]:
    return sa.and_(ActionResponse.action_id == action_id, ActionResponse.counted.is_(True))


def petition_report(session: DbSession, action: Action, *, now: datetime) -> PetitionReport:
    """Everything the petition's report page shows, in a handful of grouped queries."""
    where = _counted(action.id)
    total = int(session.scalar(sa.select(sa.func.count()).where(where)) or 0)
    names = dict(session.execute(sa.select(Campaign.id, Campaign.name)).tuples().all())
    sources = session.execute(
        sa.select(ActionResponse.source, ActionResponse.campaign_id, sa.func.count())
        .where(where)
        .group_by(ActionResponse.source, ActionResponse.campaign_id)
        .order_by(sa.func.count().desc())
    ).all()
    by_source = []
    for source, campaign_id, count in sources:
        label = SOURCE_LABELS.get(source, source)
        if source == ResponseSource.ALERT.value and campaign_id:
            label = f"Alert: {names.get(campaign_id, f'campaign {campaign_id}')}"
        elif source == ResponseSource.SHARE.value and campaign_id:
            label = f"Shares (second-order, from {names.get(campaign_id, 'an alert')})"
        by_source.append(SourceRow(source, label, campaign_id, int(count)))
    by_local = [
        (local or "No local given", int(count))
        for local, count in session.execute(
            sa.select(ActionResponse.local, sa.func.count())
            .where(where)
            .group_by(ActionResponse.local)
            .order_by(sa.func.count().desc(), ActionResponse.local)
            .limit(200)
        )
    ]
    times = list(
        session.scalars(
            sa.select(ActionResponse.created_at).where(where).order_by(ActionResponse.created_at)
        )
    )
    over_time, bucket = _buckets(times, now)
    referred = sa.orm.aliased(ActionResponse)
    referrers = [
        (f"{first} {last[:1]}.".strip(" ."), int(count))
        for first, last, count in session.execute(
            sa.select(ActionResponse.first_name, ActionResponse.last_name, sa.func.count())
            .select_from(ActionResponse)
            .join(
                referred,
                sa.and_(referred.referrer_id == ActionResponse.id, referred.counted.is_(True)),
            )
            .where(ActionResponse.action_id == action.id)
            .group_by(ActionResponse.id, ActionResponse.first_name, ActionResponse.last_name)
            .order_by(sa.func.count().desc())
            .limit(20)
        )
    ]
    flagged = list(
        session.scalars(
            sa.select(ActionResponse)
            .where(ActionResponse.action_id == action.id, ActionResponse.flagged.is_(True))
            .order_by(ActionResponse.created_at)
            .limit(500)
        )
    )
    return PetitionReport(
        total, action.goal, by_source, by_local, over_time, bucket, referrers, flagged
    )


def _buckets(times: list[datetime], now: datetime) -> tuple[list[tuple[datetime, int]], str]:
    """Signatures per hour over the first three days, else per day."""
    if not times:
        return [], "hour"
    first = times[0].astimezone(UTC)
    span = max(now, times[-1]) - first
    step = timedelta(hours=1) if span <= timedelta(hours=72) else timedelta(days=1)
    start = first.replace(minute=0, second=0, microsecond=0)
    if step == timedelta(days=1):
        start = start.replace(hour=0)
    n = int((max(now, times[-1]) - start) / step) + 1
    counts = [0] * min(n, 400)
    for moment in times:
        index = min(int((moment.astimezone(UTC) - start) / step), len(counts) - 1)
        counts[index] += 1
    return [(start + i * step, c) for i, c in enumerate(counts)], (
        "hour" if step == timedelta(hours=1) else "day"
    )


def referral_count(session: DbSession, response_id: int) -> int:
    """How many counted signatures came through this signer's share links."""
    return int(
        session.scalar(
            sa.select(sa.func.count()).where(
                ActionResponse.referrer_id == response_id, ActionResponse.counted.is_(True)
            )
        )
        or 0
    )


def recent_signers(session: DbSession, action_id: int, limit: int = 5) -> list[str]:
    """First name and city only, newest first (shown only when the petition opts in)."""
    rows = session.execute(
        sa.select(ActionResponse.first_name, ActionResponse.city)
        .where(_counted(action_id))
        .order_by(ActionResponse.created_at.desc())
        .limit(limit)
    )
    return [f"{first}, {city}" if city else first for first, city in rows]


def signers_for_print(session: DbSession, action_id: int) -> list[ActionResponse]:
    return list(
        session.scalars(
            sa.select(ActionResponse)
            .where(_counted(action_id))
            .order_by(ActionResponse.created_at, ActionResponse.id)
        )
    )


def responses_csv(session: DbSession, action: Action) -> Iterator[str]:
    """Every counted signature as CSV, each cell neutralised (spreadsheets.csv_chunks)."""
    names = dict(session.execute(sa.select(Campaign.id, Campaign.name)).tuples().all())
    referrer = sa.orm.aliased(ActionResponse)
    query = (
        sa.select(ActionResponse, referrer.email)
        .outerjoin(referrer, referrer.id == ActionResponse.referrer_id)
        .where(_counted(action.id))
        .order_by(ActionResponse.created_at, ActionResponse.id)
        .execution_options(yield_per=2000)
    )

    def rows() -> Iterator[list[Any]]:
        for r, referred_by in session.execute(query):
            yield [
                r.created_at,
                r.first_name,
                r.last_name,
                r.email,
                r.postal_code,
                r.city,
                r.local,
                r.phone,
                r.comment,
                r.language,
                r.source,
                names.get(r.campaign_id, "") if r.campaign_id else "",
                referred_by or "",
                "yes" if r.consent_given else "no",
                "yes" if r.flagged else "no",
            ]

    return spreadsheets.csv_chunks(CSV_HEADER, rows())


@dataclass(frozen=True)
class CampaignSigned:
    signed: int
    shared: int
    by_local: dict[str, int]
    by_language: dict[str, int]


def campaign_signed(session: DbSession, campaign_id: int) -> CampaignSigned:
    """A campaign's signatures from its tallies (for tests and the API)."""
    rows = session.execute(
        sa.select(
            ActionTally.dimension, ActionTally.value, ActionTally.signed, ActionTally.shared
        ).where(ActionTally.campaign_id == campaign_id)
    ).all()
    total = next((r for r in rows if r.dimension == "total"), None)
    return CampaignSigned(
        int(total.signed) if total else 0,
        int(total.shared) if total else 0,
        {r.value: int(r.signed) for r in rows if r.dimension == "local"},
        {r.value: int(r.signed) for r in rows if r.dimension == "language"},
    )
