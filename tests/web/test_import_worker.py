"""The web upload runs through a real Celery worker and the page shows its report."""

from __future__ import annotations

import io
import time

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker
from markupsafe import escape

import workers.tasks  # noqa: F401 - registers the tasks with the app's Celery
from app.extensions import db
from app.models import Member, MemberImport, Role
from app.services.audience import imports, lists
from app.services.organization import users
from tests.support.forms import csrf_token, login
from tests.support.member_files import HOSTILE_CSV, WINDOWS_1252_CSV, WINDOWS_1252_MEMBERS

PASSWORD = "solidarity-forever"


@pytest.fixture
def worker(app):
    celery = app.extensions["celery"]
    with start_worker(
        celery,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=10,
        queues=["default", "transactional"],
    ) as running:
        yield running


@pytest.fixture
def organizer_client(app, client, committed_db):
    with app.app_context():
        users.create_user(
            db.session, email="org@example.org", password=PASSWORD, role=Role.ORGANIZER.value
        )
        mailing_list = lists.create_list(db.session, name="All members")
        db.session.commit()
        list_id = mailing_list.id
    assert login(client, "org@example.org", PASSWORD).status_code == 302
    return client, list_id


def wait_for(client, import_id: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/imports/{import_id}/status.json").get_json()
        if status["status"] not in ("queued", "running"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"import {import_id} did not finish: {status}")


def _upload(client, list_id: int, body: bytes, filename: str) -> int:
    """Upload a file through the list's import form; returns the new import's id."""
    url = f"/lists/{list_id}/import"
    response = client.post(
        url,
        data={
            "csrf_token": csrf_token(client, url),
            "consent": "implied_membership",
            "file": (io.BytesIO(body), filename),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def test_upload_runs_in_a_worker_and_shows_the_report(
    app, organizer_client, worker, tmp_path, monkeypatch
):
    client, list_id = organizer_client
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path))
    import_id = _upload(client, list_id, HOSTILE_CSV, "members.csv")

    status = wait_for(client, import_id)

    assert status["status"] == "done", status
    assert status["percent"] == 100
    assert status["report"]["added"] == 8
    assert (status["report"]["skipped"], status["report"]["warnings"]) == (5, 4)
    page = client.get(f"/imports/{import_id}").get_data(as_text=True)
    assert "Done" in page
    assert "duplicate of line 5" in page
    assert "Imported without a value" in page
    with app.app_context():
        job = db.session.get(MemberImport, import_id)
        assert (job.status, job.origin, job.consent) == ("done", "web", "implied_membership")
    # Running the task again changes nothing: a finished import never runs twice.
    from workers.tasks.audience import import_members

    with app.app_context():
        import_members(import_id)
        assert db.session.get(MemberImport, import_id).added == 8


def test_an_excel_windows_1252_upload_keeps_every_accented_row_and_says_so(
    app, organizer_client, worker, tmp_path, monkeypatch
):
    client, list_id = organizer_client
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path))
    import_id = _upload(client, list_id, WINDOWS_1252_CSV, "membres.csv")

    status = wait_for(client, import_id)

    assert status["status"] == "done", status
    assert (status["report"]["added"], status["report"]["skipped"]) == (5, 0)
    assert status["report"]["note"] == imports.WINDOWS_1252_NOTE
    page = client.get(f"/imports/{import_id}").get_data(as_text=True)
    assert str(escape(imports.WINDOWS_1252_NOTE)) in page
    assert "Every row was imported." in page
    with app.app_context():
        saved = {
            m.email: (m.first_name, m.last_name, m.language, m.attributes)
            for m in db.session.scalars(sa.select(Member))
        }
        assert saved == WINDOWS_1252_MEMBERS
