"""The report's breakdown by local/chapter and by language: incremental upkeep and recomputation.

The sender, the tracking flusher and the webhook processor call the `record_*` functions in
the same transaction as the ledger change they describe, so the rollup is exactly as durable
as the change. `recompute_breakdown` rebuilds the same figures from raw events and the ledger;
tests compare the two, and `rebuild_breakdown` repairs or backfills a campaign.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.infra import sql
from app.infra.sql import one_of
from app.models import (
    ActionResponse,
    BreakdownDimension,
    CampaignBreakdown,
    Delivery,
    Event,
    EventKind,
    Link,
    Member,
    ResponseSource,
)
from app.services import DbSession

log = logging.getLogger(__name__)

BREAKDOWN_COUNTERS: tuple[str, ...] = (
    "targeted",
    "delivered",
    "bounced",
    "opens_unique",
    "opens_human_unique",
    "clicks_unique",
    "clicks_human_unique",
    "petition_clicks_unique",
    "petition_clicks_human_unique",
    "unsubscribes",
)

# Delivery first-engagement column -> the breakdown counter it moves, once per delivery.
FIRST_COLUMNS: dict[str, str] = {
    "opened_at": "opens_unique",
    "human_opened_at": "opens_human_unique",
    "clicked_at": "clicks_unique",
    "human_clicked_at": "clicks_human_unique",
    "petition_clicked_at": "petition_clicks_unique",
    "human_petition_clicked_at": "petition_clicks_human_unique",
    "unsubscribed_at": "unsubscribes",
}
# Webhook outcomes the breakdown counts (deferred and dropped only show campaign-wide).
OUTCOME_COUNTERS: dict[str, str] = {"delivered": "delivered", "bounced": "bounced"}

# The same outcome rule as the webhook processor: a weaker event never overwrites a stronger
# one, whatever order SendGrid's retries deliver them in; between equals the first one stays.
_OUTCOME_RANK = {"deferred": 1, "delivered": 2, "bounced": 3, "dropped": 3}
_OUTCOME_OF_EVENT = {
    EventKind.DEFERRED.value: "deferred",
    EventKind.DELIVERED.value: "delivered",
    EventKind.BOUNCE.value: "bounced",
    EventKind.DROPPED.value: "dropped",
}

# Rows per IN (...) list: well under SQLite's bound variables and cheap for PostgreSQL.
_CHUNK = 1000

Key = tuple[int, str, str]  # campaign_id, dimension, value
Counts = dict[str, int]


class BreakdownError(ValueError):
    """A column, outcome or counter name the breakdown does not know."""


def _insert(session: DbSession) -> Any:
    return sql.insert(session, CampaignBreakdown.__table__)  # type: ignore[arg-type]


def _keys(campaign_id: int, local: str, language: str) -> tuple[Key, Key]:
    return (
        (campaign_id, BreakdownDimension.LOCAL.value, local or ""),
        (campaign_id, BreakdownDimension.LANGUAGE.value, language or ""),
    )


def add_breakdown_counters(session: DbSession, deltas: Mapping[Key, Mapping[str, int]]) -> None:
    """Add `deltas` to breakdown rows, creating missing ones: one INSERT ... ON CONFLICT.

    Rows go in key order so two flushers lock them in the same order and cannot deadlock.
    """
    counters = sorted({name for change in deltas.values() for name in change})
    unknown = set(counters) - set(BREAKDOWN_COUNTERS)
    if unknown:
        raise BreakdownError(f"unknown breakdown counters: {', '.join(sorted(unknown))}")
    rows = []
    for key in sorted(deltas):
        change = deltas[key]
        if not any(change.values()):
            continue
        campaign_id, dimension, value = key
        row: dict[str, Any] = {"campaign_id": campaign_id, "dimension": dimension, "value": value}
        row.update({name: int(change.get(name, 0)) for name in counters})
        rows.append(row)
    if not rows:
        return
    stmt = _insert(session).values(rows)
    table: sa.Table = CampaignBreakdown.__table__  # type: ignore[assignment]
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["campaign_id", "dimension", "value"],
            set_={name: table.c[name] + stmt.excluded[name] for name in counters},
        )
    )


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _delivery_keys(session: DbSession, ids: Iterable[int]) -> dict[int, tuple[Key, Key]]:
    wanted = sorted(set(ids))
    found: dict[int, tuple[Key, Key]] = {}
    for chunk in _chunks(wanted):
        # Primary-key lookups: a flush touches at most a few thousand deliveries.
        rows = session.execute(
            sa.select(Delivery.id, Delivery.campaign_id, Delivery.local, Delivery.language).where(
                one_of(session, Delivery.id, chunk)
            )
        ).all()  # one fetch: psycopg's fetchone() per row costs ~40 us each
        for delivery_id, campaign_id, local, language in rows:
            found[delivery_id] = _keys(campaign_id, local, language)
    return found


def record_audience_frozen(session: DbSession, campaign_id: int) -> None:
    """Set the breakdown's `targeted` figures once the campaign's audience is frozen.

    Call it right after the freeze's INSERT ... SELECT, in the same transaction. It first
    copies each member's local onto deliveries that were frozen without it (a no-op scan when
    the freeze already wrote `deliveries.local`), then counts the deliveries per local and per
    language: one GROUP BY over this campaign's ledger, once per campaign, never per page view.
    Safe to call twice: it sets `targeted`, it does not add to it. Flushes, never commits.
    """
    session.execute(
        sa.update(Delivery)
        .where(
            Delivery.campaign_id == campaign_id,
            Delivery.member_id == Member.id,
            Delivery.local == "",
            Member.local != "",
        )
        .values(local=Member.local)
        .execution_options(synchronize_session=False)
    )
    rows: list[dict[str, Any]] = []
    for dimension, column in (
        (BreakdownDimension.LOCAL.value, Delivery.local),
        (BreakdownDimension.LANGUAGE.value, Delivery.language),
    ):
        counted = session.execute(
            sa.select(column, sa.func.count())
            .where(Delivery.campaign_id == campaign_id)
            .group_by(column)
        )
        rows.extend(
            {"campaign_id": campaign_id, "dimension": dimension, "value": v or "", "targeted": n}
            for v, n in counted
        )
    if not rows:
        return
    rows.sort(key=lambda r: (r["dimension"], r["value"]))
    stmt = _insert(session).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["campaign_id", "dimension", "value"],
            set_={"targeted": stmt.excluded.targeted},
        )
    )


def record_engagement_changes(
    session: DbSession,
    changes: Iterable[tuple[int, str, datetime | None, datetime | None]],
    *,
    deliveries: Mapping[int, tuple[int, str, str]] | None = None,
) -> None:
    """Count deliveries whose first-engagement column was set (or cleared) in this transaction.

    Args:
        changes: (delivery id, column, value before, value after) for each first-engagement
            column (a key of FIRST_COLUMNS, e.g. "opened_at") the caller changed. NULL -> a
            time adds one to the delivery's local and language; a time -> NULL (a click
            re-flagged as automated) takes one away; a time -> an earlier time changes
            nothing here (the breakdown has no time axis). Pass the values the caller read
            and wrote under its lock, so a hit seen twice is counted once.
        deliveries: (campaign id, local, language) of the changed deliveries, when the
            caller has already read them (the tracking flusher): spares a query.

    Raises:
        BreakdownError: an unknown column name. Flushes, never commits.
    """
    moves: list[tuple[int, str, int]] = []
    for delivery_id, column, before, after in changes:
        if column not in FIRST_COLUMNS:
            raise BreakdownError(f"unknown delivery column: {column}")
        if (before is None) != (after is None):
            moves.append((delivery_id, FIRST_COLUMNS[column], 1 if before is None else -1))
    if not moves:
        return
    if deliveries is not None and all(d in deliveries for d, _, _ in moves):
        keys = {d: _keys(*deliveries[d]) for d, _, _ in moves}
    else:
        keys = _delivery_keys(session, (d for d, _, _ in moves))
    deltas: dict[Key, Counts] = defaultdict(lambda: defaultdict(int))
    for delivery_id, counter, step in moves:
        for key in keys.get(delivery_id, ()):
            deltas[key][counter] += step
    add_breakdown_counters(session, deltas)


def record_outcome_changes(
    session: DbSession,
    changes: Iterable[tuple[int, str | None, str | None]],
    *,
    where: Mapping[int, tuple[int, str, str]] | None = None,
) -> None:
    """Move deliveries between the breakdown's delivered/bounced counts.

    Args:
        changes: (delivery id, outcome before, outcome after) for each delivery whose
            `outcome` column the webhook processor changed in this transaction; outcomes the
            breakdown does not count (deferred, dropped, None) are fine on either side.
        where: each delivery's (campaign id, local, language) when the caller has read
            them already; the others are read here.

    Flushes, never commits.
    """
    listed = [(d, old, new) for d, old, new in changes if old != new]
    for _, old, new in listed:
        for outcome in (old, new):
            if outcome is not None and outcome not in _OUTCOME_RANK:
                raise BreakdownError(f"unknown outcome: {outcome}")
    known = where or {}
    keys = {d: _keys(*known[d]) for d, _, _ in listed if d in known}
    keys.update(_delivery_keys(session, (d for d, _, _ in listed if d not in known)))
    deltas: dict[Key, Counts] = defaultdict(lambda: defaultdict(int))
    for delivery_id, old, new in listed:
        for key in keys.get(delivery_id, ()):
            if old in OUTCOME_COUNTERS:
                deltas[key][OUTCOME_COUNTERS[old]] -= 1
            if new in OUTCOME_COUNTERS:
                deltas[key][OUTCOME_COUNTERS[new]] += 1
    add_breakdown_counters(session, deltas)


def stored_breakdown(session: DbSession, campaign_id: int) -> dict[tuple[str, str], Counts]:
    """The rollup as the incremental writers left it: (dimension, value) -> counters."""
    rows = session.scalars(
        sa.select(CampaignBreakdown).where(CampaignBreakdown.campaign_id == campaign_id)
    )
    stored = {
        (r.dimension, r.value): {name: int(getattr(r, name)) for name in BREAKDOWN_COUNTERS}
        for r in rows
    }
    return {k: v for k, v in stored.items() if any(v.values())}


@dataclass
class _DeliveryState:
    opened: bool = False
    human_opened: bool = False
    clicked: bool = False
    human_clicked: bool = False
    petition: bool = False
    human_petition: bool = False
    unsubscribed: bool = False
    outcome: str | None = None
    links: set[int] = field(default_factory=set)


def recompute_breakdown(
    session: DbSession, campaign_id: int, *, signatures: bool = False
) -> dict[tuple[str, str], Counts]:
    """Rebuild the breakdown from raw events and the ledger, without the rollup.

    Reads every event of the campaign (streamed): for verification and repair, never for a
    page view. `targeted` is the ledger's row count; the other counters follow the events.
    With `signatures`, each group also gets "signed": the counted responses to hosted actions
    that the alert's own click brought, grouped by their delivery (what the report shows
    from action_tallies); the rollup itself has no such column.
    """
    petition = set(
        session.scalars(sa.select(Link.id).where(Link.campaign_id == campaign_id, Link.is_petition))
    )
    states: dict[int, _DeliveryState] = defaultdict(_DeliveryState)
    events = (
        sa.select(Event.kind, Event.delivery_id, Event.link_id, Event.is_machine)
        .where(Event.campaign_id == campaign_id, Event.delivery_id.is_not(None))
        .order_by(Event.id)
        .execution_options(yield_per=5000)
    )
    for kind, delivery_id, link_id, machine in session.execute(events):
        state = states[delivery_id]
        if kind == EventKind.OPEN.value:
            state.opened = True
            state.human_opened |= not machine
        elif kind == EventKind.CLICK.value and link_id is not None:
            state.clicked = True
            state.human_clicked |= not machine
            if link_id in petition:
                state.petition = True
                state.human_petition |= not machine
        elif kind == EventKind.UNSUBSCRIBE.value:
            state.unsubscribed = True
        elif kind in _OUTCOME_OF_EVENT:
            outcome = _OUTCOME_OF_EVENT[kind]
            if state.outcome is None or _OUTCOME_RANK[outcome] > _OUTCOME_RANK[state.outcome]:
                state.outcome = outcome

    result: dict[tuple[str, str], Counts] = defaultdict(
        lambda: dict.fromkeys(BREAKDOWN_COUNTERS, 0)
    )
    ledger = sa.select(Delivery.id, Delivery.local, Delivery.language).where(
        Delivery.campaign_id == campaign_id
    )
    flags = (
        ("opened", "opens_unique"),
        ("human_opened", "opens_human_unique"),
        ("clicked", "clicks_unique"),
        ("human_clicked", "clicks_human_unique"),
        ("petition", "petition_clicks_unique"),
        ("human_petition", "petition_clicks_human_unique"),
        ("unsubscribed", "unsubscribes"),
    )
    signed: dict[int, int] = defaultdict(int)
    if signatures:
        for (delivery_id,) in session.execute(
            sa.select(ActionResponse.delivery_id).where(
                ActionResponse.campaign_id == campaign_id,
                ActionResponse.counted.is_(True),
                ActionResponse.source == ResponseSource.ALERT.value,
                ActionResponse.delivery_id.is_not(None),
            )
        ):
            signed[delivery_id] += 1
    for delivery_id, local, language in session.execute(ledger.execution_options(yield_per=5000)):
        found = states.get(delivery_id)
        for _, dimension, value in _keys(campaign_id, local, language):
            counts = result[(dimension, value)]
            counts["targeted"] += 1
            if signatures:
                counts["signed"] = counts.get("signed", 0) + signed.get(delivery_id, 0)
            if found is None:
                continue
            for attr, counter in flags:
                counts[counter] += int(getattr(found, attr))
            if found.outcome in OUTCOME_COUNTERS:
                counts[OUTCOME_COUNTERS[found.outcome]] += 1
    return {k: v for k, v in result.items() if any(v.values())}


def rebuild_breakdown(session: DbSession, campaign_id: int) -> int:
    """Replace a campaign's breakdown rows with `recompute_breakdown`'s figures.

    For a backfill (campaigns sent before the rollup existed) or a repair; the campaign's
    other writers should be idle, or their concurrent increments may be lost. Returns the
    number of rows written. Flushes, never commits.
    """
    figures = recompute_breakdown(session, campaign_id)
    session.execute(
        sa.delete(CampaignBreakdown).where(CampaignBreakdown.campaign_id == campaign_id)
    )
    deltas = {(campaign_id, dim, value): counts for (dim, value), counts in figures.items()}
    add_breakdown_counters(session, deltas)
    log.info("rebuilt the breakdown of campaign %s: %s rows", campaign_id, len(deltas))
    return len(deltas)
