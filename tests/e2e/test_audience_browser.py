"""An organizer imports a CSV in a browser, sees the progress and the report; phones too."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker

import workers.tasks  # noqa: F401 - registers the tasks with the app's Celery
from app import demo
from app.extensions import db, limiter
from app.models import MailingList, Segment
from app.services.organization import users
from tests.e2e.conftest import SCREENSHOTS, screenshot
from tests.support.member_files import HOSTILE_CSV

pytestmark = pytest.mark.e2e
PASSWORD = "solidarity-forever"


@pytest.fixture(autouse=True)
def fresh_rate_limits(app):
    """These tests log in through the live server: leave the login rate limit as found (10
    a minute per address), so browser tests that run after them can still log in."""
    with app.app_context():
        limiter.reset()
    yield
    with app.app_context():
        limiter.reset()


@pytest.fixture
def worker(app):
    celery = app.extensions["celery"]
    with start_worker(
        celery, pool="solo", perform_ping_check=False, shutdown_timeout=10, queues=["default"]
    ) as running:
        yield running


@pytest.fixture
def organizer(app, live_server):
    with app.app_context():
        users.create_user(db.session, email="org@example.org", password=PASSWORD, role="organizer")
        demo.load(db.session, admin_email="admin@example.org", admin_password=PASSWORD)
        db.session.commit()
    return "org@example.org"


def log_in(page, live_server, email):
    page.goto(f"{live_server.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/dashboard")


def no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width}px)"


def test_upload_shows_progress_then_the_report_on_a_phone(
    browser, app, live_server, organizer, worker, tmp_path, monkeypatch
):
    monkeypatch.setitem(app.config, "IMPORT_DIR", str(tmp_path / "imports"))
    csv_path = tmp_path / "members.csv"
    csv_path.write_bytes(HOSTILE_CSV)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    log_in(page, live_server, organizer)

    page.goto(f"{live_server.url}/lists")
    page.get_by_role("heading", name="All members").wait_for()
    no_sideways_scroll(page)
    screenshot(page, "audience-lists-phone")

    page.locator("a.list-card", has_text="All members").click()
    page.get_by_role("link", name="Import members").first.click()
    page.get_by_label("CSV file").set_input_files(str(csv_path))
    page.get_by_label("They are current members", exact=False).check()
    progress_seen = []
    page.on(
        "response",
        lambda response: (
            progress_seen.append(response.url) if "status.json" in response.url else None
        ),
    )
    page.get_by_role("button", name="Import").click()
    page.wait_for_url("**/imports/*")
    page.get_by_role("heading", name="Done").wait_for(timeout=30_000)
    page.get_by_text("Rows skipped").wait_for()
    assert page.get_by_text("duplicate of line 5").is_visible()
    assert page.get_by_role("link", name="Download the rows to check (CSV)").is_visible()
    assert progress_seen, "the page polled the progress endpoint"
    no_sideways_scroll(page)
    screenshot(page, "audience-import-report-phone")

    page.get_by_role("link", name="Go to All members").click()
    page.get_by_text("Consent expiring soon").wait_for()
    no_sideways_scroll(page)
    screenshot(page, "audience-list-phone")
    page.screenshot(path=str(SCREENSHOTS / "audience-list-phone-top.png"))  # what a phone shows
    page.locator("table.members").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "audience-list-phone-members.png"))
    page.get_by_placeholder("Search by email or name").fill("tremblay")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="bob@example.org").click()
    page.get_by_role("heading", name="Bob Tremblay").wait_for()
    no_sideways_scroll(page)
    screenshot(page, "audience-member-phone")
    context.close()


def test_segment_editor_counts_live(page, live_server, organizer):
    log_in(page, live_server, organizer)
    page.goto(f"{live_server.url}/segments/new")
    page.get_by_label("Name").fill("French speakers")
    page.get_by_role("button", name="+ Add a rule").click()
    row = page.locator(".rule").first
    row.get_by_label("Field").select_option("language")
    row.get_by_label("Value").select_option("fr")
    count = page.locator("#segment-count")
    count.filter(has_text="match").wait_for()
    assert "member" in count.inner_text()
    screenshot(page, "audience-segment-desktop")
    page.get_by_role("button", name="Save segment").click()
    page.get_by_text("Segment saved.").wait_for()


def _chosen(select) -> str:
    return select.evaluate("s => s.options[s.selectedIndex].text")


def test_segment_editor_picks_the_expected_operator_for_each_field(
    app, page, live_server, organizer
):
    """Choosing a field selects its positive operator ("is subscribed to", not the inverse),
    and the field menu starts with what organizers use most."""
    log_in(page, live_server, organizer)
    page.goto(f"{live_server.url}/segments/new")
    page.get_by_label("Name").fill("On the first list")
    page.get_by_role("button", name="+ Add a rule").click()
    row = page.locator(".rule").first
    field, operator = row.get_by_label("Field"), row.get_by_label("Operator")
    assert field.locator("option").all_inner_texts()[:6] == [
        "List",
        "Local or chapter",
        "Language",
        "Postal code",
        "Consent",
        "Custom field",
    ]
    assert (_chosen(field), _chosen(operator)) == ("List", "is subscribed to")
    expected = {
        "consent": ("is", "valid (can be emailed)"),
        "language": ("is", "English"),
        "local": ("contains", ""),
        "postal_code": ("contains", ""),
        "list": ("is subscribed to", None),
    }
    for name, (op_label, value) in expected.items():
        field.select_option(name)
        operator = page.locator(".rule").first.get_by_label("Operator")
        assert _chosen(operator) == op_label, name
        if value is not None:
            shown = page.locator(".rule").first.get_by_label("Value")
            assert (shown.input_value() if value == "" else _chosen(shown)) == value, name
    first_list = _chosen(page.locator(".rule").first.get_by_label("Value"))
    page.locator("#segment-count").filter(has_text="match").wait_for()
    page.get_by_role("button", name="Save segment").click()
    page.get_by_text("Segment saved.").wait_for()
    with app.app_context():
        segment = db.session.scalar(sa.select(Segment).where(Segment.name == "On the first list"))
        listed = db.session.scalar(sa.select(MailingList).where(MailingList.name == first_list))
        assert segment.rules == [{"field": "list", "op": "subscribed", "value": listed.id}]


def test_public_form_on_a_phone(browser, live_server, organizer):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(f"{live_server.url}/subscribe/action-network")
    page.get_by_label("Email").fill("new.ally@example.net")
    page.get_by_label("First name").fill("Ally")
    no_sideways_scroll(page)
    screenshot(page, "audience-public-form-phone")
    page.get_by_role("button", name="Sign me up").click()
    page.get_by_role("heading", name="Check your email").wait_for()
    context.close()
