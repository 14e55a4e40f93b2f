"""CSV export of a list, a segment or an import's issues: streamed, safe in a spreadsheet.

Written by app.infra.spreadsheets (every cell neutralised, ";" quoted, read on a connection
the download owns), the rule every CSV download of the app shares.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from app.infra.spreadsheets import csv_chunks, stream_rows
from app.models import ImportIssue, MailingList, Member, Segment, Subscription, SubscriptionStatus
from app.services import DbSession
from app.services.audience.imports import ISSUE_OUTCOMES
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
_STREAM_ROWS = 1000


def _attribute_keys(connection: sa.Connection, members: sa.Select[Any]) -> list[str]:
    """The custom attribute names used by the exported members (one column each)."""
    ids = members.subquery()
    if connection.dialect.name == "postgresql":
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
    return sorted(str(k) for k in connection.scalars(query.limit(MAX_ATTRIBUTE_COLUMNS)))


_MEMBER_COLUMNS = (
    Member.email,
    Member.first_name,
    Member.last_name,
    Member.language,
    Member.postal_code,
    Member.local,
    Member.consent_basis,
    Member.consent_source,
    Member.consent_at,
    Member.consent_expires_at,
    Member.attributes,
)


def _member_cells(row: Sequence[Any], keys: Sequence[str]) -> list[Any]:
    *fields, consent_at, consent_expires_at, attributes = row[: len(_MEMBER_COLUMNS)]
    return [
        *fields,
        consent_at.date().isoformat() if consent_at else "",
        consent_expires_at.date().isoformat() if consent_expires_at else "",
        *[(attributes or {}).get(key, "") for key in keys],
    ]


def _member_export(
    session: DbSession,
    where: Sequence[sa.ColumnElement[bool]],
    *,
    with_status: bool,
) -> Iterator[str]:
    def build(connection: sa.Connection) -> Iterator[str]:
        ids = sa.select(Member.id).where(*where)
        columns: list[Any] = list(_MEMBER_COLUMNS)
        if with_status:
            ids = ids.join(Subscription, Subscription.member_id == Member.id)
            columns.append(Subscription.status)
        keys = _attribute_keys(connection, ids)
        query = sa.select(*columns).where(*where).order_by(Member.id)
        if with_status:
            query = query.join(Subscription, Subscription.member_id == Member.id)
        rows = connection.execute(query.execution_options(yield_per=_STREAM_ROWS))
        cells = ([*_member_cells(row, keys), *([row[-1]] if with_status else [])] for row in rows)
        header = [*BASE_COLUMNS, *keys, *(["status"] if with_status else [])]
        yield from csv_chunks(header, cells)

    return stream_rows(session, build)


def export_list(
    session: DbSession, mailing_list: MailingList, statuses: Sequence[str] | None = None
) -> Iterator[str]:
    """CSV text chunks of a list's members (subscribed ones by default), with their status.

    Reads on its own connection when the first chunk is asked for (`stream_rows`), through a
    server-side cursor, so memory stays flat for any list size. Changes nothing.
    """
    statuses = list(statuses or [SubscriptionStatus.SUBSCRIBED.value])
    where = (Subscription.list_id == mailing_list.id, Subscription.status.in_(statuses))
    return _member_export(session, where, with_status=True)


def export_segment(session: DbSession, segment: Segment) -> Iterator[str]:
    """CSV text chunks of a segment's members. Streams on its own connection; changes nothing."""
    return _member_export(session, (segment_condition(segment),), with_status=False)


def issues_csv(session: DbSession, import_id: int) -> Iterator[str]:
    """CSV text chunks of an import's issues (line, email, what happened, reason), in line
    order. Streams on its own connection (`stream_rows`); changes nothing."""
    query = (
        sa.select(ImportIssue.line, ImportIssue.email, ImportIssue.kind, ImportIssue.reason)
        .where(ImportIssue.import_id == import_id)
        .order_by(ImportIssue.line, ImportIssue.id)
    )

    def build(connection: sa.Connection) -> Iterator[str]:
        issues = connection.execute(query.execution_options(yield_per=_STREAM_ROWS))
        rows = (
            [line, email or "", ISSUE_OUTCOMES.get(kind, kind), reason]
            for line, email, kind, reason in issues
        )
        yield from csv_chunks(["line", "email", "what happened", "reason"], rows)

    return stream_rows(session, build)
