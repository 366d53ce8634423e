"""Customer job webhooks: signed POSTs when a job reaches a final state, retried for 24 h, SSRF-safe.

Flow: the final transition (``jobs.services.transition``) calls ``on_job_final`` inside its transaction, which
writes a ``WebhookDelivery`` row when the job (or its tenant) has a callback URL: the event commits with the
status or not at all (an outbox). After the commit the delivery is put on the ``webhooks`` RQ queue; a worker
runs ``deliver``: it claims the attempt with a lease, POSTs once, and records the outcome. A non-2xx answer,
a timeout or a refused address schedules the next attempt with exponential backoff until
``WEBHOOK_RETRY_WINDOW_SECONDS`` (24 h) after the event; the reconciler hands due attempts back to the queue.

Signature (documented for customers in ``jobs/WEBHOOKS.md``): header
``AudioSeal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(tenant secret, "<t>.<raw body>")>``.

SSRF: only ``http``/``https``; the host is resolved and every address must be public (no loopback, private,
link-local such as 169.254.169.254, multicast, reserved, unspecified or shared ranges). The check runs at
submission (``INVALID_CALLBACK_URL``) and again at each delivery, which connects to the vetted address itself
(so DNS cannot change the answer in between) and never follows redirects. ``WEBHOOK_ALLOWED_HOSTS`` (host
names, IPs or CIDR networks) exempts hosts from the address check: for tests and internal receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import time
from base64 import b64encode
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from core.errors import ServiceError
from core.urlguard import UnsafeURL, check_url, parse_url, vetted_addresses
from jobs.models import Job, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "AudioSeal-Signature"
EVENT_HEADER = "AudioSeal-Event"
DELIVERY_HEADER = "AudioSeal-Delivery"
USER_AGENT = "AudioSeal-Webhooks/1.0"
MAX_LOG_ENTRIES = 50
Status = WebhookDelivery.Status


def check_callback_url(url: str) -> str:
    """Refuse an unsafe callback URL with ``INVALID_CALLBACK_URL`` (raised at submission); returns it."""
    try:
        check_url(url)
    except UnsafeURL as exc:
        raise ServiceError("INVALID_CALLBACK_URL", str(exc), {"field": "callback_url", "url": url[:200]}) from exc
    return url


def set_default_callback_url(tenant, url: str) -> None:
    """The tenant's default callback URL (empty to remove); checked like a job's. For the dashboard."""
    if url:
        check_callback_url(url)
    tenant.webhook_url = url
    tenant.save(update_fields=["webhook_url"])


def rotate_secret(tenant) -> str:
    """Give the tenant a new signing secret (the old one stops working at once) and return it."""
    from accounts.models import new_webhook_secret

    tenant.webhook_secret = new_webhook_secret()
    tenant.save(update_fields=["webhook_secret"])
    return tenant.webhook_secret


# --- signing ------------------------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None
) -> bool:
    """The customer's check as ``WEBHOOKS.md`` documents it (the tests also run the documented recipe)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(
        hmac.compare_digest(expected, value)
        for key, value in (part.split("=", 1) for part in header.split(","))
        if key == "v1"
    )


# --- events -------------------------------------------------------------------------------------------------


def payload_for(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "result_url": settings.PUBLIC_BASE_URL + reverse("api:job-detail", kwargs={"pk": job.pk}),
        "error_code": job.error_code or None,
    }


def on_job_final(job: Job) -> WebhookDelivery | None:
    """Record the job's final-state event if it has a callback URL. Runs inside the final transition."""
    url = job.callback_url or job.tenant.webhook_url
    if not url:
        return None
    body = json.dumps(payload_for(job), separators=(",", ":"), sort_keys=True)
    delivery = WebhookDelivery.objects.create(
        tenant_id=job.tenant_id, job=job, event=f"job.{job.status}", url=url, body=body,
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(lambda: dispatch(delivery))
    return delivery


def _rq_id(delivery: WebhookDelivery) -> str:
    return f"webhook-{delivery.pk}-{delivery.attempts}"


def dispatch(delivery: WebhookDelivery) -> bool:
    """Put the delivery on the webhook queue; a Redis failure only delays it (the reconciler retries)."""
    import django_rq
    from redis import RedisError

    try:
        django_rq.get_queue(settings.WEBHOOK_QUEUE).enqueue(
            "jobs.webhooks.delivery.deliver", str(delivery.pk), job_id=_rq_id(delivery),
            job_timeout=int(settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30), result_ttl=600, failure_ttl=24 * 3600,
        )
        return True
    except RedisError:
        logger.warning("could not enqueue webhook delivery %s; the reconciler will", delivery.pk)
        return False


def enqueue_due(limit: int = 500) -> list[str]:
    """Hand pending deliveries whose time has come to the queue (unless already there). For the reconciler."""
    import django_rq
    from rq.exceptions import NoSuchJobError
    from rq.job import Job as RQJob

    connection = django_rq.get_connection(settings.WEBHOOK_QUEUE)
    sent = []
    due = WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=timezone.now())
    for delivery in due.order_by("next_attempt_at")[:limit]:
        try:
            if RQJob.fetch(_rq_id(delivery), connection=connection).get_status(refresh=False) == "queued":
                continue
        except NoSuchJobError:
            pass
        if dispatch(delivery):
            sent.append(str(delivery.pk))
    return sent


