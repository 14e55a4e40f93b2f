"""An organizer writes each kind of campaign in a real browser, previews it as a French- and
an English-speaking member, sends a test, and the test message reads well on a phone."""

from __future__ import annotations

import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from playwright.sync_api import Page, expect

from app.emails.samples import SAMPLES
from app.extensions import db
from app.models import Member
from app.services.organization import users
from tests.e2e.conftest import docs_screenshot, screenshot
from tests.support.campaigns import setup_org

pytestmark = pytest.mark.e2e

PASSWORD = "solidarity-forever"
PHONE = {"width": 375, "height": 812}


@pytest.fixture
def people(app, live_server):
    with app.app_context():
        users.create_user(db.session, email="org@example.org", password=PASSWORD, role="organizer")
        setup_org(db.session)
        db.session.add_all(
            [
                Member(
                    email="mathieu.cote@example.org",
                    first_name="Mathieu",
                    last_name="Côté",
                    language="fr",
                    local="Section locale 118",
                ),
                Member(
                    email="amelie.obrien@example.org",
                    first_name="Amélie",
                    last_name="O'Brien",
                    language="en",
                    local="Local 118",
                ),
            ]
        )
        db.session.commit()


@pytest.fixture
def worker(app):
    import workers.tasks  # noqa: F401 - registers the tasks with the app's Celery

    celery = app.extensions["celery"]
    # start_worker(queues=...) narrows the session-wide Celery app's own consume list; put it
    # back, or a later test's worker would consume only "transactional" too.
    consume_from = celery.amqp.queues._consume_from
    try:
        with start_worker(
            celery,
            pool="solo",
            perform_ping_check=False,
            shutdown_timeout=10,
            queues=["transactional"],
        ) as running:
            yield running
    finally:
        celery.amqp.queues._consume_from = consume_from


def _log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill("org@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/dashboard")


def _fill_language(page: Page, layout: str, language: str) -> None:
    sample = SAMPLES[layout, language]
    page.locator(f"label[for=tab-{language}]").click()
    page.fill(f"#{language}-subject", sample.subject)
    page.fill(f"#{language}-preheader", sample.preheader)
    for name, value in sample.fields.items():
        field = page.locator(f"#{language}-{name}")
        if name == "timezone":
            field.select_option(value)
        else:
            field.fill(value)
    page.fill(f"#{language}-body", sample.body)


def _write(page: Page, base: str, layout: str, name: str) -> int:
    page.goto(f"{base}/campaigns/new")
    page.locator(f"label[for=layout-{layout}]").click()
    page.fill("#f-name", name)
    _fill_language(page, layout, "en")
    _fill_language(page, layout, "fr")
    # The live preview follows the tab in view and renders the unsaved French text.
    frame = page.frame_locator("#preview-frame")
    expect(frame.locator("body")).to_contain_text("Mathieu", timeout=10_000)
    expect(page.locator("#preview-problems li")).to_have_count(0)
    if layout == "action_alert":
        petition = page.locator("#link-list input[type=checkbox]").first
        expect(petition).to_be_checked()
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url(f"{base}/campaigns/*")
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    return int(page.url.rstrip("/").split("/")[-1])


def _preview_as(page: Page, base: str, campaign_id: int, email: str, name: str) -> None:
    page.goto(f"{base}/campaigns/{campaign_id}/preview")
    page.get_by_label("Preview as a member: search by email").fill(email[:6])
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=name).click()
    frame = page.frame_locator("iframe.email-frame")
    expect(frame.locator("body")).to_contain_text(name.split()[0])
    page.get_by_role("link", name="Phone").click()
    expect(page.locator("iframe.email-frame")).to_have_class("email-frame w-375")


