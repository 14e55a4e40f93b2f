"""Recording opens, clicks and unsubscribes: events, first-engagement times and counters.

Hits reach `record_hits` from the stream flusher (workers/tasks/tracking.py) or, when Redis is
unreachable, straight from the web process (app/services/tracking/hit_buffer.py). Both paths are
idempotent on the hit id the web process gave each hit, so a redelivered stream entry, a
replay after a Redis restart or a hit written by both paths is counted once.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import quote

import sqlalchemy as sa

from app.infra.sql import is_postgresql, one_of
from app.models import (
    CampaignHourly,
    CampaignStats,
    Delivery,
    Event,
    EventKind,
    Link,
    LinkStats,
    UnsubscribeSource,
    campaign_lists,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience import subscriptions
from app.services.stats import breakdown
from app.services.stats.counters import add_counters, hour_of
from app.services.tracking import machine_hits

log = logging.getLogger(__name__)

OPEN = "o"
CLICK = "c"
# One key for every tracking writer: pg_advisory_xact_lock serialises the read-compare-write
# of first-engagement times and click bursts between the flusher and direct-DB fallbacks.
_ADVISORY_KEY = 0x52505452  # "RPTR"
_CHUNK = 2000  # hits per statement group: bounded IN lists and memory
_AGENT_CHARS = 300


class Hit(NamedTuple):
    """One open or click as the web process saw it (plain values: it travels as JSON)."""

    hit_id: str
    kind: str  # OPEN or CLICK
    campaign_id: int
    delivery_id: int
    link_id: int  # 0 for opens
    at: float  # unix time
    ip: str
    user_agent: str
    head: bool


def encode_hits(hits: Sequence[Hit | tuple[Any, ...]]) -> str:
    return json.dumps(hits, separators=(",", ":"))


def decode_hits(raw: str | bytes) -> list[Hit]:
    """Hits from a stream entry. Raises ValueError for anything that is not a list of hits."""
    rows = json.loads(raw)
    if not isinstance(rows, list):
        raise ValueError("a stream entry holds a list of hits")
    hits = []
    for row in rows:
        if not isinstance(row, list) or len(row) != len(Hit._fields):
            raise ValueError("malformed hit")
        hit = Hit(
            str(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4]), float(row[5]),
            str(row[6])[:64].replace("\x00", ""),  # PostgreSQL text and JSON refuse NUL
            str(row[7])[:_AGENT_CHARS].replace("\x00", ""), bool(row[8]),
        )  # fmt: skip
        if hit.kind not in (OPEN, CLICK) or not hit.hit_id or len(hit.hit_id) > 40:
            raise ValueError("malformed hit")
        hits.append(hit)
    return hits


# -- URLs the sender puts in each message -------------------------------------------------


def open_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/t/o/{token}.gif"


def click_url(base_url: str, link_id: int, token: str) -> str:
    return f"{base_url.rstrip('/')}/t/c/{int(link_id)}/{quote(token, safe='')}"


def unsubscribe_url(base_url: str, token: str) -> str:
    """The page and the RFC 8058 one-click target (List-Unsubscribe)."""
    return f"{base_url.rstrip('/')}/u/{token}"


def preferences_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/u/{token}#preferences"


# -- recording hits ----------------------------------------------------------------------


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _lock(session: DbSession) -> None:
    if is_postgresql(session):
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_ADVISORY_KEY)))


@dataclass
class _Counters:
    campaign: dict[tuple[int], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    hourly: dict[tuple[int, datetime], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    links: dict[tuple[int], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    link_campaign: dict[tuple[int], dict[str, Any]] = field(default_factory=dict)

    def first_moved(
        self, campaign_id: int, old: datetime | None, new: datetime | None, name: str
    ) -> None:
        """Move one unique from the hour of the old first time to the new one."""
        if old == new:
            return
        if old is not None:
            self.hourly[(campaign_id, hour_of(old))][name] -= 1
            self.campaign[(campaign_id,)][name] -= 1
        if new is not None:
            self.hourly[(campaign_id, hour_of(new))][name] += 1
            self.campaign[(campaign_id,)][name] += 1


_FIRSTS = (
    "opened_at",
    "human_opened_at",
    "clicked_at",
    "human_clicked_at",
    "petition_clicked_at",
    "human_petition_clicked_at",
)


def _min(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def record_hits(
    session: DbSession, hits: Sequence[Hit], *, apple: machine_hits.NetworkSet | None = None
) -> int:
    """Record tracking hits as events and update first-engagement times and every counter.

    Skips hits already recorded (same hit id) and hits whose delivery or link is gone or
    belongs to another campaign. Flags machine opens and automated clicks (and earlier clicks
    that a new one reveals as part of a burst). Takes a transaction-scoped advisory lock on
    PostgreSQL. Flushes, does not commit.

    Returns:
        How many hits were newly recorded.
    """
    recorded = 0
    for start in range(0, len(hits), _CHUNK):
        recorded += _record_chunk(session, hits[start : start + _CHUNK], apple)
    return recorded


@dataclass
class _Changes:
    """What one chunk of hits changes, gathered before anything is written."""

    counters: _Counters = field(default_factory=_Counters)
    events: list[dict[str, Any]] = field(default_factory=list)  # new event rows, in order
    firsts: dict[int, dict[str, Any]] = field(default_factory=dict)  # delivery id -> columns
    flipped: list[dict[str, Any]] = field(default_factory=list)  # earlier clicks re-flagged


def _record_chunk(
    session: DbSession, hits: Sequence[Hit], apple: machine_hits.NetworkSet | None
) -> int:
    fresh = _fresh_hits(session, hits)
    if not fresh:
        return 0
    deliveries, links = _targets(session, fresh)
    valid = _valid_hits(fresh, deliveries, links)
    if not valid:
        return 0
    changes = _Changes()
    apple_set = apple if apple is not None else machine_hits.NetworkSet([])
    _record_opens(changes, [h for h in valid if h.kind == OPEN], deliveries, apple_set)
    _record_clicks(session, changes, [h for h in valid if h.kind == CLICK], deliveries, links)
    _write_changes(session, changes, deliveries)
    return len(valid)


def _fresh_hits(session: DbSession, hits: Sequence[Hit]) -> list[Hit]:
    """The hits not recorded yet (by hit id), under the flusher's advisory lock."""
    unique = {h.hit_id: h for h in hits}
    if not unique:
        return []
    _lock(session)
    # Under the lock nobody else inserts these ids, so plain inserts (COPY) are safe; the
    # UNIQUE index on events.hit_id stays as the guard of last resort.
    seen = set(
        session.scalars(
            sa.select(Event.hit_id).where(
                one_of(session, Event.hit_id, list(unique), name="hit_ids", type_=sa.String)
            )
        )
    )
    return [h for h in unique.values() if h.hit_id not in seen]


