"""Per-campaign counters by local/chapter and by language, kept incrementally for the report."""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class BreakdownDimension(StrEnum):
    LOCAL = "local"
    LANGUAGE = "language"


def _counter() -> Mapped[int]:
    # server_default so an upsert that names only the counters it changes may omit the others.
    return mapped_column(sa.BigInteger, default=0, server_default="0")


class CampaignBreakdown(Base):
    """One row per campaign x dimension x value (a local's name, a language code).

    A GROUP BY over a million deliveries on every page view would make the report cost grow
    with the audience; this rollup has one row per local, so reading it costs the same for
    1k and 1M recipients. `targeted` is set once when the audience is frozen; the rest move
    when the tracking flusher first sets a delivery's engagement column or a webhook changes
    its outcome (`app.services.stats.breakdown`).
    """

    __tablename__ = "campaign_breakdown"
    __table_args__ = (sa.CheckConstraint("dimension IN ('local', 'language')", name="dimension"),)

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    dimension: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    targeted: Mapped[int] = _counter()
    delivered: Mapped[int] = _counter()
    bounced: Mapped[int] = _counter()
    opens_unique: Mapped[int] = _counter()
    opens_human_unique: Mapped[int] = _counter()
    clicks_unique: Mapped[int] = _counter()
    clicks_human_unique: Mapped[int] = _counter()
    petition_clicks_unique: Mapped[int] = _counter()
    petition_clicks_human_unique: Mapped[int] = _counter()
    unsubscribes: Mapped[int] = _counter()
