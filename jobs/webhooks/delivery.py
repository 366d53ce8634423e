"""Sending customer job webhooks: signed POSTs of the outbox's rows, retried for 24 h, SSRF-safe.

Flow: ``jobs.webhooks.outbox`` writes a ``WebhookDelivery`` row with the final status and puts it on the
``webhooks`` RQ queue after the commit; a worker runs ``deliver``: it claims the attempt with a lease, POSTs
once, and records the outcome. A non-2xx answer,
a timeout or a refused address schedules the next attempt with exponential backoff until
``WEBHOOK_RETRY_WINDOW_SECONDS`` (24 h) after the event; the reconciler hands due attempts back to the queue.

Signature (documented for customers in ``jobs/WEBHOOKS.md``): Standard Webhooks headers ``webhook-id`` (the
event id), ``webhook-timestamp`` and ``webhook-signature`` (``jobs.webhooks.signing``), made at each attempt
with every secret in force (both during a rotation's overlap, ``jobs.webhooks.endpoints.signing_secrets``).

SSRF: only ``http``/``https``; the host is resolved and every address must be public (no loopback, private,
link-local such as 169.254.169.254, multicast, reserved, unspecified or shared ranges). The check runs at
submission (``INVALID_CALLBACK_URL``) and again at each delivery, which connects to the vetted address itself
(so DNS cannot change the answer in between) and never follows redirects. ``WEBHOOK_ALLOWED_HOSTS`` (host
names, IPs or CIDR networks) exempts hosts from the address check: for tests and internal receivers.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from base64 import b64encode
from datetime import timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from core.urlguard import UnsafeURL, parse_url, vetted_addresses
from jobs.models import WebhookDelivery
from jobs.webhooks.endpoints import signing_secrets
from jobs.webhooks.signing import EVENT_HEADER, signature_headers

logger = logging.getLogger(__name__)

USER_AGENT = "AudioSeal-Webhooks/2.0"
MAX_LOG_ENTRIES = 50
RESPONSE_EXCERPT = 200  # characters of the receiver's answer kept per attempt (500 for the last one)
Status = WebhookDelivery.Status


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
    secrets = signing_secrets(delivery.tenant)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: delivery.event,
        **signature_headers(
            secrets, str(delivery.event_id), int(time.time()), body, legacy=settings.WEBHOOK_LEGACY_SIGNATURE
        ),
    }
    started = time.monotonic()
    status_code: int | None = None
    text = ""
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
        "ms": int((time.monotonic() - started) * 1000), "response": text[:RESPONSE_EXCERPT],
        "signatures": len(secrets),
    }
    log = (list(delivery.attempt_log) + [entry])[-MAX_LOG_ENTRIES:]
    update: dict[str, Any] = {
        "last_status_code": status_code, "last_error": error[:500], "attempt_log": log,
        "last_response_body": text[:500],
    }
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