def _targets(session: DbSession, fresh: list[Hit]) -> tuple[dict[int, Any], dict[int, Any]]:
    """The deliveries the hits are for (with their first times) and the links clicked."""
    deliveries = {
        row.id: row
        for row in session.execute(
            sa.select(
                Delivery.id,
                Delivery.campaign_id,
                Delivery.member_id,
                Delivery.sent_at,
                Delivery.local,
                Delivery.language,
                *(getattr(Delivery, name) for name in _FIRSTS),
            ).where(one_of(session, Delivery.id, sorted({h.delivery_id for h in fresh})))
        )
    }
    link_ids = {h.link_id for h in fresh if h.kind == CLICK}
    links: dict[int, Any] = {}
    if link_ids:
        link_query = sa.select(Link.id, Link.campaign_id, Link.is_petition)
        for row in session.execute(link_query.where(one_of(session, Link.id, sorted(link_ids)))):
            links[row.id] = row
    return deliveries, links


def _valid_hits(fresh: list[Hit], deliveries: dict[int, Any], links: dict[int, Any]) -> list[Hit]:
    """The hits whose delivery (and, for a click, link) still exists in their campaign."""
    valid: list[Hit] = []
    for hit in fresh:
        delivery = deliveries.get(hit.delivery_id)
        if delivery is None or delivery.campaign_id != hit.campaign_id:
            continue
        if hit.kind == CLICK:
            link = links.get(hit.link_id)
            if link is None or link.campaign_id != hit.campaign_id:
                continue
        valid.append(hit)
    if len(valid) != len(fresh):
        log.warning("skipped %d hits of deleted deliveries or links", len(fresh) - len(valid))
    return valid