def _wait_for_test(outbox: Path, before: set[Path], timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [p for p in outbox.glob("test-*.eml") if p not in before]
        if new:
            return new[0]
        time.sleep(0.1)
    raise AssertionError("the test message never reached the outbox")


def _phone_check(browser, eml: Path, tmp_path: Path, name: str) -> None:
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert message["Subject"].startswith("[TEST] ")
    html = message.get_body(("html",)).get_content()
    assert "/t/o/" not in html
    page_file = tmp_path / f"{name}.html"
    page_file.write_text(html, encoding="utf-8")
    context = browser.new_context(viewport=PHONE, is_mobile=True)
    phone = context.new_page()
    phone.goto(page_file.as_uri())
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the email scrolls sideways on a phone ({width}px)"
    smallest = phone.evaluate(
        "Math.min(...[...document.querySelectorAll('p, li, td')]"
        ".filter(e => e.innerText.trim()).map(e => parseFloat(getComputedStyle(e).fontSize)))"
    )
    assert smallest >= 12, f"{name}: text as small as {smallest}px is hard to read on a phone"
    screenshot(phone, f"test-send-phone-{name}")
    context.close()


@pytest.mark.parametrize("layout", ["action_alert", "day_of_action", "statement"])
def test_organizer_writes_previews_and_tests_each_kind(
    browser, page, live_server, people, worker, test_environ, tmp_path, layout
):
    base = live_server.url
    _log_in(page, base)
    campaign_id = _write(page, base, layout, f"E2E {layout}")
    screenshot(page, f"campaign-page-{layout}")

    _preview_as(page, base, campaign_id, "mathieu.cote@example.org", "Mathieu Côté")
    expect(page.get_by_text("The French version")).to_be_visible()
    heading = page.frame_locator("iframe.email-frame").locator("h1")
    expect(heading).to_have_text(SAMPLES[layout, "fr"].fields["headline"])
    screenshot(page, f"preview-fr-phone-{layout}")
    if layout == "action_alert":
        docs_screenshot(page, "preview-as-a-member", height=1000)
    _preview_as(page, base, campaign_id, "amelie.obrien@example.org", "Amélie O'Brien")
    expect(page.get_by_text("The English version")).to_be_visible()
    expect(heading).to_have_text(SAMPLES[layout, "en"].fields["headline"])

    outbox = Path(test_environ["OUTBOX_DIR"])
    before = set(outbox.glob("*.eml"))
    page.goto(f"{base}/campaigns/{campaign_id}")
    page.get_by_label("Send to").fill("mathieu.cote@example.org")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_text("A test is on its way to mathieu.cote@example.org")).to_be_visible()
    eml = _wait_for_test(outbox, before)
    _phone_check(browser, eml, tmp_path, layout)
    eml.unlink()


def test_editor_and_list_work_on_a_phone(browser, live_server, people):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    _log_in(page, live_server.url)
    page.goto(f"{live_server.url}/campaigns")
    expect(page.get_by_text("No campaigns yet")).to_be_visible()
    screenshot(page, "campaigns-empty-phone")
    page.goto(f"{live_server.url}/campaigns/new")
    page.locator("label[for=layout-day_of_action]").click()
    expect(page.locator("#en-event_date")).to_be_visible()
    expect(page.locator("#en-cta_url")).to_be_visible()
    page.locator("label[for=layout-statement]").click()
    expect(page.locator("#en-event_date")).to_be_hidden()
    expect(page.locator("#en-byline")).to_be_visible()
    page.fill("#en-body", "Hello {{ member.first_name | default('friend') }}")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Nothing was saved")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the editor scrolls sideways on a phone ({width}px)"
    screenshot(page, "campaign-editor-phone")
    context.close()


def _link_box(page: Page, url: str):
    return page.locator(f'#link-list input[name=petition_url][value="{url}"]')


def test_a_day_of_action_button_is_ticked_live_before_the_first_save(page, live_server, people):
    """The main button's link is the campaign's action link in any layout: the editor ticks
    it as soon as it is written, follows the content as it changes, and saves it ticked."""
    base = live_server.url
    _log_in(page, base)
    page.goto(f"{base}/campaigns/new")
    page.locator("label[for=layout-day_of_action]").click()
    page.fill("#f-name", "Day of action with a petition")
    _fill_language(page, "day_of_action", "en")
    cta = SAMPLES["day_of_action", "en"].fields["cta_url"]
    expect(_link_box(page, cta)).to_be_checked(timeout=10_000)

    # A new button address is ticked as it is typed; the old one, still linked from the body
    # and never touched by the organizer, is no longer the button: unticked.
    rsvp = "https://prairieworkers.example/rsvp/dec-17"
    page.fill("#en-cta_url", rsvp)
    expect(_link_box(page, rsvp)).to_be_checked(timeout=10_000)
    expect(_link_box(page, cta)).not_to_be_checked()
    # A link in the body is not the button: not ticked. Made the button, it is.
    news = "https://union.example.org/news"
    page.fill("#en-body", SAMPLES["day_of_action", "en"].body + f"\n\n[News]({news})")
    expect(_link_box(page, news)).not_to_be_checked(timeout=10_000)
    page.fill("#en-cta_url", news)
    expect(_link_box(page, news)).to_be_checked(timeout=10_000)
    screenshot(page, "campaign-editor-action-link")

    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url(f"{base}/campaigns/*")
    petitions = page.locator("input[name=petition]:checked")
    expect(petitions).to_have_count(1)
    expect(page.locator("li", has=petitions)).to_contain_text(news)
