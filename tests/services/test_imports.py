"""The member import: exact reports, hostile files, suppressions, unsubscribes, consent, counts."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from app.models import (
    ImportIssue,
    ImportStatus,
    MailingList,
    Member,
    MemberImport,
    Subscription,
    SuppressionReason,
    UnsubscribeSource,
)
from app.services.audience import consent, imports, lists, subscriptions
from app.services.audience import members as members_service
from app.services.audience.imports import postgres
from tests import factories as f
from tests.support.member_files import (
    HOSTILE_ADDED,
    HOSTILE_CSV,
    HOSTILE_FORMULA,
    HOSTILE_SKIPS,
    HOSTILE_WARNINGS,
    NO_EMAIL_COLUMN,
    NOT_CSV,
    UTF16,
    WINDOWS_1252_CSV,
    WINDOWS_1252_MEMBERS,
    csv_bytes,
)

STRATEGIES = ["copy", "batched"]


@pytest.fixture
def target(db_session):
    return lists.create_list(db_session, name="All members")


def run(db_session, tmp_path, content: bytes, list_id: int, strategy: str, **options):
    path = tmp_path / f"members-{datetime.now(UTC).timestamp()}.csv"
    path.write_bytes(content)
    return imports.import_members(
        db_session, path=path, list_id=list_id, strategy=strategy, **options
    )


def skips_of(db_session, import_id: int, kind: str = "skipped") -> list[tuple[int, str]]:
    rows = db_session.execute(
        sa.select(ImportIssue.line, ImportIssue.reason)
        .where(ImportIssue.import_id == import_id, ImportIssue.kind == kind)
        .order_by(ImportIssue.line, ImportIssue.id)
    ).all()
    return [(line, reason) for line, reason in rows]


def warnings_of(db_session, import_id: int) -> list[tuple[int, str]]:
    return skips_of(db_session, import_id, "warning")


def members(db_session) -> dict[str, Member]:
    return {m.email: m for m in db_session.scalars(sa.select(Member))}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_hostile_file_gives_exactly_the_valid_rows_and_a_correct_report(
    db_session, tmp_path, target, strategy
):
    job, report = run(db_session, tmp_path, HOSTILE_CSV, target.id, strategy)

    saved = members(db_session)
    assert set(saved) == HOSTILE_ADDED
    assert (report.added, report.updated, report.unchanged) == (8, 0, 0)
    assert report.skipped == len(HOSTILE_SKIPS)
    assert report.rows == 8 + len(HOSTILE_SKIPS)
    assert report.subscribed == 8
    found = skips_of(db_session, job.id)
    assert [line for line, _ in found] == [line for line, _ in HOSTILE_SKIPS]
    for (line, reason), (_, expected) in zip(found, HOSTILE_SKIPS, strict=True):
        assert reason.startswith(expected), (line, reason)
    assert report.skip_reasons == {
        "duplicate in the file": 2,
        "not valid UTF-8": 1,
        "invalid email address": 1,
        "missing email": 1,
    }
    assert warnings_of(db_session, job.id) == HOSTILE_WARNINGS
    assert report.warnings == len(HOSTILE_WARNINGS)
    assert report.warning_reasons == {
        "not valid UTF-8": 1,
        "field too long": 1,
        "first name is longer than 200 characters": 1,
        "unknown language": 1,
    }
    # Each warned row is a member, without the value the warning names.
    assert (saved["zoe@example.org"].first_name, saved["zoe@example.org"].last_name) == (
        "",
        "Martin",
    )
    assert saved["long@example.org"].first_name == ""
    assert (saved["wide@example.org"].first_name, saved["wide@example.org"].last_name) == (
        "",
        "Smith",
    )
    assert (saved["sam@example.org"].language, saved["sam@example.org"].first_name) == (
        "en",
        "Sam",
    )
    # Values are stored as written (neutralised only on export), normalised where defined.
    mal = saved["mal@example.org"]
    assert (mal.first_name, mal.last_name) == (HOSTILE_FORMULA, "+1-800-EVIL")
    assert mal.attributes == {"Workplace": "@SUM(1+1)"}
    ana = saved["ana@example.org"]
    assert (ana.language, ana.postal_code, ana.first_name) == ("fr", "H2X 1Y4", "Ana")
    assert saved["bob@example.org"].first_name == "Bob"  # the first row of a duplicate wins
    assert saved["dee@example.org"].attributes == {"Workplace": "Warehouse\nDock 4"}
    db_session.refresh(job)
    assert job.status == ImportStatus.DONE
    assert (job.added, job.skipped) == (8, len(HOSTILE_SKIPS))
    assert job.report["warnings"] == len(HOSTILE_WARNINGS)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bad_optional_values_import_the_member_with_a_warning_per_field(
    db_session, tmp_path, target, strategy
):
    """One bad optional value does not drop the person: the member is imported without it
    (new members get English; an existing member keeps what is on file), and each value left
    out is reported with its line and field. Only the address skips a row."""
    f.member(db_session, email="kept@example.org", first_name="Kept", language="fr")
    content = csv_bytes(
        f"new@example.org,{'n' * 201},Lee,klingon,{'p' * 21}",  # 2 three values left out
        f"kept@example.org,{'k' * 201},Roy,xx,",  # 3 an existing member keeps name and language
        "bad-address,Ana,Roy,fr,",  # 4 skipped
        header="email,first_name,last_name,language,postal_code",
    )
    job, report = run(db_session, tmp_path, content, target.id, strategy)
    klingon = (
        "unknown language 'klingon' (use en or fr): imported without it (new members get English)"
    )
    assert warnings_of(db_session, job.id) == [
        (2, klingon),
        (2, "first name is longer than 200 characters: imported without it"),
        (2, "postal code is longer than 20 characters: imported without it"),
        (3, klingon.replace("klingon", "xx")),
        (3, "first name is longer than 200 characters: imported without it"),
    ]
    assert [line for line, _ in skips_of(db_session, job.id)] == [4]
    assert (report.added, report.updated, report.skipped, report.warnings) == (1, 1, 1, 5)
    assert report.subscribed == 2
    saved = members(db_session)
    new, kept = saved["new@example.org"], saved["kept@example.org"]
    assert (new.first_name, new.last_name, new.language, new.postal_code) == ("", "Lee", "en", "")
    assert (kept.first_name, kept.last_name, kept.language) == ("Kept", "Roy", "fr")


def test_a_warned_row_that_duplicates_an_earlier_chunk_is_only_skipped(
    db_session, tmp_path, target, monkeypatch
):
    monkeypatch.setattr(postgres, "_CHUNK_ROWS", 1)
    monkeypatch.setattr(postgres, "_BATCH_ROWS", 1)
    content = csv_bytes("a@example.org,A,,,", "a@example.org,A,,xx,")
    job, report = run(db_session, tmp_path, content, target.id, "copy")
    assert skips_of(db_session, job.id) == [(3, "duplicate of line 2")]
    assert warnings_of(db_session, job.id) == []
    assert (report.skipped, report.warnings) == (1, 0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (NO_EMAIL_COLUMN, "no 'email' column"),
        (NOT_CSV, "not a CSV file"),
        (UTF16, "UTF-16"),
        (b"", "empty"),
    ],
)
def test_a_file_that_is_not_csv_or_has_no_email_column_is_refused_whole(
    db_session, tmp_path, target, content, message
):
    with pytest.raises(imports.CsvRefused) as refused:
        run(db_session, tmp_path, content, target.id, "copy")
    assert message in refused.value.message
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Member)) == 0
    assert db_session.scalar(sa.select(sa.func.count()).select_from(MemberImport)) == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_windows_1252_file_imports_every_row_with_its_accents_and_says_so(
    db_session, tmp_path, target, strategy
):
    job, report = run(db_session, tmp_path, WINDOWS_1252_CSV, target.id, strategy)

    assert (report.rows, report.added, report.skipped) == (5, 5, 0)
    assert report.subscribed == 5
    assert report.encoding == "windows-1252"
    assert report.note == imports.WINDOWS_1252_NOTE
    saved = {
        email: (m.first_name, m.last_name, m.language, m.attributes)
        for email, m in members(db_session).items()
    }
    assert saved == WINDOWS_1252_MEMBERS
    db_session.refresh(job)
    assert (job.report["encoding"], job.report["note"]) == (
        "windows-1252",
        imports.WINDOWS_1252_NOTE,
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_windows_1252_accents_first_met_deep_in_the_file_are_kept(
    db_session, tmp_path, target, strategy
):
    # An ASCII header and 3,000 ASCII rows (past the 64 KiB sniffing window) before the first
    # accent: each accented row used to be skipped as "not valid UTF-8".
    plain = [f"member{n:05d}@example.org,Pat,Smith,en,Local 30" for n in range(3000)]
    late = ["zoe@example.org,Zoé,Bélanger,fr,Local 30", "rene@example.org,René,Côté,fr,"]
    content = csv_bytes(*plain, *late).decode().encode("cp1252")
    assert len(content) > 100_000

    _, report = run(db_session, tmp_path, content, target.id, strategy)

    assert (report.added, report.skipped, report.encoding) == (3002, 0, "windows-1252")
    saved = members(db_session)
    assert (saved["zoe@example.org"].first_name, saved["zoe@example.org"].last_name) == (
        "Zoé",
        "Bélanger",
    )
    assert saved["rene@example.org"].last_name == "Côté"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_utf8_accents_mixed_with_bad_bytes_leave_out_exactly_those_values(
    db_session, tmp_path, target, strategy
):
    content = (
        b"email,first_name,last_name,language,local\r\n"
        b"chloe@example.org,Chlo\xe9,Martin,fr,\r\n"  # 2 Windows-1252 / Latin-1 "e-acute"
        + "zoe@example.org,Zoé,Bélanger,fr,Section 301\r\n".encode()  # 3 UTF-8
        + b"ann@example.org,Ann,Lee,en,Local 30\r\n"  # 4
        b"francois@example.org,Fran\xe7ois,Roy,fr,\r\n"  # 5 Latin-1 "c-cedilla"
        + "eloise@example.org,Éloïse,Côté,fr,\r\n".encode()  # 6 UTF-8
        + b"ren\xe9@example.org,Ren\xe9,Roy,fr,\r\n"  # 7 the address itself: skipped
    )

    job, report = run(db_session, tmp_path, content, target.id, strategy)

    assert skips_of(db_session, job.id) == [(7, "not valid UTF-8")]
    left_out = "field 'first_name' is not valid UTF-8: imported without it"
    assert warnings_of(db_session, job.id) == [(2, left_out), (5, left_out)]
    assert (report.added, report.skipped, report.warnings) == (5, 1, 2)
    assert (report.encoding, report.note) == ("utf-8", None)
    saved = members(db_session)
    assert set(saved) == {
        "chloe@example.org",
        "zoe@example.org",
        "ann@example.org",
        "francois@example.org",
        "eloise@example.org",
    }
    assert (saved["chloe@example.org"].first_name, saved["chloe@example.org"].last_name) == (
        "",
        "Martin",
    )
    assert (saved["eloise@example.org"].first_name, saved["eloise@example.org"].last_name) == (
        "Éloïse",
        "Côté",
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_byte_undefined_in_windows_1252_keeps_the_file_utf8(
    db_session, tmp_path, target, strategy
):
    content = (
        csv_bytes("ann@example.org,Ann,Lee,en,", "zoe@example.org,Zoé,Roy,fr,")
        .decode()
        .encode("cp1252")
        + b"odd@example.org,Odd\x81,Roy,fr,\r\n"  # 0x81: no character in Windows-1252
    )

    job, report = run(db_session, tmp_path, content, target.id, strategy)

    left_out = "field 'first_name' is not valid UTF-8: imported without it"
    assert warnings_of(db_session, job.id) == [(3, left_out), (4, left_out)]
    assert (report.added, report.skipped, report.warnings) == (3, 0, 2)
    assert (report.encoding, report.note) == ("utf-8", None)
    assert members(db_session)["zoe@example.org"].first_name == ""


def test_a_windows_1252_header_in_a_file_with_utf8_accents_is_still_refused(
    db_session, tmp_path, target
):
    content = "Courriel;Prénom\r\nann@example.org;Ann\r\n".encode("cp1252") + (
        "zoe@example.org;Zoé\r\n".encode()
    )
    with pytest.raises(imports.CsvRefused) as refused:
        run(db_session, tmp_path, content, target.id, "copy")
    assert "not UTF-8" in refused.value.message
    assert db_session.scalar(sa.select(sa.func.count()).select_from(MemberImport)) == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_reimport_counts_added_updated_unchanged_exactly(db_session, tmp_path, target, strategy):
    first = csv_bytes(
        "a@example.org,Ann,One,en,Local 1",
        "b@example.org,Ben,Two,en,Local 1",
        "c@example.org,Cat,Three,fr,Local 2",
    )
    _, report = run(db_session, tmp_path, first, target.id, strategy)
    assert (report.added, report.updated, report.unchanged, report.subscribed) == (3, 0, 0, 3)

    second = csv_bytes(
        "a@example.org,Ann,One,en,Local 1",  # unchanged
        "B@example.org,Benjamin,Two,en,Local 1",  # updated (first name)
        "c@example.org,,,,",  # empty cells keep what is there: unchanged
        "d@example.org,Dan,Four,en,Local 3",  # added
    )
    _, report = run(db_session, tmp_path, second, target.id, strategy)
    assert (report.added, report.updated, report.unchanged) == (1, 1, 2)
    assert (report.subscribed, report.already_on_list, report.not_subscribed) == (1, 3, 0)
    saved = members(db_session)
    assert saved["b@example.org"].first_name == "Benjamin"
    assert (saved["c@example.org"].first_name, saved["c@example.org"].language) == ("Cat", "fr")

    _, report = run(db_session, tmp_path, second, target.id, strategy)
    assert (report.added, report.updated, report.unchanged, report.subscribed) == (0, 0, 4, 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_custom_columns_merge_into_attributes_and_count_as_updates(
    db_session, tmp_path, target, strategy
):
    header = "email,Workplace,Shift"
    run(
        db_session,
        tmp_path,
        csv_bytes("a@example.org,Depot,Night", header=header),
        target.id,
        strategy,
    )
    _, report = run(
        db_session, tmp_path, csv_bytes("a@example.org,,Day", header=header), target.id, strategy
    )
    assert (report.updated, report.unchanged) == (1, 0)
    assert members(db_session)["a@example.org"].attributes == {"Workplace": "Depot", "Shift": "Day"}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_import_resubscribes_a_suppressed_address_or_an_unsubscribed_member(
    db_session, tmp_path, target, strategy
):
    gone = f.member(db_session, email="gone@example.org")
    f.subscribe(db_session, gone, target)
    subscriptions.unsubscribe(
        db_session, gone.id, list_ids=[target.id], source=UnsubscribeSource.LINK
    )
    subscriptions.suppress(db_session, "bounced@example.org", SuppressionReason.HARD_BOUNCE)
    blocked = f.member(db_session, email="blocked@example.org")
    subscriptions.suppress(db_session, blocked.email, SuppressionReason.SPAM_REPORT)

    job, report = run(
        db_session,
        tmp_path,
        csv_bytes(
            "gone@example.org,Gone,,,",
            "BOUNCED@example.org,Bounce,,,",
            "blocked@example.org,Blocked,,,",
            "new@example.org,New,,,",
        ),
        target.id,
        strategy,
    )

    assert (report.added, report.subscribed, report.not_subscribed) == (2, 1, 3)
    statuses = dict(
        db_session.execute(
            sa.select(Member.email, Subscription.status)
            .join(Subscription, Subscription.member_id == Member.id)
            .where(Subscription.list_id == target.id)
        )
        .tuples()
        .all()
    )
    assert statuses == {"gone@example.org": "unsubscribed", "new@example.org": "subscribed"}
    assert "bounced@example.org" in members(db_session)  # kept as a member
    issues = db_session.execute(
        sa.select(ImportIssue.line, ImportIssue.kind, ImportIssue.reason)
        .where(ImportIssue.import_id == job.id)
        .order_by(ImportIssue.line)
    ).all()
    assert [(line, kind) for line, kind, _ in issues] == [
        (2, "not_subscribed"),
        (3, "not_subscribed"),
        (4, "not_subscribed"),
    ]
    assert issues[0][2] == imports.UNSUBSCRIBED_REASON
    assert issues[1][2] == issues[2][2] == imports.SUPPRESSED_REASON


def test_copy_and_batched_paths_give_the_same_report(db_session, tmp_path):
    reports = []
    for strategy in STRATEGIES:
        target = lists.create_list(db_session, name=f"List {strategy}")
        f.member(db_session, email=f"existing-{strategy}@example.org")
        content = HOSTILE_CSV + f"existing-{strategy}@example.org,Eve,,,,,\r\n".encode()
        _, report = run(db_session, tmp_path, content, target.id, strategy)
        reports.append(
            {k: v for k, v in report.to_dict().items() if k not in ("seconds", "strategy")}
        )
        db_session.execute(sa.delete(Member))
    assert (reports[0]["added"], reports[0]["updated"]) == (8, 1)
    assert reports[0]["warnings"] == len(HOSTILE_WARNINGS)
    assert reports[0] == reports[1]


@pytest.mark.parametrize("members_before", [0, 1], ids=["empty table", "existing members"])
def test_duplicates_across_copy_chunks_are_found(
    db_session, tmp_path, target, monkeypatch, members_before
):
    # Chunks of two rows (the parser hands rows over one at a time), so every duplicate
    # below is one of an earlier chunk, found in the database, not by the parser.
    monkeypatch.setattr(postgres, "_CHUNK_ROWS", 2)
    monkeypatch.setattr(postgres, "_BATCH_ROWS", 1)
    chunks = []
    process = postgres.CopyImport._process_chunk
    monkeypatch.setattr(
        postgres.CopyImport, "_process_chunk", lambda self: (chunks.append(1), process(self))
    )
    if members_before:  # the other way: a lookup in import_seen while the import runs
        f.member(db_session, email="someone-else@example.org")
    content = csv_bytes(
        "a@example.org,A,,,",
        "b@example.org,B,,,",
        "c@example.org,C,,,",
        "A@example.org,A2,,,",  # an earlier chunk's address
        "d@example.org,D,,,",
        "c@example.org,C2,,,",
        "e@example.org,E,,,",
    )
    job, report = run(db_session, tmp_path, content, target.id, "copy")
    assert len(chunks) == 4
    assert (report.added, report.skipped, report.subscribed) == (5, 2, 5)
    assert skips_of(db_session, job.id) == [(5, "duplicate of line 2"), (7, "duplicate of line 4")]
    assert report.skip_reasons == {"duplicate in the file": 2}
    assert members(db_session)["a@example.org"].first_name == "A"


def test_copy_path_without_the_privilege_to_skip_foreign_key_checks(
    db_session, tmp_path, target, monkeypatch
):
    monkeypatch.setattr(postgres, "may_skip_fk_checks", lambda session: False)
    _, report = run(db_session, tmp_path, HOSTILE_CSV, target.id, "copy")
    assert (report.added, report.subscribed) == (8, 8)


NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(
    ("before", "choice", "after"),
    [
        (None, "implied_membership", "implied_membership"),
        ("express", "implied_membership", "express"),  # never weakened
        ("implied_inquiry", "implied_membership", "implied_membership"),  # stronger
        ("implied_membership", "express", "express"),
        ("implied_inquiry", "implied_inquiry", "implied_inquiry"),  # renewed
        ("implied_membership", "none", "implied_membership"),
        (None, "none", None),
    ],
)
def test_import_consent_only_adds_to_what_is_on_file(
    db_session, tmp_path, target, strategy, before, choice, after
):
    old = f.member(db_session, email="old@example.org")
    if before:
        consent.record_consent(
            db_session,
            old,
            consent.ConsentBasis(before),
            source="earlier",
            at=NOW - timedelta(days=100),
        )
    if before == "implied_membership":
        consent.set_membership_end(db_session, old, NOW - timedelta(days=30))
    expires_before = old.consent_expires_at
    run(
        db_session,
        tmp_path,
        csv_bytes("old@example.org,Old,,,"),
        target.id,
        strategy,
        consent=choice,
    )
    db_session.refresh(old)
    assert old.consent_basis == after
    if choice == "none":
        replaced = False
        assert old.consent_source == ("earlier" if before else "")
    else:
        replaced = consent.import_should_replace(
            before, expires_before, choice, consent.implied_expiry(choice, datetime.now(UTC))
        )
        assert old.consent_source.startswith("import:") == replaced
    if after == "implied_membership" and replaced:
        assert old.consent_expires_at is None
        assert old.membership_ended_at is None


def test_reason_groups_agree_between_python_and_sql(db_session, tmp_path, target):
    job, report = run(db_session, tmp_path, HOSTILE_CSV, target.id, "copy")
    for kind, grouped in (("skipped", report.skip_reasons), ("warning", report.warning_reasons)):
        python: dict[str, int] = {}
        for _, reason in skips_of(db_session, job.id, kind):
            group = imports.reason_group(reason)
            python[group] = python.get(group, 0) + 1
        assert grouped == python


def test_task_steps_mark_status_and_refusal(db_session, tmp_path, target):
    path = tmp_path / "bad.csv"
    path.write_bytes(NO_EMAIL_COLUMN)
    job = imports.create_import(
        db_session, list_id=target.id, path=path, filename="bad.csv", origin="web"
    )
    assert imports.start_import(db_session, job.id) is job
    with pytest.raises(imports.CsvRefused) as refused:
        imports.run_import(db_session, job.id)
    imports.finish_refused(db_session, job.id, refused.value.message)
    assert job.status == ImportStatus.REFUSED
    assert imports.start_import(db_session, job.id) is None  # a finished import never runs again


def test_a_role_that_may_not_skip_foreign_key_checks_still_imports(
    db_session, tmp_path, target, monkeypatch
):
    """Production roles are rarely superusers: the import notices, keeps the checks, works.

    The role, its grants and SET ROLE all vanish with the test's rolled-back transaction."""
    db_session.execute(sa.text("CREATE ROLE rp_plain_import NOLOGIN"))
    db_session.execute(sa.text("GRANT ALL ON ALL TABLES IN SCHEMA public TO rp_plain_import"))
    db_session.execute(sa.text("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO rp_plain_import"))
    db_session.execute(sa.text("SET LOCAL ROLE rp_plain_import"))
    seen = []
    check = postgres.may_skip_fk_checks

    def record(session):
        seen.append(check(session))
        return seen[-1]

    monkeypatch.setattr(postgres, "may_skip_fk_checks", record)
    _, report = run(db_session, tmp_path, HOSTILE_CSV, target.id, "copy")
    assert seen == [False]
    assert (report.added, report.subscribed) == (8, 8)


