"""The send ledger (one delivery per campaign x member), tracking events and webhook batches."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, JSONType, utcnow


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # frozen into the audience; in flight while its batch is 'sending'
    SENDING = "sending"  # no longer written (the batch row says it); kept for old rows
    SENT = "sent"  # the transport accepted it
    FAILED = "failed"  # the transport refused it for good
    UNKNOWN = "unknown"  # a crash left it unknown whether it left; settled by the batch
    SKIPPED = "skipped"  # unsubscribed, suppressed or cancelled before it left


class BatchStatus(StrEnum):
    """Where one batch (one SendGrid request) of a campaign stands; see SendBatch."""

    QUEUED = "queued"  # rows to send, no request under way
    SENDING = "sending"  # claimed: a worker holds its lease and may be talking to SendGrid
    SENT = "sent"  # the request was accepted (refused addresses, if any, are 'failed' rows)
    UNKNOWN = "unknown"  # the request may or may not have reached SendGrid
    FAILED = "failed"  # SendGrid refused the request for good
    SKIPPED = "skipped"  # nothing left to send (cancelled, or everyone unsubscribed)


# A batch still owes work: nothing of its campaign is finished while one is in this state.
OPEN_BATCH_STATUSES = (BatchStatus.QUEUED.value, BatchStatus.SENDING.value)


# No index of deliveries names `status`, in its columns or its WHERE: a batch's outcome
# (queued -> sent, the send's one write a recipient) then changes no indexed column, and with
# the room FILLFACTOR leaves on each page PostgreSQL writes the new row version beside the
# old one (a heap-only, HOT, update) instead of a new entry in every index.
FILLFACTOR = 45

# The rows that carry an error: refused ('failed') or in doubt ('unknown'); either status
# needs its message (ck_deliveries_error). ix_deliveries_campaign_errors holds these few.
ERRORED_SQL = "error IS NOT NULL"

# The report's problems are the rows refused by the transport (with_error('failed')) and
# these, bounced or dropped by the receiving side (ix_deliveries_campaign_problems).
BOUNCED_OUTCOMES = ("bounced", "dropped")
BOUNCED_SQL = "outcome IN ({})".format(", ".join(f"'{o}'" for o in BOUNCED_OUTCOMES))


class Delivery(Base):
    """The truth about who gets a campaign. UNIQUE (campaign, member) makes double sends
    impossible to record; batch tasks claim rows by status, so a redelivered task is harmless."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "member_id"),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'failed', 'unknown', 'skipped')",
            name="status",
        ),
        sa.CheckConstraint(f"status NOT IN ('failed', 'unknown') OR {ERRORED_SQL}", name="error"),
        # A batch's rows, read by its claim, its outcome and its close; whole-campaign counts.
        sa.Index("ix_deliveries_campaign_batch", "campaign_id", "batch_no"),
        # The rows in doubt or refused (a crash leaves a batch or two), counted for the campaign
        # list, the report and a resend: no queued or sent row is in it.
        sa.Index(
            "ix_deliveries_campaign_errors",
            "campaign_id",
            "batch_no",
            postgresql_where=sa.text(ERRORED_SQL),
            sqlite_where=sa.text(ERRORED_SQL),
        ),
        sa.Index("ix_deliveries_member", "member_id"),
        # The report's list of bounced and dropped addresses pages through (campaign, id) of
        # those rows only; a partial index keeps it small and its count cheap at 1M rows.
        sa.Index(
            "ix_deliveries_campaign_problems",
            "campaign_id",
            "id",
            postgresql_where=sa.text(BOUNCED_SQL),
            sqlite_where=sa.text(BOUNCED_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("members.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(sa.String(254))
    language: Mapped[str] = mapped_column(sa.String(2), default="en")
    # The member's local/chapter when the audience was frozen: the report's breakdown counts
    # targeted and engaged members under the same local even if the member moves afterwards.
    local: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")
    batch_no: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(sa.String(10), default=DeliveryStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(100))
    error: Mapped[str | None] = mapped_column(sa.Text)
    outcome: Mapped[str | None] = mapped_column(sa.String(20))  # delivered/bounced/dropped/...
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # First engagement, set once by the tracking flusher (`... WHERE opened_at IS NULL`), so
    # unique counts are idempotent and the report's per-chapter breakdown is one GROUP BY.
    # The human_* twins ignore machine opens (Apple MPP, scanners) and automated clicks.
    opened_at: Mapped[datetime | None]
    human_opened_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]
    human_clicked_at: Mapped[datetime | None]
    petition_clicked_at: Mapped[datetime | None]
    human_petition_clicked_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]


class SendBatch(Base):
    """One batch of a campaign's ledger: up to SEND_BATCH_SIZE rows, one language, one request.

    The batch, not each row, is the unit of the send's state: a worker claims it
    (queued -> sending, committed before SendGrid is called), and its outcome settles every
    row the request carried in one statement. While a batch is 'sending', its rows stay
    'queued' and `claimed_upto` says which of them the request holds (the queued rows with
    an id up to it). A crash leaves the batch 'sending' without a lease: the sweep makes it
    'unknown', and SendGrid's Event Webhook settles it — an event for any row of it means
    SendGrid took the whole request (`confirmed_at`); none, once events for batches claimed
    later have arrived and a window has passed, means it never arrived and it is sent again.
    """

    __tablename__ = "send_batches"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'unknown', 'failed', 'skipped')",
            name="status",
        ),
        # The sweep visits only batches in flight or in doubt: a handful, whatever the size.
        sa.Index(
            "ix_send_batches_open",
            "status",
            postgresql_where=sa.text("status IN ('sending', 'unknown')"),
            sqlite_where=sa.text("status IN ('sending', 'unknown')"),
        ),
        # The webhook watermark: the latest claim whose request SendGrid confirmed.
        sa.Index(
            "ix_send_batches_confirmed",
            "claimed_at",
            postgresql_where=sa.text("confirmed_at IS NOT NULL"),
            sqlite_where=sa.text("confirmed_at IS NOT NULL"),
        ),
    )

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    batch_no: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    language: Mapped[str] = mapped_column(sa.String(2), default="en")
    size: Mapped[int] = mapped_column(default=0)  # rows when the audience was frozen
    status: Mapped[str] = mapped_column(sa.String(10), default=BatchStatus.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)  # requests made (retries included)
    resends: Mapped[int] = mapped_column(default=0)  # times sent again after 'unknown'
    claimed_at: Mapped[datetime | None]
    claimed_upto: Mapped[int | None] = mapped_column(BigId)
    lease: Mapped[str | None] = mapped_column(sa.String(32))  # the claiming run's token
    finished_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]  # first SendGrid event for one of its rows
    error: Mapped[str | None] = mapped_column(sa.Text)


