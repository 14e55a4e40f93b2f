"""Actions members take because of an alert (petitions first), their responses and the rollup.

One model for every kind: an `Action` with its language versions, one `ActionResponse` per
person (email address) per action, and `ActionTally`, the per-campaign rollup the campaign
report reads for its "Signed" figure (like campaign_breakdown, it never grows with the
audience).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, BigId, utcnow


class ActionKind(StrEnum):
    PETITION = "petition"


class ActionStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    CLOSED = "closed"


# The only way an action's status changes: app.services.actions.petitions.transition().
ACTION_TRANSITIONS: dict[ActionStatus, frozenset[ActionStatus]] = {
    ActionStatus.DRAFT: frozenset({ActionStatus.OPEN}),
    ActionStatus.OPEN: frozenset({ActionStatus.CLOSED}),
    ActionStatus.CLOSED: frozenset({ActionStatus.OPEN}),
}


class ResponseSource(StrEnum):
    """Where a response came from: a tracked alert, a signer's share, an embed, or elsewhere."""

    ALERT = "alert"
    SHARE = "share"
    EMBED = "embed"
    DIRECT = "direct"


action_lists = sa.Table(
    "action_lists",
    Base.metadata,
    sa.Column("action_id", sa.ForeignKey("actions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("list_id", sa.ForeignKey("mailing_lists.id", ondelete="CASCADE"), primary_key=True),
)


class Action(Base):
    """A hosted action. `fields` maps each optional field (postal_code, local, phone, comment)
    to "off", "optional" or "required"; name and email are always asked."""

    __tablename__ = "actions"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('petition')", name="kind"),
        sa.CheckConstraint("status IN ('draft', 'open', 'closed')", name="status"),
        sa.CheckConstraint("default_language IN ('en', 'fr')", name="default_language"),
        sa.CheckConstraint("goal IS NULL OR goal > 0", name="goal"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20), default=ActionKind.PETITION.value)
    title: Mapped[str] = mapped_column(sa.String(200))
    slug: Mapped[str] = mapped_column(sa.String(80), unique=True)
    status: Mapped[str] = mapped_column(sa.String(10), default=ActionStatus.DRAFT.value)
    default_language: Mapped[str] = mapped_column(sa.String(2), default="en")
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    goal: Mapped[int | None]
    image_url: Mapped[str] = mapped_column(sa.String(1000), default="")
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    show_recent_signers: Mapped[bool] = mapped_column(default=False)
    next_step: Mapped[str] = mapped_column(sa.String(10), default="share")  # share|donate|action
    next_step_url: Mapped[str] = mapped_column(sa.String(1000), default="")
    send_thank_you: Mapped[bool] = mapped_column(default=False)
    require_confirmation: Mapped[bool] = mapped_column(default=False)
    opened_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    versions: Mapped[list[ActionVersion]] = relationship(
        back_populates="action", cascade="all, delete-orphan", order_by="ActionVersion.language"
    )

    def version(self, language: str) -> ActionVersion | None:
        """The version in `language`, else the default language's, else any."""
        by_language = {v.language: v for v in self.versions}
        return (
            by_language.get(language)
            or by_language.get(self.default_language)
            or next(iter(by_language.values()), None)
        )


class ActionVersion(Base):
    """An action's public content in one language."""

    __tablename__ = "action_versions"
    __table_args__ = (sa.CheckConstraint("language IN ('en', 'fr')", name="language"),)

    action_id: Mapped[int] = mapped_column(
        sa.ForeignKey("actions.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(sa.String(2), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    headline: Mapped[str] = mapped_column(sa.String(300), default="")
    description: Mapped[str] = mapped_column(sa.Text, default="")  # Markdown, sanitised on render
    target: Mapped[str] = mapped_column(sa.String(500), default="")
    petition_text: Mapped[str] = mapped_column(sa.Text, default="")
    thank_you: Mapped[str] = mapped_column(sa.Text, default="")

    action: Mapped[Action] = relationship(back_populates="versions")


class ActionResponse(Base):
    """One person's response (a signature) to one action: UNIQUE (action, email).

    `counted` is what the live count counts (a partial index makes that an index-only
    count): false while a confirm-by-email signature waits, and once an organizer removes it.
    """

    __tablename__ = "action_responses"
    __table_args__ = (
        sa.UniqueConstraint("action_id", "email"),
        sa.CheckConstraint("source IN ('alert', 'share', 'embed', 'direct')", name="source"),
        sa.CheckConstraint("email = lower(trim(email))", name="email_normalised"),
        sa.Index(
            "ix_action_responses_counted",
            "action_id",
            postgresql_where=sa.text("counted"),
            sqlite_where=sa.text("counted"),
        ),
        sa.Index("ix_action_responses_action_created", "action_id", "created_at"),
        sa.Index(
            "ix_action_responses_referrer",
            "referrer_id",
            postgresql_where=sa.text("referrer_id IS NOT NULL"),
            sqlite_where=sa.text("referrer_id IS NOT NULL"),
        ),
        sa.Index(
            "ix_action_responses_flagged",
            "action_id",
            postgresql_where=sa.text("flagged"),
            sqlite_where=sa.text("flagged"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    action_id: Mapped[int] = mapped_column(sa.ForeignKey("actions.id", ondelete="CASCADE"))
    member_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("members.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str] = mapped_column(sa.String(254))
    first_name: Mapped[str] = mapped_column(sa.String(100), default="")
    last_name: Mapped[str] = mapped_column(sa.String(100), default="")
    postal_code: Mapped[str] = mapped_column(sa.String(20), default="")
    city: Mapped[str] = mapped_column(sa.String(100), default="")
    local: Mapped[str] = mapped_column(sa.String(100), default="")
    phone: Mapped[str] = mapped_column(sa.String(40), default="")
    comment: Mapped[str] = mapped_column(sa.String(1000), default="")
    language: Mapped[str] = mapped_column(sa.String(2), default="en")
    consent_given: Mapped[bool] = mapped_column(default=False)
    consent_wording: Mapped[str] = mapped_column(sa.Text, default="")
    consent_at: Mapped[datetime | None]
    consent_ip: Mapped[str] = mapped_column(sa.String(45), default="")
    source: Mapped[str] = mapped_column(sa.String(10), default=ResponseSource.DIRECT.value)
    campaign_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="SET NULL"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    link_id: Mapped[int | None] = mapped_column(sa.ForeignKey("links.id", ondelete="SET NULL"))
    referrer_id: Mapped[int | None] = mapped_column(
        BigId, sa.ForeignKey("action_responses.id", ondelete="SET NULL")
    )
    referral_code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    utm_source: Mapped[str] = mapped_column(sa.String(100), default="")
    # Kept for abuse checks under tracking's retention rule (TRACKING_DETAIL_DAYS).
    ip: Mapped[str] = mapped_column(sa.String(45), default="")
    user_agent: Mapped[str] = mapped_column(sa.String(300), default="")
    counted: Mapped[bool] = mapped_column(default=True)
    confirmed_at: Mapped[datetime | None]
    # When the confirmation or thank-you email left: a job run twice sends it once.
    mailed_at: Mapped[datetime | None]
    flagged: Mapped[bool] = mapped_column(default=False)
    flag_reason: Mapped[str] = mapped_column(sa.String(200), default="")
    removed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TallyDimension(StrEnum):
    TOTAL = "total"
    LOCAL = "local"
    LANGUAGE = "language"
    LINK = "link"
    HOUR = "hour"


class ActionTally(Base):
    """Signatures an alert brought, per campaign x dimension x value (a local, a language, a
    link id, a UTC hour as ISO text; "total" has the value ""). `signed` counts first-order
    signatures (the alert's own tracked click), `shared` second-order ones (through a share
    by someone the alert brought). Bumped in the signature's own transaction, only when a
    response is first counted, so at rest it equals a count of the responses."""

    __tablename__ = "action_tallies"
    __table_args__ = (
        sa.CheckConstraint(
            "dimension IN ('total', 'local', 'language', 'link', 'hour')", name="dimension"
        ),
    )

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    dimension: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    signed: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    shared: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
