"""Member CSV import: one service for the web upload, the API and `flask members import`.

The file is streamed (app.services.audience.member_csv), never held in memory. On PostgreSQL
a parser thread turns rows into COPY data while the session's connection streams it into a
temporary staging table; set-based SQL then finds duplicates, updates and inserts members, and
subscribes them, all in the caller's transaction, so a failed import changes nothing. SQLite
(`make run`) takes a batched path through the same API and gives the same report.

Rules every path keeps:

- Duplicates within the file: the first row (by line) wins; the others are reported as
  "duplicate of line N".
- Only fields given in the file change a member (an empty cell keeps what is there); custom
  columns are merged into the member's attributes.
- A suppressed address is kept as a member but never subscribed; someone who unsubscribed from
  the list is not subscribed again. Both are reported, with their line numbers.
- Consent chosen for the import is recorded only where it does not weaken what is on file
  (consent.import_should_replace).
- A file is read as UTF-8, a row with bytes that are not UTF-8 skipped; a file that is
  Windows-1252 through and through (Excel's "CSV (Comma delimited)") is read whole as such,
  and the report says so (member_csv.choose_encoding decides, from the whole file).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from app.infra.sql import is_postgresql
from app.models import (
    IMPORT_TRANSITIONS,
    ConsentBasis,
    ImportIssue,
    ImportIssueKind,
    ImportStatus,
    MailingList,
    Member,
    MemberImport,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
    Suppression,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience.consent import consent_rank, implied_expiry, import_should_replace
from app.services.audience.member_csv import (
    UTF_8,
    WINDOWS_1252,
    CsvRefused,
    MemberCsv,
    ParsedRow,
    choose_encoding,
    open_member_csv,
)
from app.services.audience.members import MEMBER_INSERT_LOCK

log = logging.getLogger(__name__)

SUPPRESSED_REASON = "suppressed address: kept as member, not subscribed"
UNSUBSCRIBED_REASON = "unsubscribed from this list earlier: kept as member, not subscribed again"
WINDOWS_1252_NOTE = (
    "Read as Windows-1252 (Excel's “CSV (Comma delimited)”): accents kept. "
    "Next time, save as “CSV UTF-8”."
)
# Column widths of the members table: a longer value skips its row rather than failing the file.
FIELD_LIMITS = {"first_name": 200, "last_name": 200, "postal_code": 20, "local": 100}
_FIELD_WORDS = {
    "first_name": "first name",
    "last_name": "last name",
    "postal_code": "postal code",
    "local": "local",
}
_STAGE_FIELDS = ("email", "first_name", "last_name", "language", "postal_code", "local")
# PostgreSQL accepts at most 100 function arguments: jsonb_build_object takes 40 pairs at a time.
_JSON_PAIRS_PER_CALL = 40
_COPY_PIECE_CHARS = 1 << 20
_CHUNK_ROWS = 50_000  # rows per COPY + SQL round; a whole chunk fits the parse-ahead queue
_QUEUED_PIECES = 8  # about 8 MB of COPY data parsed ahead at most (memory stays flat)
_TEMP_BUFFERS = "256MB"
_BATCH_ROWS = 1000

ProgressCallback = Callable[["ImportProgress"], None]


class ImportConsent(StrEnum):
    """What an organizer tells us about how the people in a file agreed to hear from us."""

    NONE = "none"
    MEMBERSHIP = ConsentBasis.IMPLIED_MEMBERSHIP.value
    EXPRESS = ConsentBasis.EXPRESS.value
    INQUIRY = ConsentBasis.IMPLIED_INQUIRY.value


CONSENT_CHOICES = {
    ImportConsent.MEMBERSHIP: "They are current members (implied consent while they are "
    "members, and two years after)",
    ImportConsent.EXPRESS: "They said yes to receiving our emails (express consent, e.g. a "
    "signed sign-up sheet)",
    ImportConsent.INQUIRY: "They contacted us with a question (implied consent for six months)",
    ImportConsent.NONE: "Don't record consent (people without consent are not emailed)",
}


class ImportError_(Exception):
    """An import that cannot start (unknown list, missing file); the message is for people."""


@dataclass
class ImportProgress:
    """Where a running import is: ``phase`` reading (bytes of the file) or saving (steps)."""

    phase: str
    done: int
    total: int
    rows: int = 0

    @property
    def percent(self) -> int:
        if self.phase == "done":
            return 100
        if self.total <= 0:
            return 0
        fraction = self.done / self.total
        # Reading the file is most of the time; the saving steps fill the last fifth.
        return int(80 * fraction) if self.phase == "reading" else 80 + int(19 * fraction)


@dataclass
class ImportReport:
    """The outcome of an import; issues (with line numbers) are in member_import_issues.

    ``encoding`` is how the file was read (utf-8, or windows-1252 for Excel's legacy CSV);
    ``note`` says so to the organizer when it is not UTF-8, or is None.
    """

    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    subscribed: int = 0
    already_on_list: int = 0
    not_subscribed: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    not_subscribed_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    strategy: str = ""
    encoding: str = UTF_8
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Consent:
    basis: str | None
    at: datetime
    expires_at: datetime | None
    source: str
    detail: dict[str, Any]


_REASON_GROUPS = [
    (re.compile(r"^duplicate of line \d+$"), "duplicate in the file"),
    (re.compile(r"^line \d+ is longer than .*"), "line too long"),
    (re.compile(r"^field '.*' is longer than \d+ characters$"), "field too long"),
]


def reason_group(reason: str) -> str:
    """The reason without its particulars, for counting: 'invalid email address', ...

    The PostgreSQL path groups with the same rules in SQL (_SQL_REASON_GROUP).
    """
    for pattern, group in _REASON_GROUPS:
        if pattern.match(reason):
            return group
    return re.split(r":| \(| '", reason, maxsplit=1)[0]


# ---------------------------------------------------------------------------------------------
# Creating and running import jobs


def check_file(stream: BinaryIO) -> MemberCsv:
    """Open a member CSV enough to know it can be imported (header, email column).

    Reads the whole file once to choose its encoding (member_csv.choose_encoding: C-speed,
    tens of milliseconds for 90 MB), so a Windows-1252 file with an accented header passes.

    Args:
        stream: the file, opened in binary mode, seekable (the upload saved to disk, or the
            CLI's path).

    Raises:
        CsvRefused: the file as a whole cannot be imported; the message says why.
    """
    encoding = choose_encoding(stream)
    stream.seek(0)
    return open_member_csv(stream, encoding)


def create_import(
    session: DbSession,
    *,
    list_id: int,
    path: str | os.PathLike[str],
    filename: str,
    origin: str,
    user_id: int | None = None,
    consent: ImportConsent | str = ImportConsent.NONE,
) -> MemberImport:
    """Record an import waiting to run (status queued). Enqueues nothing: the caller does.

    Raises:
        ImportError_: the list does not exist or the file is missing.
    """
    if session.get(MailingList, list_id) is None:
        raise ImportError_("That list does not exist.")
    file_path = Path(path)
    if not file_path.is_file():
        raise ImportError_(f"The file {filename} is missing.")
    job = MemberImport(
        list_id=list_id,
        user_id=user_id,
        origin=origin,
        filename=filename[:255],
        path=str(file_path),
        size_bytes=file_path.stat().st_size,
        consent=ImportConsent(consent).value,
        status=ImportStatus.QUEUED.value,
    )
    session.add(job)
    session.flush()
    return job


def queue_upload(
    session: DbSession,
    upload: Any,
    *,
    list_id: int,
    import_dir: str | os.PathLike[str],
    origin: str,
    user_id: int | None = None,
    consent: ImportConsent | str = ImportConsent.NONE,
) -> MemberImport:
    """Keep an uploaded file, check it is a member CSV, record the import and queue its task.

    The file is streamed to `import_dir` under a random name (never the client's). Changes:
    a queued MemberImport. Enqueues jobs.IMPORT_MEMBERS (sent when the caller commits).

    Args:
        upload: a werkzeug FileStorage (anything with .save(path) and .filename).

    Raises:
        CsvRefused: not a CSV file, or no email column; the file is deleted, nothing recorded.
        ImportError_: unknown list.
    """
    import uuid

    from app import jobs

    if session.get(MailingList, list_id) is None:
        raise ImportError_("That list does not exist.")
    directory = Path(import_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.csv"
    upload.save(path)
    try:
        with path.open("rb") as stream:
            check_file(stream)
    except CsvRefused:
        path.unlink(missing_ok=True)
        raise
    job = create_import(
        session,
        list_id=list_id,
        path=path,
        filename=Path(upload.filename or "members.csv").name or "members.csv",
        origin=origin,
        user_id=user_id,
        consent=consent,
    )
    jobs.enqueue(session, jobs.IMPORT_MEMBERS, job.id)
    return job


def _transition(job: MemberImport, status: ImportStatus) -> None:
    if status not in IMPORT_TRANSITIONS[ImportStatus(job.status)]:
        raise ValueError(f"import {job.id}: {job.status} -> {status} is not allowed")
    job.status = status.value


def start_import(session: DbSession, import_id: int) -> MemberImport | None:
    """Mark a queued (or crashed, running) import as running; None when there is nothing to do.

    Flushes; the caller commits so the progress page sees "running" at once.
    """
    job = session.get(MemberImport, import_id)
    if job is None or job.status not in (ImportStatus.QUEUED, ImportStatus.RUNNING):
        return None
    _transition(job, ImportStatus.RUNNING)
    job.started_at = utcnow()
    session.flush()
    return job


def finish_refused(session: DbSession, import_id: int, message: str) -> None:
    """Record that the file was refused whole (nothing imported). Flushes."""
    job = session.get(MemberImport, import_id)
    if job is None:
        return
    _transition(job, ImportStatus.REFUSED)
    job.error = message
    job.finished_at = utcnow()
    session.flush()


def finish_failed(session: DbSession, import_id: int, message: str) -> None:
    """Record that the import failed on an unexpected error (its transaction rolled back)."""
    job = session.get(MemberImport, import_id)
    if job is None or job.status in (ImportStatus.DONE, ImportStatus.REFUSED):
        return
    _transition(job, ImportStatus.FAILED)
    job.error = message
    job.finished_at = utcnow()
    session.flush()


def run_import(
    session: DbSession,
    import_id: int,
    *,
    progress: ProgressCallback | None = None,
    strategy: str = "auto",
    now: datetime | None = None,
) -> ImportReport:
    """Import a queued/running import's file into its list, in the session's transaction.

    Changes members (added, or updated where the file gives different values), subscriptions
    to the import's list (source import), the consent of members where the import's consent is
    stronger, the import row (status done, counts, report) and its issues. Enqueues nothing.
    Flushes; the caller commits (or rolls back, which undoes everything).

    Args:
        session: the database session.
        import_id: the MemberImport to run.
        progress: called now and then with an ImportProgress (from this thread).
        strategy: "copy" (PostgreSQL COPY + set-based SQL), "batched" (any database), or
            "auto" (copy on PostgreSQL).
        now: the import's timestamp (tests pin it).

    Raises:
        CsvRefused: the file is not a CSV or has no email column; nothing changed.
        ImportError_: the import or its list is gone.
    """
    job = session.get(MemberImport, import_id)
    if job is None:
        raise ImportError_("That import does not exist.")
    if job.list_id is None or session.get(MailingList, job.list_id) is None:
        raise ImportError_("The list of this import was deleted.")
    now = now or utcnow()
    consent = _import_consent(job, now)
    if strategy == "auto":
        strategy = "copy" if is_postgresql(session) else "batched"
    started = time.perf_counter()
    with open(job.path, "rb") as raw:
        # The encoding needs the whole file (the first accent may be on line 80,000): one
        # C-speed pass to its end (member_csv.choose_encoding), then the rows from the start.
        encoding = choose_encoding(raw)
        raw.seek(0)
        stream = _CountingReader(raw)
        member_csv = open_member_csv(stream, encoding)  # type: ignore[arg-type]  # may raise CsvRefused before anything changes
        if strategy == "copy":
            report = _CopyImport(session, job, member_csv, stream, consent, now, progress).run()
        else:
            report = _BatchedImport(session, job, member_csv, stream, consent, now, progress).run()
    report.seconds = round(time.perf_counter() - started, 3)
    report.strategy = strategy
    report.encoding = member_csv.encoding
    if member_csv.encoding == WINDOWS_1252:
        report.note = WINDOWS_1252_NOTE
    job.rows, job.added, job.updated, job.unchanged = (
        report.rows,
        report.added,
        report.updated,
        report.unchanged,
    )
    job.skipped, job.subscribed, job.not_subscribed = (
        report.skipped,
        report.subscribed,
        report.not_subscribed,
    )
    job.report = report.to_dict()
    job.error = None
    _transition(job, ImportStatus.DONE)
    job.finished_at = utcnow()
    session.flush()
    if progress:
        progress(ImportProgress("done", 1, 1, report.rows))
    return report


def import_members(
    session: DbSession,
    *,
    path: str | os.PathLike[str],
    list_id: int,
    origin: str = "cli",
    user_id: int | None = None,
    consent: ImportConsent | str = ImportConsent.NONE,
    progress: ProgressCallback | None = None,
    strategy: str = "auto",
) -> tuple[MemberImport, ImportReport]:
    """Create an import and run it at once (the CLI and the benchmark). Flushes, no commit.

    Raises:
        CsvRefused: the file cannot be imported; nothing changed (no import row either).
        ImportError_: unknown list or missing file.
    """
    with open(path, "rb") as stream:
        check_file(stream)
    job = create_import(
        session,
        list_id=list_id,
        path=path,
        filename=Path(path).name,
        origin=origin,
        user_id=user_id,
        consent=consent,
    )
    start_import(session, job.id)
    report = run_import(session, job.id, progress=progress, strategy=strategy)
    return job, report


def issues_of(
    session: DbSession, import_id: int, *, limit: int | None = None
) -> Iterator[ImportIssue]:
    """The import's issues in line order, streamed from the database (flat memory)."""
    query = (
        sa.select(ImportIssue)
        .where(ImportIssue.import_id == import_id)
        .order_by(ImportIssue.line, ImportIssue.id)
        .execution_options(yield_per=2000)
    )
    if limit is not None:
        query = query.limit(limit)
    yield from session.scalars(query)


def _import_consent(job: MemberImport, now: datetime) -> _Consent:
    choice = ImportConsent(job.consent or ImportConsent.NONE.value)
    if choice is ImportConsent.NONE:
        return _Consent(None, now, None, "", {})
    return _Consent(
        basis=choice.value,
        at=now,
        expires_at=implied_expiry(choice.value, now, None),
        source=f"import: {job.filename}"[:200],
        # Kept short: it is repeated on every member; the import row has the file, the user,
        # the time and the organizer's choice.
        detail={"import_id": job.id},
    )


class _CountingReader:
    """A binary stream that counts the bytes read, for the progress bar."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0
        self.size = os.fstat(raw.fileno()).st_size

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.bytes_read += len(data)
        return data


class _Throttled:
    """Calls the progress callback at most every 0.25 s (it writes to Redis)."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self._callback = callback
        self._last = 0.0

    def __call__(self, progress: ImportProgress, force: bool = False) -> None:
        if self._callback is None:
            return
        moment = time.monotonic()
        if force or moment - self._last >= 0.25:
            self._last = moment
            self._callback(progress)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: COPY into a staging table, then set-based SQL


_END = object()
_BLOOM_BYTES = 1 << 24  # must be a power of two
# A duplicate of an earlier chunk's row while its first line is not known yet; the import
# names the line before it ends (_CopyImport._name_earlier_lines).
_EARLIER_LINE = "duplicate of an earlier line"


@dataclass(frozen=True)
class _ChunkEnd:
    """Marks the end of a chunk's COPY data; carries its maybe-seen (line, email) pairs."""

    maybe_seen: list[tuple[int, str]]


def _too_long_reason(row: ParsedRow) -> str:
    for name, limit in FIELD_LIMITS.items():
        if len(getattr(row, name) or "") > limit:
            return f"{_FIELD_WORDS[name]} is longer than {limit} characters"
    raise AssertionError("no field is too long")


class _ImportRun:
    """What both import paths (PostgreSQL COPY, batched) start from."""

    def __init__(
        self,
        session: DbSession,
        job: MemberImport,
        member_csv: MemberCsv,
        stream: _CountingReader,
        consent: _Consent,
        now: datetime,
        progress: ProgressCallback | None,
    ) -> None:
        self.session = session
        self.job = job
        self.member_csv = member_csv
        self.stream = stream
        self.consent = consent
        self.now = now
        self.progress = _Throttled(progress)
        self.report = ImportReport()


class _CopyImport(_ImportRun):
    """The PostgreSQL import: chunks of the file COPYed into a staging table, then set-based SQL.

    A producer thread parses the file and formats COPY data (pure Python, one core) while this
    thread runs each chunk's SQL (PostgreSQL works on the other core; psycopg releases the GIL
    while it waits), so parsing chunk k+1 overlaps the database work on chunk k. The queue
    between them is bounded: memory stays flat whatever the size of the file.

    Per chunk, every step is one statement over the chunk's rows:
    1. COPY into import_chunk (a temporary table: no WAL); the parser has already marked
       values too long and duplicates within the chunk (_stage_rows);
    2. mark the rest in place (_classify_chunk): duplicates of earlier chunks, and each
       row's existing member;
    3. record skipped rows as issues; remember the chunk's addresses in import_seen;
    4. update existing members whose values change; subscribe existing members (ON CONFLICT
       DO NOTHING keeps existing subscribed/pending/unsubscribed rows as they are);
    5. insert new members and their subscriptions in one statement (a data-modifying CTE).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
        self._chunk_first: dict[str, int] = {}
        self._maybe_seen: list[tuple[int, str]] = []
        self.chunk_maybe_seen: list[tuple[int, str]] = []
        self._timings: dict[str, float] = {}

    def _exec(self, sql: str, **params: Any) -> sa.CursorResult[Any]:
        return self.session.execute(sa.text(sql), params)  # type: ignore[return-value]

    def _timed(self, name: str, sql: str, **params: Any) -> sa.CursorResult[Any]:
        started = time.perf_counter()
        result = self._exec(sql, **params)
        self._timings[name] = self._timings.get(name, 0.0) + time.perf_counter() - started
        return result

    def run(self) -> ImportReport:
        report = self.report
        # Imports run one at a time; creating single members takes the same lock shared
        # (members.lock_member_inserts), so no other transaction can add an address between
        # our lookup and our insert, and the inserts need no ON CONFLICT (speculative insertion
        # costs about half as much again per row).
        self._exec("SELECT pg_advisory_xact_lock(:key)", key=MEMBER_INSERT_LOCK)
        # Sorts and hashes of a chunk stay in memory; JIT compiling costs more than it saves.
        self._exec("SET LOCAL work_mem = '128MB'")
        self._exec("SET LOCAL jit = off")
        self._raise_temp_buffers()
        # The list cannot be deleted under us (its subscriptions are being written).
        self._exec(
            "SELECT id FROM mailing_lists WHERE id = :list_id FOR KEY SHARE",
            list_id=self.job.list_id,
        )
        self.skip_fk_checks = self._may_skip_fk_checks()
        if not self.skip_fk_checks:
            log.warning(
                "import %s: this database role may not set session_replication_role, so new "
                "subscriptions pay their foreign-key checks (about a third slower); a superuser "
                "can run: GRANT SET ON PARAMETER session_replication_role TO <role>",
                self.job.id,
            )
        self.members_were_empty = not self._exec("SELECT EXISTS (SELECT 1 FROM members)").scalar()
        self._create_tables()
        chunks: queue.Queue[Any] = queue.Queue(maxsize=_QUEUED_PIECES)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(chunks, stop), name="import-parse", daemon=True
        )
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
        report.skip_reasons, report.not_subscribed_reasons = self._reason_counts()
        for name in ("import_chunk", "import_seen"):
            self._exec(f"DROP TABLE IF EXISTS {name}")
        log.debug(
            "import %s: %s s in SQL steps %s",
            self.job.id,
            round(sum(self._timings.values()), 2),
            {k: round(v, 2) for k, v in self._timings.items()},
        )
        return report

    def _raise_temp_buffers(self) -> None:
        """Keep the staging tables in memory: 8 MB of temporary buffers (the default) would
        write a 100,000-row chunk out to disk and read it back on every statement.

        PostgreSQL accepts the change only before the connection first uses a temporary table,
        so it is set for the session (a pooled connection keeps it for its next import) and
        tried in a savepoint: refused, the import goes on, slower.
        """
        try:
            with self.session.begin_nested():
                self._exec(f"SET temp_buffers = '{_TEMP_BUFFERS}'")
        except sa.exc.DBAPIError:
            log.info("import %s: temp_buffers stays at %s", self.job.id, self._show("temp_buffers"))

    def _show(self, name: str) -> str:
        return str(self._exec(f"SHOW {name}").scalar())

    def _may_skip_fk_checks(self) -> bool:
        """Whether this role may turn off foreign-key triggers for a statement.

        Checking the subscriptions' two foreign keys costs about 7 µs a row (one SPI query and
        a row lock each), about a third of the import. The one statement that skips them
        inserts subscriptions of members created by that very statement, for a list locked
        above: their references are valid by construction. Only roles allowed to SET
        session_replication_role may (superusers, GRANT SET ON PARAMETER on PostgreSQL 15+,
        and managed services' admin roles that have their own rules), so it is simply tried,
        in a savepoint; refused, the import keeps the checks and runs more slowly.
        """
        try:
            with self.session.begin_nested():
                self._exec("SET LOCAL session_replication_role = replica")
                self._exec("SET LOCAL session_replication_role = origin")
        except sa.exc.DBAPIError:
            return False
        return True

    def _create_tables(self) -> None:
        attributes = "".join(f", a{i} text" for i in range(len(self.attribute_keys)))
        for name in ("import_chunk", "import_seen"):
            self._exec(f"DROP TABLE IF EXISTS {name}")
        # Temporary tables: no WAL, private to this connection, dropped at the end.
        self._exec(
            "CREATE TEMPORARY TABLE import_chunk (line integer NOT NULL, email text, "
            "first_name text, last_name text, language text, postal_code text, local text"
            f"{attributes}, skip text, member_id bigint) ON COMMIT DROP"
        )
        # No index: each chunk hash-joins against it, cheaper than a btree insert per row.
        self._exec(
            "CREATE TEMPORARY TABLE import_seen (email text NOT NULL, line integer NOT NULL)"
            " ON COMMIT DROP"
        )

    def _stage_columns(self) -> list[str]:
        return [
            "line",
            *_STAGE_FIELDS,
            *(f"a{i}" for i in range(len(self.attribute_keys))),
            "skip",
        ]

    def _copy_chunk(self, chunks: queue.Queue[Any]) -> bool:
        """COPY the next chunk into import_chunk; False when the file is done."""
        first = chunks.get()
        if first is _END:
            return False
        columns = self._stage_columns()
        text_columns = ", ".join(c for c in columns if c != "line")
        sql = (
            f"COPY import_chunk ({', '.join(columns)}) FROM STDIN "
            f"WITH (FORMAT csv, FORCE_NULL ({text_columns}))"
        )
        self._exec("TRUNCATE import_chunk")
        driver = self.session.connection().connection.driver_connection
        assert driver is not None
        started = time.perf_counter()
        piece = first
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            while not isinstance(piece, _ChunkEnd):
                if isinstance(piece, BaseException):
                    raise piece
                copy.write(piece)
                piece = chunks.get()
        self.chunk_maybe_seen = piece.maybe_seen
        self._timings["copy"] = self._timings.get("copy", 0.0) + time.perf_counter() - started
        return True

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
            buffer, writer = new_writer()
            in_chunk = 0
            for rows in _batched(self._stage_rows(), _BATCH_ROWS):
                writer.writerows(rows)
                in_chunk += len(rows)
                self.rows_staged += len(rows)
                if buffer.tell() >= _COPY_PIECE_CHARS or in_chunk >= _CHUNK_ROWS:
                    if not put(buffer.getvalue()):
                        return
                    buffer, writer = new_writer()
                if in_chunk >= _CHUNK_ROWS:
                    # The generator is paused between batches: the next chunk starts clean.
                    if not put(self._end_chunk()):
                        return
                    in_chunk = 0
            if buffer.tell():
                put(buffer.getvalue())
            if in_chunk:
                put(self._end_chunk())
            put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            put(exc)
            put(_ChunkEnd([]))

    def _end_chunk(self) -> _ChunkEnd:
        end = _ChunkEnd(self._maybe_seen)
        self._maybe_seen = []
        self._chunk_first.clear()
        return end

    def _stage_rows(self) -> Iterator[tuple[Any, ...]]:
        """Rows as COPY tuples, with the checks that need no database done here, on the
        parsing core: values too long for their column, and duplicates within the chunk (a
        dict of the chunk's addresses). Addresses an earlier chunk may have had (the Bloom
        filter says so) are listed for _process_chunk to look up in import_seen."""
        keys = self.attribute_keys
        skipped_tail = (None,) * (len(_STAGE_FIELDS) - 1 + len(keys))
        parsed = ParsedRow
        chunk_first = self._chunk_first
        bloom = self._bloom
        mask = len(bloom) * 8 - 1
        limit_first = FIELD_LIMITS["first_name"]
        limit_last = FIELD_LIMITS["last_name"]
        limit_postal = FIELD_LIMITS["postal_code"]
        limit_local = FIELD_LIMITS["local"]
        # `row.__class__ is parsed` rather than isinstance: this loop runs a million times.
        rows: Iterable[Any] = self.member_csv
        for row in rows:
            if row.__class__ is not parsed:
                yield (row.line, row.email, *skipped_tail, row.reason)
                continue
            line, email, first_name, last_name, _, postal_code, local, attributes = row
            if (
                (first_name and len(first_name) > limit_first)
                or (last_name and len(last_name) > limit_last)
                or (postal_code and len(postal_code) > limit_postal)
                or (local and len(local) > limit_local)
            ):
                yield (line, email, *skipped_tail, _too_long_reason(row))
                continue
            first = chunk_first.get(email)
            if first is not None:
                yield (line, email, *skipped_tail, f"duplicate of line {first}")
                continue
            chunk_first[email] = line
            # Two bit positions from one 64-bit hash (Python's str hash, stable in a process).
            h = hash(email)
            i, j = h & mask, (h >> 31) & mask
            if bloom[i >> 3] & (1 << (i & 7)) and bloom[j >> 3] & (1 << (j & 7)):
                self._maybe_seen.append((line, email))
            else:
                bloom[i >> 3] |= 1 << (i & 7)
                bloom[j >> 3] |= 1 << (j & 7)
            if keys:
                yield (*row[:7], *[attributes.get(key) for key in keys], None)
            else:
                yield (*row[:7], None)

    def _process_chunk(self) -> None:
        report = self.report
        self._classify_chunk()
        counts = self._exec(
            "SELECT count(*), count(*) FILTER (WHERE skip IS NULL), "
            "count(*) FILTER (WHERE skip IS NULL AND member_id IS NOT NULL) FROM import_chunk"
        ).one()
        rows, good, existing = int(counts[0]), int(counts[1]), int(counts[2])
        report.rows += rows
        report.skipped += rows - good
        if rows - good:
            self._timed(
                "issues",
                """
                INSERT INTO member_import_issues (import_id, line, kind, email, reason)
                SELECT :import_id, line, :kind, email, skip FROM import_chunk
                WHERE skip IS NOT NULL ORDER BY line
                """,
                import_id=self.job.id,
                kind=ImportIssueKind.SKIPPED.value,
            )
        self._timed(
            "seen",
            "INSERT INTO import_seen (email, line) "
            "SELECT email, line FROM import_chunk WHERE skip IS NULL",
        )
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
                """
                UPDATE import_chunk c SET skip = :placeholder FROM members m
                WHERE c.line = ANY(:lines) AND c.skip IS NULL AND m.email = c.email
                """,
                placeholder=_EARLIER_LINE,
                lines=[line for line, _ in maybe],
            )
            self.earlier_lines_unnamed += int(marked.rowcount or 0)
        elif maybe and self.chunks_done:
            firsts = dict(
                self._timed(
                    "earlier duplicates",
                    "SELECT email, min(line) FROM import_seen WHERE email = ANY(:emails) "
                    "GROUP BY email",
                    emails=[email for _, email in maybe],
                )
                .tuples()
                .all()
            )
            pairs = [(line, firsts[email]) for line, email in maybe if email in firsts]
            if pairs:
                self._timed(
                    "earlier duplicates",
                    """
                    UPDATE import_chunk c SET skip = 'duplicate of line ' || d.first_line
                    FROM unnest(CAST(:lines AS integer[]), CAST(:firsts AS integer[]))
                        AS d(line, first_line)
                    WHERE c.line = d.line AND c.skip IS NULL
                    """,
                    lines=[line for line, _ in pairs],
                    firsts=[first for _, first in pairs],
                )
        if not self.members_were_empty:
            self._timed(
                "match",
                """
                UPDATE import_chunk c SET member_id = m.id FROM members m
                WHERE c.skip IS NULL AND m.email = c.email
                """,
            )
        self.chunks_done += 1

    def _name_earlier_lines(self) -> None:
        """Replace the placeholder of duplicates of earlier chunks by their first line: one
        hash join of import_seen with the (few) duplicated addresses."""
        self._timed(
            "earlier duplicates",
            """
            UPDATE member_import_issues i SET reason = 'duplicate of line ' || s.first_line
            FROM (
                SELECT seen.email, min(seen.line) AS first_line FROM import_seen seen
                WHERE seen.email IN (
                    SELECT email FROM member_import_issues
                    WHERE import_id = :import_id AND reason = :placeholder
                )
                GROUP BY seen.email
            ) s
            WHERE i.import_id = :import_id AND i.reason = :placeholder AND i.email = s.email
            """,
            import_id=self.job.id,
            placeholder=_EARLIER_LINE,
        )

    def _attributes_sql(self) -> tuple[str, dict[str, str]]:
        """A jsonb expression of the row's non-empty custom columns, and its key parameters."""
        keys = self.attribute_keys
        if not keys:
            return "'{}'::jsonb", {}
        params = {f"k{i}": key for i, key in enumerate(keys)}
        parts = []
        for start in range(0, len(keys), _JSON_PAIRS_PER_CALL):
            pairs = ", ".join(
                f"CAST(:k{i} AS text), s.a{i}"
                for i in range(start, min(start + _JSON_PAIRS_PER_CALL, len(keys)))
            )
            parts.append(f"jsonb_strip_nulls(jsonb_build_object({pairs}))")
        return " || ".join(parts), params

    def _consent_sql(self) -> str:
        """SQL true where the import's consent replaces a member's (m.*) consent record.

        The same rule as consent.import_should_replace, tested to agree with it.
        """
        basis = self.consent.basis
        if basis is None:
            return "FALSE"
        rank = (
            "CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 "
            "WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END"
        )
        if basis == ConsentBasis.EXPRESS.value:
            same_basis_renews = "FALSE"
        elif self.consent.expires_at is None:
            same_basis_renews = (
                "(m.consent_basis = CAST(:c_basis AS text) AND m.consent_expires_at IS NOT NULL)"
            )
        else:
            same_basis_renews = (
                "(m.consent_basis = CAST(:c_basis AS text) AND m.consent_expires_at IS NOT NULL"
                " AND CAST(:c_expires AS timestamptz) > m.consent_expires_at)"
            )
        return f"(m.consent_basis IS NULL OR {consent_rank(basis)} > {rank} OR {same_basis_renews})"

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
        attributes, params = self._attributes_sql()
        replaces = self._consent_sql()
        fields = ("first_name", "last_name", "language", "postal_code", "local")
        assignments = [f"{name} = COALESCE(s.{name}, m.{name})" for name in fields]
        changed = [f"COALESCE(s.{name}, m.{name}) IS DISTINCT FROM m.{name}" for name in fields]
        changed.append("(m.attributes || s.attrs) IS DISTINCT FROM m.attributes")
        assignments.append("attributes = m.attributes || s.attrs")
        if self.consent.basis is not None:
            changed.append(replaces)
            assignments += [
                f"consent_basis = CASE WHEN {replaces} THEN CAST(:c_basis AS text) "
                "ELSE m.consent_basis END",
                f"consent_source = CASE WHEN {replaces} THEN CAST(:c_source AS text) "
                "ELSE m.consent_source END",
                f"consent_at = CASE WHEN {replaces} THEN CAST(:c_at AS timestamptz) "
                "ELSE m.consent_at END",
                f"consent_expires_at = CASE WHEN {replaces} THEN "
                "CAST(:c_expires AS timestamptz) ELSE m.consent_expires_at END",
                f"consent_detail = CASE WHEN {replaces} THEN CAST(:c_detail AS jsonb) "
                "ELSE m.consent_detail END",
            ]
            if self.consent.basis == ConsentBasis.IMPLIED_MEMBERSHIP.value:
                # They are in a file of current members: their membership has not ended.
                assignments.append(
                    f"membership_ended_at = CASE WHEN {replaces} THEN NULL "
                    "ELSE m.membership_ended_at END"
                )
        # Joined on the primary key found by the match step; rows whose values would not
        # change are left alone, so `updated` counts real changes only.
        result = self._timed(
            "update",
            f"""
            UPDATE members m SET {", ".join(assignments)}, updated_at = :now
            FROM (
                SELECT s.*, {attributes} AS attrs FROM import_chunk s
                WHERE s.skip IS NULL AND s.member_id IS NOT NULL
            ) s
            WHERE m.id = s.member_id AND ({" OR ".join(changed)})
            """,  # noqa: S608 - only generated column names and constants are interpolated
            now=self.now,
            **params,
            **self._consent_params(),
        )
        return int(result.rowcount or 0)

    def _not_subscribed_issues(self) -> int:
        result = self._timed(
            "not subscribed",
            """
            INSERT INTO member_import_issues (import_id, line, kind, email, reason)
            SELECT :import_id, s.line, :kind, s.email,
                CASE WHEN x.email IS NOT NULL THEN :suppressed ELSE :unsubscribed END
            FROM import_chunk s
            LEFT JOIN suppressions x ON x.email = s.email
            LEFT JOIN subscriptions sub ON sub.member_id = s.member_id AND sub.list_id = :list_id
            WHERE s.skip IS NULL AND s.member_id IS NOT NULL
              AND (x.email IS NOT NULL OR sub.status = :unsubscribed_status)
            ORDER BY s.line
            """,
            import_id=self.job.id,
            kind=ImportIssueKind.NOT_SUBSCRIBED.value,
            suppressed=SUPPRESSED_REASON,
            unsubscribed=UNSUBSCRIBED_REASON,
            list_id=self.job.list_id,
            unsubscribed_status=SubscriptionStatus.UNSUBSCRIBED.value,
        )
        return int(result.rowcount or 0)

    def _subscribe_existing(self) -> int:
        # Existing subscriptions (subscribed, pending or unsubscribed) stay as they are;
        # suppressed addresses get none. Foreign keys are checked as usual here.
        result = self._timed(
            "subscribe existing",
            """
            INSERT INTO subscriptions (member_id, list_id, status, source, subscribed_at,
                created_at, updated_at)
            SELECT s.member_id, :list_id, :status, :source, :now, :now, :now
            FROM import_chunk s
            WHERE s.skip IS NULL AND s.member_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
            ON CONFLICT (member_id, list_id) DO NOTHING
            """,
            list_id=self.job.list_id,
            status=SubscriptionStatus.SUBSCRIBED.value,
            source=SubscriptionSource.IMPORT.value,
            now=self.now,
        )
        return int(result.rowcount or 0)

    def _insert_members(self) -> tuple[int, int]:
        attributes, params = self._attributes_sql()
        if self.skip_fk_checks:
            self._exec("SET LOCAL session_replication_role = replica")
        # No try/finally: if the statement fails the transaction is rolled back, which
        # restores the setting (SET LOCAL), and a reset here would only hide the error.
        # ORDER BY email: the unique email index is filled in key order within a chunk.
        row = self._timed(
            "insert",
            f"""
            WITH new AS (
                INSERT INTO members (email, first_name, last_name, language, postal_code,
                    local, attributes, consent_basis, consent_source, consent_at,
                    consent_expires_at, consent_detail, created_at, updated_at)
                SELECT s.email, COALESCE(s.first_name, ''), COALESCE(s.last_name, ''),
                    COALESCE(s.language, 'en'), COALESCE(s.postal_code, ''),
                    COALESCE(s.local, ''), {attributes}, CAST(:c_basis AS text), :c_source,
                    CAST(:c_at AS timestamptz), CAST(:c_expires AS timestamptz),
                    CAST(:c_detail AS jsonb), :now, :now
                FROM import_chunk s
                WHERE s.skip IS NULL AND s.member_id IS NULL
                ORDER BY s.email
                RETURNING id, email
            ), subscribed AS (
                INSERT INTO subscriptions (member_id, list_id, status, source,
                    subscribed_at, created_at, updated_at)
                SELECT new.id, :list_id, :status, :source, :now, :now, :now FROM new
                WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = new.email)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM subscribed)
            """,  # noqa: S608 - only generated column names and constants are interpolated
            now=self.now,
            list_id=self.job.list_id,
            status=SubscriptionStatus.SUBSCRIBED.value,
            source=SubscriptionSource.IMPORT.value,
            **params,
            **self._consent_params(),
        ).one()
        if self.skip_fk_checks:
            self._exec("SET LOCAL session_replication_role = origin")
        return int(row[0]), int(row[1])

    def _suppressed_new_issues(self) -> int:
        result = self._timed(
            "not subscribed",
            """
            INSERT INTO member_import_issues (import_id, line, kind, email, reason)
            SELECT :import_id, s.line, :kind, s.email, :suppressed
            FROM import_chunk s JOIN suppressions x ON x.email = s.email
            WHERE s.skip IS NULL AND s.member_id IS NULL
            ORDER BY s.line
            """,
            import_id=self.job.id,
            kind=ImportIssueKind.NOT_SUBSCRIBED.value,
            suppressed=SUPPRESSED_REASON,
        )
        return int(result.rowcount or 0)

    def _reason_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        # Grouped in SQL with reason_group's rules, so a file of a million duplicates returns a
        # handful of rows, not a million.
        rows = self._exec(
            r"""
            SELECT kind, CASE
                WHEN reason ~ '^duplicate of line \d+$' THEN 'duplicate in the file'
                WHEN reason ~ '^line \d+ is longer than ' THEN 'line too long'
                WHEN reason ~ '^field ''.*'' is longer than \d+ characters$' THEN 'field too long'
                ELSE substring(reason from '^(.*?)(?::| \(| ''|$)') END AS grp, count(*)
            FROM member_import_issues WHERE import_id = :import_id GROUP BY 1, 2
            """,
            import_id=self.job.id,
        ).all()
        skipped: Counter[str] = Counter()
        not_subscribed: Counter[str] = Counter()
        for kind, group, count in rows:
            (skipped if kind == ImportIssueKind.SKIPPED.value else not_subscribed)[group] += count
        return dict(skipped.most_common()), dict(not_subscribed.most_common())


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _batched(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    append = batch.append
    for row in rows:
        append(row)
        if len(batch) >= size:
            yield batch
            batch = []
            append = batch.append
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------
# Any database (SQLite for `make run`): batches of rows through ordinary statements


_seen = sa.Table(
    "import_seen",
    sa.MetaData(),
    sa.Column("email", sa.String, primary_key=True),
    sa.Column("line", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)


class _BatchedImport(_ImportRun):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_reasons: Counter[str] = Counter()
        self.not_subscribed_reasons: Counter[str] = Counter()

    def run(self) -> ImportReport:
        connection = self.session.connection()
        _seen.drop(connection, checkfirst=True)
        _seen.create(connection)
        try:
            for batch in _batched(self.member_csv, _BATCH_ROWS):
                self._batch(batch)
                self.progress(
                    ImportProgress(
                        "reading", self.stream.bytes_read, self.stream.size, self.report.rows
                    )
                )
        finally:
            _seen.drop(connection, checkfirst=True)
        report = self.report
        report.skip_reasons = dict(self.skip_reasons.most_common())
        report.not_subscribed_reasons = dict(self.not_subscribed_reasons.most_common())
        report.already_on_list = (
            report.added
            + report.updated
            + report.unchanged
            - report.subscribed
            - report.not_subscribed
        )
        return report

    def _issue(
        self, line: int, kind: ImportIssueKind, email: str | None, reason: str
    ) -> dict[str, Any]:
        counter = (
            self.skip_reasons if kind is ImportIssueKind.SKIPPED else self.not_subscribed_reasons
        )
        counter[reason_group(reason)] += 1
        return {
            "import_id": self.job.id,
            "line": line,
            "kind": kind.value,
            "email": email,
            "reason": reason,
        }

    def _batch(self, batch: list[Any]) -> None:
        session, report = self.session, self.report
        report.rows += len(batch)
        issues: list[dict[str, Any]] = []
        good: dict[str, ParsedRow] = {}
        for row in batch:
            if not isinstance(row, ParsedRow):
                issues.append(self._issue(row.line, ImportIssueKind.SKIPPED, row.email, row.reason))
                continue
            too_long = next(
                (
                    name
                    for name, limit in FIELD_LIMITS.items()
                    if len(getattr(row, name) or "") > limit
                ),
                None,
            )
            if too_long:
                reason = (
                    f"{_FIELD_WORDS[too_long]} is longer than {FIELD_LIMITS[too_long]} characters"
                )
                issues.append(self._issue(row.line, ImportIssueKind.SKIPPED, row.email, reason))
                continue
            first = good.get(row.email)
            if first is not None:
                issues.append(
                    self._issue(
                        row.line,
                        ImportIssueKind.SKIPPED,
                        row.email,
                        f"duplicate of line {first.line}",
                    )
                )
                continue
            good[row.email] = row
        if good:
            seen = dict(
                session.execute(
                    sa.select(_seen.c.email, _seen.c.line).where(_seen.c.email.in_(list(good)))
                )
                .tuples()
                .all()
            )
            for email, first_line in seen.items():
                row = good.pop(email)
                issues.append(
                    self._issue(
                        row.line,
                        ImportIssueKind.SKIPPED,
                        email,
                        f"duplicate of line {first_line}",
                    )
                )
        if good:
            session.execute(_seen.insert(), [{"email": e, "line": r.line} for e, r in good.items()])
            issues.extend(self._save_members(good))
        skipped_now = sum(1 for issue in issues if issue["kind"] == ImportIssueKind.SKIPPED.value)
        report.skipped += skipped_now
        report.not_subscribed += len(issues) - skipped_now
        if issues:
            session.execute(sa.insert(ImportIssue), sorted(issues, key=lambda i: i["line"]))

    def _save_members(self, good: dict[str, ParsedRow]) -> list[dict[str, Any]]:
        session, report, consent = self.session, self.report, self.consent
        existing = {
            m.email: m
            for m in session.scalars(sa.select(Member).where(Member.email.in_(list(good))))
        }
        new_rows: list[dict[str, Any]] = []
        for email, row in good.items():
            member = existing.get(email)
            if member is None:
                new_rows.append(
                    {
                        "email": email,
                        "first_name": row.first_name or "",
                        "last_name": row.last_name or "",
                        "language": row.language or "en",
                        "postal_code": row.postal_code or "",
                        "local": row.local or "",
                        "attributes": dict(row.attributes),
                        "consent_basis": consent.basis,
                        "consent_source": consent.source if consent.basis else "",
                        "consent_at": consent.at if consent.basis else None,
                        "consent_expires_at": consent.expires_at,
                        "consent_detail": dict(consent.detail),
                        "created_at": self.now,
                        "updated_at": self.now,
                    }
                )
                continue
            changed = False
            for name in ("first_name", "last_name", "language", "postal_code", "local"):
                value = getattr(row, name)
                if value is not None and value != getattr(member, name):
                    setattr(member, name, value)
                    changed = True
            merged = {**member.attributes, **row.attributes}
            if merged != member.attributes:
                member.attributes = merged
                changed = True
            if consent.basis is not None and import_should_replace(
                member.consent_basis, member.consent_expires_at, consent.basis, consent.expires_at
            ):
                member.consent_basis = consent.basis
                member.consent_source = consent.source
                member.consent_at = consent.at
                member.consent_expires_at = consent.expires_at
                member.consent_detail = dict(consent.detail)
                if consent.basis == ConsentBasis.IMPLIED_MEMBERSHIP.value:
                    member.membership_ended_at = None
                changed = True
            if changed:
                member.updated_at = self.now
                report.updated += 1
            else:
                report.unchanged += 1
        if new_rows:
            session.execute(sa.insert(Member), new_rows)
            report.added += len(new_rows)
        session.flush()
        ids = dict(
            session.execute(sa.select(Member.email, Member.id).where(Member.email.in_(list(good))))
            .tuples()
            .all()
        )
        suppressed = set(
            session.scalars(sa.select(Suppression.email).where(Suppression.email.in_(list(good))))
        )
        statuses = dict(
            session.execute(
                sa.select(Subscription.member_id, Subscription.status).where(
                    Subscription.list_id == self.job.list_id,
                    Subscription.member_id.in_(list(ids.values())),
                )
            )
            .tuples()
            .all()
        )
        issues: list[dict[str, Any]] = []
        new_subscriptions: list[dict[str, Any]] = []
        for email, row in good.items():
            member_id = ids[email]
            status = statuses.get(member_id)
            if email in suppressed:
                issues.append(
                    self._issue(row.line, ImportIssueKind.NOT_SUBSCRIBED, email, SUPPRESSED_REASON)
                )
            elif status == SubscriptionStatus.UNSUBSCRIBED.value:
                issues.append(
                    self._issue(
                        row.line, ImportIssueKind.NOT_SUBSCRIBED, email, UNSUBSCRIBED_REASON
                    )
                )
            elif status is None:
                new_subscriptions.append(
                    {
                        "member_id": member_id,
                        "list_id": self.job.list_id,
                        "status": SubscriptionStatus.SUBSCRIBED.value,
                        "source": SubscriptionSource.IMPORT.value,
                        "subscribed_at": self.now,
                        "created_at": self.now,
                        "updated_at": self.now,
                    }
                )
        if new_subscriptions:
            session.execute(sa.insert(Subscription), new_subscriptions)
            report.subscribed += len(new_subscriptions)
        return issues


__all__ = [
    "CONSENT_CHOICES",
    "SUPPRESSED_REASON",
    "UNSUBSCRIBED_REASON",
    "WINDOWS_1252_NOTE",
    "CsvRefused",
    "ImportConsent",
    "ImportError_",
    "ImportProgress",
    "ImportReport",
    "check_file",
    "create_import",
    "finish_failed",
    "finish_refused",
    "import_members",
    "issues_of",
    "queue_upload",
    "reason_group",
    "run_import",
    "start_import",
]


# ---------------------------------------------------------------------------------------------
# Live progress, for the progress bar: in Redis, because the import's own transaction is not
# visible to the page until it commits.

_PROGRESS_KEY = "rallypoint:import-progress:{}"
_PROGRESS_TTL = 24 * 3600


def publish_progress(import_id: int, progress: ImportProgress) -> None:
    """Store an import's progress for the page that polls it; a Redis error is only logged."""
    import json

    from app.infra.redis_client import get_redis

    try:
        get_redis().set(
            _PROGRESS_KEY.format(import_id),
            json.dumps({**asdict(progress), "percent": progress.percent}),
            ex=_PROGRESS_TTL,
        )
    except Exception:  # progress is cosmetic: never fail an import over it
        log.warning("import %s: could not publish progress", import_id, exc_info=True)


def read_progress(import_id: int) -> dict[str, Any] | None:
    """The last published progress of an import, or None (not started, or Redis down)."""
    import json

    from app.infra.redis_client import get_redis

    try:
        raw = get_redis().get(_PROGRESS_KEY.format(import_id))
    except Exception:
        return None
    if not raw:
        return None
    data: dict[str, Any] = json.loads(raw)
    return data


def import_status(session: DbSession, job: MemberImport) -> dict[str, Any]:
    """What the progress page and the API show about an import."""
    data: dict[str, Any] = {
        "id": job.id,
        "status": job.status,
        "list_id": job.list_id,
        "filename": job.filename,
        "origin": job.origin,
        "consent": job.consent,
        "error": job.error,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "percent": 0,
        "phase": job.status,
        "rows_read": 0,
    }
    if job.status == ImportStatus.DONE:
        data["percent"] = 100
        data["rows_read"] = job.rows
        data["report"] = {
            **(job.report or {}),
            "rows": job.rows,
            "added": job.added,
            "updated": job.updated,
            "unchanged": job.unchanged,
            "skipped": job.skipped,
            "subscribed": job.subscribed,
            "not_subscribed": job.not_subscribed,
        }
    elif job.status == ImportStatus.RUNNING:
        progress = read_progress(job.id)
        if progress:
            data["percent"] = min(99, int(progress.get("percent", 0)))
            data["phase"] = progress.get("phase", "running")
            data["rows_read"] = int(progress.get("rows", 0))
    return data
