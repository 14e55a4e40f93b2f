"""Who receives a campaign: counted before sending, frozen into the ledger when it starts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as sa

from app import jobs
from app.infra import sql
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
from app.services.sending import ledger, peers
from app.services.sending.ledger import Settlement
from app.services.sending.rate_limit import bucket_capacity
from app.services.sending.status import finish_if_done
from app.services.stats import breakdown

log = logging.getLogger(__name__)

# Batches of one language each: batch numbers of the n-th language start at n * STRIDE, so
# every batch is one SendGrid request with one content (a million batches a language).
LANGUAGE_STRIDE = 1_000_000


class SegmentUnavailable(RuntimeError):
    """The campaign is narrowed by a segment that no longer exists."""


def list_ids(session: DbSession, campaign_id: int) -> list[int]:
    return list(
        session.scalars(
            sa.select(campaign_lists.c.list_id)
            .where(campaign_lists.c.campaign_id == campaign_id)
            .order_by(campaign_lists.c.list_id)
        )
    )


def audience_conditions(
    session: DbSession, campaign: Campaign, now: datetime, *, probe: bool = False
) -> list[sa.ColumnElement[bool]]:
    """The WHERE clause on `members` shared by the count and the freeze.

    Subscribed to any of the campaign's lists, not suppressed, CASL consent valid at `now`,
    and in the campaign's segment when it has one. EXISTS rather than a join, so a member
    on three of the lists is still one row (a semi-join, no DISTINCT needed).

    With `probe` (a step of a stepped freeze, over a range of member ids) the subscription
    check is one probe of pk_subscriptions per member, planned so whatever the statistics
    say (as the claim's: `list_id + 0` cannot use ix_subscriptions_list_status and OFFSET 0
    keeps it a per-row subplan). Right after an import, with no statistics, the planner
    otherwise drives the step from every subscriber of the list and sorts them all: 0.5 s
    at 100,000 members for a first step of 2,000.

    Raises:
        SegmentUnavailable: the campaign's segment no longer exists.
    """
    ids = list_ids(session, campaign.id)
    subscribed: sa.ColumnElement[bool]
    if probe:
        subscribed = sa.exists(
            sa.select(sa.literal(1))
            .where(
                Subscription.member_id == Member.id,
                (Subscription.list_id + 0).in_(ids) if ids else sa.false(),
                Subscription.status == SubscriptionStatus.SUBSCRIBED.value,
            )
            .offset(0)
        )
    else:
        # Planned as a hash semi-join fed by ix_subscriptions_list_status (list_id, status).
        subscribed = sa.exists().where(
            Subscription.member_id == Member.id,
            Subscription.list_id.in_(ids) if ids else sa.false(),
            Subscription.status == SubscriptionStatus.SUBSCRIBED.value,
        )
    conditions: list[sa.ColumnElement[bool]] = [
        subscribed,
        # A hash anti-join against suppressions (unique index on email).
        ~sa.exists().where(Suppression.email == Member.email),
        peers.consent_valid_clause(now),
    ]
    if campaign.segment_id is not None:
        clause = peers.segment_clause(session, campaign.segment_id)
        if clause is None:
            raise SegmentUnavailable("The campaign's segment no longer exists.")
        conditions.append(clause)
    return conditions


def audience_count(session: DbSession, campaign: Campaign, now: datetime | None = None) -> int:
    """How many members would receive the campaign if it were sent at `now`.

    The same conditions as `freeze_audience`, as a COUNT. Before dispatch this is what the
    send panel shows; afterwards the ledger is the answer.
    """
    conditions = audience_conditions(session, campaign, now or utcnow())
    return int(
        session.scalar(sa.select(sa.func.count()).select_from(Member).where(*conditions)) or 0
    )


def has_audience(session: DbSession, campaign: Campaign, now: datetime | None = None) -> bool:
    """Whether anyone would receive the campaign if it were sent at `now`.

    An EXISTS over the same conditions as `audience_count`: it stops at the first member
    found, where the count reads the whole audience (0.3-0.5 s at 100,000 members on a busy
    host, spent between "send now" and the first email).
    """
    conditions = audience_conditions(session, campaign, now or utcnow())
    return bool(session.scalar(sa.select(sa.exists().where(*conditions))))


@dataclass(frozen=True)
class FreezeResult:
    inserted: int
    batches: list[int]
    finished: bool = False
    complete: bool = True  # the whole audience is frozen (frozen_at is set)
    sending: bool = True  # False: the campaign was not sending, nothing was done
    upto: int = 0  # a step: the highest member id it looked at (the next step starts after)


# A stepped freeze (freeze_in_steps): the first step looks at this many members (a fifth of
# a batch: its first requests are small, so the first email leaves sooner: fewer rows to
# claim, render and encode in a worker process that has not rendered this campaign yet),
# each later step STEP_GROWTH times more, so the first batch leaves well within a second of
# "send now" while the rest of the audience is frozen beside it (100k members: 4 steps).
FIRST_STEP_SHARE = 5
STEP_GROWTH = 8


def freeze_audience(
    session: DbSession,
    campaign_id: int,
    *,
    now: datetime | None = None,
    batch_size: int = 1000,
    settlement: Settlement | None = None,
    limit: int | None = None,
    after_member: int | None = None,
    enqueue_all: bool = True,
) -> FreezeResult:
    """Freeze a sending campaign's audience into the ledger and queue its batches.

    One `INSERT … SELECT` writes a queued delivery per eligible member after the highest
    member id already in the ledger, with the member's language mapped to an existing
    variant (else the campaign's default language) and a batch number; one more writes a
    queued `send_batches` row per batch number; `frozen_at` is set in the same transaction,
    so nothing can finish the campaign before the freeze has committed. The campaign row is
    locked first, so a second dispatch (a redelivered task, a resume) waits, finds the
    audience frozen, inserts nothing and only queues the batches still queued. Flushes, does
    not commit; enqueues one SEND_BATCH per batch (ids only) to leave after the commit.

    With `limit`, this is one step of a stepped freeze (`freeze_in_steps`): it looks at the
    next `limit` members in id order after `after_member` (by default the highest member id
    already in the ledger), freezes the eligible ones into new batch numbers after the
    campaign's existing ones, and sets `frozen_at` only when fewer than `limit` were left
    (`complete`). Until then `finish_if_done` never finishes the campaign, whatever its
    batches say. With `enqueue_all` false only the batches this call created are queued (the
    others already were, by the previous step).

    With a send-rate limit, a batch is no bigger than the limit's burst, so each batch
    still leaves as one request. A campaign that is not sending (paused or cancelled
    before dispatch ran) is left alone; one with nobody to send to is finished at once.
    """
    now = now or utcnow()
    # FOR NO KEY UPDATE: serialises freezes and finish_if_done, while inserts that merely
    # reference the campaign (tracking events, webhook events: FOR KEY SHARE) go on.
    campaign = session.scalar(
        sa.select(Campaign).where(Campaign.id == campaign_id).with_for_update(key_share=True)
    )
    if campaign is None or campaign.status != CampaignStatus.SENDING.value:
        return FreezeResult(0, [], complete=False, sending=False)

    inserted = 0
    created: list[int] = []
    upto = 0
    complete = campaign.frozen_at is not None
    if not complete:
        settings = session.get(OrgSettings, 1)
        rate = settings.send_rate_per_minute if settings else 0
        if rate:
            batch_size = min(batch_size, bucket_capacity(rate))
        start = 0
        if limit is None:
            inserted = _insert_audience(session, campaign, now, batch_size)
            complete = True
        else:
            start = _frozen_upto(session, campaign_id) if after_member is None else after_member
            scanned, upto = _member_window(session, start, limit)
            if scanned:
                inserted = _insert_audience(
                    session, campaign, now, batch_size, window=(start, upto)
                )
            # Fewer members than asked for exist after `start`: every one has been looked at.
            complete = scanned < limit
        # The first batches are planned on these: without them the claim may scan every
        # queued row of the campaign per batch (sql.refresh_statistics).
        sql.refresh_statistics(
            session, "deliveries", inserted, ("campaign_id", "batch_no", "status", "member_id")
        )
        created = ledger.create_batches(session, campaign_id, after_member=start)
        if complete:
            campaign.frozen_at = now
            # Targeted per local and language for the report: once per campaign, same
            # transaction as frozen_at.
            breakdown.record_audience_frozen(session, campaign_id)
        # Last before the commit: batches that record their outcome meanwhile bump the same
        # counters row, and wait for this transaction only from here on.
        peers.bump_campaign_stats(session, campaign_id, targeted=inserted)
        log.info(
            "campaign %s: froze %s deliveries%s",
            campaign_id,
            inserted,
            "" if complete else f" (members up to id {upto}; more to follow)",
        )

    batches = ledger.batch_numbers(session, campaign_id) if enqueue_all else sorted(created)
    for batch_no in batches:
        jobs.enqueue(session, jobs.SEND_BATCH, campaign_id, batch_no)
    finished = False
    if complete and not batches:
        session.flush()
        finished = finish_if_done(session, campaign_id, now=now, settlement=settlement)
    session.flush()
    return FreezeResult(inserted, batches, finished, complete, upto=upto)


def freeze_in_steps(
    session: DbSession,
    campaign_id: int,
    *,
    batch_size: int = 1000,
    settlement: Settlement | None = None,
    first: int | None = None,
    growth: int = STEP_GROWTH,
    after_step: Callable[[FreezeResult], None] | None = None,
) -> FreezeResult:
    """Freeze the audience in growing steps, committing each, so sending starts at once.

    The first step looks at `first` members (a fifth of a batch by default) and commits,
    which sends its batches on their way; each later step looks at `growth` times more,
    until the audience is complete and `frozen_at` is set (in the last step's transaction).
    Each step holds the campaign's row lock until its commit, starts where the previous one
    stopped (the first where the ledger's highest member id says), and stops when the
    campaign is no longer sending: a crash, a redelivered task or a sweep's re-dispatch
    continues where the ledger says.
    Unlike other services this one commits (after each step); `after_step` runs after each
    commit (the task's heartbeat). After the last step, `finish_if_done` runs on committed
    data, for the batches that all ended before the audience was complete.

    Returns:
        Totals: members frozen, batches queued, whether it finished or completed.
    """
    limit = first or max(1, batch_size // FIRST_STEP_SHARE)
    inserted = 0
    batches: list[int] = []
    step = upto = 0
    while True:
        result = freeze_audience(
            session,
            campaign_id,
            batch_size=batch_size,
            settlement=settlement,
            limit=limit,
            after_member=None if step == 0 else upto,
            enqueue_all=step == 0,
        )
        session.commit()
        inserted += result.inserted
        batches += result.batches
        upto = result.upto
        step += 1
        if after_step is not None:
            after_step(result)
        if result.complete or not result.sending:
            break  # done, or not sending any more (paused, cancelled): a resume continues
        limit *= growth
    finished = result.finished
    if result.complete and not finished:
        finished = finish_if_done(session, campaign_id, settlement=settlement)
        session.commit()
    return FreezeResult(inserted, batches, finished, result.complete)


def _next_batch_numbers(session: DbSession, campaign_id: int) -> dict[int, int]:
    """Per language index, the first batch number (within its stride) no batch has yet."""
    b = ledger.BATCHES
    index = b.c.batch_no // LANGUAGE_STRIDE
    return {
        int(i): int(top) - int(i) * LANGUAGE_STRIDE + 1
        for i, top in session.execute(
            sa.select(index, sa.func.max(b.c.batch_no))
            .where(b.c.campaign_id == campaign_id)
            .group_by(index)
        )
    }


def _frozen_upto(session: DbSession, campaign_id: int) -> int:
    """The highest member id already in the campaign's ledger (the unique index's last entry)."""
    return int(
        session.scalar(
            sa.select(sa.func.max(Delivery.member_id)).where(Delivery.campaign_id == campaign_id)
        )
        or 0
    )


def _member_window(session: DbSession, after: int, limit: int) -> tuple[int, int]:
    """How many members have an id above `after`, up to `limit`, and the highest of those ids.

    One read of pk_members' next `limit` entries (an index-only scan in id order).
    """
    window = (
        sa.select(Member.id).where(Member.id > after).order_by(Member.id).limit(limit)
    ).subquery("window")
    count, top = session.execute(sa.select(sa.func.count(), sa.func.max(window.c.id))).one()
    return int(count or 0), int(top or after)


def _insert_audience(
    session: DbSession,
    campaign: Campaign,
    now: datetime,
    batch_size: int,
    *,
    window: tuple[int, int] | None = None,
) -> int:
    languages = sorted(v.language for v in campaign.variants) or [campaign.default_language]
    default = campaign.default_language if campaign.default_language in languages else languages[0]
    language = sa.case((Member.language.in_(languages), Member.language), else_=sa.literal(default))
    eligible_rows = sa.select(
        Member.id.label("member_id"),
        Member.email.label("email"),
        language.label("language"),
        Member.local.label("local"),
    ).where(*audience_conditions(session, campaign, now, probe=window is not None))
    offsets: dict[int, int] = {}
    if window is not None:
        # One step of a stepped freeze: the members of an id range (pk_members), numbered
        # after the batches the earlier steps created (per language).
        eligible_rows = eligible_rows.where(Member.id > window[0], Member.id <= window[1])
        offsets = _next_batch_numbers(session, campaign.id)
    # The ledger grows in member id order (each step of a stepped freeze takes the members
    # after the previous one), so a freeze continues after the highest member id already in
    # it: one probe of the unique (campaign_id, member_id) index, evaluated once. A second
    # dispatch racing the first (a redelivered task) waits for the campaign's row lock, then
    # sees what the first committed and freezes only what comes after. Not ON CONFLICT DO
    # NOTHING (speculative insertion costs ~7 µs a row more), and not NOT EXISTS per member:
    # on stale statistics the planner turned that into a nested loop over the campaign's
    # rows, 62 s for a step that takes 1. The unique constraint remains the backstop.
    frozen_upto = (
        sa.select(sa.func.coalesce(sa.func.max(Delivery.member_id), 0))
        .where(Delivery.campaign_id == campaign.id)
        .scalar_subquery()
    )
    eligible_rows = eligible_rows.where(Member.id > frozen_upto)
    eligible = eligible_rows.subquery("eligible")
    # Batch numbers in the same statement: per language, members in id order, `batch_size`
    # to a batch; languages LANGUAGE_STRIDE apart. One window function over the eligible
    # set (one sort by language, id), so nothing but the INSERT touches the rows.
    in_language = sa.func.row_number(type_=sa.Integer).over(
        partition_by=eligible.c.language, order_by=eligible.c.member_id
    )
    language_index = sa.case(
        *((eligible.c.language == lang, index) for index, lang in enumerate(languages)),
        else_=len(languages),
    )
    number = language_index * LANGUAGE_STRIDE + (in_language - 1) // batch_size
    if offsets:
        number = number + sa.case(
            *(
                (eligible.c.language == lang, offsets.get(index, 0))
                for index, lang in enumerate(languages)
            ),
            else_=offsets.get(len(languages), 0),
        )
    batch_no = sa.cast(number, sa.Integer)
    rows = sa.select(
        sa.literal(campaign.id),
        eligible.c.member_id,
        eligible.c.email,
        eligible.c.language,
        eligible.c.local,
        batch_no,
        sa.literal(DeliveryStatus.QUEUED.value),
        sa.literal(0),
        sa.literal(now, type_=Delivery.__table__.c.queued_at.type),
        sa.literal(now, type_=Delivery.__table__.c.updated_at.type),
    )
    insert = sql.insert(session, cast(sa.Table, Delivery.__table__)).from_select(
        [
            "campaign_id",
            "member_id",
            "email",
            "language",
            "local",
            "batch_no",
            "status",
            "attempts",
            "queued_at",
            "updated_at",
        ],
        rows,
    )
    skip_fk_checks = False
    if sql.is_postgresql(session):
        # The window's sort of the whole audience fits in memory at 1M members (~60 MB);
        # the default 4 MB spills it to disk. The statement's estimated cost (a sub-plan per
        # member) is past jit_above_cost, and LLVM spent 0.2-0.3 s compiling each step.
        session.execute(
            sa.text("SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true)")
        )
        skip_fk_checks = sql.may_skip_fk_checks(session)
    # The rows' two references are valid by construction, so their foreign-key checks (an
    # SPI query and a row lock each, ~14 µs a row together: a third of the freeze) may be
    # skipped: the campaign row is locked FOR NO KEY UPDATE by this transaction (a DELETE
    # would wait), and the members were read by this very statement; Rallypoint never
    # deletes a member (unsubscribing keeps the row), and a claim treats a delivery whose
    # member has gone as not eligible.
    with sql.fk_checks_skipped(session, skip_fk_checks):
        result = session.execute(insert, execution_options={"preserve_rowcount": True})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
