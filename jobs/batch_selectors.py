"""Reads of batches for the API and the dashboard: a tenant's batches, counts by status, items in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, QuerySet

from jobs.models import Batch, Job, JobStatus

if TYPE_CHECKING:
    from accounts.models import Tenant


def batches_for(tenant: Tenant) -> QuerySet[Batch]:
    """The tenant's batches, newest first (tenant-scoped: another tenant's batch is not found)."""
    return Batch.objects.filter(tenant=tenant)


def batch_counts(batch: Batch) -> dict[str, int]:
    """Items in the request, accepted, refused, and the accepted items' jobs by status (one query)."""
    by_status = {
        row["status"]: row["n"]
        for row in Job.objects.filter(batch=batch).order_by().values("status").annotate(n=Count("id"))
    }
    counts = {"items": batch.item_count, "accepted": sum(by_status.values()), "refused": len(batch.refused or [])}
    counts.update({status: by_status.get(status, 0) for status in JobStatus.values})
    return counts


def batch_items(batch: Batch) -> list[dict[str, Any]]:
    """Every item by request order: its job (accepted) or its refusal (``error``)."""
    items: list[dict[str, Any]] = [
        {"index": job.batch_index, "input": (job.input or {}).get("filename", ""), "job": job, "error": None}
        for job in Job.objects.filter(batch=batch)
    ]
    for refusal in batch.refused or []:
        items.append({
            "index": refusal["index"], "input": refusal.get("input", ""), "job": None,
            "error": {"code": refusal["code"], "message": refusal["message"], "details": refusal.get("details", {})},
        })
    return sorted(items, key=lambda item: (item["index"] is None, item["index"] or 0))