def test_a_superuser_skips_the_foreign_key_checks(db_session):
    assert postgres.may_skip_fk_checks(db_session) is True


def test_a_big_import_leaves_the_planner_statistics_of_what_it_wrote(db_session, tmp_path):
    """The first send after an import is planned on them (issue 11: 5-10x slower without)."""
    target = lists.create_list(db_session, name="Statistics")
    rows = "".join(f"stats{n}@example.org,First{n},Last{n}\r\n" for n in range(3000))
    content = ("email,first_name,last_name\r\n" + rows).encode()

    run(db_session, tmp_path, content, target.id, "copy")

    def estimated(table: str) -> float:
        return float(
            db_session.scalar(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                {"t": table},
            )
        )

    assert estimated("members") >= 3000
    assert estimated("subscriptions") >= 3000
    with_stats = db_session.scalar(
        sa.text("SELECT count(*) FROM pg_stats WHERE tablename = 'subscriptions'")
    )
    assert with_stats > 0


# --- new members COPYed straight into the tables (imports/new_members.py) --------------------

# Chunks of four rows, handed over two at a time, new members formatted one then two at a time:
# every kind of row below meets the others within a chunk and across chunks.
NEW_MEMBERS_CSV = csv_bytes(
    "ana@example.org,Ana,Roy,fr,h2x1y4,Local 1,Dock,nights",  # 2
    "bob@example.org,,,,,,,",  # 3 nothing but the address
    "cy@example.org,Cy,Lee,xx,,Local 2,,days",  # 4 a value left out (unknown language)
    "blocked@example.org,Bo,,,,,,",  # 5 suppressed, first chunk
    'dee@example.org,Dée,Ñoño,en,K1A 0B1,,"Warehouse ""4""\nDock 2",',  # 6 quoted newline
    "ANA@example.org,Ana2,,,,,,",  # 8 a duplicate of an earlier chunk
    "not an address,,,,,,,",  # 9 skipped
    "eve@example.org,Eve,,,,,,",  # 10
    "eve@example.org,Eve2,,,,,,",  # 11 a duplicate of the row before, in the next chunk
    "blocked2@example.org,Bea,,,,,,",  # 12 suppressed, later chunk
    f"fay@example.org,Fay,,,{'p' * 21},,,",  # 13 postal code too long: left out
    "bob@example.org,Bob,,,,,,",  # 14 a duplicate two chunks on
    "gus@example.org,Gus,,,,,,x",  # 15
    "GUS@example.org,Gus2,,,,,,",  # 16 a duplicate within the chunk
    "blocked@example.org,Bo2,,,,,,",  # 17 suppressed and a duplicate
    "hal@example.org,Hal,Ng,en,,Local 3,,",  # 18
    header="email,first_name,last_name,language,postal_code,local,Workplace,Shift",
)


