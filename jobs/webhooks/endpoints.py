"""Where a tenant's webhooks go: the default callback URL (SSRF-checked like a job's) and the signing secret."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accounts.models import new_webhook_secret
from core.errors import ServiceError
from core.urlguard import UnsafeURL, check_url

if TYPE_CHECKING:
    from accounts.models import Tenant


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


def rotate_secret(tenant: Tenant) -> str:
    """Give the tenant a new signing secret (the old one stops working at once) and return it."""
    tenant.webhook_secret = new_webhook_secret()
    tenant.save(update_fields=["webhook_secret"])
    return tenant.webhook_secret
