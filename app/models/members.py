"""The audience: members, mailing lists, subscriptions, CASL consent, suppressions, segments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, BigId, JSONType, utcnow


class Language(StrEnum):
    EN = "en"
    FR = "fr"


# What the organizer's pages (in English) call each language: the campaign editor, the
# report, the segment editor, the member forms. Members see each language in its own name
# (the unsubscribe page's "Français" link): that is a language switch, not a label.
LANGUAGE_NAMES: dict[str, str] = {Language.EN.value: "English", Language.FR.value: "French"}


class ConsentBasis(StrEnum):
    """CASL consent: express never expires; implied consent has an end date (see CASL s.10)."""

    EXPRESS = "express"
    IMPLIED_MEMBERSHIP = "implied_membership"  # membership + 2 years after it ends
    IMPLIED_INQUIRY = "implied_inquiry"  # 6 months after the inquiry
    IMPLIED_OTHER = "implied_other"


class SubscriptionStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    PENDING = "pending"


class SubscriptionSource(StrEnum):
    IMPORT = "import"
    FORM = "form"
    API = "api"
    ADMIN = "admin"


class UnsubscribeSource(StrEnum):
    LINK = "link"
    ONE_CLICK = "one_click"
    WEBHOOK = "webhook"
    ADMIN = "admin"
    API = "api"


class SuppressionReason(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SPAM_REPORT = "spam_report"
    GLOBAL_UNSUBSCRIBE = "global_unsubscribe"
    MANUAL = "manual"


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        sa.CheckConstraint("language IN ('en', 'fr')", name="language"),
        sa.CheckConstraint("email = lower(trim(email))", name="email_normalised"),
        # Only implied consent has an expiry: a partial index skips the NULLs of express and
        # current-membership consent (most members), so imports maintain one index less per
        # row. Queries on expiry (`> now`, `<= now + 60 days`) imply NOT NULL and use it.
        sa.Index(
            "ix_members_consent_expires_at",
            "consent_expires_at",
            postgresql_where=sa.text("consent_expires_at IS NOT NULL"),
            sqlite_where=sa.text("consent_expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    first_name: Mapped[str] = mapped_column(sa.String(200), default="")
    last_name: Mapped[str] = mapped_column(sa.String(200), default="")
    language: Mapped[str] = mapped_column(sa.String(2), default=Language.EN.value)
    postal_code: Mapped[str] = mapped_column(sa.String(20), default="")
    local: Mapped[str] = mapped_column(sa.String(100), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    consent_basis: Mapped[str | None] = mapped_column(sa.String(30))
    consent_source: Mapped[str] = mapped_column(sa.String(200), default="")
    consent_at: Mapped[datetime | None]
    # NULL for express consent (no expiry); for implied consent, when it lapses.
    consent_expires_at: Mapped[datetime | None]
    # CASL s.13 puts the onus of proof on the sender: how consent was given (form wording,
    # list, IP address, user agent, import file), kept as recorded.
    consent_detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Membership-based implied consent runs until two years after this date (CASL s.10(14)(b));
    # NULL while the person is still a member.
    membership_ended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="member")

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class MailingList(Base):
    __tablename__ = "mailing_lists"
    __table_args__ = (sa.CheckConstraint("opt_in IN ('single', 'double')", name="opt_in"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    slug: Mapped[str] = mapped_column(sa.String(200), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    is_public: Mapped[bool] = mapped_column(default=False)
    opt_in: Mapped[str] = mapped_column(sa.String(10), default="single")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # The database deletes a list's subscriptions (ON DELETE CASCADE); passive_deletes keeps
    # the ORM from loading them, or from blanking their list_id, part of the primary key.
    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="mailing_list", cascade="all, delete-orphan", passive_deletes=True
    )


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        sa.CheckConstraint("status IN ('subscribed', 'unsubscribed', 'pending')", name="status"),
        # Freezing an audience reads subscribed rows of a few lists: (list, status) first.
        sa.Index("ix_subscriptions_list_status", "list_id", "status"),
        # The dashboard's list growth counts joins and departures per week over a recent
        # window: range scans on these two stay proportional to the window, not the table.
        sa.Index("ix_subscriptions_subscribed_at", "subscribed_at"),
        # Partial: most subscriptions were never unsubscribed, and a bulk import would
        # otherwise add a NULL entry per row; `unsubscribed_at >= :since` implies NOT NULL.
        sa.Index(
            "ix_subscriptions_unsubscribed_at",
            "unsubscribed_at",
            postgresql_where=sa.text("unsubscribed_at IS NOT NULL"),
            sqlite_where=sa.text("unsubscribed_at IS NOT NULL"),
        ),
    )

    member_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    list_id: Mapped[int] = mapped_column(
        sa.ForeignKey("mailing_lists.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(sa.String(20), default=SubscriptionStatus.SUBSCRIBED.value)
    source: Mapped[str] = mapped_column(sa.String(20), default=SubscriptionSource.ADMIN.value)
    subscribed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    unsubscribe_source: Mapped[str | None] = mapped_column(sa.String(20))
    # When the last double opt-in confirmation email left: a form cannot make us mail an
    # address more than once in a while.
    confirmation_sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    member: Mapped[Member] = relationship(back_populates="subscriptions")
    mailing_list: Mapped[MailingList] = relationship(back_populates="subscriptions")


class Suppression(Base):
    """An address-level block. It wins over every list, every import and every queued send."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    reason: Mapped[str] = mapped_column(sa.String(30))
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Segment(Base):
    """A saved filter. Rules are data (field, operator, value) compiled to SQL by the server."""

    __tablename__ = "segments"
    __table_args__ = (sa.CheckConstraint("match IN ('all', 'any')", name="match"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    match: Mapped[str] = mapped_column(sa.String(3), default="all")
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
