"""The developer console pages in headless Chromium (``testing.browser``'s fixtures: CSP violations and
JavaScript errors fail the test; axe-core runs over these pages in ``test_console_browser.py``): request log
search, usage chart and CSV, quick-start copy buttons, key scopes edited in the page, and every page on a
390×844 phone without sideways scrolling."""

from __future__ import annotations

import csv
import io

import pytest

from accounts import services
from accounts.models import ApiKey, Membership
from jobs.tests.test_console_pages import billed
from testing.browser import log_in, poll, shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "console-pages-password-7"
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture
def console(fast_passwords, redis_clean):
    """An owner of Acme with two keys (one used by the API) and an outsider tenant with its own key."""
    owner = services.get_or_create_user("owner@example.com", email="owner@example.com", password=PASSWORD)
    tenant = services.create_tenant("Acme Audio", owner=owner)
    outsider = services.get_or_create_user("out@example.com", email="out@example.com", password=PASSWORD)
    other = services.create_tenant("Globex", owner=outsider)
    return {
        "tenant": tenant, "key": services.issue_api_key(tenant, "production server"),
        "spare": services.issue_api_key(tenant, "laptop"), "other": other,
        "other_key": services.issue_api_key(other, "theirs"),
    }


def call_api(page, secret: str, path: str):
    return page.request.get(path, headers={"Authorization": f"Bearer {secret}"})


def test_request_log_finds_a_request_by_its_id(open_page, console):
    page = open_page()
    ok = call_api(page, console["key"].secret, "/api/v1/jobs")
    missing = call_api(page, console["key"].secret, "/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    theirs = call_api(page, console["other_key"].secret, "/api/v1/jobs")
    request_id = missing.json()["error"]["request_id"]
    assert request_id == missing.headers["x-request-id"]

    log_in(page, "owner@example.com", PASSWORD)
    page.click("nav >> text=Request log")
    page.wait_for_selector("[data-request-log]")
    rows = page.locator("tr[data-request-id]")
    assert rows.count() == 2
    assert page.locator(f'tr[data-request-id="{theirs.headers["x-request-id"]}"]').count() == 0
    assert "NOT_FOUND" in page.inner_text(f'tr[data-request-id="{request_id}"]')
    shot(page, "request-log")

    page.fill("#id_q", request_id)
    page.click("button:has-text('Filter')")
    page.wait_for_url(f"**q={request_id}*")
    assert page.locator("tr[data-request-id]").count() == 1
    page.select_option("#id_status", "2xx")
    page.fill("#id_q", "")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**status=2xx*")
    assert [page.locator("tr[data-request-id]").first.get_attribute("data-request-id")] == [ok.headers["x-request-id"]]
    assert not page.js_errors, page.js_errors


def test_usage_chart_by_kind_and_key_and_csv(open_page, console, tmp_path):
    key = console["key"].api_key
    billed(console["tenant"], "watermark_embed", 120, api_key=key)
    billed(console["tenant"], "emotion", 30, days_ago=20)
    billed(console["other"], "watermark_detect", 600)
    page = open_page()
    log_in(page, "owner@example.com", PASSWORD)
    page.goto("/usage/?range=90d")
    datasets = poll(page, "(() => { const c = Chart.getChart(document.querySelector('canvas[data-chart=daily]'));"
                          " return c && c.data.datasets.map((d) => d.label); })()")
    assert sorted(datasets) == ["Emotion analysis", "Watermark embed"]
    assert "Watermark detect" not in page.inner_text("main")
    shot(page, "usage-by-kind")

    page.select_option("#usage-by", "key")  # the form submits itself on change
    page.wait_for_url("**by=key*")
    labels = poll(page, "(() => { const c = Chart.getChart(document.querySelector('canvas[data-chart=daily]'));"
                        " return c && c.data.datasets.map((d) => d.label); })()")
    assert sorted(labels) == ["Dashboard (no key)", f"production server (ask_{key.prefix}_…)"]

    with page.expect_download() as download:
        page.click("[data-usage-csv]")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert {(r["api_key"], r["seconds"]) for r in rows} == {
        (f"production server (ask_{key.prefix}_…)", "120"), ("Dashboard (no key)", "30")
    }
    assert not page.js_errors, page.js_errors


def test_quick_start_copies_a_snippet_with_the_base_url_and_key_prefix(open_page, console, live_server):
    page = open_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, "owner@example.com", PASSWORD)
    page.click("nav >> text=Quick start")
    page.select_option("#snippet-key", str(console["key"].api_key.pk))
    page.wait_for_url("**key=*")
    page.click('button[data-copy="#watermark_detect-curl"]')
    page.wait_for_selector('button[data-copy="#watermark_detect-curl"] [data-copy-label]:has-text("Copied")')
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f'"{live_server.url}/api/v1/watermark/detect?wait=20"' in copied
    assert f"ask_{console['key'].api_key.prefix}_…" in copied and console["key"].secret not in copied
    page.click('button[data-copy="#beatsync-python"]')
    page.wait_for_selector('button[data-copy="#beatsync-python"] [data-copy-label]:has-text("Copied")')
    assert "from audioseal_studio import Client" in page.evaluate("navigator.clipboard.readText()")
    shot(page, "quickstart")
    assert not page.js_errors, page.js_errors


def test_key_scopes_edited_in_the_page_are_enforced(open_page, console):
    page = open_page()
    log_in(page, "owner@example.com", PASSWORD)
    page.goto("/keys/")
    page.click("a[aria-label='Edit key laptop']")
    page.fill("#id_name", "reporting laptop")
    page.check("input[name=access][value=read_only]")
    page.click("button:has-text('Save')")
    page.wait_for_url("**/keys/")
    assert "Read only" in page.inner_text(f'tr[data-key-prefix="{console["spare"].api_key.prefix}"]')
    key = ApiKey.objects.get(pk=console["spare"].api_key.pk)
    assert key.name == "reporting laptop" and key.read_only
    refused = page.request.post("/api/v1/jobs/00000000-0000-0000-0000-000000000000/cancel",
                                headers={"Authorization": f"Bearer {console['spare'].secret}"})
    assert refused.status == 403 and refused.json()["error"]["code"] == "KEY_SCOPE"
    shot(page, "keys-scopes")
    assert not page.js_errors, page.js_errors


def test_console_pages_on_a_phone_do_not_scroll_sideways(open_page, console):
    billed(console["tenant"], "watermark_embed", 120, api_key=console["key"].api_key)
    member = services.get_or_create_user("m@example.com", email="m@example.com", password=PASSWORD)
    Membership.objects.create(user=member, tenant=console["tenant"], role=Membership.Role.MEMBER)
    page = open_page(width=390, height=844)
    call_api(page, console["key"].secret, "/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    log_in(page, "owner@example.com", PASSWORD)
    for path in ("/requests/", "/usage/", "/usage/?by=key&range=90d", "/quickstart/", "/keys/",
                 f"/keys/{console['key'].api_key.pk}/edit/"):
        response = page.goto(path)
        assert response.status == 200, path
        page.wait_for_load_state("load")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), (path, page.evaluate("document.documentElement.scrollWidth"))
        shot(page, "phone" + path.rstrip("/").replace("/", "-").replace("?", "-").replace("&", "-"))
    # A member sees the request log, usage and snippets too (no key is shown whole anywhere).
    page.context.clear_cookies()
    log_in(page, "m@example.com", PASSWORD)
    for path in ("/requests/", "/usage/", "/quickstart/"):
        assert page.goto(path).status == 200, path
        assert page.evaluate(NO_SIDEWAYS_SCROLL), path
    assert not page.js_errors, page.js_errors
