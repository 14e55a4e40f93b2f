"""The portable import (SQLite for `make run`): batches of rows through ordinary statements.

The same rules and the same report as the PostgreSQL path (postgres.py), decided in Python:
duplicates against a temporary table of the addresses taken so far, existing members loaded
and compared a batch at a time, consent through consent.import_should_replace.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa

from app.models import (
    ConsentBasis,
    ImportIssue,
    ImportIssueKind,
    Member,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
    Suppression,
)
from app.services.audience.consent import import_should_replace
from app.services.audience.imports.progress import ImportProgress
from app.services.audience.imports.run import (
    SUPPRESSED_REASON,
    UNSUBSCRIBED_REASON,
    ImportReport,
    ImportRun,
    batched,
    reason_group,
    within_limits,
)
from app.services.audience.member_csv import ParsedRow

_BATCH_ROWS = 1000

_seen = sa.Table(
    "import_seen",
    sa.MetaData(),
    sa.Column("email", sa.String, primary_key=True),
    sa.Column("line", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
)


class PortableImport(ImportRun):
    """The import on any database: batches of 1,000 rows through ordinary statements."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reasons: dict[ImportIssueKind, Counter[str]] = {
            kind: Counter() for kind in ImportIssueKind
        }

    def run(self) -> ImportReport:
        connection = self.session.connection()
        _seen.drop(connection, checkfirst=True)
        _seen.create(connection)
        try:
            for batch in batched(self.member_csv, _BATCH_ROWS):
                self._batch(batch)
                self.progress(
                    ImportProgress(
                        "reading", self.stream.bytes_read, self.stream.size, self.report.rows
                    )
                )
        finally:
            _seen.drop(connection, checkfirst=True)
        report = self.report
        report.skip_reasons = dict(self.reasons[ImportIssueKind.SKIPPED].most_common())
        report.not_subscribed_reasons = dict(
            self.reasons[ImportIssueKind.NOT_SUBSCRIBED].most_common()
        )
        report.warning_reasons = dict(self.reasons[ImportIssueKind.WARNING].most_common())
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
        self.reasons[kind][reason_group(reason)] += 1
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
            good[row.email] = within_limits(row)
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
            issues.extend(
                self._issue(row.line, ImportIssueKind.WARNING, email, warning)
                for email, row in good.items()
                for warning in row.warnings
            )
            issues.extend(self._save_members(good))
        kinds = Counter(issue["kind"] for issue in issues)
        report.skipped += kinds[ImportIssueKind.SKIPPED.value]
        report.not_subscribed += kinds[ImportIssueKind.NOT_SUBSCRIBED.value]
        report.warnings += kinds[ImportIssueKind.WARNING.value]
        if issues:
            session.execute(sa.insert(ImportIssue), sorted(issues, key=lambda i: i["line"]))

    def _save_members(self, good: dict[str, ParsedRow]) -> list[dict[str, Any]]:
        """Add or update the batch's members, then subscribe them; returns the issues."""
        session, report = self.session, self.report
        existing = {
            m.email: m
            for m in session.scalars(sa.select(Member).where(Member.email.in_(list(good))))
        }
        new_rows: list[dict[str, Any]] = []
        for email, row in good.items():
            member = existing.get(email)
            if member is None:
                new_rows.append(self._new_member(email, row))
            elif self._update_member(member, row):
                member.updated_at = self.now
                report.updated += 1
            else:
                report.unchanged += 1
        if new_rows:
            session.execute(sa.insert(Member), new_rows)
            report.added += len(new_rows)
        session.flush()
        return self._subscribe(good)

    def _new_member(self, email: str, row: ParsedRow) -> dict[str, Any]:
        consent = self.consent
        return {
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

    def _update_member(self, member: Member, row: ParsedRow) -> bool:
        """Apply the fields the file gives and stronger consent; True when anything changed."""
        consent = self.consent
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
        return changed

    def _subscribe(self, good: dict[str, ParsedRow]) -> list[dict[str, Any]]:
        """Subscribe the batch's members to the list, except suppressed addresses and people
        who unsubscribed from it; an existing subscription stays as it is."""
        session = self.session
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
            self.report.subscribed += len(new_subscriptions)
        return issues
