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
from testing.browser import PASSWORD, log_in, poll, shot, submit_job, wait_for_final
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