def _before_each_piece(monkeypatch, hook) -> None:
    """Call hook(rows) as each piece of new members is about to be formatted (new_members.py)."""
    fmt = postgres.NewMemberRows.format

    def spied(self, rows):
        hook(rows)
        return fmt(self, rows)

    monkeypatch.setattr(postgres.NewMemberRows, "format", spied)


def _import_new(db_session, tmp_path, list_id, consent_choice, *, by_copy, monkeypatch):
    monkeypatch.setattr(postgres, "_CHUNK_ROWS", 4)
    monkeypatch.setattr(postgres, "_BATCH_ROWS", 2)
    monkeypatch.setattr(postgres, "_NEW_PIECE_ROWS", (1, 2))
    monkeypatch.setattr(postgres.CopyImport, "new_members_by_copy", by_copy)
    copied = []
    _before_each_piece(monkeypatch, lambda rows: copied.append(len(rows)))
    path = tmp_path / "members.csv"
    path.write_bytes(NEW_MEMBERS_CSV)
    job = imports.create_import(
        db_session,
        list_id=list_id,
        path=path,
        filename="members.csv",
        origin="cli",
        consent=consent_choice,
    )
    imports.start_import(db_session, job.id)
    report = imports.run_import(db_session, job.id, strategy="copy", now=NOW)
    outcome = report.to_dict()
    del outcome["seconds"]
    return job, outcome, sum(copied)


