"""A tenant's webhook endpoint: the default callback URL (SSRF-checked like a job's), the event-type filter,
and the signing secret with its rotation overlap. The writes (services) of the endpoint's settings.

Rotation keeps the previous secret signing for an overlap window (``WEBHOOK_SECRET_OVERLAP_SECONDS`` by
default, 0 to retire it at once): each delivery then carries both signatures, so a receiver that has not yet
deployed the new secret keeps verifying, and one that has deployed it verifies too. Rotating again during an
overlap retires the older of the two at once (at most two secrets sign).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant, new_webhook_secret
from core.errors import ServiceError
from core.urlguard import UnsafeURL, check_url
from jobs.webhooks.events import EVENT_TYPES


def check_callback_url(url: str) -> str:
    """Refuse an unsafe callback URL with ``INVALID_CALLBACK_URL`` (raised at submission); returns it."""
    try:
        check_url(url)
    except UnsafeURL as exc:
        raise ServiceError("INVALID_CALLBACK_URL", str(exc), {"field": "callback_url", "url": url[:200]}) from exc
    return url


def set_default_callback_url(tenant: Tenant, url: str) -> None:
    """The tenant's default callback URL (empty to remove); checked like a job's. For the dashboard."""
    if url:
        check_callback_url(url)
    tenant.webhook_url = url
    tenant.save(update_fields=["webhook_url"])


def set_event_types(tenant: Tenant, event_types: list[str]) -> list[str]:
    """The endpoint's allow-list (empty = every event type); unknown names are refused, none stored."""
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise ServiceError(
            "VALIDATION_ERROR", f"Unknown event type {unknown[0]!r}.",
            {"fields": {"event_types": [f"choose from {', '.join(EVENT_TYPES)}"]}},
        )
    tenant.webhook_event_types = [name for name in EVENT_TYPES if name in set(event_types)]  # stable order
    tenant.save(update_fields=["webhook_event_types"])
    return tenant.webhook_event_types


def rotate_secret(tenant: Tenant, overlap_seconds: int | None = None) -> str:
    """Give the tenant a new signing secret and return it; the old one keeps signing for ``overlap_seconds``.

    ``None`` takes ``WEBHOOK_SECRET_OVERLAP_SECONDS``; 0 retires the old secret at once. Longer than
    ``WEBHOOK_SECRET_OVERLAP_MAX_SECONDS`` is refused (``VALIDATION_ERROR``) and changes nothing.
    """
    overlap = settings.WEBHOOK_SECRET_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds
    if not 0 <= overlap <= settings.WEBHOOK_SECRET_OVERLAP_MAX_SECONDS:
        raise ServiceError(
            "VALIDATION_ERROR",
            f"The overlap must be between 0 and {settings.WEBHOOK_SECRET_OVERLAP_MAX_SECONDS} seconds.",
            {"fields": {"overlap_seconds": ["out of range"]}},
        )
    fields = ["webhook_secret", "webhook_previous_secret", "webhook_previous_secret_expires_at"]
    with transaction.atomic():  # two rotations at once: the second sees the first's secret as the old one
        locked = Tenant.objects.select_for_update().only("pk", *fields).get(pk=tenant.pk)
        if overlap:
            locked.webhook_previous_secret = locked.webhook_secret
            locked.webhook_previous_secret_expires_at = timezone.now() + timedelta(seconds=overlap)
        else:
            locked.webhook_previous_secret, locked.webhook_previous_secret_expires_at = "", None
        locked.webhook_secret = new_webhook_secret()
        locked.save(update_fields=fields)
    for name in fields:
        setattr(tenant, name, getattr(locked, name))
    return tenant.webhook_secret


def previous_secret_in_force(tenant: Tenant, now: datetime | None = None) -> bool:
    expires = tenant.webhook_previous_secret_expires_at
    return bool(tenant.webhook_previous_secret) and expires is not None and (now or timezone.now()) < expires


def signing_secrets(tenant: Tenant, now: datetime | None = None) -> list[str]:
    """The secrets that sign a delivery now, newest first: the current one, and the previous one until its
    overlap ends."""
    if previous_secret_in_force(tenant, now):
        return [tenant.webhook_secret, tenant.webhook_previous_secret]
    return [tenant.webhook_secret]
