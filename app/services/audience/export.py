"""CSV export of a list or a segment: streamed, and safe to open in a spreadsheet.

Every cell goes through app.infra.spreadsheets.neutralise (a leading apostrophe before
anything a spreadsheet would run as a formula), the rule every CSV download shares.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from app.infra.spreadsheets import neutralise
from app.infra.sql import is_postgresql
from app.models import MailingList, Member, Segment, Subscription, SubscriptionStatus
from app.services import DbSession
from app.services.audience.segments import segment_condition

BASE_COLUMNS = (
    "email",
    "first_name",
    "last_name",
    "language",
    "postal_code",
    "local",
    "consent",
    "consent_source",
    "consent_date",
    "consent_expires",
)
MAX_ATTRIBUTE_COLUMNS = 200
_FLUSH_CHARS = 64 * 1024


def _attribute_keys(session: DbSession, members: sa.Select[Any]) -> list[str]:
    """The custom attribute names used by the exported members (one column each)."""
    ids = members.subquery()
    if is_postgresql(session):
        query = (
            sa.select(sa.func.jsonb_object_keys(Member.attributes).label("key"))
            .select_from(Member)
            .join(ids, ids.c.id == Member.id)
            .distinct()
        )
    else:
        each = sa.func.json_each(Member.attributes).table_valued("key")
        query = (
            sa.select(each.c.key)
            .select_from(Member)
            .join(ids, ids.c.id == Member.id)
            .join(each, sa.true())
            .distinct()
        )
    return sorted(str(k) for k in session.scalars(query.limit(MAX_ATTRIBUTE_COLUMNS)))


def _csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([neutralise(cell) for cell in header])
    for row in rows:
        writer.writerow([neutralise(cell) for cell in row])
        if buffer.tell() >= _FLUSH_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _member_cells(member: Member, keys: Sequence[str]) -> list[Any]:
    return [
        member.email,
        member.first_name,
        member.last_name,
        member.language,
        member.postal_code,
        member.local,
        member.consent_basis or "",
        member.consent_source,
        member.consent_at.date().isoformat() if member.consent_at else "",
        member.consent_expires_at.date().isoformat() if member.consent_expires_at else "",
        *[(member.attributes or {}).get(key, "") for key in keys],
    ]


def export_list(
    session: DbSession, mailing_list: MailingList, statuses: Sequence[str] | None = None
) -> Iterator[str]:
    """CSV text chunks of a list's members (subscribed ones by default), with their status.

    Streams with a server-side cursor (yield_per), so memory stays flat for any list size.
    Changes nothing.
    """
    statuses = list(statuses or [SubscriptionStatus.SUBSCRIBED.value])
    where = (Subscription.list_id == mailing_list.id, Subscription.status.in_(statuses))
    ids = sa.select(Member.id).join(Subscription, Subscription.member_id == Member.id).where(*where)
    keys = _attribute_keys(session, ids)
    query = (
        sa.select(Member, Subscription.status)
        .join(Subscription, Subscription.member_id == Member.id)
        .where(*where)
        .order_by(Member.id)
        .execution_options(yield_per=1000)
    )
    rows = ([*_member_cells(m, keys), status] for m, status in session.execute(query))
    return _csv_chunks([*BASE_COLUMNS, *keys, "status"], rows)


def export_segment(session: DbSession, segment: Segment) -> Iterator[str]:
    """CSV text chunks of a segment's members. Streams; changes nothing."""
    condition = segment_condition(segment)
    keys = _attribute_keys(session, sa.select(Member.id).where(condition))
    query = sa.select(Member).where(condition).order_by(Member.id).execution_options(yield_per=1000)
    rows = (_member_cells(m, keys) for m in session.scalars(query))
    return _csv_chunks([*BASE_COLUMNS, *keys], rows)


def issues_csv(issues: Iterable[Any]) -> Iterator[str]:
    """CSV text chunks of an import's issues (line, email, what happened, reason)."""
    words = {"skipped": "skipped", "not_subscribed": "saved, not subscribed"}
    rows = (
        [issue.line, issue.email or "", words.get(issue.kind, issue.kind), issue.reason]
        for issue in issues
    )
    return _csv_chunks(["line", "email", "what happened", "reason"], rows)
