"""The webhook outbox: a job's final-state event is written in the same transaction as the final status.

``on_job_final`` runs inside ``jobs.services``' final transition and inserts a ``WebhookDelivery`` row when
the job (or its tenant) has a callback URL, so the event commits with the status or not at all. After the
commit the delivery is put on the ``webhooks`` RQ queue (``dispatch``); if Redis is down the row waits and
the reconciler hands due rows back to the queue (``enqueue_due``). Sending is ``jobs.webhooks.delivery``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from redis import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from jobs.models import Batch, Job, WebhookDelivery
from jobs.queues import get_queue

logger = logging.getLogger(__name__)
Status = WebhookDelivery.Status




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


def batch_payload_for(batch: Batch) -> dict[str, Any]:
    """The ``batch.completed`` body: the batch, its item counts by final status, where to read it."""
    from django.db.models import Count

    counts = {row["status"]: row["n"] for row in batch.jobs.order_by().values("status").annotate(n=Count("id"))}
    return {
        "type": "batch.completed",
        "timestamp": timezone.now().isoformat(),
        "id": str(batch.id),
        "object": "batch",
        "kind": batch.kind,
        "status": "completed",
        "counts": {"items": batch.item_count, "refused": len(batch.refused or []), **counts},
        "result_url": settings.PUBLIC_BASE_URL + reverse("api:batch-detail", kwargs={"pk": batch.pk}),
    }


def on_batch_completed(batch: Batch) -> WebhookDelivery | None:
    """Record the batch's one ``batch.completed`` event (its callback URL, else the tenant's). Runs inside the
    transaction of the item that completed it (``jobs.services``), which is exactly one."""
    url = batch.callback_url or batch.tenant.webhook_url
    if not url:
        return None
    body = json.dumps(batch_payload_for(batch), separators=(",", ":"), sort_keys=True)
    delivery = WebhookDelivery.objects.create(
        tenant_id=batch.tenant_id, batch=batch, event="batch.completed", url=url, body=body,
        next_attempt_at=timezone.now(),
    )
    transaction.on_commit(lambda: dispatch(delivery))
    return delivery


def _rq_id(delivery: WebhookDelivery) -> str:
    return f"webhook-{delivery.pk}-{delivery.attempts}"


def dispatch(delivery: WebhookDelivery) -> bool:
    """Put the delivery on the webhook queue; a Redis failure only delays it (the reconciler retries)."""
    try:
        get_queue(settings.WEBHOOK_QUEUE).enqueue(
            "jobs.webhooks.delivery.deliver", str(delivery.pk), job_id=_rq_id(delivery),
            job_timeout=int(settings.WEBHOOK_TIMEOUT_SECONDS * 2 + 30), result_ttl=600, failure_ttl=24 * 3600,
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