def _record_opens(
    changes: _Changes,
    opens: list[Hit],
    deliveries: dict[int, Any],
    apple: machine_hits.NetworkSet,
) -> None:
    """Opens: flags depend on the hit alone; first times only ever move earlier."""
    counters = changes.counters
    opens_by_delivery: dict[int, list[tuple[datetime, bool]]] = defaultdict(list)
    for hit in opens:
        delivery = deliveries[hit.delivery_id]
        at = _at(hit.at)
        reasons = machine_hits.open_reasons(hit.ip, hit.user_agent, head=hit.head, apple=apple)
        machine = bool(reasons)
        changes.events.append(_event_row(hit, delivery.member_id, at, machine, reasons))
        opens_by_delivery[hit.delivery_id].append((at, machine))
        key = (delivery.campaign_id,)
        hour_key = (delivery.campaign_id, hour_of(at))
        counters.campaign[key]["opens_total"] += 1
        counters.hourly[hour_key]["opens_total"] += 1
        if machine:
            counters.campaign[key]["machine_opens"] += 1
        else:
            counters.hourly[hour_key]["opens_human_total"] += 1
    for delivery_id, seen_opens in opens_by_delivery.items():
        delivery = deliveries[delivery_id]
        first = _min([delivery.opened_at, *(at for at, _ in seen_opens)])
        human = _min([delivery.human_opened_at, *(at for at, m in seen_opens if not m)])
        counters.first_moved(delivery.campaign_id, delivery.opened_at, first, "opens_unique")
        counters.first_moved(
            delivery.campaign_id, delivery.human_opened_at, human, "opens_human_unique"
        )
        firsts = changes.firsts.setdefault(delivery_id, {})
        if first != delivery.opened_at:
            firsts["opened_at"] = first
        if human != delivery.human_opened_at:
            firsts["human_opened_at"] = human


def _write_changes(session: DbSession, changes: _Changes, deliveries: dict[int, Any]) -> None:
    """Events (COPY), re-flagged clicks, first times, the breakdown and every counter."""
    _insert_events(session, changes.events)
    if changes.flipped:
        session.execute(sa.update(Event), changes.flipped)
    _update_firsts(session, deliveries, changes.firsts)
    # The per-local/language rollup follows the same first-time changes (report breakdown).
    breakdown.record_engagement_changes(
        session,
        [
            (delivery_id, column, getattr(deliveries[delivery_id], column), value)
            for delivery_id, changed in sorted(changes.firsts.items())
            for column, value in changed.items()
        ],
        deliveries={
            delivery_id: (row.campaign_id, row.local, row.language)
            for delivery_id, row in deliveries.items()
        },
    )
    counters = changes.counters
    add_counters(session, CampaignStats, ("campaign_id",), counters.campaign)
    add_counters(session, CampaignHourly, ("campaign_id", "hour"), counters.hourly)
    add_counters(session, LinkStats, ("link_id",), counters.links, extra=counters.link_campaign)
    session.flush()


_DELIVERIES: sa.Table = Delivery.__table__  # type: ignore[assignment]
# PostgreSQL: every changed delivery in one statement, its values as arrays (one round trip
# and one parse, where an executemany costs the server a bind and execute per row).
# PostgreSQL: every changed delivery in one statement, its values as arrays sent in binary
# (%b): psycopg dumps a list of datetimes in binary about 20 times faster than as text, and
# the flusher sends seven such lists a batch.
_UPDATE_FIRSTS_PG = """
UPDATE deliveries AS d SET opened_at = v.opened_at, human_opened_at = v.human_opened_at,
    clicked_at = v.clicked_at, human_clicked_at = v.human_clicked_at,
    petition_clicked_at = v.petition_clicked_at,
    human_petition_clicked_at = v.human_petition_clicked_at, updated_at = now()
FROM unnest(%(ids)b::bigint[], %(opened_at)b::timestamptz[], %(human_opened_at)b::timestamptz[],
    %(clicked_at)b::timestamptz[], %(human_clicked_at)b::timestamptz[],
    %(petition_clicked_at)b::timestamptz[], %(human_petition_clicked_at)b::timestamptz[])
    AS v(id, opened_at, human_opened_at, clicked_at, human_clicked_at, petition_clicked_at,
        human_petition_clicked_at)
WHERE d.id = v.id
"""
_UPDATE_FIRSTS = (
    sa.update(_DELIVERIES)
    .where(_DELIVERIES.c.id == sa.bindparam("b_id"))
    .values({name: sa.bindparam(f"b_{name}") for name in _FIRSTS})
)


