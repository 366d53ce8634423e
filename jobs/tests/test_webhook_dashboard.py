"""The dashboard's webhook deliveries (list, one delivery's attempts, resend), test event, event-type filter and
rotation with overlap; and the staff admin's readable attempt log and resend action. Tenant-scoped throughout.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Tenant
from jobs.models import Job, JobKind, JobStatus, WebhookDelivery

pytestmark = pytest.mark.django_db

HOOK = "http://93.184.216.34/hook"  # a public address: no DNS needed


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    """These tests look at rows and pages; sending is covered in test_standard_webhooks.py."""
    monkeypatch.setattr("jobs.webhooks.outbox.dispatch", lambda delivery: True)


def delivery_of(tenant: Tenant, **fields) -> WebhookDelivery:
    job = Job.objects.create(tenant=tenant, kind=JobKind.WATERMARK_DETECT, status=JobStatus.FAILED)
    values = {
        "event": "job.failed", "url": HOOK, "body": f'{{"id":"{job.pk}","type":"job.failed"}}', "attempts": 2,
        "status": "failed", "last_status_code": 503, "last_error": "HTTP 503",
        "last_response_body": "upstream unavailable", "attempt_log": [
            {"at": "2026-12-01T10:00:00+00:00", "status_code": 500, "error": "HTTP 500", "ms": 12,
             "response": "boom", "signatures": 1},
            {"at": "2026-12-01T10:00:30+00:00", "status_code": 503, "error": "HTTP 503", "ms": 9,
             "response": "upstream unavailable", "signatures": 1},
        ],
    }
    return WebhookDelivery.objects.create(tenant=tenant, job=job, **{**values, **fields})


def test_deliveries_page_lists_only_our_deliveries(people):
    ours = delivery_of(people.tenant)
    theirs = delivery_of(people.other_tenant, last_response_body="globex secret answer")
    page = people.client("admin").get(reverse("dashboard:webhook-deliveries"))
    assert page.status_code == 200
    body = page.content.decode()
    assert f'data-delivery-id="{ours.pk}"' in body and f'data-delivery-id="{theirs.pk}"' not in body
    assert "job.failed" in body and "503" in body and "HTTP 503" in body and "Failed" in body
    assert "globex secret answer" not in body
    filtered = people.client("admin").get(reverse("dashboard:webhook-deliveries"), {"status": "delivered"})
    assert f'data-delivery-id="{ours.pk}"' not in filtered.content.decode()
    assert "No deliveries match" in filtered.content.decode()


def test_members_and_other_tenants_are_kept_out(people):
    ours = delivery_of(people.tenant)
    assert people.client("member").get(reverse("dashboard:webhook-deliveries")).status_code == 403
    assert people.client("member").get(reverse("dashboard:webhook-delivery", args=[ours.pk])).status_code == 403
    outsider = people.client("outsider")
    assert outsider.get(reverse("dashboard:webhook-delivery", args=[ours.pk])).status_code == 404
    assert outsider.post(reverse("dashboard:webhook-delivery-resend", args=[ours.pk])).status_code == 404
    assert people.client("member").post(reverse("dashboard:webhook-delivery-resend", args=[ours.pk])).status_code == 403
    assert WebhookDelivery.objects.count() == 1  # nobody resent it


def test_delivery_page_shows_each_attempt_readably(people):
    delivery = delivery_of(people.tenant)
    body = people.client("owner").get(reverse("dashboard:webhook-delivery", args=[delivery.pk])).content.decode()
    assert "2026-12-01 10:00:30 UTC" in body and "2026-12-01 10:00:00 UTC" in body
    assert body.index("10:00:30") < body.index("10:00:00")  # newest first
    assert "HTTP 500" in body and "boom" in body and "12 ms" in body
    assert str(delivery.event_id) in body and "&quot;type&quot;: &quot;job.failed&quot;" in body  # indented
    assert '"status_code"' not in body  # not the raw JSON log


def test_resend_makes_a_new_delivery_with_the_same_event_id(people):
    original = delivery_of(people.tenant)
    admin = people.client("admin")
    response = admin.post(reverse("dashboard:webhook-delivery-resend", args=[original.pk]))
    copy = WebhookDelivery.objects.exclude(pk=original.pk).get()
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:webhook-delivery", args=[copy.pk])
    assert copy.event_id == original.event_id and copy.body == original.body and copy.resent_from == original
    assert copy.status == "pending" and copy.attempts == 0 and copy.tenant == people.tenant
    page = admin.get(response["Location"]).content.decode()
    assert "sent again with the same webhook-id" in page and "the original delivery" in page
    assert "2 times with this webhook-id" in page


def test_send_test_event_from_the_dashboard(people, monkeypatch):
    client = people.client("owner")
    response = client.post(reverse("dashboard:webhook-test"), follow=True)
    assert "no URL to send the test event to" in response.content.decode()
    assert not WebhookDelivery.objects.exists()
    Tenant.objects.filter(pk=people.tenant.pk).update(webhook_url=HOOK)
    response = client.post(reverse("dashboard:webhook-test"))
    delivery = WebhookDelivery.objects.get()
    assert response["Location"] == reverse("dashboard:webhook-delivery", args=[delivery.pk])
    assert delivery.event == "webhook.test" and delivery.url == HOOK and delivery.tenant == people.tenant
    assert people.client("member").post(reverse("dashboard:webhook-test")).status_code == 403


def test_event_types_form(people):
    client = people.client("admin")
    response = client.post(reverse("dashboard:webhook-events"), {"event_types": ["job.failed", "job.canceled"]})
    assert response.status_code == 302
    tenant = Tenant.objects.get(pk=people.tenant.pk)
    assert tenant.webhook_event_types == ["job.failed", "job.canceled"]
    page = client.get(reverse("dashboard:webhooks")).content.decode()
    assert re.search(r'value="job\.failed"[^>]*checked', page)
    assert not re.search(r'value="job\.succeeded"[^>]*checked', page)
    assert client.post(reverse("dashboard:webhook-events"), {"event_types": ["job.exploded"]}).status_code == 400
    client.post(reverse("dashboard:webhook-events"), {})
    assert Tenant.objects.get(pk=people.tenant.pk).webhook_event_types == []
    assert "every event type" in client.get(reverse("dashboard:webhooks")).content.decode()


def test_rotation_with_overlap_from_the_dashboard(people):
    client = people.client("owner")
    old = people.tenant.webhook_secret
    form = client.get(reverse("dashboard:webhook-secret-rotate")).content.decode()
    assert 'name="overlap_seconds"' in form and "24 hours" in form
    client.post(reverse("dashboard:webhook-secret-rotate"), {"overlap_seconds": "3600"})
    tenant = Tenant.objects.get(pk=people.tenant.pk)
    assert tenant.webhook_secret != old and tenant.webhook_previous_secret == old
    left = tenant.webhook_previous_secret_expires_at - timezone.now()
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
    page = client.get(reverse("dashboard:webhooks")).content.decode()
    assert "data-rotation-overlap" in page and old not in page  # the old secret is never shown again
    client.post(reverse("dashboard:webhook-secret-rotate"), {"overlap_seconds": "0"})
    tenant = Tenant.objects.get(pk=people.tenant.pk)
    assert tenant.webhook_previous_secret == "" and "data-rotation-overlap" not in client.get(
        reverse("dashboard:webhooks")).content.decode()
    assert client.post(reverse("dashboard:webhook-secret-rotate"), {"overlap_seconds": "99"}).status_code == 400


# --- the staff admin --------------------------------------------------------------------------------------


def test_admin_attempt_log_is_a_table_and_resend_action_works(people):
    delivery = delivery_of(people.tenant)
    staff = people.client("staff")
    page = staff.get(reverse("admin:jobs_webhookdelivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "<table class=\"attempt-log\">" in body and "2026-12-01 10:00:30 UTC" in body
    assert "upstream unavailable" in body
    assert "&quot;status_code&quot;" not in body and '"status_code"' not in body  # no raw JSON
    response = staff.post(
        reverse("admin:jobs_webhookdelivery_changelist"),
        {"action": "resend_deliveries", "_selected_action": [str(delivery.pk)]}, follow=True,
    )
    assert "Resent 1 delivery" in response.content.decode()
    copy = WebhookDelivery.objects.exclude(pk=delivery.pk).get()
    assert copy.event_id == delivery.event_id and copy.resent_from == delivery and copy.tenant == people.tenant
