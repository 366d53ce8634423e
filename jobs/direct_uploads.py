"""Presigned direct uploads: a client PUTs a large file straight to S3, then creates a job from it.

``POST /api/v1/uploads`` → ``create``: a ``DirectUpload`` row and a presigned PUT URL for the object
``uploads/<tenant>/<upload id>/<filename>`` (valid ``DIRECT_UPLOAD_EXPIRY_SECONDS``; a declared
``size_bytes`` over the plan's limit is refused at once). The client PUTs the bytes; the web process never
sees them. A presigned PUT cannot bound the size, so the stored size is what counts, checked at use.
Job creation with ``upload_id`` → ``prepare``: the upload must be the
tenant's, unused and unexpired, and its object present and within the plan's file limit (a HEAD, before any
download); it is then downloaded to a temporary file and probed like any upload. A refused one (too large,
not audio) is deleted, object and row; a valid one becomes the job's input where it lies (no copy) and is
consumed once in the job's transaction (``jobs.services``). Unused uploads are deleted by retention after
they expire (``clean_expired``).

Only S3 storage can sign URLs: with local storage ``create`` answers ``409 PRESIGNED_UPLOADS_UNAVAILABLE``.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.utils import timezone
from django.utils.text import get_valid_filename

from core.errors import ServiceError
from jobs.models import DirectUpload

if TYPE_CHECKING:
    from accounts.models import ApiKey, Tenant

logger = logging.getLogger(__name__)
FIELD = "upload_id"


@dataclass
class PresignedUpload:
    upload: DirectUpload
    url: str
    method: str
    headers: dict[str, str]


def supported() -> bool:
    """Whether the configured storage can sign PUT URLs (``audioseal_site.storage.PrivateS3Storage``)."""
    return callable(getattr(default_storage, "presigned_put_url", None))


def create(
    tenant: Tenant, *, filename: str, max_bytes: int, size_bytes: int | None = None, api_key: ApiKey | None = None
) -> PresignedUpload:
    """A new direct upload and its presigned PUT URL. ``max_bytes``: the plan's per-file limit."""
    if not supported():
        raise ServiceError(
            "PRESIGNED_UPLOADS_UNAVAILABLE",
            "Presigned uploads need S3 storage (STORAGE_BUCKET); this server stores files locally. "
            "Send the file in the job request instead.",
            {"storage": "local"},
        )
    if size_bytes is not None and size_bytes > max_bytes:
        raise ServiceError(
            "FILE_TOO_LARGE", f"`size_bytes` is {size_bytes} bytes; the limit is {max_bytes} bytes.",
            {"field": "size_bytes", "size_bytes": size_bytes, "limit_bytes": max_bytes},
        )
    upload_id = uuid.uuid4()
    safe = (get_valid_filename(os.path.basename(filename or "")) or "upload")[:120]
    expiry = int(settings.DIRECT_UPLOAD_EXPIRY_SECONDS)
    upload = DirectUpload(
        id=upload_id, tenant=tenant, api_key=api_key, filename=safe, max_bytes=max_bytes,
        storage_name=f"uploads/{tenant.pk}/{upload_id}/{safe}",
        expires_at=timezone.now() + timedelta(seconds=expiry),
    )
    url = default_storage.presigned_put_url(upload.storage_name, expire=expiry)
    upload.save(force_insert=True)
    return PresignedUpload(upload=upload, url=url, method="PUT", headers={})


def _error(code: str, message: str, upload_id: Any) -> ServiceError:
    return ServiceError(code, message, {"field": FIELD, "upload_id": str(upload_id)})


def prepare(tenant: Tenant, upload_id: Any, *, max_bytes: int) -> tuple[DirectUpload, TemporaryUploadedFile]:
    """The tenant's unused upload and a temporary local copy to probe (the caller closes it); refuses one
    that is unknown, used, expired, not uploaded yet, or over ``max_bytes`` (that one is deleted)."""
    upload = DirectUpload.objects.filter(pk=upload_id, tenant=tenant).first()
    if upload is None:
        raise _error("UPLOAD_NOT_FOUND", "No such upload.", upload_id)
    if upload.consumed_at is not None:
        raise _error("UPLOAD_ALREADY_USED", "This upload was already used for a job; upload the file again.",
                     upload_id)
    if upload.expires_at <= timezone.now():
        raise _error("UPLOAD_EXPIRED", "This upload expired; create a new one.", upload_id)
    try:
        size = default_storage.size(upload.storage_name)
    except Exception as exc:  # noqa: BLE001 - botocore's 404 (ClientError) or a missing local file
        raise _error("UPLOAD_INCOMPLETE", "Nothing was uploaded yet: PUT the file to the upload URL first.",
                     upload_id) from exc
    limit = min(max_bytes, upload.max_bytes)
    if size > limit:
        discard(upload)
        raise ServiceError(
            "FILE_TOO_LARGE", f"The upload is {size} bytes; the limit is {limit} bytes.",
            {"field": FIELD, "size_bytes": size, "limit_bytes": limit},
        )
    copy = TemporaryUploadedFile(upload.filename or "upload", "application/octet-stream", size, None)
    try:
        if hasattr(default_storage, "download_to"):  # S3: ranged GETs into the file's path (probed by path)
            default_storage.download_to(upload.storage_name, copy.temporary_file_path())
        else:
            with default_storage.open(upload.storage_name, "rb") as source:
                for chunk in iter(lambda: source.read(1024 * 1024), b""):
                    copy.write(chunk)
            copy.flush()
            copy.seek(0)
    except BaseException:
        copy.close()
        raise
    copy.size = size
    return upload, copy


def discard(upload: DirectUpload) -> None:
    """Delete an upload's object and row (refused or expired)."""
    try:
        default_storage.delete(upload.storage_name)
    except Exception:  # noqa: BLE001 - the row goes anyway; an orphan object is logged
        logger.exception("could not delete the object of upload %s", upload.pk)
    DirectUpload.objects.filter(pk=upload.pk, consumed_at__isnull=True).delete()


def clean_expired(now: datetime | None = None, limit: int = 500) -> int:
    """Delete unused uploads whose PUT URL expired (object and row); for retention. Returns how many."""
    now = now or timezone.now()
    expired = list(DirectUpload.objects.filter(consumed_at__isnull=True, expires_at__lte=now)[:limit])
    for upload in expired:
        discard(upload)
    return len(expired)