def _written(db_session, import_id: int) -> dict[str, list]:
    """Every column of what an import wrote, ids and the import's own id left out."""

    def rows(sql: str) -> list:
        return [tuple(r) for r in db_session.execute(sa.text(sql), {"i": import_id})]

    member_columns = [
        c.name for c in Member.__table__.columns if c.name not in ("id", "consent_detail")
    ]
    subscription_columns = [c.name for c in Subscription.__table__.columns if c.name != "member_id"]
    members_ = rows(
        f"SELECT {', '.join(member_columns)}, consent_detail - 'import_id', "  # noqa: S608
        "consent_detail->>'import_id' = CAST(:i AS text) FROM members ORDER BY email"
    )
    subscriptions_ = rows(
        f"SELECT m.email, {', '.join('s.' + c for c in subscription_columns)} "  # noqa: S608
        "FROM subscriptions s JOIN members m ON m.id = s.member_id ORDER BY m.email"
    )
    issues = rows(
        "SELECT line, kind, email, reason FROM member_import_issues WHERE import_id = :i "
        "ORDER BY line, id"
    )
    return {"members": members_, "subscriptions": subscriptions_, "issues": issues}


def _members_before(db_session, list_id: int) -> None:
    """A small members table: one address of the file, one not, one unsubscribed earlier (their
    times pinned, so that two imports in a row find the same table)."""
    then = {"created_at": NOW - timedelta(days=30), "updated_at": NOW - timedelta(days=30)}
    f.member(db_session, email="ana@example.org", first_name="Old", local="Local 9", **then)
    f.member(db_session, email="zed@example.org", **then)
    eve = f.member(db_session, email="eve@example.org", **then)
    gone = f.subscribe(db_session, eve, db_session.get(MailingList, list_id), status="unsubscribed")
    gone.unsubscribed_at = gone.created_at = gone.updated_at = then["created_at"]
    gone.unsubscribe_source = UnsubscribeSource.LINK.value
    db_session.flush()


