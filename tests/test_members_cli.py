"""`flask members import PATH --list NAME [--json]`: the report, JSON, and clear refusals."""

from __future__ import annotations

import json

from app.services import lists
from tests.support.member_files import HOSTILE_CSV, NO_EMAIL_COLUMN


def test_cli_import_prints_the_report_and_json(app, db_session, tmp_path):
    lists.create_list(db_session, name="All members")
    db_session.commit()
    path = tmp_path / "members.csv"
    path.write_bytes(HOSTILE_CSV)
    runner = app.test_cli_runner()

    text = runner.invoke(args=["members", "import", str(path), "--list", "all members"])
    assert text.exit_code == 0, text.output
    assert "4 added, 0 updated, 0 unchanged, 9 skipped" in text.output
    assert "line 6: duplicate of line 5 (bob@example.org)" in text.output

    out = runner.invoke(args=["members", "import", str(path), "--list", "All members", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert (report["added"], report["unchanged"], report["skipped"]) == (0, 4, 9)
    assert [issue["line"] for issue in report["issues"]] == [6, 7, 8, 9, 10, 11, 12, 16, 17]


def test_cli_refuses_unknown_lists_and_files_without_email(app, db_session, tmp_path):
    lists.create_list(db_session, name="All members")
    db_session.commit()
    path = tmp_path / "people.csv"
    path.write_bytes(NO_EMAIL_COLUMN)
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["members", "import", str(path), "--list", "All members"])
    assert refused.exit_code == 1
    assert "no 'email' column" in refused.output
    unknown = runner.invoke(args=["members", "import", str(path), "--list", "Nope"])
    assert unknown.exit_code == 1
    assert "There is no list called 'Nope'" in unknown.output
