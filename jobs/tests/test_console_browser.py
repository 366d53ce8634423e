"""The console in a real browser (issue 19): every dashboard page passes axe-core (WCAG 2 A/AA, no serious
or critical violation) and fits a phone (no sideways scrolling at 390 px), at a desktop and a phone size;
an API key page reload creates nothing; jobs created through the API appear in the lists without a reload;
upload refusals are shown once, in human units, with the focus on them; the beat-sync summary and the
emotion timeline are readable on a phone.

Headless system Chromium through Playwright, as ``jobs/tests/test_browser.py``; the fixtures are
``testing.browser``'s and axe-core is vendored (``testing/axe.py``).
"""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import ApiKey, Membership
from billing.models import Subscription
from jobs.dashboard.presenters import DEMO_EMOTION_MODEL, TIMELINE_POINTS
from jobs.models import Batch, JobKind, JobStatus, WebhookDelivery
from jobs.tests.test_console import BEATSYNC_RESULT, LABELS
from jobs.tests.test_console_pages import billed
from jobs.tests.test_dashboard import DETECT_RESULT, EMOTION_RESULT, REPORT_RESULT, make_job
from testing.axe import assert_accessible
from testing.browser import PASSWORD, log_in, poll, shot
from testing.uploads import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}

NO_SIDEWAYS_SCROLL = "document.scrollingElement.scrollWidth <= window.innerWidth"
WIDEST = """(() => {
  const limit = window.innerWidth;
  return Array.from(document.querySelectorAll('body *')).filter((el) => el.getBoundingClientRect().right > limit + 1
    && getComputedStyle(el).position !== 'fixed' && !el.closest('.sidebar, .sr-only'))
    .slice(0, 5).map((el) => el.tagName + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right));
})()"""


def check_page(page, url: str, label: str) -> None:
    """Open ``url``, let its scripts and charts settle, then: no sideways scroll, no axe violation."""
    response = page.goto(url)
    assert response.status < 400, (url, response.status)
    page.wait_for_load_state("networkidle")
    assert page.evaluate(NO_SIDEWAYS_SCROLL), (label, url, page.evaluate(WIDEST))
    assert_accessible(page, f"{label} {url}")


def seed_console(tmp_path):
    """An organisation with a job of every kind and state, a key, a member and a webhook secret."""
    User = get_user_model()
    owner = User.objects.create_user("olga@example.com", email="olga@example.com", password=PASSWORD)
    tenant = services.create_tenant("Olga Sound", owner=owner)
    member = User.objects.create_user("mia@example.com", email="mia@example.com", password=PASSWORD)
    Membership.objects.create(user=member, tenant=tenant, role=Membership.Role.MEMBER)
    services.issue_api_key(tenant, "production", created_by=owner)
    frames = {"hop_seconds": 0.02, "labels": LABELS,
              "scores": [[((i + j) % 9 + 1) / 45 for j in range(9)] for i in range(684)]}
    segment = {"start_seconds": 0.5, "end_seconds": 1.8, "probability": 0.97, "confidence": "high",
               "message": "1A2B", "bits": [0, 1] * 8, "bit_probabilities": [0.99] * 16,
               "alignment": {"offset_samples": 0, "polarity": 1, "speed": 1.0}}
    jobs = {
        "embed": make_job(tenant, kind=JobKind.WATERMARK_EMBED, output=b"RIFFout", params={"message": "1A2B"},
                          result={"message": "1A2B", "bits": [0, 1] * 8, "snr_db": 22.1}),
        "detect": make_job(tenant, result={**DETECT_RESULT, "summary": "Watermark found in 1 region",
                                           "segments": [segment], "alignment": segment["alignment"]}),
        "emotion": make_job(tenant, kind=JobKind.EMOTION, model_name=DEMO_EMOTION_MODEL, model_version="d3m0",
                            params={"granularity": "frame", "extract_embedding": False},
                            result={**EMOTION_RESULT, "frames": frames, "cached": False}),
        "beatsync": make_job(tenant, kind=JobKind.BEATSYNC, result=BEATSYNC_RESULT, filename="dance-night.mp4",
                             params={"trim_silence": True}),
        "report": make_job(tenant, kind=JobKind.WATERMARK_REPORT, result=REPORT_RESULT,
                           filename="speech-watermarked.wav", params={"message": "1A2B"}),
        "failed": make_job(tenant, status=JobStatus.FAILED, error_code="INVALID_FORMAT",
                           error_message="The file is not a supported audio file."),
        "canceled": make_job(tenant, status=JobStatus.CANCELED, finished_at=timezone.now()),
        "running": make_job(tenant, status=JobStatus.RUNNING, progress_message="detecting"),
    }
    jobs["cached"] = make_job(tenant, kind=JobKind.EMOTION, model_name=DEMO_EMOTION_MODEL, model_version="d3m0",
                              result={**EMOTION_RESULT, "cached": True, "cached_from_job": str(jobs["emotion"].pk)})
    return tenant, owner, member, jobs