def _update_firsts(
    session: DbSession, deliveries: dict[int, Any], changes: dict[int, dict[str, Any]]
) -> None:
    """Every first column of every changed delivery written in one statement (PostgreSQL, the
    columns listed in _FIRSTS, in that order, spelled out in _UPDATE_FIRSTS_PG) or
    one executemany of a single UPDATE shape (SQLite): the ORM's bulk update would group rows
    by changed columns into many statements."""
    rows = []
    for delivery_id, changed in sorted(changes.items()):
        if not changed:
            continue
        current = deliveries[delivery_id]
        row = {f"b_{name}": changed.get(name, getattr(current, name)) for name in _FIRSTS}
        row["b_id"] = delivery_id
        rows.append(row)
    if not rows:
        return
    if is_postgresql(session):
        columns = {name: [row[f"b_{name}"] for row in rows] for name in _FIRSTS}
        session.connection().exec_driver_sql(
            _UPDATE_FIRSTS_PG, {"ids": [row["b_id"] for row in rows], **columns}
        )
    else:
        session.execute(_UPDATE_FIRSTS, rows)


class _Click(NamedTuple):
    event_id: int | None  # None for a click of this batch
    link_id: int
    at: datetime
    machine: bool
    reasons: list[str]
    detail: dict[str, Any]


def _click_state(clicks: Sequence[_Click], petition: set[int]) -> dict[str, Any]:
    """First times and per-link flags a delivery's clicks amount to."""
    human = [c for c in clicks if not c.machine]
    return {
        "clicked_at": _min(c.at for c in clicks),
        "human_clicked_at": _min(c.at for c in human),
        "petition_clicked_at": _min(c.at for c in clicks if c.link_id in petition),
        "human_petition_clicked_at": _min(c.at for c in human if c.link_id in petition),
        "links": {c.link_id for c in clicks},
        "human_links": {c.link_id for c in human},
    }


_CLICK_FIRSTS = (
    ("clicked_at", "clicks_unique"),
    ("human_clicked_at", "clicks_human_unique"),
    ("petition_clicked_at", "petition_clicks_unique"),
    ("human_petition_clicked_at", "petition_clicks_human_unique"),
)


def _record_clicks(
    session: DbSession,
    changes: _Changes,
    clicks: Sequence[Hit],
    deliveries: dict[int, Any],
    links: dict[int, Any],
) -> None:
    """Add the batch's clicks, and re-flag as machine the earlier clicks a burst reveals."""
    if not clicks:
        return
    by_delivery: dict[int, list[Hit]] = defaultdict(list)
    for hit in clicks:
        by_delivery[hit.delivery_id].append(hit)
    earlier = _earlier_clicks(session, sorted(by_delivery), links)
    petition = {link_id for link_id, row in links.items() if row.is_petition}
    for delivery_id, hits in by_delivery.items():
        delivery = deliveries[delivery_id]
        old = earlier.get(delivery_id, [])
        combined = _classify_clicks(hits, old, delivery.sent_at)
        before = _click_state(old, petition)
        after = _click_state(combined, petition)
        _reflag_earlier(changes, delivery.campaign_id, old, combined[: len(old)])
        _count_new_clicks(changes, delivery, hits, combined[len(old) :], petition)
        _count_link_uniques(changes, delivery.campaign_id, before, after)
        firsts = changes.firsts.setdefault(delivery_id, {})
        for column, counter in _CLICK_FIRSTS:
            changes.counters.first_moved(
                delivery.campaign_id, before[column], after[column], counter
            )
            if after[column] != getattr(delivery, column):
                firsts[column] = after[column]


