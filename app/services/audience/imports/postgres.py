"""The PostgreSQL import: the file COPYed into a staging table chunk by chunk, then set-based SQL.

The statements are named in statements.py; this module runs them: the parse-ahead thread
that turns rows into COPY data, the COPY itself, and the per-chunk steps in their order.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from app.infra.sql import fk_checks_skipped, may_skip_fk_checks
from app.models import ConsentBasis, ImportIssueKind, SubscriptionSource, SubscriptionStatus
from app.services.audience.consent import import_replaces_sql
from app.services.audience.imports import statements as sql
from app.services.audience.imports.new_members import NewMemberRows, NewRows, copy_in
from app.services.audience.imports.progress import ImportProgress
from app.services.audience.imports.run import (
    FIELD_LIMITS,
    SUPPRESSED_REASON,
    UNSUBSCRIBED_REASON,
    ImportReport,
    ImportRun,
    batched,
    within_limits,
)
from app.services.audience.member_csv import ParsedRow
from app.services.audience.members import MEMBER_INSERT_LOCK

log = logging.getLogger(__name__)

_COPY_PIECE_CHARS = 1 << 20
_CHUNK_ROWS = 50_000  # rows per COPY + SQL round; a whole chunk fits the parse-ahead queue
# Pieces parsed ahead at most (memory stays flat): about 8 MB of staged rows, or up to about
# 45 MB of new members' COPY data (16,000 rows a piece).
_QUEUED_PIECES = 8
_BATCH_ROWS = 1000  # rows the parser formats at a time
_END = object()
_SWITCH_INTERVAL_S = 0.0005  # while importing (_prompt_thread_switches)
# New members formatted and COPYed at a time (in address order): the first piece small, so
# that PostgreSQL starts early, then doubling up to the last figure (32,000 was no faster and
# took 25 MB more at the peak).
_NEW_PIECE_ROWS = (1_000, 2_000, 4_000, 8_000, 16_000)
_BLOOM_BYTES = 1 << 24  # must be a power of two
# New members go straight in (new_members.py) when the members table has at most this many
# rows as the import begins (their addresses are read into a Bloom filter: 0.1 s at this
# size); a bigger table is mostly updated by an import (the monthly refresh), the staging way.
_FEW_MEMBERS = 100_000
# A duplicate of an earlier chunk's row while its first line is not known yet; the import
# names the line before it ends (CopyImport._name_earlier_lines).
_EARLIER_LINE = "duplicate of an earlier line"


@dataclass(frozen=True)
class _ChunkEnd:
    """Marks the end of a chunk's COPY data; carries its maybe-seen (line, email) pairs and
    its rows' warnings (line, email, reason)."""

    maybe_seen: list[tuple[int, str]]
    warnings: list[tuple[int, str, str]] = field(default_factory=list)


def _bloom_positions(email: str, mask: int) -> tuple[int, int]:
    """Two bit positions from one 64-bit hash (Python's str hash, stable in a process)."""
    h = hash(email)
    return h & mask, (h >> 31) & mask


