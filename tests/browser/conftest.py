"""Headless Chromium (Debian's package) driven by Playwright against live_server.

The model fixtures of tests/explanations are shared here, not imported by each
module, so the session's model files are trained once for all browser tests.
"""

import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.explanations.conftest import (  # noqa: F401  (fixtures shared here)
    artifact_dir,
    model_files,
    register,
)
from tests.factories import PASSWORD

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop running in this thread while the
    # browser is open; the ORM calls the tests make meanwhile are ordinary sync ones.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def sign_in(page, live_server):
    """`sign_in(user)`: log in through the real form and land on the dashboard."""

    def _sign_in(user):
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        return page

    return _sign_in


@pytest.fixture
def screenshot(page):
    """`screenshot(name)`: save a full-page PNG under tests/browser/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def _screenshot(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _screenshot
