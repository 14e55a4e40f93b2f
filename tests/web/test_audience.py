"""Audience pages: lists, members, consent, suppressions, imports, segments, exports, roles."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import sqlalchemy as sa

from app import jobs
from app.models import (
    ImportIssue,
    MailingList,
    Member,
    MemberImport,
    Role,
    Segment,
    Subscription,
    Suppression,
)
from app.services.audience import imports, lists
from tests import factories as f
from tests.support.forms import csrf_token, submit
from tests.support.member_files import HOSTILE_CSV, HOSTILE_FORMULA, NO_EMAIL_COLUMN


@pytest.fixture
def organizer(login_as):
    return login_as(Role.ORGANIZER)


def test_lists_page_has_a_friendly_empty_state(client, organizer):
    page = client.get("/lists").get_data(as_text=True)
    assert "No lists yet" in page
    assert "Create your first list" in page


def test_create_a_list_and_see_its_counts(client, organizer, db_session):
    response = submit(
        client,
        "/lists/new",
        {
            "name": "Action network",
            "description": "Rapid response",
            "is_public": "y",
            "opt_in": "double",
        },
    )
    assert response.status_code == 302
    created = db_session.scalar(sa.select(MailingList).where(MailingList.name == "Action network"))
    assert (created.is_public, created.opt_in, created.slug) == (True, "double", "action-network")
    for n, status in enumerate(["subscribed", "subscribed", "pending", "unsubscribed"]):
        f.subscribe(db_session, f.member(db_session, email=f"p{n}@example.org"), created, status)
    db_session.commit()
    page = client.get("/lists").get_data(as_text=True)
    assert re.search(r"Subscribed</dt><dd>2<", page)
    assert re.search(r"Waiting to confirm</dt><dd>1<", page)
    assert re.search(r"Unsubscribed</dt><dd>1<", page)
    list_page = client.get(f"/lists/{created.id}").get_data(as_text=True)
    assert "p0@example.org" in list_page
    assert "/subscribe/action-network/embed" in list_page  # the embeddable snippet
    assert "form_token" in list_page  # (HTML-escaped inside the textarea)


def test_duplicate_list_name_is_a_form_error(client, organizer, db_session):
    lists.create_list(db_session, name="All members")
    db_session.commit()
    response = submit(client, "/lists/new", {"name": "All members", "opt_in": "single"})
    assert response.status_code == 422
    assert "already a list called All members" in response.get_data(as_text=True)


def test_list_search_and_pagination(client, organizer, db_session):
    lst = lists.create_list(db_session, name="Big")
    for n in range(60):
        f.subscribe(
            db_session, f.member(db_session, email=f"m{n:02d}@example.org", first_name=f"N{n}"), lst
        )
    f.subscribe(
        db_session,
        f.member(db_session, email="zed@example.org", first_name="Zoé", last_name="Tremblay"),
        lst,
    )
    db_session.commit()
    first = client.get(f"/lists/{lst.id}").get_data(as_text=True)
    assert len(re.findall(r"/members/\d+", first)) == 50
    assert "Next →" in first
    second = client.get(f"/lists/{lst.id}?page=2").get_data(as_text=True)
    assert len(re.findall(r"/members/\d+", second)) == 11
    found = client.get(f"/lists/{lst.id}?q=tremblay").get_data(as_text=True)
    assert "zed@example.org" in found
    assert "m01@example.org" not in found
    assert "zed@example.org" in client.get(f"/lists/{lst.id}?q=ZED@").get_data(as_text=True)


def test_member_page_edit_consent_unsubscribe_suppress(client, organizer, db_session):
    lst = lists.create_list(db_session, name="All members")
    m = f.member(db_session, email="pat@example.org", first_name="Pat")
    f.subscribe(db_session, m, lst)
    db_session.commit()
    url = f"/members/{m.id}"
    page = client.get(url).get_data(as_text=True)
    assert "No consent recorded" in page

    response = submit(
        client,
        url,
        {
            "first_name": "Patricia",
            "last_name": "Roy",
            "language": "fr",
            "postal_code": "h2x1y4",
            "local": "Local 1004",
            "attributes": "Workplace: Depot\nShift: Night",
            "membership_ended": "",
        },
    )
    assert response.status_code == 302
    db_session.refresh(m)
    assert (m.first_name, m.language, m.postal_code) == ("Patricia", "fr", "H2X 1Y4")
    assert m.attributes == {"Workplace": "Depot", "Shift": "Night"}

    submit(
        client,
        url,
        {"basis": "implied_membership", "source": "membership card", "given_on": "2024-01-10"},
        post_url=f"{url}/consent",
    )
    db_session.refresh(m)
    assert m.consent_basis == "implied_membership"
    submit(
        client,
        url,
        {
            "first_name": "Patricia",
            "language": "fr",
            "membership_ended": "2025-01-31",
            "attributes": "",
        },
    )
    db_session.refresh(m)
    assert m.consent_expires_at.date().isoformat() == "2027-01-31"

    submit(client, url, {"list_id": str(lst.id)}, post_url=f"{url}/unsubscribe")
    assert db_session.get(Subscription, (m.id, lst.id)).status == "unsubscribed"

    submit(client, url, {"detail": "asked by phone"}, post_url=f"{url}/suppress")
    assert db_session.scalar(sa.select(Suppression).where(Suppression.email == m.email)) is not None
    assert "Do not email." in client.get(url).get_data(as_text=True)
    submit(client, url, {}, post_url=f"{url}/unsuppress")
    assert db_session.scalar(sa.select(Suppression).where(Suppression.email == m.email)) is None


def test_member_page_warns_60_days_before_consent_expires(client, organizer, db_session):
    from datetime import UTC, datetime, timedelta

    from app.models import ConsentBasis
    from app.services.audience import consent

    lst = lists.create_list(db_session, name="All members")
    m = f.member(db_session, email="soon@example.org")
    f.subscribe(db_session, m, lst)
    consent.record_consent(
        db_session,
        m,
        ConsentBasis.IMPLIED_INQUIRY,
        source="call",
        at=datetime.now(UTC) - timedelta(days=150),
    )
    db_session.commit()
    assert "Expiring soon" in client.get(f"/members/{m.id}").get_data(as_text=True)
    page = client.get(f"/lists/{lst.id}").get_data(as_text=True)
    assert "implied consent ends within 60 days" in page


def test_add_member_to_a_double_opt_in_list_sends_a_confirmation(client, organizer, db_session):
    lst = lists.create_list(db_session, name="Action", opt_in="double")
    db_session.commit()
    response = submit(
        client,
        "/members/new",
        {"email": "New@Example.org", "first_name": "New", "language": "en", "list_id": str(lst.id)},
    )
    assert response.status_code == 302
    m = db_session.scalar(sa.select(Member).where(Member.email == "new@example.org"))
    assert db_session.get(Subscription, (m.id, lst.id)).status == "pending"
    bad = submit(
        client, "/members/new", {"email": "not an email", "language": "en", "list_id": "0"}
    )
    assert bad.status_code == 422
    assert "not valid" in bad.get_data(as_text=True)


def test_suppressions_page_blocks_an_address(client, organizer, db_session):
    response = submit(client, "/suppressions", {"email": "Gone@Example.org", "detail": "asked"})
    assert response.status_code == 302
    assert "gone@example.org" in client.get("/suppressions").get_data(as_text=True)


def test_upload_that_is_not_a_member_csv_is_refused_whole(
    client, organizer, db_session, app, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path))
    lst = lists.create_list(db_session, name="All members")
    db_session.commit()
    url = f"/lists/{lst.id}/import"
    response = client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "consent": "implied_membership",
            "file": (io.BytesIO(NO_EMAIL_COLUMN), "people.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert "no &#39;email&#39; column" in response.get_data(as_text=True)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(MemberImport)) == 0
    assert list(tmp_path.iterdir()) == []


def test_upload_queues_the_import_task(client, organizer, db_session, app, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path))
    lst = lists.create_list(db_session, name="All members")
    db_session.commit()
    url = f"/lists/{lst.id}/import"
    response = client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "consent": "implied_membership",
            "file": (io.BytesIO(HOSTILE_CSV), "../../etc/members.csv"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    job = db_session.scalar(sa.select(MemberImport))
    assert response.headers["Location"].endswith(f"/imports/{job.id}")
    assert job.filename == "members.csv"
    assert job.path.startswith(str(tmp_path))  # stored under a random name, never the client's
    assert job.status == "queued"
    status = client.get(f"/imports/{job.id}/status.json").get_json()
    assert (status["status"], status["percent"]) == ("queued", 0)


def test_import_report_page_and_issue_download(client, organizer, db_session, tmp_path):
    lst = lists.create_list(db_session, name="All members")
    path = tmp_path / "m.csv"
    path.write_bytes(HOSTILE_CSV)
    job, _ = imports.import_members(db_session, path=path, list_id=lst.id, origin="web")
    db_session.commit()
    page = client.get(f"/imports/{job.id}").get_data(as_text=True)
    assert "Done" in page
    assert "Duplicate in the file: 2 skipped" in page
    assert "duplicate of line 5" in page
    # Warnings are told apart from skips: counted, explained, and marked row by row.
    assert '<span class="n" data-field="warnings">4</span>' in page
    assert "Unknown language: 1</li>" in page
    assert (
        '<tr class="issue-warning"><td>17</td><td>sam@example.org</td>'
        "<td>imported, value left out</td>"
    ) in page
    assert '<tr class="issue-skipped"><td>6</td>' in page
    issues = client.get(f"/imports/{job.id}/issues.csv")
    assert issues.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(issues.get_data(as_text=True))))
    assert rows[0] == ["line", "email", "what happened", "reason"]
    assert [(int(r[0]), r[2]) for r in rows[1:]] == [
        (6, "skipped"),
        (7, "skipped"),
        (8, "imported, value left out"),
        (9, "imported, value left out"),
        (10, "imported, value left out"),
        (11, "skipped"),
        (12, "skipped"),
        (16, "skipped"),
        (17, "imported, value left out"),
    ]
    assert rows[-1][3] == (
        "unknown language 'es' (use en or fr): imported without it (new members get English)"
    )
    status = client.get(f"/imports/{job.id}/status.json").get_json()
    assert (status["report"]["added"], status["report"]["warnings"]) == (8, 4)


def test_export_neutralises_formulas(client, organizer, db_session, tmp_path):
    lst = lists.create_list(db_session, name="All members")
    path = tmp_path / "m.csv"
    path.write_bytes(HOSTILE_CSV)
    imports.import_members(db_session, path=path, list_id=lst.id)
    db_session.commit()
    response = client.get(f"/lists/{lst.id}/export.csv")
    assert response.headers["Content-Disposition"].startswith("attachment")
    text = response.get_data(as_text=True)
    rows = {r[0]: r for r in csv.reader(io.StringIO(text))}
    assert rows["mal@example.org"][1] == "'" + HOSTILE_FORMULA
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows.values() for cell in row)


def test_segment_editor_saves_counts_and_refuses_bad_rules(client, organizer, db_session):
    f.member(db_session, email="a@example.org", local="Local 30")
    f.member(db_session, email="b@example.org", local="Local 1")
    db_session.commit()
    rules = [{"field": "local", "op": "equals", "value": "local 30"}]
    token = csrf_token(client, "/segments/new")
    count = client.post(
        "/segments/count",
        json={"rules": rules, "match": "all"},
        headers={"X-CSRFToken": token},
    )
    assert count.get_json() == {"count": 1}
    bad = client.post(
        "/segments/count",
        json={"rules": [{"field": "password_hash", "op": "equals", "value": "x"}], "match": "all"},
        headers={"X-CSRFToken": token},
    )
    assert bad.status_code == 422
    assert "unknown field" in bad.get_json()["problems"][0]["message"]
    no_csrf = client.post("/segments/count", json={"rules": rules, "match": "all"})
    assert no_csrf.status_code == 400

    saved = submit(
        client, "/segments/new", {"name": "Local 30", "match": "all", "rules": json.dumps(rules)}
    )
    assert saved.status_code == 302
    segment = db_session.scalar(sa.select(Segment))
    assert segment.rules == [{"field": "local", "op": "equals", "value": "local 30"}]
    assert "Local or chapter is local 30" in client.get("/segments").get_data(as_text=True)
    refused = submit(
        client,
        "/segments/new",
        {
            "name": "Evil",
            "match": "all",
            "rules": json.dumps([{"field": "email", "op": "sql", "value": "1=1"}]),
        },
    )
    assert refused.status_code == 422
    assert "cannot use the operator" in refused.get_data(as_text=True)
    export = client.get(f"/segments/{segment.id}/export.csv").get_data(as_text=True)
    assert "a@example.org" in export
    assert "b@example.org" not in export


AUDIENCE_GETS = [
    "/lists",
    "/lists/new",
    "/members",
    "/members/new",
    "/segments",
    "/segments/new",
    "/suppressions",
]


@pytest.mark.parametrize("path", AUDIENCE_GETS)
def test_viewers_are_refused_every_audience_page(client, login_as, path):
    login_as(Role.VIEWER)
    assert client.get(path).status_code == 403


def test_viewers_cannot_change_anything(client, login_as, db_session):
    lst = lists.create_list(db_session, name="All members")
    m = f.member(db_session, email="pat@example.org")
    db_session.commit()
    login_as(Role.VIEWER)
    token = csrf_token(client, "/settings/tokens")
    for path, data in [
        ("/lists/new", {"name": "X", "opt_in": "single"}),
        (f"/lists/{lst.id}/edit", {"name": "Y", "opt_in": "single"}),
        (f"/lists/{lst.id}/delete", {}),
        (f"/members/{m.id}/suppress", {}),
        (f"/members/{m.id}/unsubscribe", {"list_id": "all"}),
        ("/suppressions", {"email": "x@example.org"}),
    ]:
        assert client.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert client.get(f"/lists/{lst.id}/export.csv").status_code == 403
    assert db_session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    assert db_session.scalar(sa.select(MailingList.name)) == "All members"


def test_import_jobs_published_after_commit_only(db_session):
    assert [j for j in jobs.pending_jobs(db_session) if j.name == jobs.IMPORT_MEMBERS] == []
    assert db_session.scalar(sa.select(sa.func.count()).select_from(ImportIssue)) == 0
