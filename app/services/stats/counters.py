"""Campaign, link and hourly counters: incremental upserts, and a recomputation from raw rows.

Reports read only these tables, so a report costs the same at 1k and 1M recipients. The
counters are kept by the tracking flusher, the webhook processor, the unsubscribe page and
the sender (targeted/sent/failed through `bump_campaign_stats`). `recompute_stats` rebuilds
the same figures from events and deliveries; tests (and `flask tracking verify-stats`) compare.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.infra import sql
from app.models import (
    ActionResponse,
    ActionTally,
    CampaignHourly,
    CampaignStats,
    Delivery,
    DeliveryStatus,
    Event,
    EventKind,
    Link,
    LinkStats,
    ResponseSource,
    TallyDimension,
)
from app.models.base import utcnow
from app.services import DbSession

CAMPAIGN_COUNTERS: tuple[str, ...] = tuple(
    c.name for c in CampaignStats.__table__.columns if c.name not in ("campaign_id", "updated_at")
)
LINK_COUNTERS: tuple[str, ...] = (
    "clicks_total",
    "clicks_unique",
    "clicks_human",
    "clicks_human_unique",
)
HOURLY_COUNTERS: tuple[str, ...] = tuple(
    c.name for c in CampaignHourly.__table__.columns if c.name not in ("campaign_id", "hour")
)
# Counters the sender keeps from the ledger; the rest come from events and webhook outcomes.
LEDGER_COUNTERS = ("targeted", "sent", "failed")
EVENT_COUNTERS = tuple(c for c in CAMPAIGN_COUNTERS if c not in LEDGER_COUNTERS)

# Webhook outcomes by strength: a later, weaker event never overwrites a stronger one, so the
# outcome depends on which events arrived, not on their order (SendGrid retries reorder them).
OUTCOME_RANK = {"deferred": 1, "delivered": 2, "bounced": 3, "dropped": 3}
OUTCOME_OF_EVENT = {
    EventKind.DEFERRED.value: "deferred",
    EventKind.DELIVERED.value: "delivered",
    EventKind.BOUNCE.value: "bounced",
    EventKind.DROPPED.value: "dropped",
}
OUTCOME_COUNTER = {
    "deferred": "deferred",
    "delivered": "delivered",
    "bounced": "bounced",
    "dropped": "dropped",
}


class StatsError(ValueError):
    """A counter name or delta that makes no sense."""


def hour_of(moment: datetime) -> datetime:
    """The UTC hour a moment falls in: the key of campaign_hourly and of the report's timeline.

    Converted to UTC first, so a time given in a zone with a half-hour offset (St. John's)
    still lands on a UTC hour boundary.
    """
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def add_counters(
    session: DbSession,
    model: type[CampaignStats] | type[CampaignHourly] | type[LinkStats],
    key_names: tuple[str, ...],
    deltas: Mapping[tuple[Any, ...], Mapping[str, int]],
    *,
    extra: Mapping[tuple[Any, ...], Mapping[str, Any]] | None = None,
) -> None:
    """Add `deltas` to counter rows, creating missing rows: one INSERT ... ON CONFLICT.

    Rows are written in key order so two writers lock them in the same order (no deadlock).
    """
    table: sa.Table = model.__table__  # type: ignore[assignment]
    counters = sorted({name for change in deltas.values() for name in change})
    rows = []
    for key in sorted(deltas):
        change = deltas[key]
        if not any(change.values()):
            continue
        row: dict[str, Any] = dict(zip(key_names, key, strict=True))
        row.update({name: int(change.get(name, 0)) for name in counters})
        if extra and key in extra:
            row.update(extra[key])
        if "updated_at" in table.c:
            row["updated_at"] = utcnow()
        rows.append(row)
    if not rows:
        return
    session.execute(_upsert(session, table, key_names, counters, rows))


def _upsert(
    session: DbSession,
    table: sa.Table,
    key_names: Sequence[str],
    counters: Iterable[str],
    values: Any,
) -> sa.Insert:
    """``INSERT … VALUES … ON CONFLICT (keys) DO UPDATE SET counter = counter + excluded.…``."""
    stmt = sql.insert(session, table).values(values)
    updates: dict[str, Any] = {name: table.c[name] + stmt.excluded[name] for name in counters}
    if "updated_at" in table.c:
        updates["updated_at"] = stmt.excluded.updated_at
    return stmt.on_conflict_do_update(index_elements=list(key_names), set_=updates)


def bump_campaign_stats(session: DbSession, campaign_id: int, **deltas: int) -> None:
    """Add to a campaign's counters (creating its row), e.g. ``sent=1000, failed=3``.

    For the sender: bump `targeted` when the audience is frozen, `sent`/`failed` when a batch's
    outcome is recorded, in the same transaction as the ledger change. Flushes, never commits.

    Raises:
        StatsError: an unknown counter name or a non-integer delta.
    """
    unknown = sorted(set(deltas) - set(CAMPAIGN_COUNTERS))
    if unknown:
        raise StatsError(f"unknown campaign counters: {', '.join(unknown)}")
    if any(not isinstance(v, int) or isinstance(v, bool) for v in deltas.values()):
        raise StatsError("counter deltas must be whole numbers")
    if not any(deltas.values()):
        return
    # One campaign's row: add_counters' upsert, built once per set of counters (a send runs
    # it for every batch).
    params: dict[str, Any] = {f"p_{name}": delta for name, delta in deltas.items()}
    session.execute(
        _campaign_bump(session, tuple(sorted(deltas))),
        {**params, "p_campaign": campaign_id, "p_now": utcnow()},
    )


@sql.built_once
def _campaign_bump(session: DbSession, counters: tuple[str, ...]) -> sa.Insert:
    table: sa.Table = CampaignStats.__table__  # type: ignore[assignment]
    row: dict[str, Any] = {name: sa.bindparam(f"p_{name}") for name in counters}
    row.update(campaign_id=sa.bindparam("p_campaign"), updated_at=sa.bindparam("p_now"))
    return _upsert(session, table, ("campaign_id",), counters, row)


@dataclass
class StatsSnapshot:
    """A campaign's counters: the campaign row, each link and each hour (zero rows left out)."""

    campaign: dict[str, int]
    links: dict[int, dict[str, int]] = field(default_factory=dict)
    hourly: dict[datetime, dict[str, int]] = field(default_factory=dict)

    def only(self, names: Iterable[str]) -> StatsSnapshot:
        keep = set(names)
        return StatsSnapshot(
            {k: v for k, v in self.campaign.items() if k in keep}, self.links, self.hourly
        )


def _nonzero(rows: dict[Any, dict[str, int]]) -> dict[Any, dict[str, int]]:
    return {k: v for k, v in rows.items() if any(v.values())}


def stored_stats(session: DbSession, campaign_id: int) -> StatsSnapshot:
    """The counters as the incremental writers left them."""
    row = session.get(CampaignStats, campaign_id)
    campaign = {name: int(getattr(row, name)) if row else 0 for name in CAMPAIGN_COUNTERS}
    links = {
        r.link_id: {name: int(getattr(r, name)) for name in LINK_COUNTERS}
        for r in session.scalars(sa.select(LinkStats).where(LinkStats.campaign_id == campaign_id))
    }
    hourly = {
        r.hour: {name: int(getattr(r, name)) for name in HOURLY_COUNTERS}
        for r in session.scalars(
            sa.select(CampaignHourly).where(CampaignHourly.campaign_id == campaign_id)
        )
    }
    return _with_signatures(
        StatsSnapshot(campaign, _nonzero(links), _nonzero(hourly)),
        _stored_signatures(session, campaign_id),
    )


# --- signatures on hosted actions --------------------------------------------------------------
# The actions domain keeps action_tallies in each signature's transaction; the snapshots carry
# them so that "stored equals recomputed" covers them too: stored from the tallies, recomputed
# from the counted responses themselves.


@dataclass
class _Signatures:
    signed: int = 0
    shared: int = 0
    links: dict[int, int] = field(default_factory=dict)
    hourly: dict[datetime, int] = field(default_factory=dict)


def _stored_signatures(session: DbSession, campaign_id: int) -> _Signatures:
    found = _Signatures()
    rows = session.execute(
        sa.select(
            ActionTally.dimension, ActionTally.value, ActionTally.signed, ActionTally.shared
        ).where(ActionTally.campaign_id == campaign_id)
    )
    for dimension, value, signed, shared in rows:
        if dimension == TallyDimension.TOTAL.value:
            found.signed, found.shared = int(signed), int(shared)
        elif dimension == TallyDimension.LINK.value and signed:
            found.links[int(value)] = int(signed)
        elif dimension == TallyDimension.HOUR.value and signed:
            found.hourly[hour_of(datetime.fromisoformat(value))] = int(signed)
    return found


def _recount_signatures(session: DbSession, campaign_id: int) -> _Signatures:
    r = ActionResponse
    found = _Signatures()
    rows = session.execute(
        sa.select(r.source, r.link_id, sa.func.coalesce(r.confirmed_at, r.created_at)).where(
            r.campaign_id == campaign_id, r.counted.is_(True)
        )
    )
    for source, link_id, counted_at in rows:
        if source != ResponseSource.ALERT.value:
            found.shared += 1
            continue
        found.signed += 1
        if link_id is not None:
            found.links[link_id] = found.links.get(link_id, 0) + 1
        hour = hour_of(counted_at)
        found.hourly[hour] = found.hourly.get(hour, 0) + 1
    return found


def _with_signatures(snapshot: StatsSnapshot, signatures: _Signatures) -> StatsSnapshot:
    campaign = {**snapshot.campaign, "signed": signatures.signed, "shared": signatures.shared}
    links = {k: {**v, "signed": 0} for k, v in snapshot.links.items()}
    for link_id, signed in signatures.links.items():
        links.setdefault(link_id, {**dict.fromkeys(LINK_COUNTERS, 0), "signed": 0})
        links[link_id]["signed"] = signed
    hourly = {k: {**v, "signed": 0} for k, v in snapshot.hourly.items()}
    for hour, signed in signatures.hourly.items():
        hourly.setdefault(hour, {**dict.fromkeys(HOURLY_COUNTERS, 0), "signed": 0})
        hourly[hour]["signed"] = signed
    return StatsSnapshot(campaign, links, hourly)


@dataclass
class _Firsts:
    open: datetime | None = None
    human_open: datetime | None = None
    click: datetime | None = None
    human_click: datetime | None = None
    petition: datetime | None = None
    human_petition: datetime | None = None
    links: dict[int, list[bool]] = field(default_factory=dict)
    outcome: str | None = None
    unsubscribed: bool = False
    spam: bool = False


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


@dataclass
class _Recount:
    """Counters rebuilt from raw events: totals as they come, uniques from first times."""

    petition: set[int]
    campaign: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    links: dict[int, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    hourly: dict[datetime, dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    firsts: dict[int, _Firsts] = field(default_factory=lambda: defaultdict(_Firsts))

    def event(
        self, kind: str, delivery_id: int, link_id: int | None, at: datetime, machine: bool
    ) -> None:
        state = self.firsts[delivery_id]
        if kind == EventKind.OPEN.value:
            self.open(state, at, machine)
        elif kind == EventKind.CLICK.value and link_id is not None:
            self.click(state, link_id, at, machine)
        elif kind in OUTCOME_OF_EVENT:
            outcome = OUTCOME_OF_EVENT[kind]
            if state.outcome is None or OUTCOME_RANK[outcome] > OUTCOME_RANK[state.outcome]:
                state.outcome = outcome
        elif kind == EventKind.UNSUBSCRIBE.value:
            state.unsubscribed = True
        elif kind == EventKind.SPAMREPORT.value:
            state.spam = True

    def open(self, state: _Firsts, at: datetime, machine: bool) -> None:
        hour = hour_of(at)
        self.campaign["opens_total"] += 1
        self.hourly[hour]["opens_total"] += 1
        state.open = _earliest(state.open, at)
        if machine:
            self.campaign["machine_opens"] += 1
        else:
            self.hourly[hour]["opens_human_total"] += 1
            state.human_open = _earliest(state.human_open, at)

    def click(self, state: _Firsts, link_id: int, at: datetime, machine: bool) -> None:
        campaign, hourly, links, hour = self.campaign, self.hourly, self.links, hour_of(at)
        is_petition = link_id in self.petition
        campaign["clicks_total"] += 1
        hourly[hour]["clicks_total"] += 1
        links[link_id]["clicks_total"] += 1
        seen = state.links.setdefault(link_id, [False, False])
        seen[0] = True
        state.click = _earliest(state.click, at)
        if is_petition:
            campaign["petition_clicks_total"] += 1
            hourly[hour]["petition_clicks_total"] += 1
            state.petition = _earliest(state.petition, at)
        if machine:
            campaign["machine_clicks"] += 1
        else:
            hourly[hour]["clicks_human_total"] += 1
            links[link_id]["clicks_human"] += 1
            seen[1] = True
            state.human_click = _earliest(state.human_click, at)
            if is_petition:
                state.human_petition = _earliest(state.human_petition, at)

    def uniques(self) -> None:
        """Each delivery counts once per unique counter, in the hour of its first time."""
        for state in self.firsts.values():
            for attr, name in _UNIQUE_OF_FIRST:
                moment = getattr(state, attr)
                if moment is not None:
                    self.campaign[name] += 1
                    self.hourly[hour_of(moment)][name] += 1
            for link_id, (clicked, human) in state.links.items():
                self.links[link_id]["clicks_unique"] += int(clicked)
                self.links[link_id]["clicks_human_unique"] += int(human)
            if state.outcome:
                self.campaign[OUTCOME_COUNTER[state.outcome]] += 1
            self.campaign["unsubscribes"] += int(state.unsubscribed)
            self.campaign["spam_reports"] += int(state.spam)


# A delivery's first time -> the unique counter it makes (campaign and hourly alike).
_UNIQUE_OF_FIRST = (
    ("open", "opens_unique"),
    ("human_open", "opens_human_unique"),
    ("click", "clicks_unique"),
    ("human_click", "clicks_human_unique"),
    ("petition", "petition_clicks_unique"),
    ("human_petition", "petition_clicks_human_unique"),
)


def recompute_stats(session: DbSession, campaign_id: int) -> StatsSnapshot:
    """Rebuild every counter of a campaign from its raw events and its delivery ledger.

    Reads only; for verification (tests, `flask tracking verify-stats`), not for reports.
    """
    petition = set(
        session.scalars(sa.select(Link.id).where(Link.campaign_id == campaign_id, Link.is_petition))
    )
    recount = _Recount(petition)
    query = (
        sa.select(Event.kind, Event.delivery_id, Event.link_id, Event.occurred_at, Event.is_machine)
        .where(Event.campaign_id == campaign_id, Event.delivery_id.is_not(None))
        .order_by(Event.id)
        .execution_options(yield_per=5000)
    )
    for kind, delivery_id, link_id, at, machine in session.execute(query):
        recount.event(kind, delivery_id, link_id, at, machine)
    recount.uniques()
    campaign, links, hourly = recount.campaign, recount.links, recount.hourly
    ledger = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(Delivery.status == DeliveryStatus.SENT.value),
            sa.func.count().filter(Delivery.status == DeliveryStatus.FAILED.value),
        ).where(Delivery.campaign_id == campaign_id)
    ).one()
    campaign["targeted"], campaign["sent"], campaign["failed"] = (int(v) for v in ledger)
    snapshot = StatsSnapshot(
        {name: int(campaign.get(name, 0)) for name in CAMPAIGN_COUNTERS},
        _nonzero({k: {n: int(v.get(n, 0)) for n in LINK_COUNTERS} for k, v in links.items()}),
        _nonzero({k: {n: int(v.get(n, 0)) for n in HOURLY_COUNTERS} for k, v in hourly.items()}),
    )
    return _with_signatures(snapshot, _recount_signatures(session, campaign_id))


def delivery_firsts_mismatches(session: DbSession, campaign_id: int) -> list[int]:
    """Deliveries whose first-engagement columns disagree with their events (should be none)."""
    e = Event
    first = (
        sa.select(
            e.delivery_id.label("delivery_id"),
            sa.func.min(e.occurred_at).filter(e.kind == "open").label("opened_at"),
            sa.func.min(e.occurred_at).filter(e.kind == "click").label("clicked_at"),
        )
        .where(e.campaign_id == campaign_id, e.delivery_id.is_not(None))
        .group_by(e.delivery_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(
            Delivery.id,
            Delivery.opened_at,
            Delivery.clicked_at,
            first.c.opened_at,
            first.c.clicked_at,
        )
        .outerjoin(first, first.c.delivery_id == Delivery.id)
        .where(Delivery.campaign_id == campaign_id)
    )
    return [r[0] for r in rows if (r[1], r[2]) != (r[3], r[4])]
