"""Member CSV imports: one row per import (status, progress, report) and its row-level issues."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, utcnow


class ImportStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # an unexpected error; nothing was imported
    REFUSED = "refused"  # not a CSV file, no email column...; nothing was imported


# Allowed status changes. RUNNING -> RUNNING lets a task redelivered after a worker crash start
# again: the import runs in one transaction, so the crashed attempt left nothing behind.
IMPORT_TRANSITIONS: dict[ImportStatus, frozenset[ImportStatus]] = {
    ImportStatus.QUEUED: frozenset(
        {ImportStatus.RUNNING, ImportStatus.FAILED, ImportStatus.REFUSED}
    ),
    ImportStatus.RUNNING: frozenset(
        {ImportStatus.RUNNING, ImportStatus.DONE, ImportStatus.FAILED, ImportStatus.REFUSED}
    ),
    ImportStatus.DONE: frozenset(),
    ImportStatus.FAILED: frozenset(),
    ImportStatus.REFUSED: frozenset(),
}


class ImportIssueKind(StrEnum):
    SKIPPED = "skipped"  # the row was not imported at all
    NOT_SUBSCRIBED = "not_subscribed"  # the member was saved, but not added to the list
    WARNING = "warning"  # the member was saved without one of its values (reason names it)


class MemberImport(Base):
    __tablename__ = "member_imports"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'refused')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("mailing_lists.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    origin: Mapped[str] = mapped_column(sa.String(10))  # web, api, cli
    filename: Mapped[str] = mapped_column(sa.String(255))
    path: Mapped[str] = mapped_column(sa.String(1000))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    consent: Mapped[str | None] = mapped_column(sa.String(30))
    status: Mapped[str] = mapped_column(sa.String(10), default=ImportStatus.QUEUED.value)
    error: Mapped[str | None] = mapped_column(sa.Text)
    rows: Mapped[int] = mapped_column(default=0)
    added: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    subscribed: Mapped[int] = mapped_column(default=0)
    not_subscribed: Mapped[int] = mapped_column(default=0)
    # Counts by reason and the rest of the report (seconds, already subscribed...).
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class ImportIssue(Base):
    """A row of an import that was skipped, saved without being subscribed, or saved without
    one of its values (a warning), and why."""

    __tablename__ = "member_import_issues"
    __table_args__ = (sa.Index("ix_member_import_issues_import_line", "import_id", "line"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    import_id: Mapped[int] = mapped_column(sa.ForeignKey("member_imports.id", ondelete="CASCADE"))
    line: Mapped[int]
    kind: Mapped[str] = mapped_column(sa.String(20))
    email: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.Text)
