"""Send one batch: claim it, render, hand it to the transport, record the outcome.

The ledger (`ledger.py`) makes this safe to run any number of times for the same batch,
concurrently too: the batch is claimed (queued -> sending) in its own committed
transaction before the transport is called, so a second run finds nothing to claim, and a
crash after the claim leaves the batch 'sending' with a lapsed lease — never silently sent
again. The sweep then declares it 'unknown' (docs/architecture.md: prefer not sending
twice), and SendGrid's Event Webhook settles it: sent if SendGrid reported on any of its
rows, sent again once if the event stream moved past it without a word.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import redis
import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import selectinload

from app.infra import redis_client
from app.infra.sql import commit_keeping_loaded, is_postgresql
from app.infra.tokens import TokenSigner, signer_from_config
from app.models import Campaign, CampaignStatus, OrgSettings
from app.models.base import utcnow
from app.services import DbSession
from app.services.sending import coordination, ledger, peers, rendering
from app.services.sending.ledger import BatchKey, Claim, Settlement
from app.services.sending.rate_limit import TokenBucket
from app.services.sending.rendering import BatchBuilder
from app.services.sending.status import finish_if_done, pause_itself
from app.services.transports import Transport, TransportError, get_transport

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8  # transport calls of one batch before it counts as a failed batch
BACKOFF_BASE = 0.5  # seconds; doubled each attempt, with jitter
MAX_COUNTDOWN = 10.0  # no retry waits longer than this in the broker (no long ETAs)
MAX_PROVIDER_BLOCK = 60.0  # a 429's reset honoured up to this; longer waits re-queue again
SLEEP_IN_PLACE = 1.0  # a token shortage shorter than this is waited out in the worker
MAX_SLEEP = 3.0  # ...but never more than this in total for one run

UNCERTAIN = "It is unknown whether this message left: {error}"
UNEXPECTED = "Sending stopped unexpectedly ({error}); it is unknown whether this message left."


@dataclass(frozen=True)
class SendContext:
    """What a batch needs from the application, gathered once per run."""

    transport: Transport
    redis: redis.Redis
    signer: TokenSigner
    base_url: str
    one_click_over_http: bool = False  # development and tests only (config)
    batch_size: int = 1000
    stall_seconds: float = 60.0
    max_failed_batches: int = 3
    settlement: Settlement = field(default_factory=Settlement)

    @classmethod
    def from_app(cls) -> SendContext:
        config = current_app.config
        return cls(
            transport=get_transport(config),
            redis=redis_client.get_redis(),
            signer=signer_from_config(current_app.config["SETTINGS"]),
            base_url=str(config["PUBLIC_BASE_URL"]),
            one_click_over_http=bool(config.get("ONE_CLICK_OVER_HTTP")),
            batch_size=int(config.get("SEND_BATCH_SIZE", 1000)),
            stall_seconds=float(config.get("SEND_STALL_SECONDS", 60.0)),
            max_failed_batches=int(config.get("SEND_MAX_FAILED_BATCHES", 3)),
            settlement=Settlement.from_config(config),
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
    and the organization's send rate (re-queue when the wait is long); claim; hold the
    batch's lease while rendering from the cached skeleton and calling the transport;
    record the outcome and bump the counters; finish the campaign when nothing is left.

    Errors: 429 and 5xx put the batch back to queued and ask for a retry after a bounded,
    jittered backoff (a 429 also holds every worker until SendGrid's reset); a request
    whose fate is uncertain (no answer) makes the batch 'unknown'; a permanent refusal
    fails the rows with SendGrid's message, except 401/403 (the account, not the rows)
    which pause the campaign with the batch still queued. `max_failed_batches` failed
    batches in a row pause the campaign with the reason.

    Returns:
        What happened; `requeue_in` (seconds) asks the caller to run it again with
        `next_attempt`.
    """
    ctx = context or SendContext.from_app()
    key = BatchKey(campaign_id, batch_no)
    outcome = BatchOutcome(campaign_id, batch_no)
    # With its variants: the claim's commit keeps them loaded for rendering (see below).
    campaign = session.get(Campaign, campaign_id, options=[selectinload(Campaign.variants)])
    if campaign is None or campaign.status != CampaignStatus.SENDING.value:
        outcome.notes.append(f"campaign is {campaign.status if campaign else 'gone'}")
        session.rollback()
        return outcome

    blocked = coordination.provider_blocked_for(ctx.redis)
    if blocked > 0:
        # SendGrid said 429 to someone: nobody asks again before its reset.
        session.rollback()
        return _requeue(ctx, outcome, min(blocked, MAX_COUNTDOWN), attempt, "SendGrid rate limit")

    settings = session.get(OrgSettings, 1)
    bucket = TokenBucket(ctx.redis, settings.send_rate_per_minute if settings else 0)
    limit = _rate_limited(session, ctx, key, bucket, outcome, attempt, sleep)
    if limit is None:
        return outcome if outcome.requeue_in is not None else _finish(session, ctx, outcome, now())

    started = time.perf_counter()
    token = secrets.token_hex(8)
    claim = ledger.claim(session, key, limit, now(), token)
    # The campaign, its variants and the settings read above are rendered from as read: the
    # claim's statement itself checked that the campaign is still sending, and a sending
    # campaign's content does not change.
    commit_keeping_loaded(session)
    outcome.time("claim", started)
    if claim is None:
        bucket.refund(limit)
        outcome.notes.append("nothing to claim")
        return _finish(session, ctx, outcome, now())
    outcome.claimed = len(claim.rows)
    outcome.skipped = claim.skipped
    bucket.refund(limit - len(claim.rows))
    if not claim.rows:
        return _finish(session, ctx, outcome, now())

    with coordination.Lease(ctx.redis, campaign_id, batch_no, token, ctx.settlement.lease):
        failed_batch_error = _send(session, ctx, campaign, claim, outcome, attempt, now)
        started = time.perf_counter()
        session.commit()
        outcome.time("record", started)

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

    if outcome.paused:
        outcome.requeue_in = None
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
    return _finish(session, ctx, outcome, now())


