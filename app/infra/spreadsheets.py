"""CSV files the app offers for download: streamed, and safe to open in a spreadsheet.

Every CSV Rallypoint writes (a list's or a segment's members, an import's issues, a
campaign's outcomes) goes through `csv_chunks`, so every cell through `neutralise`.

Any cell that starts with =, +, -, @, tab, carriage return or line feed gets a leading
apostrophe, so Excel, LibreOffice and Google Sheets show it as text instead of running it as
a formula (reference/celery-tracking-security.md §5.4: member names, custom fields and form
input are all attacker-controlled; OWASP added line feed in 2025). The apostrophe is the
prefix OWASP recommends; a tab would itself be one of the dangerous characters (Symfony
CVE-2021-41270).

Rows are read from a connection the response's generator opens, owns and closes
(`stream_rows`), not from the request's session: a streamed response is read after the view
has returned and the request's transaction has ended, and a server-side cursor does not
outlive its transaction.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from flask import current_app, has_app_context

if TYPE_CHECKING:  # the session type only: infra sits below the services
    from app.services import DbSession

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")

_FLUSH_CHARS = 64 * 1024


class SpreadsheetDialect(csv.excel):
    """RFC 4180 as Excel writes it: comma-separated, CRLF, cells quoted only when needed."""

    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL


def neutralise(value: Any) -> str:
    """A cell's text, with a leading apostrophe if a spreadsheet would read it as a formula.

    None is an empty cell; a datetime is written in ISO 8601.
    """
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
    if isinstance(bind, sa.Engine):
        # DATABASE_REPLICA_URL: whole-table reads go to the read-only replica.
        bind = _replica() or bind
    return _rows_on(bind, build)


def _replica() -> sa.Engine | None:
    """The replica's engine (Flask-SQLAlchemy's "replica" bind) when one is configured."""
    if not has_app_context() or not current_app.config.get("DATABASE_REPLICA_URL"):
        return None
    engines = current_app.extensions["sqlalchemy"].engines
    engine: sa.Engine = engines["replica"]
    return engine


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
