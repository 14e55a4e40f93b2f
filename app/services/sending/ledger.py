"""The batch ledger: claim a batch, settle its request, recover and judge batches in doubt.

A campaign's audience is frozen into `deliveries` (one row per member) grouped into
`send_batches` (one row per SendGrid request). While sending, the batch carries the state:

    queued --claim--> sending --accepted--> sent      (rows: queued -> sent, one UPDATE)
                         |------refused---> failed    (rows -> failed)
                         |----429/5xx-----> queued    (rows untouched; the task retries)
                         '--crash/timeout-> unknown   (rows -> unknown)
    unknown --an event for any of its rows--> sent   (SendGrid took the whole request)
    unknown --no event, stream moved past, window--> queued  (sent again, once)

A claim commits before the transport is called, so a second run of the same batch (a
redelivered task) finds nothing to claim; the rows of a claimed batch stay 'queued', and
the queued rows with an id up to `claimed_upto` are the request's. Their one write after
the freeze is the outcome. Only exceptions (skipped at claim, refused, unknown) touch rows
otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from flask import current_app

from app.infra.sql import built_once, insert, one_of, one_of_param, plan_as_short_query
from app.models import (
    BatchStatus,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Member,
    SendBatch,
    Subscription,
    SubscriptionStatus,
    Suppression,
    campaign_lists,
)
from app.services import DbSession
from app.services.sending.rendering import ClaimedRow

log = logging.getLogger(__name__)

DELIVERIES = cast(sa.Table, Delivery.__table__)
MEMBERS = cast(sa.Table, Member.__table__)
BATCHES = cast(sa.Table, SendBatch.__table__)

SKIPPED_AT_CLAIM = "Unsubscribed or suppressed before it was sent."
STUCK = (
    "The worker sending this batch stopped before it recorded the outcome; it is unknown "
    "whether it reached SendGrid."
)
NOT_ARRIVED = (
    "SendGrid reported nothing for this batch while it reported on batches sent after it: "
    "the request never arrived, so it was sent again."
)
RESENT_BY = "Sent again by {who}: it was unknown whether these members received it."

# What a claimed row brings for rendering, in ClaimedRow's field order.
_CLAIMED_COLUMNS = (
    DELIVERIES.c.id,
    DELIVERIES.c.email,
    DELIVERIES.c.language,
    MEMBERS.c.first_name,
    MEMBERS.c.last_name,
    MEMBERS.c.local,
    MEMBERS.c.language,
    MEMBERS.c.postal_code,
    MEMBERS.c.attributes,
)


@dataclass(frozen=True)
class Settlement:
    """How batches in doubt are settled, from configuration.

    Attributes:
        webhook: SendGrid's signed Event Webhook is configured, so its `processed` events
            can settle batches in doubt. Without it, the organizer is told and decides.
        window: seconds after a claim before a batch nothing was heard of may be judged
            never to have arrived (SEND_UNKNOWN_WINDOW_SECONDS).
        margin: a batch claimed at least this much later, with events, proves the event
            stream moved past (the transport's read timeout: a request of ours that
            SendGrid took was in its hands by then).
        lease: seconds a batch's lease lives without a refresh; a claim older than this
            with no lease was abandoned by a worker that died.
    """

    webhook: bool = False
    window: float = 600.0
    margin: float = 30.0
    lease: float = 6.0

    @property
    def give_up(self) -> float:
        """After this, a batch still in doubt no longer holds its campaign open."""
        return 2 * self.window + self.margin

    @classmethod
    def from_app(cls) -> Settlement:
        """The running application's settlement (its configuration)."""
        return cls.from_config(current_app.config)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settlement:
        webhook = bool(config.get("SENDGRID_WEBHOOK_PUBLIC_KEY")) and (
            config.get("MAIL_TRANSPORT") == "sendgrid"
        )
        return cls(
            webhook=webhook,
            window=float(config.get("SEND_UNKNOWN_WINDOW_SECONDS", 600.0)),
            margin=float(config.get("SENDGRID_READ_TIMEOUT", 30.0)),
            lease=float(config.get("SEND_LEASE_SECONDS", 6.0)),
        )