def seed_batches(tenant) -> list[Batch]:
    """A batch still processing (a done item, a running one, a refused one) and a completed one."""
    refusal = {"index": 2, "input": "notes.wav", "code": "INVALID_FORMAT",
               "message": "The file is not a supported audio file.", "details": {"field": "file"}}
    processing = Batch.objects.create(tenant=tenant, kind=JobKind.WATERMARK_DETECT, item_count=3, open_items=1,
                                      refused=[refusal])
    make_job(tenant, batch=processing, batch_index=0, filename="first.wav", result=DETECT_RESULT)
    make_job(tenant, batch=processing, batch_index=1, filename="second.wav", status=JobStatus.RUNNING,
             progress_message="detecting")
    completed = Batch.objects.create(tenant=tenant, kind=JobKind.WATERMARK_EMBED, item_count=1, open_items=0,
                                     params={"message": "1A2B"}, completed_at=timezone.now())
    make_job(tenant, kind=JobKind.WATERMARK_EMBED, batch=completed, batch_index=0, output=b"RIFFout",
             params={"message": "1A2B"}, result={"message": "1A2B", "bits": [0, 1] * 8, "snr_db": 22.1})
    return [processing, completed]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_every_dashboard_page_passes_axe_and_fits_the_screen(open_page, fast_passwords, tmp_path, viewport):
    tenant, owner, member, jobs = seed_console(tmp_path)
    batches = seed_batches(tenant)
    member_row = Membership.objects.get(user=member, tenant=tenant)
    key = ApiKey.objects.get(tenant=tenant)
    delivery = WebhookDelivery.objects.create(
        tenant=tenant, job=jobs["failed"], event="job.failed", url="https://hooks.example.com/in",
        body=f'{{"id":"{jobs["failed"].pk}","type":"job.failed"}}', attempts=2, status="failed",
        last_status_code=503, last_error="HTTP 503", last_response_body="upstream unavailable",
        attempt_log=[{"at": "2026-12-01T10:00:00+00:00", "status_code": 503, "error": "HTTP 503", "ms": 9,
                      "response": "upstream unavailable", "signatures": 1}])
    name = "phone" if viewport is PHONE else "desktop"

    visitor = open_page(**viewport)
    check_page(visitor, "/", "signed out")
    assert visitor.locator("main a[href$='/signup/']").count() and visitor.locator("a[href$='/login/']").count()
    shot(visitor, f"console-landing-{name}")
    for url in (reverse("dashboard:login"), reverse("dashboard:signup"), reverse("dashboard:password_reset")):
        check_page(visitor, url, "signed out")

    page = open_page(**viewport)
    # The developer console's pages with rows in them: a logged API request (a refused one) and billed usage.
    reader = services.issue_api_key(tenant, "reporting", read_only=True)
    page.request.post(f"/api/v1/jobs/{jobs['running'].pk}/cancel",
                      headers={"Authorization": f"Bearer {reader.secret}"})
    billed(tenant, JobKind.WATERMARK_EMBED, 95, api_key=key)
    log_in(page, "olga@example.com")
    pages = [
        reverse("dashboard:overview"), reverse("dashboard:jobs"), reverse("dashboard:jobs") + "?status=failed",
        reverse("dashboard:job-new"), reverse("dashboard:job-new") + "?kind=emotion",
        reverse("dashboard:job-new") + "?kind=beatsync", reverse("dashboard:job-new") + "?kind=watermark_report",
        reverse("dashboard:keys"),
        reverse("dashboard:key-revoke", args=[key.pk]), reverse("dashboard:webhooks"),
        reverse("dashboard:members"), reverse("dashboard:member-remove", args=[member_row.pk]),
        reverse("dashboard:billing"), reverse("dashboard:provenance"), reverse("dashboard:provenance-verify"),
        reverse("dashboard:webhook-secret-rotate"), reverse("dashboard:webhook-deliveries"),
        reverse("dashboard:webhook-delivery", args=[delivery.pk]),
        reverse("dashboard:requests"), reverse("dashboard:requests") + "?status=errors",
        reverse("dashboard:usage"), reverse("dashboard:usage") + "?by=key&range=90d",
        reverse("dashboard:quickstart"), reverse("dashboard:key-edit", args=[key.pk]),
        *(reverse("dashboard:job-detail", args=[job.pk]) for job in jobs.values()),
        *(reverse("dashboard:batch-detail", args=[batch.pk]) for batch in batches),
    ]
    for url in pages:
        check_page(page, url, "owner")
    page.goto(reverse("dashboard:job-detail", args=[jobs["beatsync"].pk]))
    shot(page, f"console-beatsync-{name}")
    page.goto(reverse("dashboard:job-detail", args=[jobs["report"].pk]))
    page.wait_for_selector("[data-report-attacks]")
    shot(page, f"console-report-{name}")

    # The key page with a new key's secret on it, and the pages a member and a user without an organisation see.
    page.goto(reverse("dashboard:keys"))
    page.fill("#id_name", "ci")
    page.click("button:has-text('Create key')")
    page.wait_for_selector("[data-new-key]")
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    assert_accessible(page, "keys with a new key")

    other = open_page(**viewport)
    log_in(other, "mia@example.com")
    check_page(other, reverse("dashboard:overview"), "member")
    assert other.goto(reverse("dashboard:keys")).status == 403
    assert other.evaluate(NO_SIDEWAYS_SCROLL)
    assert_accessible(other, "member forbidden")
    get_user_model().objects.create_user("nobody@example.com", email="nobody@example.com", password=PASSWORD)
    lonely = open_page(**viewport)
    lonely.goto(reverse("dashboard:login"))
    lonely.fill("#id_username", "nobody@example.com")
    lonely.fill("#id_password", PASSWORD)
    lonely.click("button[type=submit]")
    lonely.wait_for_url("**/welcome/")
    check_page(lonely, reverse("dashboard:welcome"), "no organisation")
    for p in (visitor, page, other, lonely):
        assert not p.js_errors, p.js_errors