@pytest.mark.parametrize("before", ["empty", "small"])
@pytest.mark.parametrize("consent_choice", ["none", "implied_membership", "implied_inquiry"])
def test_new_members_copied_straight_in_are_exactly_what_the_staging_way_writes(
    db_session, tmp_path, target, monkeypatch, consent_choice, before
):
    """Into an empty or small members table the surely new rows skip the staging table; every
    column of every member, subscription and issue, and the report, are what the other way
    gives."""
    subscriptions.suppress(db_session, "blocked@example.org", SuppressionReason.MANUAL)
    subscriptions.suppress(db_session, "blocked2@example.org", SuppressionReason.HARD_BOUNCE)
    results = []
    for by_copy in (False, True):
        if before == "small":
            _members_before(db_session, target.id)
        job, report, copied = _import_new(
            db_session,
            tmp_path,
            target.id,
            consent_choice,
            by_copy=by_copy,
            monkeypatch=monkeypatch,
        )
        results.append((report, _written(db_session, job.id)))
        # ana, bob, dee, eve, gus, hal; not cy and fay (a value left out), nor the suppressed,
        # nor, into the small table, its members ana and eve
        assert copied == ((6 if before == "empty" else 4) if by_copy else 0)
        db_session.execute(sa.delete(Subscription))
        db_session.execute(sa.delete(Member))
    (staged_report, staged), (copied_report, copied_rows) = results
    assert copied_report == staged_report
    assert copied_rows == staged
    if before == "small":
        assert (staged_report["added"], staged_report["updated"]) == (8, 2)
        assert staged_report["not_subscribed_reasons"] == {
            "suppressed address": 2,
            "unsubscribed from this list earlier": 1,
        }
        return
    # And what that is, once.
    assert (staged_report["added"], staged_report["subscribed"]) == (10, 8)
    assert staged_report["skip_reasons"] == {"duplicate in the file": 5, "invalid email address": 1}
    assert [line for line, kind, _, _ in staged["issues"] if kind == "skipped"] == [
        8,
        9,
        11,
        14,
        16,
        17,
    ]
    by_email = {row[0]: row for row in staged["members"]}
    columns = [c.name for c in Member.__table__.columns if c.name not in ("id", "consent_detail")]
    dee = dict(zip(columns, by_email["dee@example.org"], strict=False))
    assert (dee["first_name"], dee["last_name"], dee["postal_code"]) == ("Dée", "Ñoño", "K1A 0B1")
    assert dee["attributes"] == {"Workplace": 'Warehouse "4"\nDock 2'}
    assert by_email["bob@example.org"][1:7] == ("", "", "en", "", "", {})
    assert dict(zip(columns, by_email["ana@example.org"], strict=False))["first_name"] == "Ana"


