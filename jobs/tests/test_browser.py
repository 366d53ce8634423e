"""The dashboard in a real browser: headless Chromium (the system's, driven by Playwright) against a live
server and a real ``manage.py run_worker`` process, on the test session's PostgreSQL and Redis.

Skipped with a message when no Chromium is installed, unless ``REQUIRE_BROWSER=1`` (CI sets it): then a
missing browser is a failure, never a silent skip. Screenshots of the key pages go to
``artifacts/screenshots/`` (git-ignored) for people to look at.
"""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from accounts import services
from accounts.models import Membership
from testing.browser import JOB_TIMEOUT_MS, PASSWORD, log_in, poll, shot, submit_job, wait_for_final
from testing.uploads import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signup_key_embed_detect(open_page, worker_process, fast_passwords, tmp_path):
    """Sign up → API key shown once → embed a speech file, watching progress without a reload → play and
    download the output → detect on it → the localisation chart has data."""
    worker_process("watermark")  # loads and warms the model while the browser signs up
    page = open_page()

    page.goto("/signup/")
    shot(page, "signup")
    page.fill("#id_email", "grace@example.com")
    page.fill("#id_organisation", "Hopper Sound")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    assert "Free plan" in page.inner_text("main")
    shot(page, "overview-new-account")

    # An API key: the secret is shown once, with a copy button, and never again.
    page.click("nav >> text=API keys")
    page.fill("#id_name", "browser test")
    page.click("button:has-text('Create key')")
    secret = page.input_value("[data-secret]")
    assert secret.startswith("ask_")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("[data-copy]")
    page.wait_for_selector("[data-copy-label]:has-text('Copied')")
    shot(page, "api-key-created")
    page.goto("/keys/")
    assert secret not in page.content() and "browser test" in page.inner_text("main")

    # Embed: the upload goes to the API; the job page follows progress without reloading.
    submit_job(page, "watermark_embed", FIXTURES / "speech_16k_mono.wav", **{"#opt-message": "1A2B"})
    page.evaluate("window.__sameDocument = true")
    assert wait_for_final(page) == "succeeded"
    assert page.get_attribute("[data-job-bar]", "aria-valuenow") == "100"
    assert page.evaluate("window.__sameDocument === true"), "the job page reloaded"
    page.wait_for_selector("audio[data-player=output]")
    duration = page.evaluate("""() => new Promise((resolve) => {
        const audio = document.querySelector('audio[data-player=output]');
        if (audio.readyState >= 1) return resolve(audio.duration);
        audio.addEventListener('loadedmetadata', () => resolve(audio.duration));
        audio.load();
    })""")
    assert duration > 1, duration
    page.evaluate("document.querySelector('audio[data-player=output]').play().catch(() => null)")
    shot(page, "job-embed-succeeded")
    with page.expect_download() as download_info:
        page.click("[data-download-output]")
    watermarked = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(watermarked)
    assert watermarked.stat().st_size > 10_000 and watermarked.name.endswith("-watermarked.wav")

    # Detect on the downloaded output: the localisation chart renders with data.
    submit_job(page, "watermark_detect", watermarked)
    assert wait_for_final(page) == "succeeded"
    page.wait_for_selector("#localization-chart")
    points = poll(page, "(() => { const c = Chart.getChart(document.getElementById('localization-chart'));"
                        " return c && c.data.datasets[0].data.length; })()")
    assert points > 10
    shot(page, "job-detect-localisation")

    page.goto("/jobs/")
    assert page.locator("tr[data-job-id]").count() == 2
    shot(page, "jobs-list")
    page.goto("/")
    shot(page, "overview")
    assert not page.js_errors, page.js_errors


def test_member_cannot_open_keys_page_and_phone_layout(open_page, fast_passwords):
    owner = services.get_or_create_user("olive@example.com", email="olive@example.com", password=PASSWORD)
    tenant = services.create_tenant("Olive Audio", owner=owner)
    member = services.get_or_create_user("max@example.com", email="max@example.com", password=PASSWORD)
    Membership.objects.create(user=member, tenant=tenant, role=Membership.Role.MEMBER)

    page = open_page(width=390, height=844)  # a phone
    log_in(page, "max@example.com")
    assert not page.locator("nav a:has-text('API keys')").count()
    response = page.goto("/keys/")
    assert response.status == 403
    assert "don’t have access" in page.inner_text("main")
    shot(page, "member-keys-forbidden-phone")
    page.goto("/jobs/new/")
    page.click("[data-nav-toggle]")
    page.wait_for_selector("#sidebar >> text=New job", state="visible")
    shot(page, "new-job-phone-menu")
    assert not page.js_errors, page.js_errors


