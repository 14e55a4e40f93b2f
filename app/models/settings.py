"""Organization settings an admin edits in the UI (sender identity, senders, time zone, rate)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class OrgSettings(Base):
    """One row: who sends (CASL identification), when and how fast."""

    __tablename__ = "org_settings"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=1)
    organization: Mapped[str] = mapped_column(sa.String(200), default="")
    mailing_address: Mapped[str] = mapped_column(sa.Text, default="")
    contact: Mapped[str] = mapped_column(sa.String(300), default="")
    timezone: Mapped[str] = mapped_column(sa.String(64), default="America/Edmonton")
    send_rate_per_minute: Mapped[int] = mapped_column(default=0)  # 0 = no limit
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Sender(Base):
    """An allowed From address; campaigns may only send from these."""

    __tablename__ = "senders"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    is_default: Mapped[bool] = mapped_column(default=False)
