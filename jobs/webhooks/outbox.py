"""The webhook outbox: every message to a customer's URL is a ``WebhookDelivery`` row, sent after commit.

``on_job_final`` runs inside ``jobs.services``' final transition and records the job's event when the job (or
its tenant) has a callback URL, so the event commits with the status or not at all; ``on_batch_completed``
does the same for a batch's ``batch.completed`` when its last item ends. ``send_test_event`` and
``resend`` write rows the same way; every row then takes the same path: put on the ``webhooks`` RQ queue
after the commit (``dispatch``), or, if Redis is down, handed back later by the reconciler
(``enqueue_due``). Sending, signing and the SSRF check at delivery are ``jobs.webhooks.delivery``.

The tenant's ``webhook_event_types`` filters what goes to its default callback URL; a job's own
``callback_url`` (or a batch's) was asked for on that job and receives its event whatever the filter says.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from redis import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from core.errors import ServiceError
from jobs.models import Batch, Job, WebhookDelivery
from jobs.queues import get_queue
from jobs.webhooks.endpoints import check_callback_url
from jobs.webhooks.events import BATCH_COMPLETED, TEST_EVENT, is_wanted, job_event

if TYPE_CHECKING:
    from accounts.models import Tenant

logger = logging.getLogger(__name__)
Status = WebhookDelivery.Status


def payload_for(job: Job, event_type: str) -> dict[str, Any]:
    """The job event's body: Standard Webhooks' ``type`` and ``timestamp`` plus the job's fields (kept at the
    top level, where receivers written for earlier releases read them)."""
    return {
        "type": event_type,
        "timestamp": timezone.now().isoformat(),
        "id": str(job.id),
        "kind": job.kind,
        "status": job.status,
        "result_url": settings.PUBLIC_BASE_URL + reverse("api:job-detail", kwargs={"pk": job.pk}),
        "error_code": job.error_code or None,
    }


def record_event(
    tenant: Tenant, event_type: str, payload: dict[str, Any], url: str, job: Job | None = None,
    batch: Batch | None = None,
) -> WebhookDelivery:
    """Write one event for ``url`` and send it after the commit. The caller has checked the URL and the filter.

    ``job`` or ``batch`` links the row to what the event is about (neither for ``webhook.test``)."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    delivery = WebhookDelivery.objects.create(
        tenant=tenant, job=job, batch=batch, event=event_type, url=url, body=body, next_attempt_at=timezone.now()
    )
    transaction.on_commit(lambda: dispatch(delivery))
    return delivery


def on_job_final(job: Job) -> WebhookDelivery | None:
    """Record the job's final-state event if it has a callback URL. Runs inside the final transition."""
    event_type = job_event(job.status)
    if job.callback_url:
        url = job.callback_url
    elif job.tenant.webhook_url and is_wanted(event_type, job.tenant.webhook_event_types):
        url = job.tenant.webhook_url
    else:
        return None
    return record_event(job.tenant, event_type, payload_for(job, event_type), url, job=job)


def send_test_event(tenant: Tenant, url: str = "") -> WebhookDelivery:
    """A ``webhook.test`` event to ``url`` (default: the tenant's callback URL) through the normal path.

    Refused with ``INVALID_CALLBACK_URL`` for an unsafe URL and ``NO_WEBHOOK_URL`` when there is none; a
    refusal writes nothing.
    """
    url = url or tenant.webhook_url
    if not url:
        raise ServiceError(
            "NO_WEBHOOK_URL", "There is no URL to send the test event to: set a default callback URL or give one.",
            {"field": "url"},
        )
    check_callback_url(url)
    payload = {
        "type": TEST_EVENT,
        "timestamp": timezone.now().isoformat(),
        "tenant": tenant.slug,
        "message": "A test event from AudioSeal Studio: your endpoint and its signature check work.",
    }
    with transaction.atomic():
        return record_event(tenant, TEST_EVENT, payload, url)


def resend(delivery: WebhookDelivery) -> WebhookDelivery:
    """Send an event again: a new delivery with the same event id (``webhook-id``) and the same body, so a
    receiver that already processed it can tell; retried like any delivery, within a fresh retry window.
    The URL is the original's, checked again now (``INVALID_CALLBACK_URL``)."""
    check_callback_url(delivery.url)
    with transaction.atomic():
        copy = WebhookDelivery.objects.create(
            tenant_id=delivery.tenant_id, job_id=delivery.job_id, batch_id=delivery.batch_id, event=delivery.event,
            url=delivery.url, body=delivery.body, event_id=delivery.event_id, resent_from=delivery,
            next_attempt_at=timezone.now(),
        )
        transaction.on_commit(lambda: dispatch(copy))
    return copy


def batch_payload_for(batch: Batch) -> dict[str, Any]:
    """The ``batch.completed`` body: the batch, its item counts by final status, where to read it."""

    counts = {row["status"]: row["n"] for row in batch.jobs.order_by().values("status").annotate(n=Count("id"))}
    return {
        "type": BATCH_COMPLETED,
        "timestamp": timezone.now().isoformat(),
        "id": str(batch.id),
        "object": "batch",
        "kind": batch.kind,
        "status": "completed",
        "counts": {"items": batch.item_count, "refused": len(batch.refused or []), **counts},
        "result_url": settings.PUBLIC_BASE_URL + reverse("api:batch-detail", kwargs={"pk": batch.pk}),
    }


def on_batch_completed(batch: Batch) -> WebhookDelivery | None:
    """Record the batch's one ``batch.completed`` event. Runs inside the transaction of the item that completed
    it (``jobs.services``), which is exactly one.

    Like a job's event: the batch's own ``callback_url`` was asked for on that batch and always receives it;
    the tenant's default URL receives it only if its ``webhook_event_types`` filter wants it."""
    tenant = batch.tenant
    if batch.callback_url:
        url = batch.callback_url
    elif tenant.webhook_url and is_wanted(BATCH_COMPLETED, tenant.webhook_event_types):
        url = tenant.webhook_url
    else:
        return None
    return record_event(tenant, BATCH_COMPLETED, batch_payload_for(batch), url, batch=batch)


def _rq_id(delivery: WebhookDelivery) -> str:
    return f"webhook-{delivery.pk}-{delivery.attempts}"


def dispatch(delivery: WebhookDelivery) -> bool:
    """Put the delivery on the webhook queue; a Redis failure only delays it (the reconciler retries)."""
    try:
        get_queue(settings.WEBHOOK_QUEUE).enqueue(
            "jobs.webhooks.delivery.deliver", str(delivery.pk), job_id=_rq_id(delivery),
            # result_ttl=0: the delivery row records every attempt; RQ's record of a finished run is never read
            # (``enqueue_due`` only asks whether one is still queued), so it is deleted at once.
            job_timeout=int(settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30), result_ttl=0, failure_ttl=24 * 3600,
        )
        return True
    except RedisError:
        logger.warning("could not enqueue webhook delivery %s; the reconciler will", delivery.pk)
        return False


def enqueue_due(limit: int = 500) -> list[str]:
    """Hand pending deliveries whose time has come to the queue (unless already there). For the reconciler."""
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
