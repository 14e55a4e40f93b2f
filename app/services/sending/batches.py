"""Send one batch: claim its queued rows, render, hand them to the transport, record it.

The ledger makes this safe to run any number of times for the same batch, concurrently
too: rows are claimed (queued → sending) in their own committed transaction before the
transport is called, so a second run finds nothing to claim, and a crash after the claim
leaves the rows 'sending' — never silently sent again. The sweep later declares such rows
'unknown' (DESIGN.md: prefer not sending twice), and SendGrid's `processed` webhook
events settle them.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import redis
import sqlalchemy as sa
from flask import current_app

from app.infra import redis_client
from app.infra.sql import is_postgresql, one_of
from app.infra.tokens import TokenSigner, signer_from_config
from app.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Member,
    OrgSettings,
    Subscription,
    SubscriptionStatus,
    Suppression,
    campaign_lists,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.sending import coordination, peers, rendering
from app.services.sending.rate_limit import TokenBucket
from app.services.sending.rendering import BatchBuilder, ClaimedRow
from app.services.sending.status import finish_if_done, pause_itself
from app.services.transports import Transport, TransportError, get_transport

log = logging.getLogger(__name__)

DELIVERIES = cast(sa.Table, Delivery.__table__)
MEMBERS = cast(sa.Table, Member.__table__)
# What a claimed row brings for rendering, in ClaimedRow's field order (both claim paths).
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


def _claimed_row(values: Sequence[Any]) -> ClaimedRow:
    delivery_id, email, language, first, last, local, member_language, postal, attrs = values
    return ClaimedRow(
        delivery_id, email, language, first, last, local, member_language, postal, attrs or {}
    )


MAX_ATTEMPTS = 8  # transport calls of one batch before it counts as a failed batch
BACKOFF_BASE = 0.5  # seconds; doubled each attempt, with jitter
MAX_COUNTDOWN = 10.0  # no retry waits longer than this in the broker (no long ETAs)
MAX_PROVIDER_BLOCK = 60.0  # a 429's reset honoured up to this; longer waits re-queue again
SLEEP_IN_PLACE = 1.0  # a token shortage shorter than this is waited out in the worker
MAX_SLEEP = 3.0  # ...but never more than this in total for one run

SKIPPED_AT_CLAIM = "Unsubscribed or suppressed before it was sent."
UNCERTAIN = "It is unknown whether this message left: {error}"
UNEXPECTED = "Sending stopped unexpectedly ({error}); it is unknown whether this message left."


@dataclass(frozen=True)
class SendContext:
    """What a batch needs from the application, gathered once per run."""

    transport: Transport
    redis: redis.Redis
    signer: TokenSigner
    base_url: str
    batch_size: int = 1000
    stall_seconds: float = 60.0
    max_failed_batches: int = 3

    @classmethod
    def from_app(cls) -> SendContext:
        config = current_app.config
        return cls(
            transport=get_transport(config),
            redis=redis_client.get_redis(),
            signer=signer_from_config(current_app.config["SETTINGS"]),
            base_url=str(config["PUBLIC_BASE_URL"]),
            batch_size=int(config.get("SEND_BATCH_SIZE", 1000)),
            stall_seconds=float(config.get("SEND_STALL_SECONDS", 60.0)),
            max_failed_batches=int(config.get("SEND_MAX_FAILED_BATCHES", 3)),
        )


@dataclass
class BatchOutcome:
    """What one run of a batch did; `requeue_in` asks the task to run the batch again."""

    campaign_id: int
    batch_no: int
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    released: int = 0
    requeue_in: float | None = None
    next_attempt: int = 0
    finished: bool = False
    paused: bool = False
    notes: list[str] = field(default_factory=list)
    # Milliseconds spent claiming, rendering, in the transport and recording the outcome.
    timings: dict[str, float] = field(default_factory=dict)

    def time(self, step: str, started: float) -> None:
        self.timings[step] = self.timings.get(step, 0.0) + (time.perf_counter() - started) * 1000


def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: exponential with jitter, at least `retry_after`, capped."""
    delay = min(MAX_COUNTDOWN, BACKOFF_BASE * 2**attempt)
    delay = random.uniform(delay / 2, delay)
    if retry_after is not None:
        delay = max(delay, retry_after + random.uniform(0, 0.5))
    return min(delay, MAX_COUNTDOWN)