def _rate_limited(
    session: DbSession,
    ctx: SendContext,
    key: BatchKey,
    bucket: TokenBucket,
    outcome: BatchOutcome,
    attempt: int,
    sleep: Callable[[float], None],
) -> int | None:
    """How many rows this run may claim under the send rate; None to stop here.

    Waits in place for a short token shortage; asks for a re-queue (`outcome.requeue_in`)
    for a long one. None without a re-queue means the batch has nothing queued.
    """
    if bucket.unlimited:
        return ctx.batch_size
    pending = ledger.count_queued(session, key)
    if pending == 0:
        return None
    waited = 0.0
    while True:
        grant = bucket.take(min(pending, ctx.batch_size))
        if grant.granted:
            return grant.granted
        if grant.wait > SLEEP_IN_PLACE or waited + grant.wait > MAX_SLEEP:
            session.rollback()
            _requeue(ctx, outcome, min(grant.wait, MAX_COUNTDOWN), attempt, "send rate limit")
            return None
        sleep(grant.wait)
        waited += grant.wait


def _send(
    session: DbSession,
    ctx: SendContext,
    campaign: Campaign,
    claim: Claim,
    outcome: BatchOutcome,
    attempt: int,
    now: Callable[[], datetime],
) -> str | None:
    """Send the claimed rows and record the result; returns an error for a failed batch."""
    ids = [row.delivery_id for row in claim.rows]
    started = time.perf_counter()
    try:
        skeleton = rendering.skeleton(session, campaign, claim.language)
        builder = BatchBuilder(
            campaign,
            signer=ctx.signer,
            base_url=ctx.base_url,
            one_click_over_http=ctx.one_click_over_http,
        )
        batch = builder.batch(skeleton, claim.rows)
    except Exception as exc:  # content that does not render now will not render on retry
        log.exception("campaign %s batch %s: could not render", campaign.id, outcome.batch_no)
        message = f"The email could not be rendered: {exc}"
        failed = ledger.record_failed(session, dict.fromkeys(ids, message), now=now())
        ledger.close(session, claim.key, now(), message)
        outcome.failed += failed
        peers.bump_campaign_stats(session, campaign.id, failed=failed)
        return message

    outcome.time("render", started)
    started = time.perf_counter()
    try:
        result = ctx.transport.send_batch(batch)
    except TransportError as exc:
        _outcome_transaction(session)
        return _record_error(session, ctx, claim, exc, outcome, attempt, now())
    except Exception as exc:
        # A bug or an unexpected failure while the request may have been under way.
        log.exception("campaign %s batch %s: transport failed", campaign.id, outcome.batch_no)
        message = UNEXPECTED.format(error=f"{type(exc).__name__}: {exc}")[:1000]
        _record_unknown(session, claim, message, outcome, now())
        return message

    outcome.time("transport", started)
    started = time.perf_counter()
    _outcome_transaction(session)
    finished_at = now()
    refused = {
        row.delivery_id: result.refused[row.email]
        for row in claim.rows
        if row.email in result.refused
    }
    sent_ids = [i for i in ids if i not in refused] if refused else ids
    # The hot path's one write per recipient: every accepted row of the batch in one UPDATE.
    sent = ledger.record_sent(
        session, sent_ids, now=finished_at, provider_message_id=result.provider_message_id
    )
    failed = ledger.record_failed(session, refused, now=finished_at)
    if ledger.close(session, claim.key, finished_at, "") == "queued":
        # The send rate granted fewer tokens than the batch has rows: the rest follows.
        outcome.requeue_in = 0.0
        outcome.next_attempt = attempt
    outcome.sent += sent
    outcome.failed += failed
    peers.bump_campaign_stats(session, campaign.id, sent=sent, failed=failed)
    outcome.time("record", started)
    return None