def test_beatsync_and_emotion_results_read_on_a_phone(open_page, fast_passwords, tmp_path):
    tenant, owner, member, jobs = seed_console(tmp_path)
    page = open_page(**PHONE)
    log_in(page, "olga@example.com")
    page.goto(reverse("dashboard:job-detail", args=[jobs["beatsync"].pk]))
    summary = page.locator("[data-beatsync-summary]")
    assert "after the video's first frame" in summary.inner_text()
    card = page.locator("section[aria-labelledby=result-title]").bounding_box()
    assert card["height"] < 1800, card  # was a 3,800 px column of Python dicts
    assert "{'" not in page.inner_text("main")

    page.goto(reverse("dashboard:job-detail", args=[jobs["emotion"].pk]))
    datasets = poll(page, "(() => { const c = Chart.getChart(document.getElementById('emotion-frames-chart'));"
                          " return c && c.data.datasets.map((d) => [d.label, d.data.length]); })()")
    assert len(datasets) == 4 and datasets[-1][0] == "other emotions"
    assert all(0 < length <= TIMELINE_POINTS for _, length in datasets), datasets
    assert page.is_visible("[data-demo-model]") and "not real results" in page.inner_text("[data-demo-model]")
    shot(page, "console-emotion-phone")

    page.goto(reverse("dashboard:job-detail", args=[jobs["cached"].pk]))
    assert page.is_visible("[data-cached]") and page.is_visible("[data-cached-note]")


def test_reloading_after_creating_a_key_creates_nothing(open_page, fast_passwords, tmp_path):
    tenant, owner, member, jobs = seed_console(tmp_path)
    page = open_page()
    log_in(page, "olga@example.com")
    page.goto(reverse("dashboard:keys"))
    page.fill("#id_name", "deploy")
    page.click("button:has-text('Create key')")
    secret = page.input_value("[data-secret]")
    assert secret.startswith("ask_") and page.url.endswith(reverse("dashboard:keys"))
    page.reload()
    assert secret not in page.content() and not page.locator("[data-new-key]").count()
    assert ApiKey.objects.filter(tenant=tenant, name="deploy").count() == 1
    page.go_back()
    assert secret not in page.content()
    assert ApiKey.objects.filter(tenant=tenant, name="deploy").count() == 1


