"""Batches: many inputs in one request, one ``Batch`` with a job per accepted item.

``submit_batch`` works in two phases so a slow item never holds the tenant's quota lock:

1. Outside any transaction, every item's input is resolved (an upload, a fetched ``file_url``, a direct
   upload) and probed (``jobs.services.validate_submission``). An item that fails is recorded as refused
   (its code and message) and is not stored.
2. One transaction: the ``Batch`` row, then each item through ``jobs.services.submit`` in its own savepoint
   (store, job row, quota reservation). An item the quota refuses (``QUOTA_EXCEEDED``,
   ``CONCURRENCY_LIMIT``) rolls back its savepoint and deletes its file: it is refused, not the batch. The
   item jobs are enqueued when the transaction commits, so none can finish before the batch exists whole.

A batch in which every item was refused is not created (``422 BATCH_REJECTED`` with the items' errors):
bad input leaves nothing behind. A batch ends when its last item job is final: ``jobs.services`` counts
items down in each final transition and writes the one ``batch.completed`` webhook (``Batch`` docstring).
Item jobs send no webhooks of their own.

Idempotency: like job creation, ``Idempotency-Key`` is unique per tenant on ``Batch``; the same key and
request return the original batch, a different request gets ``409 IDEMPOTENCY_CONFLICT``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction

from billing import selectors as billing_selectors
from billing.selectors import Standing
from core.errors import ServiceError
from jobs import services, sources
from jobs.kinds import spec
from jobs.models import ACTIVE_STATUSES, Batch, Job
from jobs.upkeep.retention import job_files
from jobs.webhooks import endpoints

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

    from accounts.models import ApiKey, Tenant

logger = logging.getLogger(__name__)


@dataclass
class BatchItem:
    """One item of a batch request: exactly one source, and its params (shared ones merged with its own)."""

    index: int
    params: dict[str, Any]
    file: UploadedFile | None = None
    file_url: str = ""
    upload_id: Any = None
    # ``Submission.prepare``: embed's ``message=auto`` takes the next free registry message inside the item's
    # own savepoint, so a refused item keeps no registry entry.
    prepare: Callable[[Job], None] | None = None

    @property
    def label(self) -> str:
        """What the item is called in its refusal: the file name, the URL or the upload id."""
        if self.file is not None:
            return self.file.name or f"item {self.index}"
        return self.file_url[:200] or str(self.upload_id)


@dataclass
class BatchRequest:
    tenant: Tenant
    kind: str
    items: list[BatchItem]
    params: dict[str, Any] = field(default_factory=dict)
    api_key: ApiKey | None = None
    user: AbstractBaseUser | AnonymousUser | None = None
    callback_url: str = ""
    idempotency_key: str = ""
    request_fingerprint: str = ""
    standing: Standing | None = None


def max_items() -> int:
    return max(1, int(settings.BATCH_MAX_ITEMS))


def check_shape(kind: str, count: int) -> None:
    """A batch is of one single-input kind and holds 1 to ``BATCH_MAX_ITEMS`` items."""
    if len(spec(kind).input_names) != 1:
        raise ServiceError(
            "VALIDATION_ERROR", f"{kind} jobs take several inputs each and cannot be batched.",
            {"fields": {"kind": ["not batchable"]}},
        )
    if count == 0:
        raise ServiceError(
            "VALIDATION_ERROR", "A batch needs at least one `file`, `file_url` or `upload_id`.",
            {"fields": {"file": ["required"]}},
        )
    if count > max_items():
        raise ServiceError(
            "BATCH_TOO_LARGE", f"A batch holds at most {max_items()} items; this one has {count}.",
            {"items": count, "max_items": max_items()},
        )


def _refusal(item: BatchItem, error: ServiceError) -> dict[str, Any]:
    return {"index": item.index, "input": item.label, "code": error.code, "message": error.message,
            "details": error.details}


def replay(tenant: Tenant, key: str, fingerprint: str) -> Batch | None:
    """The batch an earlier request with ``key`` created, or None; 409 when that request was different."""
    batch = Batch.objects.filter(tenant=tenant, idempotency_key=key).first()
    if batch is None:
        return None
    if batch.request_fingerprint != fingerprint:
        raise ServiceError(
            "IDEMPOTENCY_CONFLICT",
            "This `Idempotency-Key` was already used for a different request; use a new key for a new batch.",
            {"header": "Idempotency-Key", "batch_id": str(batch.pk)},
        )
    return batch


@dataclass
class _Prepared:
    item: BatchItem
    submission: services.Submission
    infos: dict[str, dict[str, Any]]
    close: Callable[[], None]


def _prepare(req: BatchRequest, item: BatchItem, standing: Standing) -> _Prepared:
    source = sources.resolve(
        req.tenant, max_bytes=standing.limits.max_file_bytes, file=item.file, file_url=item.file_url,
        upload_id=item.upload_id,
    )
    name = spec(req.kind).input_names[0]
    sub = services.Submission(
        tenant=req.tenant, kind=req.kind, files={name: source.upload}, params=item.params, api_key=req.api_key,
        user=req.user, standing=standing, batch_index=item.index,
        stored_inputs={name: source.stored_name} if source.stored_name else {},
        direct_upload_id=source.direct_upload_id, prepare=item.prepare,
    )
    try:
        infos = services.validate_submission(sub)
    except BaseException as exc:
        source.close()
        if isinstance(exc, ServiceError):
            source.relabel(exc)
        raise
    return _Prepared(item=item, submission=sub, infos=infos, close=source.close)


def submit_batch(req: BatchRequest) -> tuple[Batch, bool]:
    """Create the batch and its item jobs (module docstring). Returns (batch, replayed)."""
    check_shape(req.kind, len(req.items))
    if req.callback_url:
        endpoints.check_callback_url(req.callback_url)
    if req.idempotency_key:
        existing = replay(req.tenant, req.idempotency_key, req.request_fingerprint)
        if existing is not None:
            return existing, True
    standing = req.standing or billing_selectors.standing_for(req.tenant)
    if standing.refusal is not None:  # a suspended or unpaid account: the whole request, not each item
        raise standing.refusal

    refused: list[dict[str, Any]] = []
    prepared: list[_Prepared] = []
    try:
        for item in req.items:
            try:
                prepared.append(_prepare(req, item, standing))
            except ServiceError as exc:
                refused.append(_refusal(item, exc))
        try:
            return _create(req, prepared, refused), False
        except IntegrityError:
            existing = replay(req.tenant, req.idempotency_key, req.request_fingerprint) if req.idempotency_key else None
            if existing is None:
                raise
            return existing, True
    finally:
        for entry in prepared:
            entry.close()


def _create(req: BatchRequest, prepared: list[_Prepared], refused: list[dict[str, Any]]) -> Batch:
    created: list[Job] = []
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                tenant=req.tenant, kind=req.kind, params=req.params, item_count=len(req.items),
                api_key=req.api_key, created_by=req.user if getattr(req.user, "is_authenticated", False) else None,
                callback_url=req.callback_url, idempotency_key=req.idempotency_key,
                request_fingerprint=req.request_fingerprint,
            )
            for entry in prepared:
                entry.submission.batch = batch
                try:
                    created.append(services.submit(entry.submission, infos=entry.infos))
                except ServiceError as exc:  # quota or concurrency: this item only (its savepoint rolled back)
                    refused.append(_refusal(entry.item, exc))
            if not created:
                raise ServiceError(
                    "BATCH_REJECTED", "Every item of the batch was refused; nothing was created.",
                    {"items": sorted(refused, key=lambda r: r["index"])}, http_status=422,
                )
            batch.open_items = len(created)
            batch.refused = sorted(refused, key=lambda r: r["index"])
            batch.save(update_fields=["open_items", "refused"])
    except BaseException:
        # The item transactions' files outlive a rolled-back batch: delete what they stored (never a direct
        # upload's object: that stays the client's, unconsumed).
        kept = {entry.submission.stored_inputs.get(n) for entry in prepared for n in entry.submission.stored_inputs}
        services.delete_files([name for job in created for name in job_files(job) if name not in kept])
        raise
    return batch


def cancel(batch: Batch) -> int:
    """Cancel the batch's queued and running item jobs; returns how many were canceled."""
    canceled = 0
    for job in Job.objects.filter(batch=batch, status__in=ACTIVE_STATUSES):
        canceled += bool(services.cancel_if_active(job))
    return canceled