# --- delivery -----------------------------------------------------------------------------------------------


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a vetted IP, with the URL's host name for SNI and certificate checks."""

    def __init__(self, host: str, port: int, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST ``body`` to ``url`` once, connecting only to a vetted address; no redirects are followed.

    Returns (status, first 500 characters of the response); raises UnsafeURL or OSError.
    """
    scheme, host, port = parse_url(url)
    address = vetted_addresses(host, port)[0]
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    if scheme == "https":
        conn: http.client.HTTPConnection = _PinnedHTTPSConnection(
            host, port, address, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    netloc_host = f"[{host}]" if ":" in host else host
    headers = {**headers, "Host": netloc_host if port in (80, 443) else f"{netloc_host}:{port}"}
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + b64encode(credentials.encode()).decode()
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(2048).decode("utf-8", "replace")
        return response.status, text[:500]
    finally:
        conn.close()


def next_delay(attempts: int) -> float:
    base = float(settings.WEBHOOK_RETRY_BASE_SECONDS)
    return min(base * (2 ** max(0, attempts - 1)), float(settings.WEBHOOK_RETRY_MAX_SECONDS))


def deliver(delivery_id: str) -> str:
    """RQ task: make one attempt at a due delivery, if this process wins its claim. Returns the outcome."""
    from django.db import close_old_connections

    close_old_connections()
    try:
        return _deliver(delivery_id)
    finally:
        close_old_connections()


def _deliver(delivery_id: str) -> str:
    now = timezone.now()
    lease = timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=Status.PENDING, next_attempt_at__lte=now
    ).update(attempts=F("attempts") + 1, last_attempt_at=now, next_attempt_at=now + lease)
    if not claimed:
        return "skipped"  # delivered, given up, not due yet, or another process is sending it
    delivery = WebhookDelivery.objects.select_related("tenant").get(pk=delivery_id)
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.pk),
        SIGNATURE_HEADER: signature_header(delivery.tenant.webhook_secret, body),
    }
    started = time.monotonic()
    status_code: int | None = None
    error = ""
    try:
        status_code, text = post(delivery.url, body, headers)
        if not 200 <= status_code < 300:
            redirect = " (redirects are not followed)" if 300 <= status_code < 400 else ""
            error = f"HTTP {status_code}{redirect}"
    except UnsafeURL as exc:
        error = str(exc)
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    finished = timezone.now()
    entry = {
        "at": finished.isoformat(), "status_code": status_code, "error": error[:300],
        "ms": int((time.monotonic() - started) * 1000),
    }
    log = (list(delivery.attempt_log) + [entry])[-MAX_LOG_ENTRIES:]
    update: dict[str, Any] = {"last_status_code": status_code, "last_error": error[:500], "attempt_log": log}
    if not error:
        update.update(status=Status.DELIVERED, delivered_at=finished, next_attempt_at=None)
        outcome = "delivered"
    else:
        retry_at = finished + timedelta(seconds=next_delay(delivery.attempts))
        if retry_at > delivery.created_at + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS):
            update.update(status=Status.FAILED, next_attempt_at=None)
            outcome = "failed"
        else:
            update.update(next_attempt_at=retry_at)
            outcome = "retry_scheduled"
        logger.info("webhook %s attempt %s to %s: %s", delivery.pk, delivery.attempts, delivery.url, error)
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=delivery.attempts).update(**update)
    return outcome
