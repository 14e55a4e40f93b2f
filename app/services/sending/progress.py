"""How a campaign's sending stands: counts from the ledger, rate, time left, problems."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.models import BatchStatus, Campaign, CampaignStatus, Delivery, DeliveryStatus, SendBatch
from app.models.base import utcnow
from app.models.deliveries import with_error
from app.services import DbSession
from app.services.sending.audience import SegmentUnavailable, audience_count
from app.services.sending.ledger import Settlement, awaiting_judgement
from app.services.sending.status import STATUS_LABELS

# What the organizer reads about members a crash left unknown, by what happens next.
UNKNOWN_SETTLING = (
    "{n} may not have received it yet: a worker stopped while sending them. SendGrid's "
    "events will show whether they left; those that never did are sent again automatically."
)
UNKNOWN_UNDECIDED = (
    "{n} may not have received it: a worker stopped while sending them, and nothing can "
    "tell whether SendGrid took them. You can send to them now; some may get a second copy."
)

RATE_WINDOW = timedelta(seconds=15)


@dataclass
class Progress:
    """One campaign's sending, as the send panel and the API show it."""

    campaign_id: int
    status: str
    status_label: str
    reason: str
    frozen: bool  # the audience is in the ledger (dispatch ran)
    total: int  # deliveries in the ledger, or the audience count before dispatch
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    # 'settling' while SendGrid's events may still settle the unknown rows, 'undecided' when
    # only the organizer can (send to them now, or leave it), '' when none are unknown.
    unknown_state: str = ""
    percent: float = 0.0  # done (sent, failed, skipped, unknown) of total
    rate_per_minute: float = 0.0  # sent over the last 15 seconds
    seconds_left: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    send_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("send_at", "started_at", "finished_at"):
            value = data[name]
            data[name] = value.isoformat() if value else None
        return data


def progress(
    session: DbSession,
    campaign: Campaign,
    now: datetime | None = None,
    *,
    settlement: Settlement | None = None,
) -> Progress:
    """Count the campaign's ledger by status, and what was sent lately, in one read of its
    rows (ix_deliveries_campaign_batch): the send page asks every second while it sends.

    Before dispatch the total is what `audience_count` says now; afterwards the ledger is
    the truth, with the queued rows of batches in flight counted as sending. The rate is
    what was sent in the last 15 seconds, the time left what is queued at that rate; the
    errors are the most common failure messages (SendGrid's own), and the members whose
    fate is unknown, with what happens next.
    """
    now = now or utcnow()
    settlement = settlement or Settlement.from_app()
    counts: dict[str, int] = {}
    recent = 0
    for status, count, lately in session.execute(
        sa.select(
            Delivery.status,
            sa.func.count(),
            sa.func.count().filter(Delivery.sent_at >= now - RATE_WINDOW),
        )
        .where(Delivery.campaign_id == campaign.id)
        .group_by(Delivery.status)
    ):
        counts[status] = int(count)
        if status == DeliveryStatus.SENT.value:
            recent = int(lately)
    frozen = campaign.frozen_at is not None or bool(counts)
    result = Progress(
        campaign_id=campaign.id,
        status=campaign.status,
        status_label=STATUS_LABELS[campaign.status_enum],
        reason=campaign.status_reason or "",
        frozen=frozen,
        total=sum(counts.values()),
        send_at=campaign.send_at,
        started_at=campaign.started_at,
        finished_at=campaign.finished_at,
    )
    for status in DeliveryStatus:
        setattr(result, status.value, int(counts.get(status.value, 0)))
    if result.queued:
        flying = _in_flight(session, campaign.id)
        result.queued -= flying
        result.sending += flying
    if not frozen and campaign.status in (
        CampaignStatus.DRAFT.value,
        CampaignStatus.SCHEDULED.value,
        CampaignStatus.SENDING.value,
        CampaignStatus.PAUSED.value,
    ):
        try:
            result.total = audience_count(session, campaign, now)
        except SegmentUnavailable:
            result.total = 0
        result.queued = result.total if campaign.status != CampaignStatus.DRAFT.value else 0
    done = result.sent + result.failed + result.skipped + result.unknown
    if frozen and result.total:
        result.percent = round(100 * done / result.total, 1)
    if campaign.status == CampaignStatus.SENDING.value and frozen:
        per_second = recent / RATE_WINDOW.total_seconds()
        result.rate_per_minute = round(per_second * 60, 1)
        remaining = result.queued + result.sending
        if per_second > 0:
            result.seconds_left = int(remaining / per_second + 0.999)
    if result.unknown:
        result.unknown_state = _unknown_state(session, campaign, now, settlement)
        template = UNKNOWN_SETTLING if result.unknown_state == "settling" else UNKNOWN_UNDECIDED
        result.errors.append(
            {
                "message": template.format(n=f"{result.unknown:,} members"),
                "count": result.unknown,
                "kind": "unknown",
            }
        )
    if result.failed:
        result.errors += [
            {"message": message or "Unknown error", "count": int(count), "kind": "failed"}
            for message, count in session.execute(
                sa.select(Delivery.error, sa.func.count())
                .where(
                    Delivery.campaign_id == campaign.id,
                    with_error(DeliveryStatus.FAILED),
                )
                .group_by(Delivery.error)
                .order_by(sa.func.count().desc())
                .limit(3)
            )
        ]
    return result


def _in_flight(session: DbSession, campaign_id: int) -> int:
    """Queued rows that a claimed batch's request holds (batches 'sending': a handful)."""
    d, b = Delivery, SendBatch
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(d)
            .join(b, sa.and_(b.campaign_id == d.campaign_id, b.batch_no == d.batch_no))
            .where(
                b.campaign_id == campaign_id,
                b.status == BatchStatus.SENDING.value,
                d.status == DeliveryStatus.QUEUED.value,
                d.id <= b.claimed_upto,
            )
        )
        or 0
    )


def _unknown_state(
    session: DbSession, campaign: Campaign, now: datetime, settlement: Settlement
) -> str:
    """'settling' if SendGrid's events may still settle a batch in doubt, else 'undecided'."""
    waiting = session.scalar(sa.select(awaiting_judgement(campaign.id, now, settlement)))
    return "settling" if waiting else "undecided"


def unknown_counts(session: DbSession, campaign_ids: list[int]) -> dict[int, int]:
    """How many members of each campaign may have missed it (rows left 'unknown').

    For the campaign list and the report: one grouped count on the partial
    ix_deliveries_campaign_errors, which holds only the unknown and failed rows (a crash leaves a
    batch or two), so it costs the same for 1k and 1M recipients.
    """
    if not campaign_ids:
        return {}
    return {
        int(campaign_id): int(count)
        for campaign_id, count in session.execute(
            sa.select(Delivery.campaign_id, sa.func.count())
            .where(
                Delivery.campaign_id.in_(campaign_ids),
                with_error(DeliveryStatus.UNKNOWN),
            )
            .group_by(Delivery.campaign_id)
        )
    }