@dataclass(frozen=True)
class BatchKey:
    campaign_id: int
    batch_no: int

    @property
    def params(self) -> dict[str, int]:
        """The values of `_batch_param` and `_rows_param` in a built statement."""
        return {"p_campaign": self.campaign_id, "p_batch": self.batch_no}


@dataclass
class Claim:
    """A batch claimed for one request: its rows, and how many were skipped at claim."""

    key: BatchKey
    language: str
    rows: list[ClaimedRow]
    skipped: int
    claimed_at: datetime


def _of_batch(table: sa.Table) -> sa.ColumnElement[bool]:
    """`table`'s rows of one batch, its key bound at execution (`BatchKey.params`): the
    form of the statements a send runs per batch, built once (`built_once`)."""
    return sa.and_(
        table.c.campaign_id == sa.bindparam("p_campaign"),
        table.c.batch_no == sa.bindparam("p_batch"),
    )


def _batch_param() -> sa.ColumnElement[bool]:
    return _of_batch(BATCHES)


def _rows_param() -> sa.ColumnElement[bool]:
    return _of_batch(DELIVERIES)


# The same with the key's values in place, for the statements of the rarer paths.
def _batch(key: BatchKey) -> sa.ColumnElement[bool]:
    return _batch_param().params(key.params)


def _rows(key: BatchKey) -> sa.ColumnElement[bool]:
    return _rows_param().params(key.params)


def _in_request(key: BatchKey) -> sa.ColumnElement[bool]:
    """The rows the batch's current request holds: queued, with an id up to claimed_upto."""
    upto = sa.select(BATCHES.c.claimed_upto).where(_batch(key)).scalar_subquery()
    return sa.and_(
        _rows(key), DELIVERIES.c.status == DeliveryStatus.QUEUED.value, DELIVERIES.c.id <= upto
    )


def create_batches(session: DbSession, campaign_id: int, *, after_member: int = 0) -> list[int]:
    """One queued batch row per batch number of a just-frozen audience; returns their numbers.

    One `INSERT … SELECT … GROUP BY batch_no` over the rows the freeze wrote (a read of
    ix_deliveries_campaign_batch); ON CONFLICT DO NOTHING keeps a second freeze harmless.
    A step of a stepped freeze passes `after_member`: only its own rows (members with a
    higher id, the unique index on (campaign_id, member_id)) are read.
    """
    d = DELIVERIES
    rows = (
        sa.select(
            d.c.campaign_id,
            d.c.batch_no,
            sa.func.min(d.c.language),
            sa.func.count(),
            sa.literal(BatchStatus.QUEUED.value),
            sa.literal(0),
            sa.literal(0),
        )
        .where(d.c.campaign_id == campaign_id)
        .group_by(d.c.campaign_id, d.c.batch_no)
    )
    if after_member:
        rows = rows.where(d.c.member_id > after_member)
    statement = insert(session, BATCHES).from_select(
        ["campaign_id", "batch_no", "language", "size", "status", "attempts", "resends"], rows
    )
    created = session.scalars(
        statement.on_conflict_do_nothing(index_elements=["campaign_id", "batch_no"]).returning(
            BATCHES.c.batch_no
        )
    )
    return list(created)


def batch_numbers(session: DbSession, campaign_id: int, *statuses: BatchStatus) -> list[int]:
    """The campaign's batch numbers in the given statuses (queued by default), in order."""
    wanted = [s.value for s in statuses] or [BatchStatus.QUEUED.value]
    return list(
        session.scalars(
            sa.select(BATCHES.c.batch_no)
            .where(BATCHES.c.campaign_id == campaign_id, BATCHES.c.status.in_(wanted))
            .order_by(BATCHES.c.batch_no)
        )
    )


def reopen_stranded(session: DbSession, campaign_id: int, now: datetime) -> list[int]:
    """Batches closed while queued rows remain (never expected) go back to queued.

    A safety net for the sweep: a row left queued under a closed batch would otherwise keep
    its campaign from finishing forever.
    """
    b = BATCHES
    reopened = list(
        session.scalars(
            sa.update(b)
            .where(
                b.c.campaign_id == campaign_id,
                b.c.status.in_(
                    [BatchStatus.SENT.value, BatchStatus.FAILED.value, BatchStatus.SKIPPED.value]
                ),
                _has_queued_row(),
            )
            .values(status=BatchStatus.QUEUED.value, lease=None, finished_at=None)
            .returning(b.c.batch_no)
        )
    )
    if reopened:
        log.warning("campaign %s: batches %s had queued rows; queued again", campaign_id, reopened)
    return reopened


