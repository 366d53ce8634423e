"""Customer job webhooks: signed deliveries, retries, records, SSRF refusals at submission and delivery.

Standard Webhooks specifics (the library's verdicts, rotation, filters, test events, resends) are in
``test_standard_webhooks.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import new_webhook_secret as signing_secret
from jobs import services
from jobs.models import Job, JobStatus, WebhookDelivery
from jobs.upkeep import reconcile
from jobs.webhooks import endpoints, signing
from testing.assertions import assert_error
from testing.dns import fake_dns
from testing.uploads import upload
from testing.workers import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

EMBED = "/api/v1/watermark/embed"
DETECT = "/api/v1/watermark/detect"
WEBHOOKS_MD = Path(__file__).resolve().parents[1] / "WEBHOOKS.md"


def documented_verify():
    """The verification function exactly as WEBHOOKS.md shows it to customers (its first Python block,
    which uses the ``standardwebhooks`` library)."""
    text = WEBHOOKS_MD.read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(WEBHOOKS_MD), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify"]


def submit(client, callback_url: str | None = None, url: str = DETECT):
    data = {"file": upload("speech_16k_mono.wav")}
    if callback_url is not None:
        data["callback_url"] = callback_url
    return client.post(url, data, format="multipart")


def finish(job_id, ok: bool = True) -> Job:
    """Drive the job to a final state through the state machine, as a worker would."""
    job = services.start(job_id, "test-worker")
    if ok:
        services.succeed(job, result={"detected": False})
    else:
        services.fail(job, "PROCESSING_FAILED", "boom")
    return Job.objects.get(pk=job_id)


@pytest.fixture
def allow_loopback(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.RECONCILE_QUEUED_GRACE_SECONDS = 3600  # these tests reconcile webhooks, not queued jobs
    return settings


def test_signed_event_retried_after_500_then_delivered_once(api_client, tenant, run_worker, allow_loopback):
    with Receiver([500, 200]) as receiver:
        created = submit(api_client, receiver.url)
        assert created.status_code == 202, created.json()
        assert created.json()["callback_url"] == receiver.url
        job = finish(created.json()["id"])
        run_worker(["webhooks"])  # first attempt: the receiver answers 500
        assert len(receiver.requests) == 1
        delivery = WebhookDelivery.objects.get(job=job)
        assert delivery.status == "pending" and delivery.attempts == 1 and delivery.last_status_code == 500

        report = reconcile.run_once()  # the retry is due (backoff 0): handed back to the queue
        assert report.webhooks_enqueued == [str(delivery.pk)]
        run_worker(["webhooks"])
        assert len(receiver.requests) == 2
        reconcile.run_once()
        run_worker(["webhooks"])
        assert len(receiver.requests) == 2, "a delivered event is never sent again"

    first, second = receiver.requests
    assert first["body"] == second["body"]
    assert {r["headers"]["webhook-id"] for r in receiver.requests} == {str(delivery.event_id)}
    payload = json.loads(second["body"])
    assert payload.pop("timestamp")
    assert payload == {
        "type": "job.succeeded", "id": str(job.pk), "kind": "watermark_detect", "status": "succeeded",
        "result_url": f"{settings.PUBLIC_BASE_URL}/api/v1/jobs/{job.pk}", "error_code": None,
    }
    assert second["headers"]["AudioSeal-Event"] == "job.succeeded"
    assert second["headers"]["Content-Type"] == "application/json"

    verify = documented_verify()
    tenant.refresh_from_db()
    for request in receiver.requests:
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", request["headers"]["webhook-signature"])
        assert verify(tenant.webhook_secret, request["headers"], request["body"])["id"] == str(job.pk)
        assert verify(signing_secret(), request["headers"], request["body"]) is None
        assert verify(tenant.webhook_secret, request["headers"], request["body"] + b" ") is None
    replayed = {**second["headers"], **signing.signature_headers(
        [tenant.webhook_secret], str(delivery.event_id), 1_000_000_000, second["body"])}
    assert verify(tenant.webhook_secret, replayed, second["body"]) is None  # an old timestamp is refused

    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 2 and delivery.last_status_code == 200
    listed = api_client.get(f"/api/v1/jobs/{job.pk}/deliveries")
    assert listed.status_code == 200
    [shown] = listed.json()
    assert shown["status"] == "delivered" and shown["attempts"] == 2
    assert [a["status_code"] for a in shown["attempt_log"]] == [500, 200]


def test_failed_job_event_and_tenant_default_url(
    api_client, tenant, run_worker, allow_loopback, other_client
):
    with Receiver([204]) as receiver:
        endpoints.set_default_callback_url(tenant, receiver.url)
        job = finish(submit(api_client).json()["id"], ok=False)
        run_worker(["webhooks"])
    [request] = receiver.requests
    payload = json.loads(request["body"])
    assert payload["status"] == "failed" and payload["error_code"] == "PROCESSING_FAILED"
    assert request["headers"]["AudioSeal-Event"] == "job.failed"
    assert WebhookDelivery.objects.get(job=job).status == "delivered"
    assert_error(other_client.get(f"/api/v1/jobs/{job.pk}/deliveries"), 404, "NOT_FOUND")


def test_no_callback_no_delivery(api_client, redis_clean):
    job = finish(submit(api_client).json()["id"])
    assert job.status == JobStatus.SUCCEEDED
    assert not WebhookDelivery.objects.exists()


def test_redirects_are_not_followed(api_client, run_worker, allow_loopback):
    with Receiver([302, 200], headers={"Location": "/elsewhere"}) as receiver:
        job = finish(submit(api_client, receiver.url).json()["id"])
        run_worker(["webhooks"])
    assert [r["path"] for r in receiver.requests] == ["/hooks/audioseal"]
    delivery = WebhookDelivery.objects.get(job=job)
    assert delivery.status == "pending" and "redirects are not followed" in delivery.last_error


def test_gives_up_after_the_retry_window(api_client, run_worker, allow_loopback):
    allow_loopback.WEBHOOK_RETRY_WINDOW_SECONDS = 0
    with Receiver([503]) as receiver:
        job = finish(submit(api_client, receiver.url).json()["id"])
        run_worker(["webhooks"])
        reconcile.run_once()
        run_worker(["webhooks"])
    assert len(receiver.requests) == 1
    delivery = WebhookDelivery.objects.get(job=job)
    assert delivery.status == "failed" and delivery.last_status_code == 503




@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "ftp://example.com/hook",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        # IPv6 transition forms wrapping a private or special IPv4 address (judged by the address inside)
        "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
        "http://[2002:a9fe:a9fe::1]/hook",  # 6to4 of 169.254.169.254 (cloud metadata)
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo, client 192.0.2.45
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
        "http://[64:ff9b:1::a00:1]/hook",  # NAT64 local-use prefix: never global
        "http://[::7f00:1]/hook",  # IPv4-compatible form of 127.0.0.1
        "http://[2a00:1450::5efe:a00:1]/hook",  # ISATAP interface id wrapping 10.0.0.1
        "http://2130706433/hook",  # 127.0.0.1 written as a number
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://100.64.0.1/hook",  # carrier-grade NAT (shared address space)
        "http://internal.example/hook",  # resolves to 10.1.2.3
        "http://localhost/hook",
        "https:///no-host",
        "not a url",
    ],
)
def test_unsafe_callback_urls_are_refused_at_submission(
    api_client, redis_clean, monkeypatch, _isolated_media, url
):
    fake_dns(monkeypatch, {"internal.example": "10.1.2.3"})
    body = assert_error(submit(api_client, url), 400, "INVALID_CALLBACK_URL")
    assert body["error"]["details"]["field"] == "callback_url"
    assert not Job.objects.exists()
    assert not [p for p in _isolated_media.rglob("*") if p.is_file()]


def test_public_callback_url_is_accepted(api_client, redis_clean, monkeypatch):
    fake_dns(monkeypatch, {"hooks.customer.example": "93.184.216.34"})
    response = submit(api_client, "https://hooks.customer.example/audioseal?x=1")
    assert response.status_code == 202, response.json()
    assert Job.objects.get().callback_url == "https://hooks.customer.example/audioseal?x=1"


def test_allow_list_admits_the_test_receiver_only(api_client, redis_clean, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert submit(api_client, "http://127.0.0.1:8123/hook").status_code == 202
    assert_error(submit(api_client, "http://10.0.0.1/hook"), 400, "INVALID_CALLBACK_URL")
    settings.WEBHOOK_ALLOWED_HOSTS = ["10.0.0.0/8"]
    assert submit(api_client, "http://10.0.0.1/hook").status_code == 202


def test_address_is_checked_again_at_delivery(api_client, run_worker, monkeypatch, settings):
    """DNS rebinding: the name was public at submission and points at loopback when we deliver."""
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    with Receiver([200]) as receiver:
        port = receiver.server.server_address[1]
        fake_dns(monkeypatch, {"rebind.example": "93.184.216.34"})
        job_id = submit(api_client, f"http://rebind.example:{port}/hook").json()["id"]
        fake_dns(monkeypatch, {"rebind.example": "127.0.0.1"})
        job = finish(job_id)
        run_worker(["webhooks"])
    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get(job=job)
    assert delivery.status == "pending" and "non-public address" in delivery.last_error


def test_default_callback_url_is_checked(tenant):
    from core.errors import ServiceError

    with pytest.raises(ServiceError) as raised:
        endpoints.set_default_callback_url(tenant, "http://169.254.169.254/")
    assert raised.value.code == "INVALID_CALLBACK_URL"
    old = tenant.webhook_secret
    assert endpoints.rotate_secret(tenant) != old and tenant.webhook_secret.startswith("whsec_")
    assert endpoints.signing_secrets(tenant) == [tenant.webhook_secret, old]  # the default overlap


def test_each_tenant_has_its_own_secret(make_tenant):
    assert make_tenant().webhook_secret != make_tenant().webhook_secret