def _earlier_clicks(
    session: DbSession, delivery_ids: list[int], links: dict[int, Any]
) -> dict[int, list[_Click]]:
    """Earlier clicks of these deliveries (ix_events_delivery): bursts and per-link uniques
    need them. A delivery has a handful of clicks, so this stays small. Adds their links to
    `links`."""
    earlier: dict[int, list[_Click]] = defaultdict(list)
    columns = (Event.id, Event.delivery_id, Event.link_id, Event.occurred_at)
    rows = session.execute(
        sa.select(*columns, Event.is_machine, Event.detail).where(
            one_of(session, Event.delivery_id, delivery_ids),
            Event.kind == EventKind.CLICK.value,
        )
    )
    prior_links: set[int] = set()
    for event_id, delivery_id, link_id, at, machine, detail in rows:
        reasons = list((detail or {}).get("reasons", []))
        earlier[delivery_id].append(_Click(event_id, link_id, at, machine, reasons, detail or {}))
        prior_links.add(link_id)
    missing = prior_links - set(links)
    if missing:
        for row in session.execute(
            sa.select(Link.id, Link.campaign_id, Link.is_petition).where(
                Link.id.in_(sorted(missing))
            )
        ):
            links[row.id] = row
    return earlier


def _classify_clicks(hits: list[Hit], old: list[_Click], sent_at: datetime | None) -> list[_Click]:
    """A delivery's earlier clicks then its new ones, flagged: automated by themselves
    (machine_hits.click_reasons), or together as a burst of links."""
    sent = sent_at.timestamp() if sent_at else None
    new = [
        _Click(
            None,
            h.link_id,
            _at(h.at),
            False,
            machine_hits.click_reasons(h.user_agent, head=h.head, at=h.at, sent_at=sent),
            {},
        )
        for h in hits
    ]
    new = [c._replace(machine=bool(c.reasons)) for c in new]
    combined = [*old, *new]
    in_burst = set(machine_hits.burst_members([(c.at.timestamp(), c.link_id) for c in combined]))
    for index in in_burst:
        click = combined[index]
        if machine_hits.REASON_BURST not in click.reasons:
            combined[index] = click._replace(
                machine=True, reasons=[*click.reasons, machine_hits.REASON_BURST]
            )
    return combined


def _reflag_earlier(
    changes: _Changes, campaign_id: int, old: list[_Click], now_flagged: list[_Click]
) -> None:
    """Earlier clicks that the new ones reveal as a burst: human -> machine."""
    counters = changes.counters
    for was, now in zip(old, now_flagged, strict=True):
        if now.reasons != was.reasons:
            detail = {**was.detail, "reasons": now.reasons}
            changes.flipped.append({"id": was.event_id, "is_machine": True, "detail": detail})
            if not was.machine:
                hour_key = (campaign_id, hour_of(was.at))
                counters.hourly[hour_key]["clicks_human_total"] -= 1
                counters.links[(was.link_id,)]["clicks_human"] -= 1
                counters.campaign[(campaign_id,)]["machine_clicks"] += 1


def _count_new_clicks(
    changes: _Changes, delivery: Any, hits: list[Hit], new: list[_Click], petition: set[int]
) -> None:
    """The new clicks' events and their totals: campaign, hour, link, petition, machine."""
    counters = changes.counters
    campaign_id = delivery.campaign_id
    for hit, click in zip(hits, new, strict=True):
        is_petition = click.link_id in petition
        changes.events.append(
            _event_row(hit, delivery.member_id, click.at, click.machine, click.reasons)
        )
        hour_key = (campaign_id, hour_of(click.at))
        link_key = (click.link_id,)
        counters.link_campaign[link_key] = {"campaign_id": campaign_id}
        counters.campaign[(campaign_id,)]["clicks_total"] += 1
        counters.hourly[hour_key]["clicks_total"] += 1
        counters.links[link_key]["clicks_total"] += 1
        if is_petition:
            counters.campaign[(campaign_id,)]["petition_clicks_total"] += 1
            counters.hourly[hour_key]["petition_clicks_total"] += 1
        if click.machine:
            counters.campaign[(campaign_id,)]["machine_clicks"] += 1
        else:
            counters.hourly[hour_key]["clicks_human_total"] += 1
            counters.links[link_key]["clicks_human"] += 1


