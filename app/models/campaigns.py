"""Campaigns, their language variants, audience and links, with the one status transition table."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, utcnow


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"


# The only way a campaign's status changes: app.services.campaigns.authoring.transition()
# checks here.
TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.SENDING}),
    CampaignStatus.SCHEDULED: frozenset(
        {CampaignStatus.DRAFT, CampaignStatus.SENDING, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.SENDING: frozenset(
        {
            CampaignStatus.PAUSED,
            CampaignStatus.SENT,
            CampaignStatus.CANCELLED,
            CampaignStatus.FAILED,
        }
    ),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.SENDING, CampaignStatus.CANCELLED}),
    # Only to send again to the members a crash left unknown, when the organizer asks.
    CampaignStatus.SENT: frozenset({CampaignStatus.SENDING}),
    CampaignStatus.CANCELLED: frozenset(),
    CampaignStatus.FAILED: frozenset(),
}

campaign_lists = sa.Table(
    "campaign_lists",
    Base.metadata,
    sa.Column("campaign_id", sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("list_id", sa.ForeignKey("mailing_lists.id", ondelete="RESTRICT"), primary_key=True),
)


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled', 'failed')",
            name="status",
        ),
        # The beat tick looks for due scheduled campaigns only.
        sa.Index("ix_campaigns_status_send_at", "status", "send_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    layout: Mapped[str] = mapped_column(sa.String(30), default="action_alert")
    status: Mapped[str] = mapped_column(sa.String(20), default=CampaignStatus.DRAFT.value)
    from_name: Mapped[str] = mapped_column(sa.String(200), default="")
    from_email: Mapped[str] = mapped_column(sa.String(254), default="")
    reply_to: Mapped[str] = mapped_column(sa.String(254), default="")
    default_language: Mapped[str] = mapped_column(sa.String(2), default="en")
    segment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("segments.id", ondelete="SET NULL")
    )
    send_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    # Set in the freeze's own transaction: before it, "no rows left to send" means nothing.
    frozen_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    status_reason: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    variants: Mapped[list[CampaignVariant]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="CampaignVariant.language"
    )
    links: Mapped[list[Link]] = relationship(
        back_populates="campaign", cascade="all, delete-orphan", order_by="Link.position"
    )

    @property
    def status_enum(self) -> CampaignStatus:
        return CampaignStatus(self.status)


class CampaignVariant(Base):
    """The content in one language. Members get their language's variant, else the default."""

    __tablename__ = "campaign_variants"

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(sa.String(2), primary_key=True)
    subject: Mapped[str] = mapped_column(sa.String(998), default="")
    preheader: Mapped[str] = mapped_column(sa.String(500), default="")
    body: Mapped[str] = mapped_column(sa.Text, default="")
    body_format: Mapped[str] = mapped_column(sa.String(10), default="markdown")
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)

    campaign: Mapped[Campaign] = relationship(back_populates="variants")


class Link(Base):
    """A distinct URL of a campaign. Click redirects go only to these stored URLs."""

    __tablename__ = "links"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "url"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(sa.ForeignKey("campaigns.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(sa.Text)
    position: Mapped[int] = mapped_column(default=0)
    is_petition: Mapped[bool] = mapped_column(default=False)

    campaign: Mapped[Campaign] = relationship(back_populates="links")
