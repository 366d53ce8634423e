"""Standard Webhooks, judged by software we did not write: real deliveries to a local HTTP receiver, verified
with the ``standardwebhooks`` library (1.1.0). Also rotation with overlap, the event-type filter, test events,
resends (same ``webhook-id``) and that no tenant sees or resends another's deliveries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import secrets
import time
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from accounts.models import Tenant
from jobs import services
from jobs.models import Job, WebhookDelivery
from jobs.webhooks import endpoints, outbox
from testing.assertions import assert_error
from testing.uploads import upload
from testing.workers import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

DETECT = "/api/v1/watermark/detect"
ENDPOINT = "/api/v1/webhooks/endpoint"


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.RECONCILE_QUEUED_GRACE_SECONDS = 3600
    return settings


def finished_job(client, ok: bool = True, callback_url: str | None = None) -> Job:
    """A job submitted through the API and driven to its final state through the state machine."""
    data = {"file": upload("speech_16k_mono.wav")}
    if callback_url:
        data["callback_url"] = callback_url
    created = client.post(DETECT, data, format="multipart")
    assert created.status_code == 202, created.json()
    job = services.start(created.json()["id"], "test-worker")
    if ok:
        services.succeed(job, result={"detected": False})
    else:
        services.fail(job, "PROCESSING_FAILED", "boom")
    return Job.objects.get(pk=job.pk)


def rejected(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return True
    return False


def test_the_library_accepts_a_real_delivery_and_rejects_tampering(api_client, tenant, run_worker, allow_loopback):
    with Receiver([200]) as receiver:
        job = finished_job(api_client, callback_url=receiver.url)
        run_worker(["webhooks"])
    [request] = receiver.requests
    body, headers = request["body"], request["headers"]
    delivery = WebhookDelivery.objects.get(job=job)
    tenant.refresh_from_db()

    assert tenant.webhook_secret.startswith("whsec_")
    payload = Webhook(tenant.webhook_secret).verify(body, headers)  # the library, on the wire bytes
    assert payload["type"] == "job.succeeded" and payload["id"] == str(job.pk)
    assert headers["webhook-id"] == str(delivery.event_id)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]

    assert rejected(tenant.webhook_secret, body.replace(b"succeeded", b"failed"), headers)  # tampered body
    assert rejected(tenant.webhook_secret, body + b" ", headers)
    later = str(int(headers["webhook-timestamp"]) + 1)
    assert rejected(tenant.webhook_secret, body, {**headers, "webhook-timestamp": later})  # tampered time
    assert rejected(tenant.webhook_secret, body, {**headers, "webhook-id": str(job.pk)})  # tampered id
    assert rejected(Tenant.objects.create(name="x", slug="x").webhook_secret, body, headers)  # other secret
    missing = {k: v for k, v in headers.items() if k != "webhook-signature"}
    assert rejected(tenant.webhook_secret, body, missing)

    # Deprecated extra, still sent by default: the Stripe-style header, same key bytes.
    legacy = dict(part.split("=", 1) for part in headers["AudioSeal-Signature"].split(","))
    key = base64.b64decode(tenant.webhook_secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{legacy['t']}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, legacy["v1"])


def test_legacy_header_can_be_switched_off(api_client, tenant, run_worker, allow_loopback):
    allow_loopback.WEBHOOK_LEGACY_SIGNATURE = False
    with Receiver([200]) as receiver:
        finished_job(api_client, callback_url=receiver.url)
        run_worker(["webhooks"])
    [request] = receiver.requests
    assert "AudioSeal-Signature" not in request["headers"]
    tenant.refresh_from_db()
    Webhook(tenant.webhook_secret).verify(request["body"], request["headers"])


def test_rotation_overlap_both_secrets_verify_then_only_the_new_one(api_client, tenant, run_worker, allow_loopback):
    with Receiver([200]) as receiver:
        endpoints.set_default_callback_url(tenant, receiver.url)
        old = tenant.webhook_secret
        rotated = api_client.post(f"{ENDPOINT}/rotate-secret", {"overlap_seconds": 3600}, format="json")
        assert rotated.status_code == 200, rotated.json()
        new = rotated.json()["secret"]
        assert new != old and new.startswith("whsec_") and rotated.json()["previous_secret_expires_at"]
        assert api_client.get(ENDPOINT).json()["previous_secret_expires_at"]

        finished_job(api_client)  # to the default URL, during the overlap
        run_worker(["webhooks"])
        during = receiver.requests[-1]
        assert len(during["headers"]["webhook-signature"].split(" ")) == 2
        Webhook(new).verify(during["body"], during["headers"])
        Webhook(old).verify(during["body"], during["headers"])  # receivers not yet redeployed keep working

        Tenant.objects.filter(pk=tenant.pk).update(  # the overlap window has passed
            webhook_previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
        )
        finished_job(api_client, ok=False)
        run_worker(["webhooks"])
        after = receiver.requests[-1]
    assert len(after["headers"]["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(after["body"], after["headers"])
    assert rejected(old, after["body"], after["headers"])
    assert api_client.get(ENDPOINT).json()["previous_secret_expires_at"] is None
    log = WebhookDelivery.objects.order_by("created_at").values_list("attempt_log", flat=True)
    assert [entry[-1]["signatures"] for entry in log] == [2, 1]


def test_rotation_without_overlap_and_refused_overlaps(api_client, tenant):
    old = tenant.webhook_secret
    response = api_client.post(f"{ENDPOINT}/rotate-secret", {"overlap_seconds": 0}, format="json")
    assert response.status_code == 200 and response.json()["previous_secret_expires_at"] is None
    tenant.refresh_from_db()
    assert endpoints.signing_secrets(tenant) == [response.json()["secret"]]  # the old one stopped at once
    assert old != response.json()["secret"]
    for bad in (-1, 8 * 24 * 3600, "soon"):
        assert_error(api_client.post(f"{ENDPOINT}/rotate-secret", {"overlap_seconds": bad}, format="json"),
                     400, "VALIDATION_ERROR")
    tenant.refresh_from_db()
    assert tenant.webhook_secret == response.json()["secret"]  # a refused rotation changes nothing
    # Rotating twice inside an overlap: at most two secrets sign, the newest first.
    first = endpoints.rotate_secret(tenant, 3600)
    second = endpoints.rotate_secret(tenant, 3600)
    assert endpoints.signing_secrets(tenant) == [second, first]


def test_event_type_filter_applies_to_the_default_url(api_client, tenant, run_worker, allow_loopback):
    with Receiver([200]) as receiver, Receiver([200]) as own:
        updated = api_client.patch(ENDPOINT, {"url": receiver.url, "event_types": ["job.failed"]}, format="json")
        assert updated.status_code == 200, updated.json()
        assert updated.json()["event_types"] == ["job.failed"] and updated.json()["url"] == receiver.url
        assert "job.canceled" in updated.json()["available_event_types"]

        succeeded = finished_job(api_client)
        failed = finished_job(api_client, ok=False)
        explicit = finished_job(api_client, callback_url=own.url)  # a job's own URL ignores the filter
        run_worker(["webhooks"])
    assert [json.loads(r["body"])["id"] for r in receiver.requests] == [str(failed.pk)]
    assert [json.loads(r["body"])["id"] for r in own.requests] == [str(explicit.pk)]
    assert not WebhookDelivery.objects.filter(job=succeeded).exists()

    assert_error(api_client.patch(ENDPOINT, {"event_types": ["job.exploded"]}, format="json"), 400, "VALIDATION_ERROR")
    assert api_client.patch(ENDPOINT, {"event_types": []}, format="json").json()["event_types"] == []
    tenant.refresh_from_db()
    assert tenant.webhook_event_types == [] and tenant.webhook_url == receiver.url


def test_test_event_is_delivered_signed_and_ignores_the_filter(api_client, tenant, run_worker, allow_loopback):
    with Receiver([200]) as receiver:
        endpoints.set_default_callback_url(tenant, receiver.url)
        endpoints.set_event_types(tenant, ["job.failed"])
        sent = api_client.post(f"{ENDPOINT}/test", {}, format="json")
        assert sent.status_code == 202, sent.json()
        assert sent.json()["event"] == "webhook.test" and sent.json()["status"] == "pending"
        run_worker(["webhooks"])
    [request] = receiver.requests
    tenant.refresh_from_db()
    payload = Webhook(tenant.webhook_secret).verify(request["body"], request["headers"])
    assert payload["type"] == "webhook.test" and payload["tenant"] == tenant.slug
    shown = api_client.get(f"/api/v1/webhooks/deliveries/{sent.json()['id']}").json()
    assert shown["status"] == "delivered" and shown["last_status_code"] == 200 and shown["job"] is None
    assert shown["last_response_body"] == "ok" and shown["attempt_log"][0]["response"] == "ok"


def test_test_event_refusals_write_nothing(api_client, tenant, redis_clean):
    assert_error(api_client.post(f"{ENDPOINT}/test", {}, format="json"), 409, "NO_WEBHOOK_URL")
    for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/hook", "file:///etc/passwd"):
        assert_error(api_client.post(f"{ENDPOINT}/test", {"url": url}, format="json"), 400, "INVALID_CALLBACK_URL")
    assert_error(api_client.patch(ENDPOINT, {"url": "http://10.0.0.1/"}, format="json"), 400, "INVALID_CALLBACK_URL")
    assert not WebhookDelivery.objects.exists()
    tenant.refresh_from_db()
    assert tenant.webhook_url == ""


def test_resend_keeps_the_event_id_and_stays_in_its_tenant(
    api_client, tenant, other_client, run_worker, allow_loopback
):
    with Receiver([200]) as receiver:
        job = finished_job(api_client, callback_url=receiver.url)
        run_worker(["webhooks"])
        original = WebhookDelivery.objects.get(job=job)
        # Another tenant can neither see nor resend it: the same 404 as an id that does not exist.
        assert_error(other_client.get(f"/api/v1/webhooks/deliveries/{original.pk}"), 404, "NOT_FOUND")
        assert_error(other_client.post(f"/api/v1/webhooks/deliveries/{original.pk}/resend"), 404, "NOT_FOUND")
        assert other_client.get("/api/v1/webhooks/deliveries").json()["results"] == []

        resent = api_client.post(f"/api/v1/webhooks/deliveries/{original.pk}/resend")
        assert resent.status_code == 202, resent.json()
        assert resent.json()["event_id"] == str(original.event_id) and resent.json()["resent_from"] == str(original.pk)
        run_worker(["webhooks"])
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == str(original.event_id)
    assert first["body"] == second["body"]
    tenant.refresh_from_db()
    for request in (first, second):
        Webhook(tenant.webhook_secret).verify(request["body"], request["headers"])
    listed = api_client.get("/api/v1/webhooks/deliveries").json()["results"]
    assert [d["status"] for d in listed] == ["delivered", "delivered"] and listed[0]["id"] == resent.json()["id"]
    assert len(api_client.get("/api/v1/webhooks/deliveries", {"status": "failed"}).json()["results"]) == 0
    assert_error(api_client.get("/api/v1/webhooks/deliveries", {"status": "nope"}), 400, "VALIDATION_ERROR")
    assert WebhookDelivery.objects.filter(tenant=tenant).count() == 2
    assert not WebhookDelivery.objects.exclude(tenant=tenant).exists()


def test_session_members_cannot_change_the_endpoint(people):
    from rest_framework.test import APIClient

    for who, allowed in (("member", False), ("admin", True)):
        client = APIClient()
        client.force_login(people.users[who], backend="django.contrib.auth.backends.ModelBackend")
        secret = Tenant.objects.get(pk=people.tenant.pk).webhook_secret
        response = client.post(f"{ENDPOINT}/rotate-secret", {"overlap_seconds": 0}, format="json")
        changed = Tenant.objects.get(pk=people.tenant.pk).webhook_secret != secret
        assert (response.status_code == 200, changed) == (allowed, allowed), (who, response.status_code)
        if not allowed:
            assert_error(response, 403, response.json()["error"]["code"])
            assert client.get("/api/v1/webhooks/deliveries").status_code == 200  # reading the log is fine


def test_migration_reencodes_legacy_secrets_to_the_same_key(tenant):
    """Secrets of earlier releases (``whsec_`` + url-safe text) become ``whsec_<base64 of that text>``: valid
    for Standard Webhooks, and the HMAC key is unchanged, so the deprecated header still verifies with the
    old string."""
    migration = importlib.import_module("accounts.migrations.0005_webhook_standard")
    legacy = f"whsec_{secrets.token_urlsafe(32)}"
    Tenant.objects.filter(pk=tenant.pk).update(webhook_secret=legacy)
    standard = Tenant.objects.create(name="New", slug="new").webhook_secret
    migration.reencode_legacy_secrets(django_apps, None)
    tenant.refresh_from_db()
    assert tenant.webhook_secret != legacy and migration.is_standard(tenant.webhook_secret)
    assert base64.b64decode(tenant.webhook_secret.removeprefix("whsec_")) == legacy.encode()
    assert Tenant.objects.get(slug="new").webhook_secret == standard  # already standard: untouched

    body, ts = b'{"id":"x"}', int(time.time())
    delivery = WebhookDelivery(tenant=tenant, event="job.succeeded", body=body.decode())
    from jobs.webhooks.signing import signature_headers

    headers = signature_headers([tenant.webhook_secret], str(delivery.event_id), ts, body, legacy=True)
    Webhook(tenant.webhook_secret).verify(body, headers)
    old_recipe = hmac.new(legacy.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["AudioSeal-Signature"] == f"t={ts},v1={old_recipe}"
    migration.restore_legacy_secrets(django_apps, None)
    tenant.refresh_from_db()
    assert tenant.webhook_secret == legacy


def test_outbox_record_event_is_the_one_path(tenant, redis_clean, allow_loopback):
    """Test events and resends write rows the reconciler can hand back (pending, due), like job events."""
    tenant.webhook_url = "http://127.0.0.1:9/hook"
    tenant.save()
    test = outbox.send_test_event(tenant)
    again = outbox.resend(test)
    due = set(WebhookDelivery.objects.filter(status="pending", next_attempt_at__lte=timezone.now())
              .values_list("pk", flat=True))
    assert {test.pk, again.pk} <= due and again.event_id == test.event_id
