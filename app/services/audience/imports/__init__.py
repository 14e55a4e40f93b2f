"""Member CSV import: one service for the web upload, the API and `flask members import`.

The file is streamed (app.services.audience.member_csv), never held in memory. On PostgreSQL
a parser thread turns rows into COPY data while the session's connection streams it into a
temporary staging table; set-based SQL then finds duplicates, updates and inserts members, and
subscribes them, all in the caller's transaction, so a failed import changes nothing. Into an
empty or small members table (a first import), the rows that are surely new members are
COPYed straight into members and subscriptions instead (new_members.py). SQLite (`make run`)
takes a batched path through the same API and gives the same report.

Rules every path keeps:

- Duplicates within the file: the first row (by line) wins; the others are reported as
  "duplicate of line N".
- Only fields given in the file change a member (an empty cell keeps what is there); custom
  columns are merged into the member's attributes.
- A suppressed address is kept as a member but never subscribed; someone who unsubscribed from
  the list is not subscribed again. Both are reported, with their line numbers.
- Consent chosen for the import is recorded only where it does not weaken what is on file
  (consent.import_should_replace).
- Only a bad or missing address (or a duplicate, or a row whose columns cannot be trusted)
  skips a row. A bad optional value (an unknown language, a value too long for its column,
  bytes that are not UTF-8) is left out and the member imported without it, with a warning
  naming the line and the field.
- A file is read as UTF-8, a row with bytes that are not UTF-8 skipped; a file that is
  Windows-1252 through and through (Excel's "CSV (Comma delimited)") is read whole as such,
  and the report says so (member_csv.choose_encoding decides, from the whole file).

The package (listmonk's internal/subimporter, in Python): this module is the service API;
postgres.py is the COPY path, statements.py its named SQL and new_members.py its straight
COPY of new members; portable.py the batched path
for any database; run.py what both share (the report, the rules for a row); progress.py the
progress bar's figures in Redis. Callers import from here only.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa

from app import jobs
from app.infra import sql
from app.infra.sql import is_postgresql
from app.models import (
    IMPORT_TRANSITIONS,
    ConsentBasis,
    ImportIssue,
    ImportStatus,
    MailingList,
    MemberImport,
)
from app.models.base import utcnow
from app.services import DbSession
from app.services.audience.consent import implied_expiry
from app.services.audience.imports.portable import PortableImport
from app.services.audience.imports.postgres import CopyImport
from app.services.audience.imports.progress import (
    CountingReader,
    ImportProgress,
    ProgressCallback,
    import_status,
    publish_progress,
    read_progress,
)
from app.services.audience.imports.run import (
    ISSUE_OUTCOMES,
    SUPPRESSED_REASON,
    UNSUBSCRIBED_REASON,
    ConsentToRecord,
    ImportReport,
    reason_group,
)
from app.services.audience.member_csv import (
    WINDOWS_1252,
    CsvRefused,
    MemberCsv,
    choose_encoding,
    open_member_csv,
)

WINDOWS_1252_NOTE = (
    "Read as Windows-1252 (Excel's “CSV (Comma delimited)”): accents kept. "
    "Next time, save as “CSV UTF-8”."
)


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
        stream = CountingReader(raw)
        member_csv = open_member_csv(stream, encoding)  # type: ignore[arg-type]  # may raise CsvRefused before anything changes
        if strategy == "copy":
            report = CopyImport(session, job, member_csv, stream, consent, now, progress).run()
        else:
            report = PortableImport(session, job, member_csv, stream, consent, now, progress).run()
    report.seconds = round(time.perf_counter() - started, 3)
    report.strategy = strategy
    report.encoding = member_csv.encoding
    if member_csv.encoding == WINDOWS_1252:
        report.note = WINDOWS_1252_NOTE
    # The first send after a big import is planned on these (sql.refresh_statistics).
    sql.refresh_statistics(session, "members", report.added)
    sql.refresh_statistics(session, "subscriptions", report.added + report.subscribed)
    _finish_done(job, report)
    session.flush()
    if progress:
        progress(ImportProgress("done", 1, 1, report.rows))
    return report


def _finish_done(job: MemberImport, report: ImportReport) -> None:
    """Keep the report's figures on the import row and mark it done."""
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


def _import_consent(job: MemberImport, now: datetime) -> ConsentToRecord:
    choice = ImportConsent(job.consent or ImportConsent.NONE.value)
    if choice is ImportConsent.NONE:
        return ConsentToRecord(None, now, None, "", {})
    return ConsentToRecord(
        basis=choice.value,
        at=now,
        expires_at=implied_expiry(choice.value, now, None),
        source=f"import: {job.filename}"[:200],
        # Kept short: it is repeated on every member; the import row has the file, the user,
        # the time and the organizer's choice.
        detail={"import_id": job.id},
    )


__all__ = [
    "CONSENT_CHOICES",
    "ISSUE_OUTCOMES",
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
    "import_status",
    "issues_of",
    "publish_progress",
    "queue_upload",
    "read_progress",
    "reason_group",
    "run_import",
    "start_import",
]