class CopyImport(ImportRun):
    """The PostgreSQL import: chunks of the file COPYed into a staging table, then set-based SQL.

    A producer thread parses the file and formats COPY data (pure Python, one core) while this
    thread runs each chunk's SQL (PostgreSQL works on the other core; psycopg releases the GIL
    while it waits), so parsing chunk k+1 overlaps the database work on chunk k. The queue
    between them is bounded: memory stays flat whatever the size of the file.

    Into an empty or small members table, the rows that are surely new people (most of a
    first import) skip all of this: the parser formats them as binary COPY data for members and
    subscriptions (new_members.py) and they are COPYed straight into the tables. Nobody can
    add a member meanwhile (the lock below), so "new" stays true until the import commits.

    Per chunk, every step is one statement over the chunk's other rows:
    1. COPY into import_chunk (a temporary table: no WAL); the parser has already marked
       values too long and duplicates within the chunk (_route);
    2. mark the rest in place (_classify_chunk): duplicates of earlier chunks, and each
       row's existing member;
    3. record skipped rows as issues; remember the chunk's addresses in import_seen;
    4. update existing members whose values change; subscribe existing members (ON CONFLICT
       DO NOTHING keeps existing subscribed/pending/unsubscribed rows as they are);
    5. insert new members and their subscriptions in one statement (a data-modifying CTE).
    """

    # Whether new members may be COPYed straight into the tables (tests turn it off to
    # compare both ways).
    new_members_by_copy = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.copy_new_members = False
        self.chunk_new = 0
        self.attribute_keys = [key for key, _ in self.member_csv.columns.attributes]
        self.rows_staged = 0
        self.skip_fk_checks = False
        self.chunks_done = 0
        self.earlier_lines_unnamed = 0
        self.members_were_empty = False
        # Fixed size whatever the file (16 MiB, two bits an address): about 2 false "maybe"s
        # in 10,000 rows at a million addresses, 2 in 100 at ten million. A "maybe" is only
        # looked up in import_seen; nothing is skipped without the database saying so.
        self._bloom = bytearray(_BLOOM_BYTES)
        # The addresses that may not go straight in as new members (copy_new_members): the
        # suppressed ones, and the members of a small members table (_remember_known).
        self._known = bytearray()
        self._chunk_first: dict[str, int] = {}
        self._maybe_seen: list[tuple[int, str]] = []
        self.chunk_maybe_seen: list[tuple[int, str]] = []
        self._warnings: list[tuple[int, str, str]] = []
        self.chunk_warnings: list[tuple[int, str, str]] = []
        self._timings: dict[str, float] = {}
        self._engine: sa.Engine | None = None

    def _exec(self, statement: str, **params: Any) -> sa.CursorResult[Any]:
        return self.session.execute(sa.text(statement), params)  # type: ignore[return-value]

    def _timed(self, name: str, statement: str, **params: Any) -> sa.CursorResult[Any]:
        started = time.perf_counter()
        result = self._exec(statement, **params)
        self._timings[name] = self._timings.get(name, 0.0) + time.perf_counter() - started
        return result

    def run(self) -> ImportReport:
        report = self.report
        # Imports run one at a time; creating single members takes the same lock shared
        # (members.lock_member_inserts), so no other transaction can add an address between
        # our lookup and our insert, and the inserts need no ON CONFLICT (speculative insertion
        # costs about half as much again per row).
        self._exec(sql.LOCK_MEMBER_INSERTS, key=MEMBER_INSERT_LOCK)
        # Sorts and hashes of a chunk stay in memory; JIT compiling costs more than it saves.
        self._exec(sql.CHUNK_WORK_MEM)
        self._exec(sql.NO_JIT)
        self._raise_temp_buffers()
        # The list cannot be deleted under us (its subscriptions are being written).
        self._exec(sql.LOCK_LIST, list_id=self.job.list_id)
        self.skip_fk_checks = may_skip_fk_checks(self.session)
        if not self.skip_fk_checks:
            log.warning(
                "import %s: this database role may not set session_replication_role, so new "
                "subscriptions pay their foreign-key checks (about a third slower); a superuser "
                "can run: GRANT SET ON PARAMETER session_replication_role TO <role>",
                self.job.id,
            )
        members = self._exec(sql.COUNT_MEMBERS_UP_TO, limit=_FEW_MEMBERS + 1).scalar_one()
        self.members_were_empty = members == 0
        self.copy_new_members = self.new_members_by_copy and members <= _FEW_MEMBERS
        if self.copy_new_members:
            self._remember_known()
            # For the parser thread's own connection (the session needs this thread's app
            # context).
            self._engine = self.session.get_bind().engine
        self._create_tables()
        chunks: queue.Queue[Any] = queue.Queue(maxsize=_QUEUED_PIECES)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(chunks, stop), name="import-parse", daemon=True
        )
        with _prompt_thread_switches():
            producer.start()
            try:
                while self._copy_chunk(chunks):
                    self._process_chunk()
                    self.progress(
                        ImportProgress(
                            "reading", self.stream.bytes_read, self.stream.size, self.rows_staged
                        )
                    )
            finally:
                stop.set()
                producer.join(timeout=30)
        good = report.added + report.updated + report.unchanged
        report.already_on_list = good - report.subscribed - report.not_subscribed
        self.progress(ImportProgress("saving", 1, 2, report.rows), force=True)
        if self.earlier_lines_unnamed:
            self._name_earlier_lines()
        report.skip_reasons, report.not_subscribed_reasons, report.warning_reasons = (
            self._reason_counts()
        )
        for name in sql.STAGING_TABLES:
            self._exec(sql.drop_table(name))
        log.debug(
            "import %s: %s s in SQL steps %s",
            self.job.id,
            round(sum(self._timings.values()), 2),
            {k: round(v, 2) for k, v in self._timings.items()},
        )
        return report

    def _remember_known(self) -> None:
        """Put the suppressed addresses, and the members' when there are any (at most
        _FEW_MEMBERS), into the Bloom filter of known addresses, so that the parser never takes
        one for a surely new member: a "maybe" goes the staging way, where SQL decides."""
        self._known = known = bytearray(_BLOOM_BYTES)  # the size and hash of self._bloom
        mask = len(known) * 8 - 1
        statements = [sql.SUPPRESSED_ADDRESSES]
        if not self.members_were_empty:
            statements.append(sql.MEMBER_ADDRESSES)
        for statement in statements:
            for email in self._exec(statement).scalars():
                i, j = _bloom_positions(email, mask)
                known[i >> 3] |= 1 << (i & 7)
                known[j >> 3] |= 1 << (j & 7)

    def _raise_temp_buffers(self) -> None:
        """Keep the staging tables in memory: 8 MB of temporary buffers (the default) would
        write a 100,000-row chunk out to disk and read it back on every statement.

        PostgreSQL accepts the change only before the connection first uses a temporary table,
        so it is set for the session (a pooled connection keeps it for its next import) and
        tried in a savepoint: refused, the import goes on, slower.
        """
        try:
            with self.session.begin_nested():
                self._exec(sql.RAISE_TEMP_BUFFERS)
        except sa.exc.DBAPIError:
            log.info("import %s: temp_buffers stays at %s", self.job.id, self._show("temp_buffers"))

    def _show(self, name: str) -> str:
        return str(self._exec(f"SHOW {name}").scalar())

    def _create_tables(self) -> None:
        for name in sql.STAGING_TABLES:
            self._exec(sql.drop_table(name))
        # Temporary tables: no WAL, private to this connection, dropped at the end.
        self._exec(sql.create_chunk_table(len(self.attribute_keys)))
        # No index: each chunk hash-joins against it, cheaper than a btree insert per row.
        self._exec(sql.CREATE_SEEN_TABLE)

    def _stage_columns(self) -> list[str]:
        return [
            "line",
            *sql.STAGE_FIELDS,
            *(f"a{i}" for i in range(len(self.attribute_keys))),
            "skip",
        ]

    def _copy_chunk(self, chunks: queue.Queue[Any]) -> bool:
        """COPY the next chunk: its new members into members and subscriptions, the rest
        into import_chunk. False when the file is done."""
        piece = chunks.get()
        if piece is _END:
            return False
        copy_sql = sql.copy_chunk(self._stage_columns())
        self._exec(sql.EMPTY_CHUNK)
        self.chunk_new = 0
        driver = self.session.connection().connection.driver_connection
        assert driver is not None
        while not isinstance(piece, _ChunkEnd):
            if isinstance(piece, BaseException):
                raise piece
            started = time.perf_counter()
            if isinstance(piece, NewRows):
                self._copy_new_members(driver, piece)
                step = "new members"
            else:
                with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    copy.write(piece)
                step = "copy"
            self._timings[step] = self._timings.get(step, 0.0) + time.perf_counter() - started
            piece = chunks.get()
        self.chunk_maybe_seen = piece.maybe_seen
        self.chunk_warnings = piece.warnings
        return True

    def _copy_new_members(self, driver: Any, rows: NewRows) -> None:
        copy_in(driver, sql.COPY_NEW_MEMBERS, rows.members)
        # Subscriptions of members this transaction has just created, to a list it holds
        # locked: their references are valid (fk_checks_skipped).
        with fk_checks_skipped(self.session, self.skip_fk_checks):
            copy_in(driver, sql.COPY_NEW_SUBSCRIPTIONS, rows.subscriptions)
        copy_in(driver, sql.COPY_SEEN, rows.seen)
        self.chunk_new += rows.count

    def _produce(self, chunks: queue.Queue[Any], stop: threading.Event) -> None:
        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    chunks.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def new_writer() -> tuple[io.StringIO, Any]:
            buffer = io.StringIO()
            # QUOTE_ALL with FORCE_NULL: a None is written "" and read back as NULL (the reader
            # never yields empty strings), and a lone "\." can never end the COPY data.
            return buffer, csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")

        try:
            with self._new_member_rows() as formatter:
                buffer, writer = new_writer()
                new: list[ParsedRow] = []
                piece_rows = iter(_NEW_PIECE_ROWS)
                next_piece = next(piece_rows)
                in_chunk = 0
                for rows in batched(self.member_csv, _BATCH_ROWS):
                    writer.writerows(self._route(rows, new if formatter else None))
                    in_chunk += len(rows)
                    self.rows_staged += len(rows)
                    chunk_ends = in_chunk >= _CHUNK_ROWS
                    if formatter and new and (chunk_ends or len(new) >= next_piece):
                        next_piece = next(piece_rows, next_piece)
                        if not put(formatter.format(new)):
                            return
                        new = []
                    if buffer.tell() >= _COPY_PIECE_CHARS or (chunk_ends and buffer.tell()):
                        if not put(buffer.getvalue()):
                            return
                        buffer, writer = new_writer()
                    if chunk_ends:
                        # Batches divide chunks: the next chunk starts clean.
                        if not put(self._end_chunk()):
                            return
                        in_chunk = 0
                if formatter and new:
                    put(formatter.format(new))
                if buffer.tell():
                    put(buffer.getvalue())
                if in_chunk:
                    put(self._end_chunk())
                put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            put(exc)
            put(_ChunkEnd([]))

    @contextmanager
    def _new_member_rows(self) -> Iterator[NewMemberRows | None]:
        """The parser's formatter of new members, on a connection of its own (None when new
        members go the staging way)."""
        if not self.copy_new_members:
            yield None
            return
        list_id = self.job.list_id
        assert list_id is not None  # locked above (LOCK_LIST)
        assert self._engine is not None
        with self._engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            yield NewMemberRows(
                connection,
                list_id=list_id,
                consent=self.consent,
                now=self.now,
                subscription_status=SubscriptionStatus.SUBSCRIBED.value,
                subscription_source=SubscriptionSource.IMPORT.value,
            )

    def _end_chunk(self) -> _ChunkEnd:
        end = _ChunkEnd(self._maybe_seen, self._warnings)
        self._maybe_seen = []
        self._warnings = []
        self._chunk_first.clear()
        return end

    def _route(self, rows: list[Any], new: list[ParsedRow] | None) -> list[tuple[Any, ...]]:
        """A batch's rows as COPY tuples for import_chunk, with the checks that need no
        database done here, on the parsing core: duplicates within the chunk (a dict of the
        chunk's addresses), and values too long for their column (left out, with a warning).
        Addresses an earlier chunk may have had (the Bloom filter says so) are listed for
        _process_chunk to look up in import_seen; warnings are listed for it to record if
        their row is not skipped.

        Given `new`, a row that is surely a new member (valid, no value left out, an address
        that neither this file, the suppressions nor the members had: both Bloom filters say
        "no", which is never wrong) is appended to it instead, for new_members.py.
        """
        staged: list[tuple[Any, ...]] = []
        stage = staged.append
        keys = self.attribute_keys
        skipped_tail = (None,) * (len(sql.STAGE_FIELDS) - 1 + len(keys))
        parsed = ParsedRow
        chunk_first = self._chunk_first
        bloom = self._bloom
        known = self._known
        mask = len(bloom) * 8 - 1
        limit_first = FIELD_LIMITS["first_name"]
        limit_last = FIELD_LIMITS["last_name"]
        limit_postal = FIELD_LIMITS["postal_code"]
        limit_local = FIELD_LIMITS["local"]
        # `row.__class__ is parsed` rather than isinstance: this loop runs a million times.
        for row in rows:
            if row.__class__ is not parsed:
                stage((row.line, row.email, *skipped_tail, row.reason))
                continue
            line, email, first_name, last_name, _, postal_code, local, attributes, _ = row
            if (
                (first_name and len(first_name) > limit_first)
                or (last_name and len(last_name) > limit_last)
                or (postal_code and len(postal_code) > limit_postal)
                or (local and len(local) > limit_local)
            ):
                row = within_limits(row)
            first = chunk_first.get(email)
            if first is not None:
                stage((line, email, *skipped_tail, f"duplicate of line {first}"))
                continue
            chunk_first[email] = line
            surely_new = new is not None
            h = hash(email)  # _bloom_positions, inlined: this loop runs a million times
            i, j = h & mask, (h >> 31) & mask
            if bloom[i >> 3] & (1 << (i & 7)) and bloom[j >> 3] & (1 << (j & 7)):
                self._maybe_seen.append((line, email))
                surely_new = False
            else:
                bloom[i >> 3] |= 1 << (i & 7)
                bloom[j >> 3] |= 1 << (j & 7)
            if row[8]:
                self._warnings.extend((line, email, warning) for warning in row[8])
                surely_new = False
            if surely_new and known[i >> 3] & (1 << (i & 7)) and known[j >> 3] & (1 << (j & 7)):
                surely_new = False
            if surely_new:
                new.append(row)  # type: ignore[union-attr]  # surely_new implies a list
            elif keys:
                stage((*row[:7], *[attributes.get(key) for key in keys], None))
            else:
                stage((*row[:7], None))
        return staged

    def _process_chunk(self) -> None:
        report = self.report
        new = self.chunk_new
        report.rows += new
        report.added += new
        report.subscribed += new
        self._classify_chunk()
        counts = self._exec(sql.COUNT_CHUNK).one()
        rows, good, existing = int(counts[0]), int(counts[1]), int(counts[2])
        if not rows:
            return
        report.rows += rows
        report.skipped += rows - good
        if rows - good:
            self._timed(
                "issues",
                sql.RECORD_SKIPPED,
                import_id=self.job.id,
                kind=ImportIssueKind.SKIPPED.value,
            )
        if self.chunk_warnings:
            report.warnings += self._warning_issues()
        self._timed("seen", sql.REMEMBER_SEEN)
        if existing:
            updated = self._update_members()
            report.updated += updated
            report.unchanged += existing - updated
            report.not_subscribed += self._not_subscribed_issues()
            report.subscribed += self._subscribe_existing()
        added, subscribed = self._insert_members()
        report.added += added
        report.subscribed += subscribed
        if added - subscribed:
            # New members whose address is suppressed: kept, not subscribed.
            report.not_subscribed += self._suppressed_new_issues()

    def _warning_issues(self) -> int:
        """Record the chunk's warnings whose rows were imported (statements.RECORD_WARNINGS)."""
        warnings = self.chunk_warnings
        result = self._timed(
            "issues",
            sql.RECORD_WARNINGS,
            import_id=self.job.id,
            kind=ImportIssueKind.WARNING.value,
            lines=[line for line, _, _ in warnings],
            emails=[email for _, email, _ in warnings],
            reasons=[reason for _, _, reason in warnings],
        )
        return int(result.rowcount or 0)

    def _classify_chunk(self) -> None:
        """Finish deciding the chunk's rows in the database.

        The parser already skipped values too long for their column and duplicates within
        the chunk. Left: duplicates of earlier chunks, among the few rows the Bloom filter
        flagged, and, when the members table was not empty as the import began, the existing
        member of each address (one probe of the unique email index per row).

        Into an empty members table, an address an earlier chunk took is simply a member
        now: a probe of the unique index each, and their first lines are filled in once, at
        the end (_name_earlier_lines). Otherwise the first line comes from import_seen at
        once: one scan of it, growing with the file, with a hashed IN list.
        """
        maybe = self.chunk_maybe_seen
        if maybe and self.chunks_done and self.members_were_empty:
            marked = self._timed(
                "earlier duplicates",
                sql.MARK_DUPLICATES_OF_NEW_MEMBERS,
                placeholder=_EARLIER_LINE,
                lines=[line for line, _ in maybe],
            )
            self.earlier_lines_unnamed += int(marked.rowcount or 0)
        elif maybe and self.chunks_done:
            firsts = dict(
                self._timed(
                    "earlier duplicates",
                    sql.FIRST_LINES_SEEN,
                    emails=[email for _, email in maybe],
                )
                .tuples()
                .all()
            )
            pairs = [(line, firsts[email]) for line, email in maybe if email in firsts]
            if pairs:
                self._timed(
                    "earlier duplicates",
                    sql.MARK_EARLIER_DUPLICATES,
                    lines=[line for line, _ in pairs],
                    firsts=[first for _, first in pairs],
                )
        if not self.members_were_empty:
            self._timed("match", sql.MATCH_MEMBERS)
        self.chunks_done += 1

    def _name_earlier_lines(self) -> None:
        """Replace the placeholder of duplicates of earlier chunks by their first line: one
        hash join of import_seen with the (few) duplicated addresses."""
        self._timed(
            "earlier duplicates",
            sql.NAME_EARLIER_LINES,
            import_id=self.job.id,
            placeholder=_EARLIER_LINE,
        )

    def _consent_params(self) -> dict[str, Any]:
        c = self.consent
        return {
            "c_basis": c.basis,
            "c_source": c.source if c.basis else "",
            "c_at": c.at if c.basis else None,
            "c_expires": c.expires_at,
            "c_detail": _json(c.detail),
        }

    def _update_members(self) -> int:
        attributes, params = sql.attributes_json(self.attribute_keys)
        basis = self.consent.basis
        statement = sql.update_members(
            attributes,
            import_replaces_sql(basis, self.consent.expires_at) if basis is not None else None,
            renews_membership=basis == ConsentBasis.IMPLIED_MEMBERSHIP.value,
        )
        result = self._timed("update", statement, now=self.now, **params, **self._consent_params())
        return int(result.rowcount or 0)

    def _not_subscribed_issues(self) -> int:
        result = self._timed(
            "not subscribed",
            sql.NOT_SUBSCRIBED_ISSUES,
            import_id=self.job.id,
            kind=ImportIssueKind.NOT_SUBSCRIBED.value,
            suppressed=SUPPRESSED_REASON,
            unsubscribed=UNSUBSCRIBED_REASON,
            list_id=self.job.list_id,
            unsubscribed_status=SubscriptionStatus.UNSUBSCRIBED.value,
        )
        return int(result.rowcount or 0)

    def _subscribe_existing(self) -> int:
        result = self._timed(
            "subscribe existing",
            sql.SUBSCRIBE_EXISTING,
            list_id=self.job.list_id,
            status=SubscriptionStatus.SUBSCRIBED.value,
            source=SubscriptionSource.IMPORT.value,
            now=self.now,
        )
        return int(result.rowcount or 0)

    def _insert_members(self) -> tuple[int, int]:
        attributes, params = sql.attributes_json(self.attribute_keys)
        # The one statement that skips the subscriptions' two foreign-key checks (about 7 µs
        # a row, a third of the import): it inserts subscriptions of members created by that
        # very statement, for a list locked above, so their references are valid.
        with fk_checks_skipped(self.session, self.skip_fk_checks):
            row = self._timed(
                "insert",
                sql.insert_members(attributes),
                now=self.now,
                list_id=self.job.list_id,
                status=SubscriptionStatus.SUBSCRIBED.value,
                source=SubscriptionSource.IMPORT.value,
                **params,
                **self._consent_params(),
            ).one()
        return int(row[0]), int(row[1])

    def _suppressed_new_issues(self) -> int:
        result = self._timed(
            "not subscribed",
            sql.SUPPRESSED_NEW_ISSUES,
            import_id=self.job.id,
            kind=ImportIssueKind.NOT_SUBSCRIBED.value,
            suppressed=SUPPRESSED_REASON,
        )
        return int(result.rowcount or 0)

    def _reason_counts(self) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        rows = self._exec(sql.REASON_COUNTS, import_id=self.job.id).all()
        counters: dict[str, Counter[str]] = {kind.value: Counter() for kind in ImportIssueKind}
        for kind, group, count in rows:
            counters[kind][group] += count
        skipped, not_subscribed, warned = (
            dict(counters[kind.value].most_common())
            for kind in (
                ImportIssueKind.SKIPPED,
                ImportIssueKind.NOT_SUBSCRIBED,
                ImportIssueKind.WARNING,
            )
        )
        return skipped, not_subscribed, warned


@contextmanager
def _prompt_thread_switches() -> Iterator[None]:
    """Let this thread take the GIL back promptly from the parser thread while the import runs.

    The parser is pure Python and never waits; this thread mostly waits for PostgreSQL, and
    each time it wakes (a statement's result, room to send more COPY data) it must take the
    GIL back from the parser, which gives it up only every sys.getswitchinterval() (5 ms).
    Meanwhile PostgreSQL has nothing to do: a few such waits per statement, five statements
    per piece of new members. At 0.5 ms, a million-row import took 12.7 s instead of 14.5 s.
    The interval is the process's: it is restored when the import ends.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