def _count_link_uniques(
    changes: _Changes, campaign_id: int, before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Per-link unique clickers (and human ones), from a delivery's clicks before and after."""
    links = changes.counters.links
    for link_id in after["links"] | before["links"]:
        link_key = (link_id,)
        changes.counters.link_campaign[link_key] = {"campaign_id": campaign_id}
        links[link_key]["clicks_unique"] += int(link_id in after["links"]) - int(
            link_id in before["links"]
        )
        links[link_key]["clicks_human_unique"] += int(link_id in after["human_links"]) - int(
            link_id in before["human_links"]
        )


def _event_row(
    hit: Hit, member_id: int, at: datetime, machine: bool, reasons: list[str]
) -> dict[str, Any]:
    detail: dict[str, Any] = {"ip": hit.ip, "ua": hit.user_agent[:_AGENT_CHARS]}
    if reasons:
        detail["reasons"] = reasons
    return {
        "kind": EventKind.OPEN.value if hit.kind == OPEN else EventKind.CLICK.value,
        "campaign_id": hit.campaign_id,
        "delivery_id": hit.delivery_id,
        "member_id": member_id,
        "link_id": hit.link_id if hit.kind == CLICK else None,
        "occurred_at": at,
        "is_machine": machine,
        "hit_id": hit.hit_id,
        "detail": detail,
    }


_EVENT_COLUMNS = (
    "kind",
    "campaign_id",
    "delivery_id",
    "member_id",
    "link_id",
    "occurred_at",
    "is_machine",
    "hit_id",
    "detail",
)


def _insert_events(session: DbSession, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # COPY: one round trip for the whole batch, ~5x a multi-row INSERT (reference §3.4).
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY events ({', '.join(_EVENT_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(
                    [json.dumps(row[c]) if c == "detail" else row[c] for c in _EVENT_COLUMNS]
                )
        return
    session.execute(sa.insert(Event), rows)


# -- unsubscribes ------------------------------------------------------------------------


def campaign_list_ids(session: DbSession, campaign_id: int) -> list[int]:
    return list(
        session.scalars(
            sa.select(campaign_lists.c.list_id).where(campaign_lists.c.campaign_id == campaign_id)
        )
    )


def record_unsubscribe(
    session: DbSession,
    delivery_id: int,
    *,
    list_ids: Iterable[int] | None,
    source: UnsubscribeSource,
    detail: dict[str, Any] | None = None,
    record_event: bool = True,
) -> int:
    """Unsubscribe the member a delivery went to, and count it for that campaign.

    Calls `subscriptions.unsubscribe` (which also skips the member's queued deliveries),
    records an unsubscribe event, sets the delivery's `unsubscribed_at` the first time and then
    adds one to the campaign's `unsubscribes`. Idempotent. Flushes, does not commit.

    Args:
        list_ids: the lists to leave; None for every list.
        record_event: False when the caller stored the event itself (webhooks keep theirs).

    Returns:
        How many subscriptions changed (0 when already unsubscribed).
    """
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return 0
    ids = None if list_ids is None else sorted(set(list_ids))
    changed = subscriptions.unsubscribe(session, delivery.member_id, list_ids=ids, source=source)
    now = utcnow()
    if record_event:
        session.add(
            Event(
                kind=EventKind.UNSUBSCRIBE.value,
                campaign_id=delivery.campaign_id,
                delivery_id=delivery.id,
                member_id=delivery.member_id,
                occurred_at=now,
                detail={
                    "source": source.value,
                    "lists": ids if ids is not None else "all",
                    **(detail or {}),
                },
            )
        )
    # Conditional UPDATE: two concurrent unsubscribes of one delivery count once.
    first = session.execute(
        sa.update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.unsubscribed_at.is_(None))
        .values(unsubscribed_at=now)
        .returning(Delivery.campaign_id)
        .execution_options(synchronize_session=False)
    ).first()
    session.expire(delivery, ["unsubscribed_at"])
    if first is not None:
        add_counters(session, CampaignStats, ("campaign_id",), {(first[0],): {"unsubscribes": 1}})
        breakdown.record_engagement_changes(session, [(delivery.id, "unsubscribed_at", None, now)])
    session.flush()
    return changed
