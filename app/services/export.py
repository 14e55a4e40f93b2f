"""CSV files the app offers for download: streamed, and safe to open in a spreadsheet.

Any cell that starts with =, +, -, @, tab, carriage return or line feed gets a leading
apostrophe, so Excel, LibreOffice and Google Sheets show it as text instead of running it as
a formula (reference/celery-tracking-security.md §5.4: member names, custom fields and form
input are all attacker-controlled). The apostrophe is the prefix OWASP recommends; a tab
would itself be one of the dangerous characters (Symfony CVE-2021-41270).

Rows are read from a connection the response's generator opens, owns and closes, not from
the request's session: a streamed response is read after the view has returned and the
request's transaction has ended, and a server-side cursor does not outlive its transaction.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.models import ImportIssue, MailingList, Member, Segment, Subscription, SubscriptionStatus
from app.services import DbSession
from app.services.imports import ISSUE_OUTCOMES
from app.services.segments import segment_condition

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
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
_STREAM_ROWS = 1000


class SpreadsheetDialect(csv.excel):
    """RFC 4180 as Excel writes it: comma-separated, CRLF, cells quoted only when needed."""

    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL


def neutralise(value: Any) -> str:
    """A cell's text, with a leading apostrophe if a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if text.startswith(FORMULA_TRIGGERS):
        return "'" + text
    return text


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """CSV text in chunks of about 64 KB; every cell neutralised, "," and ";" quoted.

    Excel in a French (or German, Dutch...) locale splits a CSV file on ";", its list
    separator, so an unquoted "Local 30; Edmonton" would spill into two columns there. The
    csv module quotes only cells that hold its own delimiter, so a row holding a ";" is
    written with every cell quoted.
    """
    buffer = io.StringIO()
    minimal = csv.writer(buffer, SpreadsheetDialect)
    every = csv.writer(buffer, SpreadsheetDialect, quoting=csv.QUOTE_ALL)
    for row in itertools.chain([header], rows):
        cells = [neutralise(cell) for cell in row]
        (every if any(";" in cell for cell in cells) else minimal).writerow(cells)
        if buffer.tell() >= _FLUSH_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def stream_rows(
    session: DbSession, build: Callable[[sa.Connection], Iterable[Any]]
) -> Iterator[Any]:
    """Rows from `build(connection)`, read on a connection this generator owns.

    The connection is opened from the session's engine when the first row is asked for and
    closed (its read-only transaction rolled back) when the generator finishes or is closed,
    e.g. by a client that hangs up. `build` should put ``yield_per`` on its statements (not on
    the connection, whose execution_options change it in place), so PostgreSQL reads through
    a server-side cursor and memory stays flat. A session bound to a single
    connection (the test suite's rolled-back transaction) is read through that connection.
    """
    bind = session.get_bind()
    return _rows_on(bind, build)


def _rows_on(
    bind: sa.Engine | sa.Connection, build: Callable[[sa.Connection], Iterable[Any]]
) -> Iterator[Any]:
    if isinstance(bind, sa.Connection):
        yield from build(bind)
        return
    connection = bind.connect()
    try:
        yield from build(connection)
    finally:
        connection.close()


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
