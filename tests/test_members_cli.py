"""`flask members import PATH --list NAME [--json]`: the report, JSON, and clear refusals."""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask_migrate import upgrade

from app.extensions import db
from app.models import Member
from app.services.audience import imports, lists
from tests.support.member_files import (
    HOSTILE_CSV,
    HOSTILE_WARNINGS,
    NO_EMAIL_COLUMN,
    WINDOWS_1252_CSV,
    WINDOWS_1252_MEMBERS,
)
from tests.support.tracking import MIGRATIONS


def test_cli_import_prints_the_report_and_json(app, db_session, tmp_path):
    lists.create_list(db_session, name="All members")
    db_session.commit()
    path = tmp_path / "members.csv"
    path.write_bytes(HOSTILE_CSV)
    runner = app.test_cli_runner()

    text = runner.invoke(args=["members", "import", str(path), "--list", "all members"])
    assert text.exit_code == 0, text.output
    assert "8 added, 0 updated, 0 unchanged, 5 skipped" in text.output
    assert "4 values left out (their members were imported)" in text.output
    assert "line 6, skipped: duplicate of line 5 (bob@example.org)" in text.output
    assert (
        "line 17, imported, value left out: unknown language 'es' (use en or fr): imported "
        "without it (new members get English) (sam@example.org)"
    ) in text.output

    out = runner.invoke(args=["members", "import", str(path), "--list", "All members", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert (report["added"], report["unchanged"], report["skipped"]) == (0, 8, 5)
    assert report["warnings"] == 4
    assert [(issue["line"], issue["kind"]) for issue in report["issues"]] == [
        (6, "skipped"),
        (7, "skipped"),
        (8, "warning"),
        (9, "warning"),
        (10, "warning"),
        (11, "skipped"),
        (12, "skipped"),
        (16, "skipped"),
        (17, "warning"),
    ]


def test_cli_imports_an_excel_windows_1252_file_and_says_how_it_read_it(app, db_session, tmp_path):
    lists.create_list(db_session, name="Membres")
    db_session.commit()
    path = tmp_path / "membres.csv"
    path.write_bytes(WINDOWS_1252_CSV)
    runner = app.test_cli_runner()

    out = runner.invoke(args=["members", "import", str(path), "--list", "Membres", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert (report["added"], report["skipped"], report["issues"]) == (5, 0, [])
    assert report["encoding"] == "windows-1252"
    assert report["note"] == imports.WINDOWS_1252_NOTE
    saved = {
        m.email: (m.first_name, m.last_name, m.language, m.attributes)
        for m in db_session.scalars(sa.select(Member))
    }
    assert saved == WINDOWS_1252_MEMBERS

    text = runner.invoke(args=["members", "import", str(path), "--list", "Membres"])
    assert text.exit_code == 0, text.output
    assert imports.WINDOWS_1252_NOTE in text.output
    assert "0 added, 0 updated, 5 unchanged, 0 skipped" in text.output


def test_cli_imports_a_windows_1252_file_on_sqlite_the_same_way(other_app, tmp_path):
    # `make run` imports on SQLite through the batched path: same rows, same note.
    app = other_app(DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}")
    path = tmp_path / "membres.csv"
    path.write_bytes(WINDOWS_1252_CSV)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        lists.create_list(db.session, name="Membres")
        db.session.commit()
        out = app.test_cli_runner().invoke(
            args=["members", "import", str(path), "--list", "Membres", "--json"]
        )
        assert out.exit_code == 0, out.output
        report = json.loads(out.output)
        assert (report["strategy"], report["added"], report["skipped"]) == ("batched", 5, 0)
        assert (report["encoding"], report["note"]) == ("windows-1252", imports.WINDOWS_1252_NOTE)
        saved = {
            m.email: (m.first_name, m.last_name, m.language, m.attributes)
            for m in db.session.scalars(sa.select(Member))
        }
        assert saved == WINDOWS_1252_MEMBERS
        db.session.remove()


def test_cli_import_on_sqlite_imports_members_with_bad_optional_values(other_app, tmp_path):
    """The portable path (`make run`'s SQLite) leaves bad values out like the COPY path."""
    app = other_app(DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}")
    path = tmp_path / "members.csv"
    path.write_bytes(HOSTILE_CSV)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        lists.create_list(db.session, name="All members")
        db.session.commit()
        out = app.test_cli_runner().invoke(
            args=["members", "import", str(path), "--list", "All members", "--json"]
        )
        assert out.exit_code == 0, out.output
        report = json.loads(out.output)
        assert (report["strategy"], report["added"], report["skipped"]) == ("batched", 8, 5)
        warned = [(i["line"], i["reason"]) for i in report["issues"] if i["kind"] == "warning"]
        assert warned == HOSTILE_WARNINGS
        sam = db.session.scalar(sa.select(Member).where(Member.email == "sam@example.org"))
        assert (sam.first_name, sam.language) == ("Sam", "en")
        db.session.remove()


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
