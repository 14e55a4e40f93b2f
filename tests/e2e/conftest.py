"""Browser tests: Playwright driving Debian's chromium against the app on a live server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
# `make docs-screenshots` (RALLYPOINT_DOCS_SCREENSHOTS=1) refreshes the README's images here.
DOCS_IMAGES = ROOT / "docs" / "images"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Debian's chromium is not installed; `make test` installs it (apt-get install chromium)"
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def live_server(app, committed_db) -> Iterator[LiveServer]:
    # Every browser logs in from 127.0.0.1: start each test with fresh login rate limits.
    from app.extensions import limiter

    with app.app_context():
        limiter.reset()
    server = LiveServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser, request) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report


def screenshot(page: Page, name: str) -> Path:
    """Keep a screenshot under var/screenshots for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def docs_screenshot(page: Page, name: str, *, height: int = 900) -> Path | None:
    """With RALLYPOINT_DOCS_SCREENSHOTS=1, keep this page as docs/images/<name>.png.

    The page is opened again in a context of its own (same cookies) 1280 px wide and drawn
    at three quarters of its size, so the README's images stay small; the test's own page is
    left as it was. Without the variable this does nothing.
    """
    if os.environ.get("RALLYPOINT_DOCS_SCREENSHOTS") != "1":
        return None
    browser = page.context.browser
    assert browser is not None
    context = browser.new_context(
        viewport={"width": 1280, "height": height},
        device_scale_factor=0.75,
        storage_state=page.context.storage_state(),
    )
    try:
        copy = context.new_page()
        copy.goto(page.url, wait_until="load")
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        path = DOCS_IMAGES / f"{name}.png"
        copy.screenshot(path=str(path))
        return path
    finally:
        context.close()
