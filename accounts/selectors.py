"""Reads of accounts' rows for the dashboard, always inside one tenant."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from accounts.models import ApiKey, ApiRequest, Tenant

STATUS_CLASSES = {"2xx": (200, 300), "3xx": (300, 400), "4xx": (400, 500), "5xx": (500, 600)}


@dataclass(frozen=True)
class RequestFilters:
    """What the Request log page can filter by; every field optional (empty: no filter).

    ``q`` matches a request id exactly (what support is given) or is a substring of the path or error code.
    """

    q: str = ""
    status: str = ""  # "2xx", "4xx", ... or "errors" (4xx and 5xx)
    key: str = ""  # an ApiKey id of the tenant
    method: str = ""


def api_requests(tenant: Tenant, filters: RequestFilters | None = None) -> QuerySet[ApiRequest]:
    """``tenant``'s logged API requests, newest first, filtered. A key of another tenant matches nothing."""
    filters = filters or RequestFilters()
    rows = ApiRequest.objects.filter(tenant=tenant).select_related("api_key")
    if filters.status == "errors":
        rows = rows.filter(status__gte=400)
    elif filters.status in STATUS_CLASSES:
        low, high = STATUS_CLASSES[filters.status]
        rows = rows.filter(status__gte=low, status__lt=high)
    if filters.key:
        rows = rows.filter(api_key_id=filters.key)
    if filters.method:
        rows = rows.filter(method=filters.method.upper())
    q = filters.q.strip()
    if q:
        rows = rows.filter(Q(request_id=q) | Q(path__icontains=q) | Q(error_code__iexact=q))
    return rows.order_by("-created_at", "-id")


def tenant_keys(tenant: Tenant) -> QuerySet[ApiKey]:
    """The tenant's keys, newest first (filters, usage by key, snippets)."""
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at")