class EventKind(StrEnum):
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"
    PROCESSED = "processed"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCE = "bounce"
    DROPPED = "dropped"
    SPAMREPORT = "spamreport"


class Event(Base):
    """Something that happened to a delivery: a tracking hit or a SendGrid event."""

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_campaign_kind", "campaign_id", "kind"),
        sa.Index("ix_events_delivery", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    campaign_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    delivery_id: Mapped[int | None] = mapped_column(BigId)
    member_id: Mapped[int | None] = mapped_column(BigId)
    link_id: Mapped[int | None]
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    is_machine: Mapped[bool] = mapped_column(default=False)
    # SendGrid's own id for webhook events: the deduplication key (retries are normal).
    sg_event_id: Mapped[str | None] = mapped_column(sa.String(100), unique=True)
    # The id the web process gave a tracking hit: the deduplication key when the flusher sees
    # a hit twice (redelivered stream entry, replay after a Redis restart, direct-DB fallback).
    hit_id: Mapped[str | None] = mapped_column(sa.String(40), unique=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class WebhookBatch(Base):
    """A raw, verified Event Webhook body, stored before it is processed so nothing is lost."""

    __tablename__ = "webhook_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[str] = mapped_column(sa.Text)
    processed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    # sha256 of timestamp + body digest (services/webhooks.replay_key): a second POST of the
    # same signed content is a replay, however its signature is encoded. UNIQUE
    # makes the database the durable replay guard (Redis SET NX is the fast first check).
    signature_digest: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    event_count: Mapped[int] = mapped_column(default=0, server_default="0")


def with_error(status: DeliveryStatus) -> sa.ColumnElement[bool]:
    """Rows of a status that carries its error ('failed', 'unknown'), said so that
    ix_deliveries_campaign_errors (WHERE error IS NOT NULL) serves them."""
    if status not in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
        raise ValueError(f"{status.value!r} rows carry no error")
    table = Delivery.__table__
    return sa.and_(table.c.error.is_not(None), table.c.status == status.value)