def _set_status(
    session: DbSession,
    ids: Collection[int],
    status: DeliveryStatus,
    *,
    now: datetime,
    from_statuses: Iterable[DeliveryStatus] = (DeliveryStatus.SENDING,),
    **values: Any,
) -> int:
    """One UPDATE for a group of rows (by primary key), only from the expected statuses."""
    if not ids:
        return 0
    table = DELIVERIES
    result = session.execute(
        sa.update(table)
        .where(
            one_of(session, table.c.id, ids),
            table.c.status.in_([s.value for s in from_statuses]),
        )
        .values(status=status.value, updated_at=now, **values)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def count_queued(session: DbSession, campaign_id: int, batch_no: int) -> int:
    table = DELIVERIES
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(table)
            .where(
                table.c.campaign_id == campaign_id,
                table.c.batch_no == batch_no,
                table.c.status == DeliveryStatus.QUEUED.value,
            )
        )
        or 0
    )


def claim(
    session: DbSession, campaign_id: int, batch_no: int, limit: int, now: datetime
) -> tuple[list[ClaimedRow], int]:
    """Claim up to `limit` queued rows of a batch in one statement; returns (rows, skipped).

    On PostgreSQL this is::

        WITH picked AS (
          SELECT d.id, (NOT EXISTS (SELECT 1 FROM suppressions WHERE email = d.email)
                        AND EXISTS (SELECT 1 FROM subscriptions s
                                     WHERE s.member_id = d.member_id
                                       AND s.list_id = ANY(:list_ids)
                                       AND s.status = 'subscribed')) AS ok
            FROM deliveries d
           WHERE d.campaign_id = :c AND d.batch_no = :b AND d.status = 'queued'
             AND EXISTS (SELECT 1 FROM campaigns WHERE id = :c AND status = 'sending')
           ORDER BY d.id LIMIT :n
             FOR UPDATE OF d SKIP LOCKED)
        UPDATE deliveries d
           SET status = CASE WHEN ok THEN 'sending' ELSE 'skipped' END,
               attempts = attempts + CASE WHEN ok THEN 1 ELSE 0 END, ...
          FROM picked, members m
         WHERE d.id = picked.id AND m.id = d.member_id
        RETURNING d.id, picked.ok, d.email, d.language, m.first_name, ...

    Every step is an index probe, 1,000 of each (~50 ms on the benchmark machine):
    `picked` reads ix_deliveries_campaign_batch (campaign_id, batch_no, status); the checks
    probe the unique index on suppressions.email and the subscriptions primary key
    (member_id, list_id); the UPDATE joins by pk_deliveries and pk_members. SKIP LOCKED lets
    a concurrent run of the same batch (a redelivered task) pass by instead of waiting.
    The unsubscribe/suppression and campaign-status checks happen here, at claim time, so
    one that arrived after the audience was frozen — or a pause — still stops these rows.
    The caller commits at once: the claim must be durable before the transport is called.
    """
    d = DELIVERIES
    m = MEMBERS
    postgresql = is_postgresql(session)
    if postgresql:
        # The rows of a running campaign and these indexes are hot in memory; at the default
        # random_page_cost (4, for spinning disks) the planner prices 1,000 index probes
        # above a scan of every delivery and subscription, and hashes them all, per batch.
        session.execute(sa.text("SET LOCAL random_page_cost = 1.1"))
    list_ids = list(
        session.scalars(
            sa.select(campaign_lists.c.list_id).where(campaign_lists.c.campaign_id == campaign_id)
        )
    )
    ok = sa.and_(
        ~sa.exists().where(Suppression.email == d.c.email),
        sa.exists().where(
            Subscription.member_id == d.c.member_id,
            one_of(session, Subscription.list_id, list_ids, name="list_ids", type_=sa.Integer),
            Subscription.status == SubscriptionStatus.SUBSCRIBED.value,
        ),
    )
    still_sending = sa.exists().where(
        Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING.value
    )
    picked = (
        sa.select(d.c.id, ok.label("ok"))
        .where(
            d.c.campaign_id == campaign_id,
            d.c.batch_no == batch_no,
            d.c.status == DeliveryStatus.QUEUED.value,
            still_sending,
        )
        .order_by(d.c.id)
        .limit(limit)
        .with_for_update(of=d, skip_locked=True)
        .cte("picked")
    )
    if not postgresql:
        return _claim_in_steps(session, picked, now)
    statement = (
        sa.update(d)
        .where(d.c.id == picked.c.id, m.c.id == d.c.member_id)
        .values(
            status=sa.case(
                (picked.c.ok, DeliveryStatus.SENDING.value), else_=DeliveryStatus.SKIPPED.value
            ),
            attempts=d.c.attempts + sa.case((picked.c.ok, 1), else_=0),
            error=sa.case((picked.c.ok, sa.null()), else_=SKIPPED_AT_CLAIM),
            updated_at=now,
        )
        .returning(picked.c.ok, *_CLAIMED_COLUMNS)
    )
    rows: list[ClaimedRow] = []
    skipped = 0
    for is_ok, *values in session.execute(statement).all():  # one fetch, not fetchone()s
        if is_ok:
            rows.append(_claimed_row(values))
        else:
            skipped += 1
    return rows, skipped