def test_staff_changes_quota_and_customer_sees_it(open_page, fast_passwords):
    owner = services.get_or_create_user("ada@example.com", email="ada@example.com", password=PASSWORD)
    tenant = services.create_tenant("Lovelace Labs", owner=owner)
    services.get_or_create_user("root", email="root@example.com", password=PASSWORD, staff=True)

    customer = open_page()
    log_in(customer, "ada@example.com")
    assert "60 min" in customer.inner_text("[data-usage-limit]")  # the Free plan

    staff = open_page()
    staff.goto(reverse("admin:index"))
    staff.fill("#id_username", "root")
    staff.fill("#id_password", PASSWORD)
    staff.click("input[type=submit]")
    staff.goto(reverse("admin:accounts_tenant_change", args=[tenant.pk]))
    staff.fill("#id_subscription-0-included_minutes_override", "321")
    shot(staff, "admin-tenant-quota")
    staff.click("input[name=_save]")
    staff.wait_for_selector(".messagelist .success")

    customer.reload()
    assert customer.inner_text("[data-usage-limit]") == "321 min"
    shot(customer, "overview-after-quota-change")
    assert not customer.js_errors, customer.js_errors


def test_api_docs_and_admin_pages_work_under_the_csp(open_page, fast_passwords):
    """The Swagger UI (drf-spectacular's sidecar assets) renders its operations, and the admin's index, a
    changelist with and without actions, a change form and the RQ dashboard load, all under the policy."""
    page = open_page()
    response = page.goto("/api/docs/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    page.wait_for_selector(".opblock-summary-path:has-text('/api/v1/watermark/embed')")
    shot(page, "api-docs")

    services.get_or_create_user("root", email="root@example.com", password=PASSWORD, staff=True)
    tenant = services.create_tenant("Policy Labs")
    page.goto(reverse("admin:index"))
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#operations-module")
    for name in ("admin:accounts_tenant_changelist", "admin:billing_usageevent_changelist",
                 "admin:jobs_job_changelist", "admin:billing_plan_add"):
        assert page.goto(reverse(name)).status == 200, name
    page.goto(reverse("admin:accounts_tenant_change", args=[tenant.pk]))
    page.click("text=Stripe")  # a collapsed fieldset opens (admin JavaScript runs)
    # The RQ dashboard's own inline scripts and styles: allowed on its pages only (the one relaxation).
    assert page.goto(reverse("admin:django_rq_dashboard_changelist")).status == 200
    response = page.goto(f"/{django_settings.ADMIN_URL}django-rq/queues/0/")
    assert response.status == 200 and "'unsafe-inline'" in response.headers["content-security-policy"]
    assert not page.js_errors, page.js_errors


# A drop of several files, as the browser delivers it: a DataTransfer holding File objects, dispatched on the
# drop zone (the page's own drop handler moves them into the input).
DROP_FILES = """([names, payloads]) => {
  const transfer = new DataTransfer();
  names.forEach((name, i) => {
    const bytes = Uint8Array.from(atob(payloads[i]), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type: "audio/wav" }));
  });
  return transfer;
}"""


def drop_files(page, zone_selector: str, files: dict[str, bytes]) -> None:
    import base64

    transfer = page.evaluate_handle(DROP_FILES, [list(files), [base64.b64encode(b).decode() for b in files.values()]])
    page.dispatch_event(zone_selector, "drop", {"dataTransfer": transfer})


@pytest.mark.parametrize("viewport", [(1360, 900), (390, 844)], ids=["desktop", "phone"])
def test_multi_file_drop_runs_a_batch_with_live_counts(open_page, worker_process, fast_passwords, viewport):
    """Drop three files (one of them not audio) on the New job page → one batch → its page lists the items
    and follows the counts live until every accepted item is final; the bad file is refused on its own."""
    from testing.uploads import tone_wav_bytes

    worker_process("watermark")
    owner = services.get_or_create_user("bea@example.com", email="bea@example.com", password=PASSWORD)
    services.create_tenant("Batch Audio", owner=owner)
    page = open_page(*viewport)
    log_in(page, "bea@example.com")

    page.goto("/jobs/new/?kind=watermark_detect")
    drop_files(page, "label[for=watermark_detect-file]", {
        "first.wav": tone_wav_bytes(0.6), "second.wav": tone_wav_bytes(0.8), "notes.wav": b"not audio at all\n" * 64,
    })
    assert "3 files" in page.inner_text("label[for=watermark_detect-file] [data-chosen]")
    page.click("[data-submit]")
    page.wait_for_url("**/jobs/batches/*-*-*-*-*/")
    page.evaluate("window.__sameDocument = true")
    assert page.locator("tr[data-job-id]").count() == 2
    assert "INVALID_FORMAT" in page.inner_text("tr[data-refused-item]")
    poll(page, "document.querySelector('[data-batch-live]').dataset.status === 'completed'", JOB_TIMEOUT_MS)
    assert page.inner_text("[data-batch-count=succeeded]") == "2"
    assert page.inner_text("[data-batch-count=refused]") == "1"
    assert page.inner_text("[data-batch-status]") == "Completed"
    assert page.evaluate("window.__sameDocument === true"), "the batch page reloaded"
    poll(page, "[...document.querySelectorAll('tr[data-job-id]')].every((r) => r.dataset.status === 'succeeded')")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "horizontal scroll"
    shot(page, f"batch-completed-{viewport[0]}")
    assert not page.js_errors, page.js_errors


def test_a_job_from_a_url_and_bad_urls_in_the_page(open_page, worker_process, https_files, fast_passwords,
                                                   _isolated_media):
    """The New job page's URL field: a private address and a 404 are refused next to the field with the API's
    code and store nothing; a public https URL becomes a job that runs."""
    from billing.models import Reservation
    from jobs.models import Job
    from testing.https_files import Route
    from testing.uploads import stored_files

    worker_process("watermark")
    https_files.routes["/take.wav"] = Route(body=(FIXTURES / "speech_16k_mono.wav").read_bytes())
    owner = services.get_or_create_user("uri@example.com", email="uri@example.com", password=PASSWORD)
    services.create_tenant("Link Audio", owner=owner)
    page = open_page(390, 844)  # the phone layout: the field must work there too
    log_in(page, "uri@example.com")
    page.goto("/jobs/new/?kind=watermark_detect")
    error = "#watermark_detect-file_url-error"
    for url, code in [(f"https://127.0.0.1:{https_files.port}/take.wav", "URL_NOT_ALLOWED"),
                      ("https://10.0.0.1/take.wav", "URL_NOT_ALLOWED"),
                      (https_files.url("/missing.wav"), "URL_FETCH_FAILED")]:
        page.fill("#watermark_detect-file_url", url)
        page.click("[data-submit]")
        poll(page, f"document.querySelector('{error}').dataset.code === '{code}'")
        assert page.inner_text(error)
    assert Job.objects.count() == 0 and stored_files(_isolated_media) == [] and Reservation.objects.count() == 0
    shot(page, "new-job-url-refused-phone")

    page.fill("#watermark_detect-file_url", https_files.url("/take.wav"))
    page.click("[data-submit]")
    page.wait_for_url("**/jobs/*-*-*-*-*/")
    assert wait_for_final(page) == "succeeded"
    assert Job.objects.get().input["filename"] == "take.wav"
    assert not page.js_errors, page.js_errors


def test_robustness_report_page_table_and_chart_desktop_and_phone(open_page, worker_process, fast_passwords, tmp_path):
    """Embed → "Robustness report on the output" (the output and its original posted to the report endpoint)
    → the report page lists every attack of the battery in a table and draws them in a chart; the same page
    on a phone (390×844), and from there a report started from the New job form without the original."""
    from media_ops.watermark import attacks

    worker_process("watermark")
    owner = services.get_or_create_user("rita@example.com", email="rita@example.com", password=PASSWORD)
    services.create_tenant("Rita Records", owner=owner)
    page = open_page()
    log_in(page, "rita@example.com")
    submit_job(page, "watermark_embed", FIXTURES / "speech_16k_mono.wav", **{"#opt-message": "1A2B"})
    assert wait_for_final(page) == "succeeded"
    with page.expect_download() as download_info:
        page.click("[data-download-output]")
    watermarked = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(watermarked)

    embed_url = page.url
    page.click("button:has-text('Robustness report on the output')")
    page.wait_for_url(lambda url: url != embed_url and "/jobs/" in url)
    assert wait_for_final(page) == "succeeded"
    page.wait_for_selector("[data-report-attacks]")
    names = page.eval_on_selector_all("[data-report-attacks] tr[data-attack]",
                                      "rows => rows.map(r => r.dataset.attack)")
    assert names == [a.name for a in attacks.BATTERY]
    outcome = page.inner_text("tr[data-attack='gain_-10db'] [data-outcome]")
    assert outcome == "survived"
    assert "1A2B" in page.inner_text("main") and "dB" in page.inner_text("[data-report-snr]")  # the original came too
    bars = poll(page, "(() => { const c = Chart.getChart(document.getElementById('report-chart'));"
                      " return c && c.data.labels.length === c.data.datasets[0].data.length"
                      " && c.data.labels.length; })()")
    assert bars == len(attacks.BATTERY)
    shot(page, "job-robustness-report")
    report_url = page.url
    assert not page.js_errors, page.js_errors

    phone = open_page(width=390, height=844)
    log_in(phone, "rita@example.com")
    phone.goto(report_url)
    phone.wait_for_selector("#report-chart")
    assert poll(phone, "(() => { const c = Chart.getChart(document.getElementById('report-chart'));"
                       " return c && c.width > 0 && c.width <= 390; })()")
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= 390, "the report page scrolls sideways"
    assert phone.locator("tr[data-attack='gain_-10db']").is_visible()
    shot(phone, "job-robustness-report-phone")

    # The New job form takes a report without the optional original (its result renders like the one above:
    # not waited for, to spare the shared CPU a second battery; canceled instead).
    submit_job(phone, "watermark_report", watermarked)
    from jobs import services as job_services
    from jobs.models import Job

    job = Job.objects.get(pk=phone.url.rstrip("/").rsplit("/", 1)[-1])
    assert job.kind == "watermark_report" and job.extra_inputs == {} and job.input["filename"] == watermarked.name
    job_services.cancel(job)
    assert not phone.js_errors, phone.js_errors