def count_queued(session: DbSession, key: BatchKey) -> int:
    """Queued rows of a batch (ix_deliveries_campaign_batch)."""
    d = DELIVERIES
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(d)
            .where(_rows(key), d.c.status == DeliveryStatus.QUEUED.value)
        )
        or 0
    )


def claim(session: DbSession, key: BatchKey, limit: int, now: datetime, lease: str) -> Claim | None:
    """Claim a queued batch for one request of up to `limit` rows; None if not claimable.

    Three statements in one transaction, which the caller commits before the transport is
    called:

    1. ``SELECT … FROM send_batches WHERE (campaign, batch) AND status = 'queued' AND the
       campaign is sending FOR UPDATE SKIP LOCKED`` — a concurrent run of the same batch
       passes by instead of waiting, and a paused or cancelled campaign claims nothing.
    2. The rows: ``SELECT d.id, ok, d.email, …, m.first_name, … FROM deliveries d JOIN
       members m … WHERE (campaign, batch) AND d.status = 'queued' ORDER BY d.id LIMIT n``
       (ix_deliveries_campaign_batch, then pk_members), where `ok` re-checks at claim time
       that the member is still subscribed to one of the campaign's lists and not
       suppressed: an unsubscribe that arrived after the freeze still stops its row. Rows
       that fail the check become 'skipped' (the exception that writes).
    3. ``UPDATE send_batches SET status = 'sending', claimed_at, claimed_upto = <last id>,
       lease, attempts + 1`` — the claim itself: one row written, whatever the batch size.

    The read is planned as the short query it is (`plan_as_short_query`: no JIT, no parallel
    worker, index probes priced for a hot cache), set for this transaction only.
    """
    language = session.scalar(_lock_statement(session), key.params)
    if language is None:
        return None

    rows, bad = _read_rows(session, key, limit)
    if bad:
        _set_rows(session, bad, DeliveryStatus.SKIPPED, now=now, error=SKIPPED_AT_CLAIM)
    if not rows:
        close(session, key, now)
        return Claim(key, language, [], len(bad), now)
    upto = max(max(row.delivery_id for row in rows), max(bad, default=0))
    claimed = session.execute(
        _claim_statement(session), {**key.params, "p_now": now, "p_upto": upto, "p_lease": lease}
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return None  # SQLite, which has no FOR UPDATE: another run got there first
    return Claim(key, language, rows, len(bad), now)


@built_once
def _lock_statement(session: DbSession) -> sa.Select[tuple[str]]:
    b = BATCHES
    still_sending = sa.exists().where(
        Campaign.id == sa.bindparam("p_campaign"),
        Campaign.status == CampaignStatus.SENDING.value,
    )
    return (
        sa.select(b.c.language)
        .where(_batch_param(), b.c.status == BatchStatus.QUEUED.value, still_sending)
        .with_for_update(skip_locked=True)
    )


@built_once
def _claim_statement(session: DbSession) -> sa.Update:
    b = BATCHES
    return (
        sa.update(b)
        .where(_batch_param(), b.c.status == BatchStatus.QUEUED.value)
        .values(
            status=BatchStatus.SENDING.value,
            claimed_at=sa.bindparam("p_now"),
            claimed_upto=sa.bindparam("p_upto"),
            lease=sa.bindparam("p_lease"),
            attempts=b.c.attempts + 1,
            error=None,
        )
    )


def _read_rows(session: DbSession, key: BatchKey, limit: int) -> tuple[list[ClaimedRow], list[int]]:
    """The batch's queued rows, in id order, split into still-eligible and not."""
    # The rows of a running campaign and these indexes are hot in memory; at the default
    # random_page_cost (4, for spinning disks) the planner prices 1,000 index probes above a
    # scan of every subscription, and hashes them all, per batch. No JIT, no parallel worker.
    plan_as_short_query(session, random_page_cost=1.1)
    list_ids = list(session.scalars(_lists_statement(session), {"p_campaign": key.campaign_id}))
    rows: list[ClaimedRow] = []
    bad: list[int] = []
    params = {**key.params, "list_ids": list_ids, "p_limit": limit}
    for is_ok, *values in session.execute(_rows_statement(session), params).all():
        if is_ok:
            rows.append(_claimed_row(values))
        else:
            bad.append(int(values[0]))
    return rows, bad


@built_once
def _lists_statement(session: DbSession) -> sa.Select[tuple[int]]:
    return sa.select(campaign_lists.c.list_id).where(
        campaign_lists.c.campaign_id == sa.bindparam("p_campaign")
    )


@built_once
def _rows_statement(session: DbSession) -> sa.Select[Any]:
    d, m = DELIVERIES, MEMBERS
    # One probe of pk_subscriptions (member_id, list_id) per recipient, planned so
    # whatever the statistics say: `list_id + 0` cannot use ix_subscriptions_list_status,
    # and OFFSET 0 keeps the planner from turning the EXISTS into one hash of every
    # subscribed row per batch. Without statistics (a first send right after a bulk load,
    # before autovacuum's ANALYZE) it picked either, reading every subscriber of the list
    # for each batch or each recipient.
    subscribed = (
        sa.select(sa.literal(1))
        .where(
            Subscription.member_id == d.c.member_id,
            one_of_param(session, Subscription.list_id + 0, name="list_ids", type_=sa.Integer),
            Subscription.status == SubscriptionStatus.SUBSCRIBED.value,
        )
        .offset(0)
    )
    ok = sa.and_(~sa.exists().where(Suppression.email == d.c.email), sa.exists(subscribed))
    return (
        sa.select(ok.label("ok"), *_CLAIMED_COLUMNS)
        # An outer join: a delivery whose member row has gone (deleted by hand; Rallypoint
        # never deletes members) has no subscription, so it is skipped instead of staying
        # queued under a closed batch.
        .select_from(d.outerjoin(m, m.c.id == d.c.member_id))
        .where(_rows_param(), d.c.status == DeliveryStatus.QUEUED.value)
        # `id + 0`: the batch's rows are found by (campaign, batch) and sorted (at
        # most a batch). Ordered by the bare id, a campaign holding most of the table let the
        # planner walk pk_deliveries from the oldest row, filtering for this batch.
        .order_by(d.c.id + 0)
        .limit(sa.bindparam("p_limit", type_=sa.Integer))
    )


def _claimed_row(values: Sequence[Any]) -> ClaimedRow:
    row = ClaimedRow._make(values)
    return row if row.attributes is not None else row._replace(attributes={})


def _set_rows(
    session: DbSession,
    ids: Collection[int],
    status: DeliveryStatus,
    *,
    now: datetime,
    unless: Iterable[DeliveryStatus] = (DeliveryStatus.SENT, DeliveryStatus.FAILED),
    **values: Any,
) -> int:
    """One UPDATE for a group of rows by primary key, except rows already in `unless`."""
    if not ids:
        return 0
    d = DELIVERIES
    result = session.execute(
        sa.update(d)
        .where(one_of(session, d.c.id, ids), d.c.status.not_in([s.value for s in unless]))
        .values(status=status.value, updated_at=now, **values)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def record_sent(
    session: DbSession,
    ids: Collection[int],
    *,
    now: datetime,
    provider_message_id: str | None = None,
) -> int:
    """Rows SendGrid accepted become 'sent'; returns how many changed (for the counters).

    The hot path's one write per recipient: ``UPDATE deliveries SET status = 'sent', …
    WHERE id = ANY(:ids) AND status NOT IN ('sent', 'failed')`` (pk_deliveries). A row in
    the request is sent whatever a racing unsubscribe or cancel wrote meanwhile ('skipped'
    after the claim read it); one a `processed` event already settled is not counted twice.
    """
    if not ids:
        return 0
    result = session.execute(
        _sent_statement(session),
        {"ids": list(ids), "p_now": now, "p_message_id": provider_message_id},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@built_once
def _sent_statement(session: DbSession) -> sa.Update:
    d = DELIVERIES
    return (
        sa.update(d)
        .where(
            one_of_param(session, d.c.id),
            d.c.status.not_in([DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value]),
        )
        .values(
            status=DeliveryStatus.SENT.value,
            updated_at=sa.bindparam("p_now"),
            sent_at=sa.bindparam("p_now"),
            provider_message_id=sa.bindparam("p_message_id"),
            error=None,
        )
    )


def record_failed(session: DbSession, failures: Mapping[int, str], *, now: datetime) -> int:
    """Rows refused for good, each with its message; returns how many changed."""
    by_message: dict[str, list[int]] = {}
    for delivery_id, message in failures.items():
        by_message.setdefault(message[:1000], []).append(delivery_id)
    return sum(
        _set_rows(session, ids, DeliveryStatus.FAILED, now=now, error=message)
        for message, ids in by_message.items()
    )


def record_unknown(session: DbSession, ids: Collection[int], message: str, *, now: datetime) -> int:
    """Rows that may or may not have left (SMTP's message in flight); returns how many."""
    return _set_rows(session, ids, DeliveryStatus.UNKNOWN, now=now, error=message[:1000])


def close(session: DbSession, key: BatchKey, now: datetime, error: str | None = None) -> str:
    """End the batch's request: queued again if rows remain, else sent, failed or skipped.

    Each EXISTS reads the batch's rows in ix_deliveries_campaign_batch (campaign, batch), at
    most a batch, until one has that status.
    Returns the batch's new status.
    """
    params: dict[str, Any] = {**key.params, "p_now": now}
    if error is not None:
        params["p_error"] = error[:2000]
    new = session.scalar(_close_statement(session, error is not None), params)
    return str(new or "")


@built_once
def _close_statement(session: DbSession, with_error: bool) -> sa.Update:
    d = DELIVERIES

    def has(status: DeliveryStatus) -> sa.Exists:
        return sa.exists().where(_rows_param(), d.c.status == status.value)

    status = sa.case(
        (has(DeliveryStatus.QUEUED), BatchStatus.QUEUED.value),
        (has(DeliveryStatus.SENT), BatchStatus.SENT.value),
        (has(DeliveryStatus.UNKNOWN), BatchStatus.UNKNOWN.value),
        (has(DeliveryStatus.FAILED), BatchStatus.FAILED.value),
        else_=BatchStatus.SKIPPED.value,
    )
    values: dict[str, Any] = {"status": status, "lease": None, "finished_at": sa.bindparam("p_now")}
    if with_error:
        values["error"] = sa.bindparam("p_error")
    return sa.update(BATCHES).where(_batch_param()).values(**values).returning(BATCHES.c.status)


def release(
    session: DbSession, key: BatchKey, ids: Collection[int], error: str, now: datetime
) -> None:
    """Nothing of these rows left (429, 5xx, an account refusal): the batch is queued again.

    The rows stay queued, except any a sweep made 'unknown' meanwhile (it saw no lease: a
    Redis restart) — they are known not to have left after all.
    """
    if ids:
        session.execute(
            sa.update(DELIVERIES)
            .where(
                one_of(session, DELIVERIES.c.id, ids),
                DELIVERIES.c.status == DeliveryStatus.UNKNOWN.value,
            )
            .values(status=DeliveryStatus.QUEUED.value, error=None, updated_at=now)
        )
    session.execute(
        sa.update(BATCHES)
        .where(_batch(key))
        .values(status=BatchStatus.QUEUED.value, lease=None, error=error[:2000])
    )


def mark_unknown(
    session: DbSession,
    key: BatchKey,
    message: str,
    now: datetime,
    *,
    claimed_at: datetime | None = None,
) -> tuple[int, int]:
    """The request may or may not have reached SendGrid: its rows and the batch are unknown.

    Only while the batch is still 'sending' (and, given `claimed_at`, still that claim: a
    sweep must not touch a later one). The batch keeps its claim time, which the settlement
    compares with the event stream. If SendGrid's events for it already arrived, it is
    settled as sent at once instead.

    Returns:
        (rows now unknown, rows now sent).
    """
    where = [_batch(key), BATCHES.c.status == BatchStatus.SENDING.value]
    if claimed_at is not None:
        where.append(BATCHES.c.claimed_at == claimed_at)
    changed = session.execute(
        sa.update(BATCHES)
        .where(*where)
        .values(status=BatchStatus.UNKNOWN.value, lease=None, error=message[:2000])
        .returning(BATCHES.c.claimed_at, BATCHES.c.confirmed_at)
    ).first()
    if changed is None:
        return 0, 0  # it ended meanwhile
    rows = session.execute(
        sa.update(DELIVERIES)
        .where(_in_request(key))
        .values(status=DeliveryStatus.UNKNOWN.value, error=message[:1000], updated_at=now)
    )
    claimed, confirmed = changed
    if confirmed is not None and claimed is not None and confirmed >= claimed:
        return 0, settle_unknown(session, key, now)
    return int(rows.rowcount or 0), 0  # type: ignore[attr-defined]


@dataclass(frozen=True)
class InFlight:
    key: BatchKey
    claimed_at: datetime
    lease: str | None


def in_flight(session: DbSession) -> list[InFlight]:
    """Every batch a worker has claimed and not ended (ix_send_batches_open: a handful)."""
    b = BATCHES
    return [
        InFlight(BatchKey(campaign_id, batch_no), claimed_at, lease)
        for campaign_id, batch_no, claimed_at, lease in session.execute(
            sa.select(b.c.campaign_id, b.c.batch_no, b.c.claimed_at, b.c.lease).where(
                b.c.status == BatchStatus.SENDING.value
            )
        )
    ]


def abandon(session: DbSession, flight: InFlight, now: datetime) -> tuple[int, int]:
    """A claimed batch whose worker died: unknown (see `mark_unknown`), if still that claim."""
    return mark_unknown(session, flight.key, STUCK, now, claimed_at=flight.claimed_at)


def watermark(session: DbSession) -> datetime | None:
    """The latest claim whose request SendGrid's events confirmed (ix_send_batches_confirmed)."""
    return cast(
        datetime | None,
        session.scalar(
            sa.select(sa.func.max(BATCHES.c.claimed_at)).where(BATCHES.c.confirmed_at.is_not(None))
        ),
    )


def judge_unknown(session: DbSession, now: datetime, settlement: Settlement) -> list[BatchKey]:
    """Send again, once, the batches in doubt that SendGrid is known never to have received.

    A batch is judged when no event for any of its rows has arrived (`confirmed_at` is
    empty), a batch claimed at least `margin` after it has been confirmed (the event stream
    moved past it), and `window` has passed since its claim. Its unknown rows go back to
    queued and the batch is queued again, with `resends` counting it, for campaigns still
    sending or paused. Returns the batches queued again (the caller enqueues them).
    """
    if not settlement.webhook:
        return []
    mark = watermark(session)
    if mark is None:
        return []
    b = BATCHES
    due = session.execute(
        sa.select(b.c.campaign_id, b.c.batch_no)
        .join(Campaign, Campaign.id == b.c.campaign_id)
        .where(
            b.c.status == BatchStatus.UNKNOWN.value,
            b.c.confirmed_at.is_(None),
            b.c.resends == 0,
            b.c.claimed_at <= now - timedelta(seconds=settlement.window),
            b.c.claimed_at < mark - timedelta(seconds=settlement.margin),
            Campaign.status.in_([CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value]),
        )
        .order_by(b.c.campaign_id, b.c.batch_no)
        .with_for_update(of=b, skip_locked=True)
    ).all()
    keys = [BatchKey(c, n) for c, n in due]
    for key in keys:
        requeue_unknown(session, key, NOT_ARRIVED, now)
        log.warning(
            "campaign %s batch %s: no SendGrid event while later batches had theirs; sent again",
            key.campaign_id,
            key.batch_no,
        )
    return keys


def requeue_unknown(session: DbSession, key: BatchKey, reason: str, now: datetime) -> int:
    """A batch in doubt's unknown rows are queued to be sent again; returns how many."""
    result = session.execute(
        sa.update(DELIVERIES)
        .where(_rows(key), DELIVERIES.c.status == DeliveryStatus.UNKNOWN.value)
        .values(status=DeliveryStatus.QUEUED.value, error=None, updated_at=now)
    )
    session.execute(
        sa.update(BATCHES)
        .where(_batch(key))
        .values(
            status=BatchStatus.QUEUED.value,
            resends=BATCHES.c.resends + 1,
            lease=None,
            finished_at=None,
            error=reason[:2000],
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def awaiting_judgement(
    campaign_id: int, now: datetime, settlement: Settlement
) -> sa.ColumnElement[bool]:
    """A batch of the campaign in doubt that SendGrid's events may still settle."""
    if not settlement.webhook:
        return sa.false()
    return awaiting_since(campaign_id, now - timedelta(seconds=settlement.give_up))


def awaiting_since(campaign_id: Any, since: Any) -> sa.ColumnElement[bool]:
    """`awaiting_judgement` with the webhook on and `since` = now - give_up (values or binds)."""
    b = BATCHES
    return sa.exists().where(
        b.c.campaign_id == campaign_id,
        b.c.status == BatchStatus.UNKNOWN.value,
        b.c.resends == 0,
        b.c.claimed_at > since,
    )


def _has_queued_row() -> sa.Exists:
    """The send_batches row in hand has a queued row: a read of its rows in
    ix_deliveries_campaign_batch (campaign, batch) that stops at the first queued one.
    OFFSET 0 keeps it a sub-plan run per batch, as the queries using it expect (they look
    at batch rows first). No index tells a queued row from a sent one (a batch's outcome is
    a heap-only update), so with none queued this reads each row of the campaign once: a
    safety net run when a campaign has no batch open, at its end."""
    d, b = DELIVERIES, BATCHES
    probe = (
        sa.select(sa.literal(1))
        .where(
            d.c.campaign_id == b.c.campaign_id,
            d.c.batch_no == b.c.batch_no,
            d.c.status == DeliveryStatus.QUEUED.value,
        )
        .offset(0)
    )
    return sa.exists(probe)


def queued_rows(campaign_id: Any) -> sa.ColumnElement[bool]:
    """A row of the campaign still queued, looked for batch by batch (`_has_queued_row`)."""
    return sa.exists().where(BATCHES.c.campaign_id == campaign_id, _has_queued_row())


def open_batches(campaign_id: Any) -> sa.ColumnElement[bool]:
    """A batch of the campaign still queued or in flight."""
    return sa.exists().where(
        BATCHES.c.campaign_id == campaign_id,
        BATCHES.c.status.in_([BatchStatus.QUEUED.value, BatchStatus.SENDING.value]),
    )


def confirm(session: DbSession, batches: Collection[BatchKey], now: datetime) -> list[BatchKey]:
    """SendGrid reported on deliveries of these batches: their requests reached it.

    Marks each batch confirmed (which moves the watermark) and returns the batches among
    them that are in doubt: SendGrid takes or refuses a request whole, so one event speaks
    for every row of it (the caller settles them with `settle_unknown`).
    """
    if not batches:
        return []
    b = BATCHES
    pairs = sorted({(key.campaign_id, key.batch_no) for key in batches})
    touched = session.execute(
        sa.update(b)
        .where(sa.tuple_(b.c.campaign_id, b.c.batch_no).in_(pairs))
        .values(confirmed_at=sa.func.coalesce(b.c.confirmed_at, now))
        .returning(b.c.campaign_id, b.c.batch_no, b.c.status)
    ).all()
    return [BatchKey(c, n) for c, n, status in touched if status == BatchStatus.UNKNOWN.value]


def settle_unknown(session: DbSession, key: BatchKey, now: datetime) -> int:
    """A batch in doubt reached SendGrid: its unknown rows are sent. Returns how many changed.

    The rows keep the claim's time as their send time (SendGrid took them then, within
    the read timeout); the batch closes (queued again if rows remain).
    """
    claimed_at = sa.select(BATCHES.c.claimed_at).where(_batch(key)).scalar_subquery()
    result = session.execute(
        sa.update(DELIVERIES)
        .where(_rows(key), DELIVERIES.c.status == DeliveryStatus.UNKNOWN.value)
        .values(
            status=DeliveryStatus.SENT.value,
            sent_at=sa.func.coalesce(DELIVERIES.c.sent_at, claimed_at),
            error=None,
            updated_at=now,
        )
    )
    close(session, key, now, error="")
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