def _claim_in_steps(
    session: DbSession, picked: sa.CTE, now: datetime
) -> tuple[list[ClaimedRow], int]:
    """The claim for SQLite (`make run`), whose RETURNING cannot name joined tables.

    Several statements in one transaction; SQLite lets one writer at a time, and every
    UPDATE repeats `status = 'queued'`, so two workers still cannot claim one row.
    """
    d, m = DELIVERIES, MEMBERS
    choices = session.execute(sa.select(picked.c.id, picked.c.ok)).all()
    good = [delivery_id for delivery_id, ok in choices if ok]
    bad = [delivery_id for delivery_id, ok in choices if not ok]
    skipped = 0
    if bad:
        skipped = _set_status(
            session,
            bad,
            DeliveryStatus.SKIPPED,
            now=now,
            from_statuses=(DeliveryStatus.QUEUED,),
            error=SKIPPED_AT_CLAIM,
        )
    if not good:
        return [], skipped
    claimed = session.execute(
        sa.update(d)
        .where(d.c.id.in_(good), d.c.status == DeliveryStatus.QUEUED.value)
        .values(status=DeliveryStatus.SENDING.value, attempts=d.c.attempts + 1, updated_at=now)
        .returning(d.c.id)
    ).scalars()
    ids = list(claimed)
    rows = session.execute(
        sa.select(*_CLAIMED_COLUMNS)
        .join(m, m.c.id == d.c.member_id)
        .where(d.c.id.in_(ids))
        .order_by(d.c.id)
    ).all()
    return [_claimed_row(values) for values in rows], skipped


