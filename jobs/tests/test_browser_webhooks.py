"""The webhook pages in a real browser (headless system Chromium, as ``test_browser.py``): a styled URL field
(issue 19 defect 4), a test event delivered to a local receiver and verified with ``standardwebhooks``, the
deliveries page and a resend with the same ``webhook-id``, the event filter, and the same pages on a phone
(390×844) without sideways scrolling.
"""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from accounts import services
from accounts.models import Membership, Tenant
from jobs.models import WebhookDelivery
from testing.browser import PASSWORD, log_in, shot
from testing.workers import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


@pytest.fixture
def loopback_receivers(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.RECONCILE_QUEUED_GRACE_SECONDS = 3600
    return settings


def owner_of(name: str, email: str) -> Tenant:
    owner = services.get_or_create_user(email, email=email, password=PASSWORD)
    return services.create_tenant(name, owner=owner)


def test_url_field_is_styled_like_the_other_inputs(open_page, fast_passwords):
    """Defect 4: ``type=url`` had no rule in the CSS, so the field kept the browser's bare look."""
    owner_of("Styled Sound", "sty@example.com")
    page = open_page()
    log_in(page, "sty@example.com")
    page.goto("/webhooks/")
    style = """(sel) => { const s = getComputedStyle(document.querySelector(sel));
      return [s.paddingTop, s.borderTopWidth, s.borderTopStyle, s.borderRadius, s.boxSizing]; }"""
    url_field = page.evaluate(style, "#id_url")
    assert page.get_attribute("#id_url", "type") == "url"
    assert url_field == page.evaluate(style, "#webhook-secret")  # a type=text input of the same page
    assert url_field[0] == "9px" and url_field[1] == "1px" and url_field[2] == "solid"
    field_width = page.evaluate("document.querySelector('#id_url').getBoundingClientRect().width")
    form_width = page.evaluate("document.querySelector('#id_url').closest('form').getBoundingClientRect().width")
    assert field_width == pytest.approx(form_width, abs=1)  # full width, like the text inputs
    shot(page, "webhooks-settings")


def test_test_event_deliveries_page_and_resend(open_page, fast_passwords, run_worker, loopback_receivers):
    tenant = owner_of("Hook Audio", "hook@example.com")
    other = owner_of("Other Audio", "other@example.com")
    page = open_page()
    log_in(page, "hook@example.com")

    with Receiver([200]) as receiver:
        page.goto("/webhooks/")
        assert page.is_disabled("[data-send-test]")  # no URL yet
        page.fill("#id_url", receiver.url)
        page.click("button:has-text('Save URL')")
        page.wait_for_selector(f"code[data-webhook-url]:has-text('{receiver.url}')")

        page.check("input[value='job.failed']")
        page.click("button:has-text('Save event types')")
        page.wait_for_selector(".alert-success:has-text('job.failed')")
        assert page.is_checked("input[value='job.failed']") and not page.is_checked("input[value='job.succeeded']")

        page.click("[data-send-test]")
        page.wait_for_url("**/webhooks/deliveries/*-*-*-*-*/")
        assert page.inner_text("[data-delivery-status]") == "Pending"
        run_worker(["webhooks"])
        page.reload()
        assert page.inner_text("h1 [data-delivery-status]") == "Delivered"
        assert "HTTP 200" in page.inner_text("[data-attempts]") and "ok" in page.inner_text("[data-attempts]")
        event_id = page.inner_text("[data-event-id]")
        shot(page, "webhook-delivery")

        page.click("[data-resend]")
        page.wait_for_selector(".alert-success:has-text('same webhook-id')")
        run_worker(["webhooks"])
        assert page.inner_text("[data-event-id]") == event_id

    first, second = receiver.requests
    tenant.refresh_from_db()
    for request in (first, second):
        assert Webhook(tenant.webhook_secret).verify(request["body"], request["headers"])["type"] == "webhook.test"
        assert request["headers"]["webhook-id"] == event_id

    page.goto("/webhooks/deliveries/")
    rows = page.locator("[data-deliveries] tbody tr")
    assert rows.count() == 2
    assert page.locator("[data-delivery-status=delivered]").count() == 2
    assert "HTTP 200 ok" in page.inner_text("[data-deliveries]")
    shot(page, "webhook-deliveries")

    # Another organisation's owner sees none of it, and cannot open it by id.
    outsider = open_page()
    log_in(outsider, "other@example.com")
    outsider.goto("/webhooks/deliveries/")
    assert "No webhooks sent yet" in outsider.inner_text("main")
    delivery = WebhookDelivery.objects.filter(tenant=tenant).first()
    assert outsider.goto(f"/webhooks/deliveries/{delivery.pk}/").status == 404
    assert not WebhookDelivery.objects.filter(tenant=other).exists()
    assert not page.js_errors and not outsider.js_errors, (page.js_errors, outsider.js_errors)


def test_deliveries_pages_on_a_phone(open_page, fast_passwords, loopback_receivers, redis_clean):
    tenant = owner_of("Phone Hooks", "phone@example.com")
    member = services.get_or_create_user("pm@example.com", email="pm@example.com", password=PASSWORD)
    Membership.objects.create(user=member, tenant=tenant, role=Membership.Role.MEMBER)
    long_url = "http://127.0.0.1:9/" + "very-long-path-segment/" * 8 + "hook?with=a&long=query"
    tenant.webhook_url = long_url
    tenant.save()
    from jobs.webhooks import outbox

    delivery = outbox.send_test_event(tenant)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, last_status_code=503, last_error="HTTP 503",
        last_response_body="Service Unavailable: " + "x" * 300,
        attempt_log=[{"at": "2026-12-01T10:00:00+00:00", "status_code": 503, "error": "HTTP 503", "ms": 41,
                      "response": "Service Unavailable: " + "y" * 180, "signatures": 1}],
    )

    page = open_page(width=390, height=844)
    log_in(page, "phone@example.com")
    for path in ("/webhooks/", "/webhooks/deliveries/", f"/webhooks/deliveries/{delivery.pk}/"):
        assert page.goto(path).status == 200, path
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{path} scrolls sideways on a phone"
    assert page.inner_text("h1 [data-delivery-status]") == "Retrying"
    assert "HTTP 503" in page.inner_text("[data-attempts]")
    assert page.is_visible("[data-resend]")
    shot(page, "webhook-delivery-phone")
    page.goto("/webhooks/deliveries/")
    assert "Service Unavailable" in page.inner_text("[data-deliveries]")
    shot(page, "webhook-deliveries-phone")

    member_page = open_page(width=390, height=844)
    log_in(member_page, "pm@example.com")
    assert member_page.goto("/webhooks/deliveries/").status == 403
    assert not page.js_errors, page.js_errors
