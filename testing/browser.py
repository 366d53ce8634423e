"""Browser test helpers: headless Chromium (the system's, driven by Playwright) for the dashboard's browser
tests, a plugin of the root ``conftest.py`` (fixtures ``browser``, ``open_page``) plus plain helpers that the
tests import (``shot``, ``log_in``, ``poll``, ``wait_for_final``, ``submit_job``).

Skipped with a message when no Chromium is installed, unless ``REQUIRE_BROWSER=1`` (CI sets it): then a
missing browser is a failure, never a silent skip. Screenshots go to ``artifacts/screenshots/`` (git-ignored).
Every page a test opens fails the test on a JavaScript error or a Content-Security-Policy violation.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"  # the repository root's
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
PASSWORD = "browser-test-password-9"
JOB_TIMEOUT_MS = 90_000


def chromium_path() -> str | None:
    """``CHROMIUM_PATH`` when set (and present), else the system Chromium on the PATH."""
    if os.environ.get("CHROMIUM_PATH"):
        return os.environ["CHROMIUM_PATH"] if os.path.exists(os.environ["CHROMIUM_PATH"]) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module; skipped (or failed under REQUIRE_BROWSER=1) when none is installed."""
    path = chromium_path()
    problem = None
    if path is None:
        problem = "no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            problem = "the playwright package is not installed"
    if problem:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (REQUIRE_BROWSER=1) but {problem}")
        pytest.skip(f"browser tests skipped: {problem}")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make between page
    # actions are plain synchronous code, so Django's async-safety guard must not mistake them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Every page reports what the Content-Security-Policy refused (the event fires in the page; the binding is
# Playwright's, outside the policy), so a test fails on an inline script or style, an eval or a foreign origin.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
                        + ` (${document.location.pathname}) ${e.sample || ""}`);
});
"""


@pytest.fixture
def open_page(browser, live_server):
    """New isolated browser contexts (separate cookies), each failing the test on a JavaScript error or on
    anything the Content-Security-Policy refused (``securitypolicyviolation`` events and the console's CSP
    errors), checked for every page when the test ends."""
    contexts, pages = [], []

    def make(width: int = 1360, height: int = 900):
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=live_server.url,
                                      accept_downloads=True)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        violations: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and "Content Security Policy" in msg.text
                and violations.append(msg.text))
        page.expose_function("__cspViolation", lambda text: violations.append(text))
        page.add_init_script(REPORT_CSP_VIOLATIONS)
        page.js_errors = errors
        page.csp_violations = violations
        pages.append(page)
        return page

    yield make
    found = [v for page in pages for v in page.csp_violations]
    for context in contexts:
        context.close()
    assert not found, "Content-Security-Policy violations:\n" + "\n".join(found)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def poll(page, expression: str, timeout_ms: int = 20_000):
    """Evaluate ``expression`` until it is truthy and return it. (Not ``page.wait_for_function``: its
    predicate is compiled with eval inside the page, which the Content-Security-Policy refuses; ``evaluate``
    goes through the DevTools protocol.)"""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_ms} ms waiting for {expression}")
        page.wait_for_timeout(100)


def wait_for_final(page) -> str:
    live = "[data-job-live]"
    poll(page, f"!['queued', 'running'].includes(document.querySelector('{live}').dataset.status)", JOB_TIMEOUT_MS)
    return page.get_attribute(live, "data-status")


def submit_job(page, kind: str, path: Path, **options: str) -> None:
    page.goto(f"/jobs/new/?kind={kind}")
    page.set_input_files(f"#{kind}-file", str(path))
    for selector, value in options.items():
        page.fill(selector, value)
    page.click("[data-submit]")
    page.wait_for_url("**/jobs/*-*-*-*-*/")