def test_new_members_go_the_staging_way_into_a_members_table_that_is_not_small(
    db_session, tmp_path, target, monkeypatch
):
    copied = []
    _before_each_piece(monkeypatch, lambda rows: copied.append(len(rows)))
    f.member(db_session, email="one@example.org")
    f.member(db_session, email="two@example.org")
    for few, expected in ((1, 0), (3, 1)):  # two members, then three
        monkeypatch.setattr(postgres, "_FEW_MEMBERS", few)
        copied.clear()
        _, report = run(
            db_session, tmp_path, csv_bytes(f"new{few}@example.org,N,,,"), target.id, "copy"
        )
        assert (report.added, sum(copied)) == (1, expected)


def test_an_import_that_fails_after_copying_new_members_leaves_nothing(
    db_session, tmp_path, target, monkeypatch
):
    """Bad input changes nothing, even after pieces of new members went straight into the
    tables; the ids they took are never handed out again."""
    monkeypatch.setattr(postgres, "_CHUNK_ROWS", 4)
    monkeypatch.setattr(postgres, "_BATCH_ROWS", 2)
    monkeypatch.setattr(postgres, "_NEW_PIECE_ROWS", (1,))
    calls = []

    def fail_on_the_fourth(rows):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("the disk is full")

    _before_each_piece(monkeypatch, fail_on_the_fourth)
    content = csv_bytes(*(f"p{n}@example.org,P{n},,," for n in range(12)))
    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError, match="the disk is full"), db_session.begin_nested():
        run(db_session, tmp_path, content, target.id, "copy")
    assert sys.getswitchinterval() == before
    assert len(calls) == 4
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Member)) == 0
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0

    # The same file again: the pieces are counted on from the fifth, nothing fails.
    _, report = run(db_session, tmp_path, content, target.id, "copy")
    assert (report.added, report.subscribed) == (12, 12)
    imported = set(db_session.scalars(sa.select(Member.id)))
    # A member added one at a time afterwards takes the next id of the same sequence.
    single = members_service.create_member(db_session, email="single@example.org")
    assert single.id > max(imported)


def test_the_parser_gives_way_promptly_only_while_importing(
    db_session, tmp_path, target, monkeypatch
):
    during = []
    _before_each_piece(monkeypatch, lambda rows: during.append(sys.getswitchinterval()))
    before = sys.getswitchinterval()
    run(db_session, tmp_path, csv_bytes("a@example.org,A,,,"), target.id, "copy")
    assert during == [postgres._SWITCH_INTERVAL_S]
    assert sys.getswitchinterval() == before != postgres._SWITCH_INTERVAL_S
