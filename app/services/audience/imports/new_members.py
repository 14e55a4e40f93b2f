"""New members written straight into members and subscriptions by binary COPY.

Into an empty or small members table (postgres._FEW_MEMBERS) most rows of a file are new
people with nothing to decide in the database: not a duplicate (the parser's per-chunk dict
and Bloom filter say so), not a member already nor a suppressed address (their addresses are
in a second Bloom filter), no value left out. For those, the COPY path's INSERT … SELECT
from the staging table (statements.insert_members) costs PostgreSQL about 1.7 times what
storing the rows needs: the executor inserts them one
at a time, a WAL record each, where COPY writes a page of rows at once. So the parser thread
formats them as PostgreSQL's binary COPY data (psycopg's own Copy writing to memory: no text
for the server to parse, no timestamps to read), a piece at a time in address order, the
import's connection COPYs each piece into the tables, and only the other rows go through the
staging table.

A new member here gets exactly what statements.insert_members gives one (an absent name or
postal code is '', an absent language 'en', the custom columns as a jsonb object, the import's
consent, subscribed to the list): tests/services/test_imports.py imports the same files both
ways and compares every column.

The member ids are taken from the members' sequence in blocks, on a second connection of the
parser thread (a sequence is not transactional: ids it hands out are never handed out again,
and a rolled-back import leaves a gap, as any failed insert does).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import orjson
import sqlalchemy as sa
from psycopg.copy import Copy, FileWriter
from psycopg.types.string import BytesBinaryDumper

from app.services.audience.imports import statements as sql
from app.services.audience.imports.run import ConsentToRecord
from app.services.audience.member_csv import ParsedRow

# Ids asked of the sequence at a time (one round trip on the parser's connection).
_ID_BLOCK = 20_000
_by_email = attrgetter("email")


@dataclass(frozen=True)
class NewRows:
    """Binary COPY data (each a whole COPY stream) for `count` new members."""

    count: int
    members: bytes
    subscriptions: bytes
    seen: bytes


class NewMemberRows:
    """Formats new members, their subscriptions and their import_seen rows as COPY data.

    Used by the parser thread only, with its own connection (`connection`, a SQLAlchemy
    Connection in autocommit): the ids come from there, and psycopg's adapters of a cursor
    on it format the rows (no statement runs on that cursor).
    """

    def __init__(
        self,
        connection: sa.Connection,
        *,
        list_id: int,
        consent: ConsentToRecord,
        now: datetime,
        subscription_status: str,
        subscription_source: str,
    ) -> None:
        self.connection = connection
        driver = connection.connection.driver_connection
        assert driver is not None
        self._cursor = driver.cursor()
        # bytes into a bytea column as they are, by psycopg's C dumper (the last one registered
        # for bytea wraps it in Python: a call more per value).
        self._cursor.adapters.register_dumper(bytes, BytesBinaryDumper)
        self._ids: list[int] = []
        self._sequence = connection.execute(sa.text(sql.MEMBER_ID_SEQUENCE)).scalar_one()
        basis = consent.basis
        # Columns in statements.NEW_MEMBER_COLUMNS order after local and attributes.
        self._member_tail = (
            basis,
            consent.source if basis else "",
            consent.at if basis else None,
            consent.expires_at,
            _jsonb(consent.detail),
            now,
            now,
        )
        self._subscription_tail = (list_id, subscription_status, subscription_source, now, now, now)

    def take_ids(self, count: int) -> list[int]:
        """`count` member ids never handed out before."""
        while len(self._ids) < count:
            self._ids.extend(
                self.connection.execute(
                    sa.text(sql.RESERVE_MEMBER_IDS),
                    {"sequence": self._sequence, "count": max(count, _ID_BLOCK)},
                ).scalar_one()
            )
        taken, self._ids = self._ids[:count], self._ids[count:]
        return taken

    def format(self, rows: list[ParsedRow]) -> NewRows:
        """COPY data for `rows` (new, distinct addresses), in address order: the unique
        email index is then filled page by page rather than all over."""
        rows.sort(key=_by_email)
        ids = self.take_ids(len(rows))
        member_tail = self._member_tail
        subscription_tail = self._subscription_tail
        jsonb = _jsonb
        no_attributes = _jsonb({})
        members, subscriptions, seen = io.BytesIO(), io.BytesIO(), io.BytesIO()
        with (
            self._copy(members, sql.NEW_MEMBER_TYPES) as member_copy,
            self._copy(subscriptions, sql.NEW_SUBSCRIPTION_TYPES) as subscription_copy,
            self._copy(seen, sql.SEEN_TYPES) as seen_copy,
        ):
            write_member = member_copy.write_row
            write_subscription = subscription_copy.write_row
            write_seen = seen_copy.write_row
            for member_id, row in zip(ids, rows, strict=True):
                line, email, first_name, last_name, language, postal_code, local, given, _ = row
                # The parser's dict holds the file's custom columns with a value: what
                # jsonb_strip_nulls(jsonb_build_object(key, value, …)) makes of them in SQL
                # (statements.attributes_json).
                attributes = jsonb(given) if given else no_attributes
                write_member(
                    (
                        member_id,
                        email,
                        first_name or "",
                        last_name or "",
                        language or "en",
                        postal_code or "",
                        local or "",
                        attributes,
                        *member_tail,
                    )
                )
                write_subscription((member_id, *subscription_tail))
                write_seen((email, line))
        return NewRows(len(rows), members.getvalue(), subscriptions.getvalue(), seen.getvalue())

    def _copy(self, out: io.BytesIO, types: Sequence[str]) -> Copy:
        copy = Copy(self._cursor, binary=True, writer=FileWriter(out))
        copy.set_types(types)
        return copy


def _jsonb(value: dict[str, Any]) -> bytes:
    """A jsonb value in its binary form (a version byte, then the text): it goes through as
    bytes (statements.NEW_MEMBER_TYPES says bytea), which spares psycopg's json dumper a Python
    call or two per value. orjson writes what config.settings.read_json reads back."""
    return b"\x01" + orjson.dumps(value)


def copy_in(driver: Any, statement: str, data: bytes) -> None:
    """Send one whole binary COPY stream (signature, rows, trailer) with `statement`."""
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(data)
