"""What both import paths share: the run's state, the report it fills, the rules for a row.

A row too long for its column is skipped with the field named; a suppressed address is kept
as a member but not subscribed, and so is someone who unsubscribed from the list earlier.
The COPY path (postgres.py) applies these rules in SQL, the portable path (portable.py) in
Python; tests/services/test_imports.py runs every case through both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from app.models import ImportIssueKind, MemberImport
from app.services import DbSession
from app.services.audience.imports.progress import CountingReader, ProgressCallback, Throttled
from app.services.audience.member_csv import LEFT_OUT, UTF_8, MemberCsv, ParsedRow

SUPPRESSED_REASON = "suppressed address: kept as member, not subscribed"
# What happened to a row with an issue, in the report, the issues CSV and the CLI.
ISSUE_OUTCOMES = {
    ImportIssueKind.SKIPPED.value: "skipped",
    ImportIssueKind.NOT_SUBSCRIBED.value: "saved, not subscribed",
    ImportIssueKind.WARNING.value: "imported, value left out",
}
UNSUBSCRIBED_REASON = "unsubscribed from this list earlier: kept as member, not subscribed again"
# Column widths of the members table: a longer value is left out (a warning), the row imported.
FIELD_LIMITS = {"first_name": 200, "last_name": 200, "postal_code": 20, "local": 100}
FIELD_WORDS = {
    "first_name": "first name",
    "last_name": "last name",
    "postal_code": "postal code",
    "local": "local",
}


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
    # Values left out of imported rows (each a line and a field; a row may have several).
    warnings: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    not_subscribed_reasons: dict[str, int] = field(default_factory=dict)
    warning_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    strategy: str = ""
    encoding: str = UTF_8
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConsentToRecord:
    """The consent an import records where it does not weaken what is on file (None: none)."""

    basis: str | None
    at: datetime
    expires_at: datetime | None
    source: str
    detail: dict[str, Any]


_REASON_GROUPS = [
    (re.compile(r"^duplicate of line \d+$"), "duplicate in the file"),
    (re.compile(r"^line \d+ is longer than .*"), "line too long"),
    (re.compile(r"^field '.*' is longer than \d+ characters"), "field too long"),
    (re.compile(r"^field '.*' is not valid UTF-8"), "not valid UTF-8"),
    (re.compile(r"^field '.*' contains a NUL character"), "contains a NUL character"),
]


def reason_group(reason: str) -> str:
    """The reason without its particulars, for counting: 'invalid email address', ...

    The PostgreSQL path groups with the same rules in SQL (statements.REASON_COUNTS).
    """
    for pattern, group in _REASON_GROUPS:
        if pattern.match(reason):
            return group
    return re.split(r":| \(| '", reason, maxsplit=1)[0]


def within_limits(row: ParsedRow) -> ParsedRow:
    """The row with each value too long for its column left out, and a warning for each."""
    too_long = [
        name for name, limit in FIELD_LIMITS.items() if len(getattr(row, name) or "") > limit
    ]
    if not too_long:
        return row
    warnings = tuple(
        f"{FIELD_WORDS[name]} is longer than {FIELD_LIMITS[name]} characters{LEFT_OUT}"
        for name in too_long
    )
    cleared: dict[str, Any] = dict.fromkeys(too_long)
    return row._replace(**cleared, warnings=row.warnings + warnings)


class ImportRun:
    """What both import paths (postgres.CopyImport, portable.PortableImport) start from."""

    def __init__(
        self,
        session: DbSession,
        job: MemberImport,
        member_csv: MemberCsv,
        stream: CountingReader,
        consent: ConsentToRecord,
        now: datetime,
        progress: ProgressCallback | None,
    ) -> None:
        self.session = session
        self.job = job
        self.member_csv = member_csv
        self.stream = stream
        self.consent = consent
        self.now = now
        self.progress = Throttled(progress)
        self.report = ImportReport()


def batched(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
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
