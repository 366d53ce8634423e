"""The Provenance and Verify pages in a real browser (``testing.browser``'s Chromium, a live server and a
worker process): registering a message, and a verification that polls itself with htmx until the watermark
detection is final, all without a JavaScript error or a Content-Security-Policy violation."""

from __future__ import annotations

import pytest

from testing.browser import log_in, poll, shot
from testing.factories import PASSWORD, make_people
from testing.uploads import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_register_a_message_and_verify_a_file(open_page, worker_process, fast_passwords):
    worker_process("watermark")  # loads the model while the browser works
    people = make_people()
    page = open_page()
    log_in(page, people.users["member"].email, PASSWORD)

    page.click("nav >> text=Provenance")
    page.fill("#id_label", "Browser campaign")
    page.fill("#id_metadata", '{"voice": "nova"}')
    page.click("button:has-text('Register')")
    page.wait_for_selector("td:has-text('Browser campaign')")
    assert "0001" in page.inner_text("main")
    shot(page, "provenance-registry")

    page.click("nav >> text=Verify")
    page.set_input_files("#id_file", str(FIXTURES / "speech2_16k_mono.wav"))
    page.click("button:has-text('Verify')")
    page.wait_for_url("**/provenance/verify/*-*-*-*-*/")
    assert "The file carries no C2PA manifest." in page.inner_text("main")
    # htmx replaces the answer every 2 s until the detection job is final.
    poll(page, "document.body.innerText.includes('No provenance found')", 120_000)
    assert "No watermark found." in page.inner_text("main")
    shot(page, "provenance-verify-none")
    assert not page.js_errors, page.js_errors