def test_jobs_created_through_the_api_appear_without_a_reload(open_page, fast_passwords, redis_clean, live_server):
    owner = get_user_model().objects.create_user("ian@example.com", email="ian@example.com", password=PASSWORD)
    tenant = services.create_tenant("Ian Audio", owner=owner)
    secret = services.issue_api_key(tenant, "server").secret

    def submit(name: str) -> str:
        """A customer's server calling the API over HTTP (not the in-process client: this thread runs
        Playwright's event loop)."""
        with (FIXTURES / "speech_16k_mono.wav").open("rb") as audio:
            response = requests.post(live_server.url + reverse("api:watermark-detect"), timeout=30,
                                     headers={"Authorization": f"Bearer {secret}"}, files={"file": (name, audio)})
        assert response.status_code == 202, response.text
        return response.json()["id"]

    page = open_page()
    log_in(page, "ian@example.com")
    overview = open_page(**PHONE)
    log_in(overview, "ian@example.com")
    page.goto(reverse("dashboard:jobs"))
    assert page.locator("tr[data-job-id]").count() == 0  # the empty state
    page.evaluate("window.__sameDocument = true")
    overview.evaluate("window.__sameDocument = true")

    first = submit("a.wav")
    poll(page, f"!!document.querySelector('tr[data-job-id=\"{first}\"]')")
    poll(overview, f"!!document.querySelector('tr[data-job-id=\"{first}\"]')")
    second = submit("b.wav")
    poll(page, f"!!document.querySelector('tr[data-job-id=\"{second}\"]')")
    assert page.locator("tr[data-job-id]").count() == 2
    assert page.evaluate("window.__sameDocument === true"), "the jobs page reloaded"
    assert overview.evaluate("window.__sameDocument === true"), "the overview reloaded"
    # The filters still work on the swapped-in panel (htmx processed it).
    page.select_option("#filter-status", "failed")
    poll(page, "document.querySelectorAll('tr[data-job-id]').length === 0")
    assert not page.js_errors and not overview.js_errors


def test_upload_refusals_are_in_human_units_shown_once_and_focused(open_page, fast_passwords, tmp_path):
    owner = get_user_model().objects.create_user("una@example.com", email="una@example.com", password=PASSWORD)
    tenant = services.create_tenant("Una Audio", owner=owner)
    Subscription.objects.filter(tenant=tenant).update(max_file_bytes_override=25 * 1024 * 1024)
    page = open_page(**PHONE)
    log_in(page, "una@example.com")
    page.goto(reverse("dashboard:job-new") + "?kind=watermark_detect")
    assert "up to 25 MB per file" in page.inner_text("[data-kind-panel=watermark_detect]")

    # The server refuses (the limit dropped after the page loaded): one message, focused, in human units.
    Subscription.objects.filter(tenant=tenant).update(max_file_bytes_override=20_000)
    page.set_input_files("#watermark_detect-file", str(FIXTURES / "speech_16k_mono.wav"))
    page.click("[data-submit]")
    page.wait_for_selector("[data-form-error]:not([hidden])")
    message = page.inner_text("[data-form-error] [data-error-message]")
    assert message.endswith("; the limit is 19.5 KB.") and "bytes" not in message, message
    assert page.inner_text("main").count(message) == 1, "the server's message is shown more than once"
    assert page.evaluate("document.activeElement.matches('[data-form-error]')")
    assert page.get_attribute("#watermark_detect-file", "aria-invalid") == "true"
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    shot(page, "console-upload-refused-phone")

    # The page's own check, with the limit it now states: the same units.
    page.reload()
    page.set_input_files("#watermark_detect-file", str(FIXTURES / "speech_16k_mono.wav"))
    local = page.inner_text("[data-kind-panel=watermark_detect] [data-file-error]")
    assert local.endswith("; the limit is 19.5 KB.") and " KB;" in local, local
    assert not page.js_errors, page.js_errors