def _record_unknown(
    session: DbSession, claim: Claim, message: str, outcome: BatchOutcome, now: datetime
) -> None:
    unknown, sent = ledger.mark_unknown(session, claim.key, message, now)
    outcome.unknown += unknown
    outcome.sent += sent
    if sent:
        peers.bump_campaign_stats(session, claim.key.campaign_id, sent=sent)


def _outcome_transaction(session: DbSession) -> None:
    """Let the outcome's commit return before its WAL reaches the disk.

    Only the claim has to be durable before the transport call (a lost claim could send a
    batch twice). If PostgreSQL itself crashed and lost this outcome (at most the last
    ~0.6 s of them), its batch would be back to 'sending' with no lease, which the sweep
    turns into 'unknown' and SendGrid's events settle: never a second copy. Saves one disk
    flush per batch.
    """
    if is_postgresql(session):
        session.execute(sa.text("SET LOCAL synchronous_commit = off"))


def _record_error(
    session: DbSession,
    ctx: SendContext,
    claim: Claim,
    exc: TransportError,
    outcome: BatchOutcome,
    attempt: int,
    now: datetime,
) -> str | None:
    message = str(exc)[:1000]
    key = claim.key
    by_email = {row.email: row.delivery_id for row in claim.rows}
    accepted = [by_email[e] for e in exc.accepted if e in by_email]
    uncertain = [by_email[e] for e in exc.uncertain if e in by_email and e not in exc.accepted]
    done = set(accepted) | set(uncertain)
    rest = [row.delivery_id for row in claim.rows if row.delivery_id not in done]
    log.warning(
        "campaign %s batch %s attempt %s: %s", key.campaign_id, key.batch_no, attempt, message
    )

    if uncertain and not rest and not accepted:
        # The whole request may have reached SendGrid (no answer): the batch is in doubt.
        _record_unknown(session, claim, UNCERTAIN.format(error=message), outcome, now)
        return message
    sent = ledger.record_sent(session, accepted, now=now)
    outcome.sent += sent
    outcome.unknown += ledger.record_unknown(
        session, uncertain, UNCERTAIN.format(error=message), now=now
    )
    peers.bump_campaign_stats(session, key.campaign_id, sent=sent)

    if exc.retryable:
        ledger.release(session, key, rest, message, now)
        outcome.released += len(rest)
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
        ledger.release(session, key, rest, message, now)
        outcome.released += len(rest)
        reason = f"Paused automatically: {message}. Fix the sending account, then resume."
        outcome.paused = pause_itself(session, key.campaign_id, reason, now=now) or outcome.paused
        return message

    failed = ledger.record_failed(session, dict.fromkeys(rest, message), now=now)
    ledger.close(session, key, now, message)
    outcome.failed += failed
    peers.bump_campaign_stats(session, key.campaign_id, failed=failed)
    return message


def _requeue(
    ctx: SendContext, outcome: BatchOutcome, wait: float, attempt: int, why: str
) -> BatchOutcome:
    coordination.touch(ctx.redis, outcome.campaign_id, ctx.stall_seconds)
    outcome.requeue_in = max(wait, 0.0) + random.uniform(0, 0.25)
    outcome.next_attempt = attempt  # waiting is not a failed attempt
    outcome.notes.append(f"waiting for the {why}")
    return outcome


def _finish(
    session: DbSession, ctx: SendContext, outcome: BatchOutcome, now: datetime
) -> BatchOutcome:
    if outcome.requeue_in is None:
        outcome.finished = finish_if_done(
            session, outcome.campaign_id, now=now, settlement=ctx.settlement
        )
        session.commit()
    return outcome
