"""Per-campaign counters, per-link counters and the hourly rollup the reports read."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


def _counter() -> Mapped[int]:
    # BIGINT: a 1M-recipient campaign with several opens each passes 2**31 within a few years
    # of totals; server_default so raw INSERT ... ON CONFLICT upserts may omit columns.
    return mapped_column(sa.BigInteger, default=0, server_default="0")


class CampaignStats(Base):
    """One row per campaign: the whole funnel, kept up to date incrementally.

    targeted/sent/failed are bumped by the sender; delivered/bounced/dropped/deferred count
    deliveries by their current webhook outcome; the engagement counters come from the
    tracking flusher. `app.services.stats.counters.recompute_campaign` rebuilds them from raw rows.
    """

    __tablename__ = "campaign_stats"

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    targeted: Mapped[int] = _counter()
    sent: Mapped[int] = _counter()
    failed: Mapped[int] = _counter()
    delivered: Mapped[int] = _counter()
    bounced: Mapped[int] = _counter()
    dropped: Mapped[int] = _counter()
    deferred: Mapped[int] = _counter()
    opens_total: Mapped[int] = _counter()
    opens_unique: Mapped[int] = _counter()
    opens_human_unique: Mapped[int] = _counter()
    machine_opens: Mapped[int] = _counter()
    clicks_total: Mapped[int] = _counter()
    clicks_unique: Mapped[int] = _counter()
    clicks_human_unique: Mapped[int] = _counter()
    machine_clicks: Mapped[int] = _counter()
    petition_clicks_total: Mapped[int] = _counter()
    petition_clicks_unique: Mapped[int] = _counter()
    petition_clicks_human_unique: Mapped[int] = _counter()
    unsubscribes: Mapped[int] = _counter()
    spam_reports: Mapped[int] = _counter()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LinkStats(Base):
    """Clicks per link: total, unique deliveries, and the same without automated clicks."""

    __tablename__ = "link_stats"
    __table_args__ = (sa.Index("ix_link_stats_campaign", "campaign_id"),)

    link_id: Mapped[int] = mapped_column(
        sa.ForeignKey("links.id", ondelete="CASCADE"), primary_key=True
    )
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    clicks_total: Mapped[int] = _counter()
    clicks_unique: Mapped[int] = _counter()
    clicks_human: Mapped[int] = _counter()
    clicks_human_unique: Mapped[int] = _counter()


class CampaignHourly(Base):
    """Opens and clicks per campaign and UTC hour, for the timeline chart.

    A *_unique column counts deliveries whose first open (click, petition click) fell in that
    hour, so the hours add up to the campaign's unique figure.
    """

    __tablename__ = "campaign_hourly"

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    opens_total: Mapped[int] = _counter()
    opens_unique: Mapped[int] = _counter()
    opens_human_total: Mapped[int] = _counter()
    opens_human_unique: Mapped[int] = _counter()
    clicks_total: Mapped[int] = _counter()
    clicks_unique: Mapped[int] = _counter()
    clicks_human_total: Mapped[int] = _counter()
    clicks_human_unique: Mapped[int] = _counter()
    petition_clicks_total: Mapped[int] = _counter()
    petition_clicks_unique: Mapped[int] = _counter()
    petition_clicks_human_unique: Mapped[int] = _counter()
