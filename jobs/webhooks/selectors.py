"""Reads of a tenant's webhook deliveries, for the API and the dashboard: always scoped to the tenant."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from core.errors import ServiceError
from jobs.models import WebhookDelivery

if TYPE_CHECKING:
    from accounts.models import Tenant


def deliveries_of(tenant: Tenant, status: str = "", event: str = "") -> QuerySet[WebhookDelivery]:
    """The tenant's deliveries, newest first, optionally of one status and/or event type."""
    deliveries = WebhookDelivery.objects.filter(tenant=tenant).select_related("job")
    if status:
        deliveries = deliveries.filter(status=status)
    if event:
        deliveries = deliveries.filter(event=event)
    return deliveries.order_by("-created_at", "-id")


def delivery_of(tenant: Tenant, delivery_id: object) -> WebhookDelivery:
    """One delivery of the tenant; another tenant's (or none) is ``NOT_FOUND``, never told apart."""
    try:
        return WebhookDelivery.objects.select_related("job").get(tenant=tenant, pk=delivery_id)
    except (WebhookDelivery.DoesNotExist, ValidationError, ValueError, TypeError):
        raise ServiceError("NOT_FOUND", "No such webhook delivery.") from None


def attempts_of(delivery: WebhookDelivery) -> list[dict[str, Any]]:
    """The delivery's attempt log, newest first, for people: ``at`` as a datetime, the answer's excerpt,
    the error and the number of signatures sent (two during a rotation's overlap)."""
    rows = []
    for entry in reversed(delivery.attempt_log or []):
        try:
            at = datetime.fromisoformat(entry.get("at", ""))
        except (TypeError, ValueError):
            at = None
        status_code, error = entry.get("status_code"), entry.get("error", "")
        rows.append({
            "at": at, "status_code": status_code,
            "error": "" if error == f"HTTP {status_code}" else error,  # the code alone is shown already
            "ms": entry.get("ms"), "response": entry.get("response", ""), "signatures": entry.get("signatures"),
            "ok": not error,
        })
    return rows


def readable_body(delivery: WebhookDelivery) -> str:
    """The body sent, indented for people (the bytes sent and signed are the compact ``delivery.body``)."""
    try:
        return json.dumps(json.loads(delivery.body), indent=2, sort_keys=True)
    except ValueError:
        return delivery.body
