"""The hot statements' SQL as PostgreSQL receives it, snapshotted so a change shows in review.

Docstrings quote these statements and the indexes they use (sending.ledger.claim, the
audience freeze, the tracking flusher's first-engagement update, the import's steps in
audience/imports). Each test runs the real code on PostgreSQL, records the SQL sent to the
server and compares it with tests/services/snapshots/sql/. When a statement changes on
purpose, update the docstring that quotes it in the same commit, then rewrite the snapshots
with UPDATE_SNAPSHOTS=1.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from app.models import CampaignStatus, SuppressionReason
from app.services.audience import imports, lists, subscriptions
from app.services.sending import audience as sending_audience
from app.services.sending import ledger
from app.services.tracking.hits import OPEN, Hit, record_hits
from tests import factories as f
from tests.support.member_files import csv_bytes
from tests.support.sending import add_members, make_campaign, make_list, setup_org
from tests.support.tracking import sent_campaign

SNAPSHOTS = Path(__file__).parent / "snapshots" / "sql"
NOW = datetime(2026, 12, 17, 15, 0, tzinfo=UTC)


@contextmanager
def recorded_sql(session, *, own_connection_only: bool = False) -> Iterator[list[str]]:
    """Every statement the session's engine sends while the block runs, in order; only those
    of the session's connection with `own_connection_only` (another thread's may interleave)."""
    engine = session.get_bind().engine
    own = session.connection()
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if conn is own or not own_connection_only:
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _tidy(statement: str) -> str:
    lines = [line.rstrip() for line in textwrap.dedent(statement).strip("\n").splitlines()]
    return "\n".join(line for line in lines if line) + ";\n"


def assert_snapshot(name: str, statements: list[str], quoted_in: str) -> None:
    text = "\n".join(_tidy(statement) for statement in statements)
    path = SNAPSHOTS / f"{name}.sql"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"No snapshot {path.name}; run with UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8"), (
        f"The SQL of {name} changed: check the docstring of {quoted_in} still says what runs, "
        "then run with UPDATE_SNAPSHOTS=1"
    )


def _sending_campaign(db_session):
    setup_org(db_session)
    members = make_list(db_session)
    add_members(db_session, 5, members.id)
    return make_campaign(db_session, [members], status=CampaignStatus.SENDING.value)


def test_the_audience_freeze(db_session):
    campaign = _sending_campaign(db_session)
    with recorded_sql(db_session) as statements:
        sending_audience.freeze_audience(db_session, campaign.id, now=NOW)
    writes = [s for s in statements if s.lstrip().startswith("INSERT INTO")]
    assert any(s.lstrip().startswith("INSERT INTO deliveries") for s in writes)
    assert_snapshot("freeze_audience", writes, "sending.audience.freeze_audience")


def test_a_step_of_the_stepped_freeze(db_session):
    campaign = _sending_campaign(db_session)
    with recorded_sql(db_session) as statements:
        sending_audience.freeze_audience(db_session, campaign.id, now=NOW, limit=2)
    steps = [s for s in statements if s.lstrip().startswith(("INSERT INTO", "SELECT count"))]
    assert any("OFFSET" in s for s in steps)  # the per-member probe of pk_subscriptions
    assert_snapshot("freeze_step", steps, "sending.audience.audience_conditions")


def test_the_batch_claim(db_session):
    campaign = _sending_campaign(db_session)
    frozen = sending_audience.freeze_audience(db_session, campaign.id, now=NOW)
    key = ledger.BatchKey(campaign.id, frozen.batches[0])
    with recorded_sql(db_session) as statements:
        claim = ledger.claim(db_session, key, 1000, NOW, "snapshot")
    assert claim is not None
    assert claim.rows
    steps = [s for s in statements if not s.lstrip().startswith(("SAVEPOINT", "RELEASE"))]
    assert any("SKIP LOCKED" in s for s in steps)
    assert_snapshot("claim", steps, "sending.ledger.claim")


def test_the_flushers_first_engagement_update(db_session, app):
    data = sent_campaign(db_session, app, members=2)
    hits = [
        Hit(f"snap.{n}", OPEN, data.campaign.id, d.id, 0, time.time(), "198.51.100.7", "", False)
        for n, d in enumerate(data.deliveries)
    ]
    with recorded_sql(db_session) as statements:
        record_hits(db_session, hits)
    update = [s for s in statements if s.lstrip().startswith("UPDATE deliveries AS d")]
    assert len(update) == 1
    assert_snapshot("first_engagement_update", update, "tracking.hits._update_firsts")


def _import_steps(db_session, tmp_path, *rows: str):
    """The statements of a PostgreSQL import of `rows`, on the session's own connection (the
    parser's connection takes member ids meanwhile), and its report. Savepoints, and the
    temp_buffers setting (refused, rolled back to its savepoint and shown, on a connection that
    has used temporary tables before: it depends on the tests that ran earlier), are left out.
    """
    target = lists.create_list(db_session, name="All members")
    subscriptions.suppress(db_session, "blocked@example.org", SuppressionReason.MANUAL)
    path = tmp_path / "members.csv"
    path.write_bytes(csv_bytes(*rows, header="email,first_name,last_name,language,local,shift"))
    with recorded_sql(db_session, own_connection_only=True) as statements:
        _, report = imports.import_members(
            db_session, path=path, list_id=target.id, strategy="copy", consent="implied_membership"
        )
    noise = ("SAVEPOINT", "RELEASE", "ROLLBACK TO SAVEPOINT", "SET temp_buffers", "SHOW ")
    return [s for s in statements if not s.lstrip().startswith(noise)], report


def test_the_import_steps(db_session, tmp_path):
    """Every statement of a PostgreSQL import that updates, adds, skips and leaves out rows."""
    f.member(db_session, email="existing@example.org", first_name="Old")
    steps, report = _import_steps(
        db_session,
        tmp_path,
        "existing@example.org,New,,,,nights",
        "new@example.org,Nadia,,fr,Local 1,days",
        "blocked@example.org,Bo,,,,",
        "not an address,,,,,",
        "NEW@example.org,Twice,,,,",
    )
    assert (report.added, report.updated, report.skipped, report.not_subscribed) == (2, 1, 2, 1)
    assert_snapshot("import_steps", steps, "app.services.audience.imports")


def test_the_import_steps_into_an_empty_members_table(db_session, tmp_path):
    """Into an empty members table, the new members go straight into the tables by COPY (not
    recorded here: psycopg's COPY, not SQLAlchemy) and only the other rows are staged."""
    steps, report = _import_steps(
        db_session,
        tmp_path,
        "new@example.org,Nadia,,fr,Local 1,days",
        "blocked@example.org,Bo,,,,",
        "not an address,,,,,",
        "NEW@example.org,Twice,,,,",
        "odd@example.org,Odd,,klingon,,",
    )
    assert (report.added, report.skipped, report.not_subscribed, report.warnings) == (3, 2, 1, 1)
    assert_snapshot("import_steps_new_members", steps, "app.services.audience.imports")