def send_batch(
    session: DbSession,
    campaign_id: int,
    batch_no: int,
    *,
    attempt: int = 0,
    context: SendContext | None = None,
    now: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchOutcome:
    """Send what is still queued in one batch of a campaign.

    Unlike other services this one commits, more than once, because the order of durable
    writes is the exactly-once guarantee: the claim commits before the transport is called,
    the outcome commits right after it answers, and the finish check runs after that
    commit (so the last two batches finishing together cannot both miss it).

    Steps: return at once unless the campaign is sending; wait out SendGrid's rate limit
    and the organization's send rate (re-queue when the wait is long); claim; render each
    language's rows from the cached skeleton; call the transport; record sent / failed /
    unknown rows, bump the counters; finish the campaign when nothing is left.

    Errors: 429 and 5xx put the rows back to queued and ask for a retry after a bounded,
    jittered backoff (a 429 also holds every worker until SendGrid's reset); rows whose fate
    is uncertain (no answer) become 'unknown'; a permanent refusal marks the rows failed
    with SendGrid's message, except 401/403 (the account, not the rows) which pause the
    campaign with the rows still queued. `max_failed_batches` failed batches in a row
    pause the campaign with the reason.

    Returns:
        What happened; `requeue_in` (seconds) asks the caller to run it again with
        `next_attempt`.
    """
    ctx = context or SendContext.from_app()
    outcome = BatchOutcome(campaign_id, batch_no)
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != CampaignStatus.SENDING.value:
        outcome.notes.append(f"campaign is {campaign.status if campaign else 'gone'}")
        session.rollback()
        return outcome

    blocked = coordination.provider_blocked_for(ctx.redis)
    if blocked > 0:
        # SendGrid said 429 to someone: nobody asks again before its reset.
        session.rollback()
        return _requeue(ctx, outcome, min(blocked, MAX_COUNTDOWN), attempt, "SendGrid rate limit")

    limit = ctx.batch_size
    settings = session.get(OrgSettings, 1)
    bucket = TokenBucket(ctx.redis, settings.send_rate_per_minute if settings else 0)
    if not bucket.unlimited:
        pending = count_queued(session, campaign_id, batch_no)
        if pending == 0:
            return _finish(session, outcome, now())
        waited = 0.0
        while True:
            grant = bucket.take(min(pending, limit))
            if grant.granted:
                limit = grant.granted
                break
            if grant.wait > SLEEP_IN_PLACE or waited + grant.wait > MAX_SLEEP:
                session.rollback()
                wait = min(grant.wait, MAX_COUNTDOWN)
                return _requeue(ctx, outcome, wait, attempt, "send rate limit")
            sleep(grant.wait)
            waited += grant.wait

    claimed_at = now()
    started = time.perf_counter()
    rows, skipped = claim(session, campaign_id, batch_no, limit, claimed_at)
    session.commit()
    outcome.time("claim", started)
    outcome.claimed = len(rows)
    outcome.skipped = skipped
    bucket.refund(limit - len(rows))
    if not rows:
        return _finish(session, outcome, now())
    # When the rate limit granted fewer tokens than the batch has rows, the rest follows.
    more_to_come = not bucket.unlimited and len(rows) + skipped == limit

    by_language: dict[str, list[ClaimedRow]] = defaultdict(list)
    for row in rows:
        by_language[row.language].append(row)
    builder = BatchBuilder(campaign, signer=ctx.signer, base_url=ctx.base_url)
    failed_batch_error: str | None = None
    for language, group in by_language.items():
        error = _send_group(session, ctx, campaign, builder, language, group, outcome, attempt, now)
        failed_batch_error = failed_batch_error or error
        started = time.perf_counter()
        session.commit()
        outcome.time("record", started)
        if outcome.paused:
            break

    if failed_batch_error is not None and not outcome.paused:
        streak = coordination.count_failed_batch(ctx.redis, campaign_id)
        if streak >= ctx.max_failed_batches:
            reason = (
                f"Paused automatically: {streak} batches in a row could not be sent. "
                f"Last error: {failed_batch_error}"
            )
            outcome.paused = pause_itself(session, campaign_id, reason, now=now())
            session.commit()
    elif outcome.sent:
        coordination.reset_failures(ctx.redis, campaign_id)
    coordination.touch(ctx.redis, campaign_id, ctx.stall_seconds)

    if outcome.requeue_in is None and more_to_come and not outcome.paused:
        outcome.requeue_in = 0.0
        outcome.next_attempt = attempt
    log.info(
        "campaign %s batch %s: %s sent, %s failed, %s unknown, %s skipped (ms: %s)",
        campaign_id,
        batch_no,
        outcome.sent,
        outcome.failed,
        outcome.unknown,
        outcome.skipped,
        ", ".join(f"{step} {ms:.0f}" for step, ms in outcome.timings.items()),
    )
    return _finish(session, outcome, now())


def _send_group(
    session: DbSession,
    ctx: SendContext,
    campaign: Campaign,
    builder: BatchBuilder,
    language: str,
    group: list[ClaimedRow],
    outcome: BatchOutcome,
    attempt: int,
    now: Callable[[], datetime],
) -> str | None:
    """Send one language's rows and record the result; returns an error for a failed batch."""
    ids = [row.delivery_id for row in group]
    started = time.perf_counter()
    try:
        skeleton = rendering.skeleton(session, campaign, language)
        batch = builder.batch(skeleton, group)
    except Exception as exc:  # content that does not render now will not render on retry
        log.exception("campaign %s batch %s: could not render", campaign.id, outcome.batch_no)
        message = f"The email could not be rendered: {exc}"
        outcome.failed += _set_status(session, ids, DeliveryStatus.FAILED, now=now(), error=message)
        peers.bump_campaign_stats(session, campaign.id, failed=len(ids))
        return message

    outcome.time("render", started)
    started = time.perf_counter()
    try:
        result = ctx.transport.send_batch(batch)
    except TransportError as exc:
        _outcome_transaction(session)
        return _record_error(session, ctx, campaign, group, exc, outcome, attempt, now())
    except Exception as exc:
        # A bug or an unexpected failure while the request may have been under way.
        log.exception("campaign %s batch %s: transport failed", campaign.id, outcome.batch_no)
        message = UNEXPECTED.format(error=f"{type(exc).__name__}: {exc}")[:1000]
        outcome.unknown += _set_status(
            session, ids, DeliveryStatus.UNKNOWN, now=now(), error=message
        )
        return message

    outcome.time("transport", started)
    started = time.perf_counter()
    _outcome_transaction(session)
    finished_at = now()
    refused = {
        row.delivery_id: result.refused[row.email] for row in group if row.email in result.refused
    }
    sent_ids = [i for i in ids if i not in refused] if refused else ids
    # The hot path's second statement: every accepted row of the batch in one UPDATE.
    sent = _set_status(
        session,
        sent_ids,
        DeliveryStatus.SENT,
        now=finished_at,
        from_statuses=(DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN),
        provider_message_id=result.provider_message_id,
        sent_at=finished_at,
        error=None,
    )
    failed = 0
    for delivery_id, message in refused.items():
        failed += _set_status(
            session, [delivery_id], DeliveryStatus.FAILED, now=finished_at, error=message
        )
    outcome.sent += sent
    outcome.failed += failed
    peers.bump_campaign_stats(session, campaign.id, sent=sent, failed=failed)
    outcome.time("record", started)
    return None


def _outcome_transaction(session: DbSession) -> None:
    """Let the outcome's commit return before its WAL reaches the disk.

    Only the claim has to be durable before the transport call (a lost claim could send a
    batch twice). If PostgreSQL itself crashed and lost this outcome (at most the last
    ~0.6 s of them), its rows would be back to 'sending', which the sweep turns into
    'unknown': never a second copy. Saves one disk flush per batch.
    """
    if is_postgresql(session):
        session.execute(sa.text("SET LOCAL synchronous_commit = off"))


def _record_error(
    session: DbSession,
    ctx: SendContext,
    campaign: Campaign,
    group: list[ClaimedRow],
    exc: TransportError,
    outcome: BatchOutcome,
    attempt: int,
    now: datetime,
) -> str | None:
    message = str(exc)[:1000]
    by_email = {row.email: row.delivery_id for row in group}
    accepted = [by_email[e] for e in exc.accepted if e in by_email]
    uncertain = [by_email[e] for e in exc.uncertain if e in by_email and e not in exc.accepted]
    done = set(accepted) | set(uncertain)
    rest = [row.delivery_id for row in group if row.delivery_id not in done]

    sent = _set_status(
        session,
        accepted,
        DeliveryStatus.SENT,
        now=now,
        from_statuses=(DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN),
        sent_at=now,
        error=None,
    )
    outcome.sent += sent
    outcome.unknown += _set_status(
        session, uncertain, DeliveryStatus.UNKNOWN, now=now, error=UNCERTAIN.format(error=message)
    )
    peers.bump_campaign_stats(session, campaign.id, sent=sent)
    log.warning(
        "campaign %s batch %s attempt %s: %s", campaign.id, outcome.batch_no, attempt, message
    )

    if exc.retryable:
        # Nothing of `rest` left: back to queued (also from 'unknown', should the sweep
        # have judged a slow batch stuck), for this batch's next run.
        outcome.released += _set_status(
            session,
            rest,
            DeliveryStatus.QUEUED,
            now=now,
            from_statuses=(DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN),
            error=message,
        )
        if exc.status == 429:
            wait = exc.retry_after if exc.retry_after is not None else 1.0
            coordination.block_provider(ctx.redis, min(max(wait, 0.5), MAX_PROVIDER_BLOCK))
        if attempt + 1 < MAX_ATTEMPTS:
            if outcome.requeue_in is None:
                outcome.requeue_in = backoff(attempt, exc.retry_after)
                outcome.next_attempt = attempt + 1
            return message if uncertain else None
        outcome.notes.append(f"gave up after {MAX_ATTEMPTS} attempts; the sweep retries later")
        return message

    if exc.status in (401, 403):
        # The account is refused, not these members: keep them queued for a resume.
        outcome.released += _set_status(
            session,
            rest,
            DeliveryStatus.QUEUED,
            now=now,
            from_statuses=(DeliveryStatus.SENDING, DeliveryStatus.UNKNOWN),
            error=message,
        )
        reason = f"Paused automatically: {message}. Fix the sending account, then resume."
        outcome.paused = pause_itself(session, campaign.id, reason, now=now) or outcome.paused
        return message

    failed = _set_status(session, rest, DeliveryStatus.FAILED, now=now, error=message)
    outcome.failed += failed
    peers.bump_campaign_stats(session, campaign.id, failed=failed)
    return message


def _requeue(
    ctx: SendContext, outcome: BatchOutcome, wait: float, attempt: int, why: str
) -> BatchOutcome:
    coordination.touch(ctx.redis, outcome.campaign_id, ctx.stall_seconds)
    outcome.requeue_in = max(wait, 0.0) + random.uniform(0, 0.25)
    outcome.next_attempt = attempt  # waiting is not a failed attempt
    outcome.notes.append(f"waiting for the {why}")
    return outcome


def _finish(session: DbSession, outcome: BatchOutcome, now: datetime) -> BatchOutcome:
    if outcome.requeue_in is None:
        outcome.finished = finish_if_done(session, outcome.campaign_id, now=now)
        session.commit()
    return outcome
